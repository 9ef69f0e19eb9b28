"""The command loop of the telemetry flow: every command's lifecycle, per twin.

Into the ``command_book`` step (keyed by twin) go the policy's commands, command requests
and desired-property changes from outside, the protocol edges' outcomes
(:class:`~twinflow.core.records.CommandOutcome`) and the twin's states (reported values).
Out comes one :class:`~twinflow.core.records.Command` per lifecycle transition; those
``queued`` for a twin with an actuator route go on to the actuators. The logic is
:class:`twinflow.operators.command_book.CommandBook`; this module only adapts it to Bytewax (state
snapshots for recovery, a wake-up so time-outs fire while a twin is quiet).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.operators import StatefulLogic

from twinflow.core.records import (
    Command,
    CommandOutcome,
    CommandStatus,
    DesiredChange,
    TwinState,
)
from twinflow.flows.config import FlowConfig
from twinflow.operators.catalog import CATALOG, TwinType
from twinflow.operators.command_book import CommandBook, CommandSettings

#: Wall-clock seconds between time-out checks while a twin has open commands.
TICK_S = 1.0


def command_settings(config: FlowConfig, routed: bool = True) -> CommandSettings:
    """The book's settings from the flow config."""
    return CommandSettings(
        timeout_s=config.command_timeout_s,
        rate_limit=config.command_rate_limit,
        rate_window_s=config.command_rate_window_s,
        routed=routed,
    )


class CommandBookLogic(StatefulLogic):
    """Bytewax wrapper of one twin's :class:`CommandBook`, built from its first typed item."""

    def __init__(
        self,
        book: CommandBook | None,
        config: FlowConfig,
        clock: Callable[[], float],
        twin_types: Mapping[str, TwinType] | None,
        routed: Callable[[str], bool],
    ) -> None:
        self.book = book
        self.config = config
        self.clock = clock
        self.twin_types = twin_types
        self.routed = routed

    def _book_for(self, item: Any) -> CommandBook | None:
        if self.book is None:
            kind = getattr(item, "twin_type", None)
            twin = item.twin_id
            ttype = (self.twin_types or {}).get(twin) or CATALOG.get(kind or "")
            if ttype is None:
                return None
            self.book = CommandBook(ttype, command_settings(self.config, self.routed(twin)))
        return self.book

    def on_item(self, value: Any) -> tuple[Iterable[Command], bool]:
        book = self._book_for(value)
        if book is None:  # an outcome before anything else of this twin: nothing to follow
            return [], StatefulLogic.RETAIN
        now = self.clock()
        if isinstance(value, Command):
            out = book.submit(value, now)
        elif isinstance(value, DesiredChange):
            out = book.desire(value, now)
        elif isinstance(value, CommandOutcome):
            out = book.outcome(value, now)
        elif isinstance(value, TwinState):
            out = book.observe(value, now)
        else:
            raise TypeError(f"command_book got a {type(value).__name__}")
        deadline = book.next_deadline()
        if deadline is not None and deadline <= now:
            out = [*out, *book.tick(now)]
        return out, StatefulLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[Command], bool]:
        return (self.book.tick(self.clock()) if self.book else []), StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        if self.book is None or self.book.next_deadline() is None:
            return None
        return datetime.now(UTC) + timedelta(seconds=TICK_S)

    def snapshot(self) -> CommandBook | None:
        return copy.deepcopy(self.book)


def to_actuators(routed: Callable[[str], bool]) -> Callable[[Command], bool]:
    """Which commands the actuators receive: queued ones of twins with an actuator route."""

    def wanted(command: Command) -> bool:
        return command.status is CommandStatus.QUEUED and routed(command.twin_id)

    return wanted
