"""The command loop's step adapters: the policy that answers alerts and the command book.

Split from :mod:`twinflow.flows.steps` (same conventions); ``CommandBookLogic`` is a Bytewax
:class:`~bytewax.operators.StatefulLogic` so that open commands time out on the wall clock.
Its output is every transition (a :class:`~twinflow.core.records.Command`) and, once after a
resume from a recovery snapshot, the open commands to send again (:class:`Resend`): both reach
the actuators through :func:`to_actuators`, only the transitions the commands outputs
(:func:`transition_of`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators import StatefulLogic
from bytewax.outputs import FixedPartitionedSink, Sink

from twinflow.core.records import (
    Alert,
    Command,
    CommandOutcome,
    CommandStatus,
    DesiredChange,
    TwinState,
)
from twinflow.flows.config import FlowConfig
from twinflow.flows.steps import TwinTypes, TypeOf
from twinflow.operators.catalog import CATALOG, TwinType
from twinflow.operators.command_book import CommandBook, CommandSettings
from twinflow.operators.policy import CommandPolicy, check_reactions

#: Items the ``command_book`` step takes, all keyed by twin.
BookItem = Command | DesiredChange | CommandOutcome | TwinState

#: Wall-clock seconds between time-out checks while a twin has open commands.
TICK_S = 1.0


@dataclass(frozen=True, slots=True)
class Resend:
    """An open command a restored book hands to the actuators again: not a transition, so
    it is not written to the commands outputs (its ``queued`` row was written before)."""

    command: Command


#: What the ``command_book`` step emits.
BookOut = Command | Resend


@dataclass(frozen=True)
class PolicyStep:
    """``policy`` (stateful_flat_map): turn alerts into rate-limited commands."""

    min_interval_s: float
    derate_fraction: float
    ttl_s: float
    type_of: TypeOf = field(default_factory=TypeOf)

    @classmethod
    def from_config(cls, config: FlowConfig, type_of: TypeOf | None = None) -> PolicyStep:
        """The step with the flow's settings; every type's reactions are checked here, so a
        bad profile reaction fails at start-up."""
        type_of = type_of or TypeOf()
        for kind in (*type_of.catalog.values(), *(type_of.types or {}).values()):
            check_reactions(kind, config.derate_fraction)
        return cls(config.command_interval_s, config.derate_fraction, config.command_ttl_s, type_of)

    def __call__(
        self, policy: CommandPolicy | None, alert: Alert
    ) -> tuple[CommandPolicy, list[Command]]:
        if policy is None:
            policy = CommandPolicy(
                min_interval_s=self.min_interval_s,
                derate_fraction=self.derate_fraction,
                ttl_s=self.ttl_s,
            )
        return policy, policy.decide(alert, self.type_of(alert.twin_id, alert.twin_type))


def command_settings(config: FlowConfig, routed: bool = True) -> CommandSettings:
    """The command book's settings from the flow config."""
    return CommandSettings(
        timeout_s=config.command_timeout_s,
        rate_limit=config.command_rate_limit,
        rate_window_s=config.command_rate_window_s,
        routed=routed,
    )


class CommandBookLogic(StatefulLogic[BookItem, BookOut, CommandBook | None]):
    """``command_book`` (stateful): one twin's :class:`CommandBook`, built from its first
    typed item, with state snapshots for recovery and a wake-up so time-outs fire while a
    twin is quiet. A book resumed from a snapshot first sends its open commands again
    (:meth:`CommandBook.resend`), at its first item or wake-up, whichever comes first."""

    def __init__(
        self,
        book: CommandBook | None,
        config: FlowConfig,
        clock: Callable[[], float],
        twin_types: TwinTypes,
        routed: Callable[[str], bool],
        catalog: Mapping[str, TwinType] = CATALOG,
    ) -> None:
        self.book = book
        self.config = config
        self.clock = clock
        self.twin_types = twin_types
        self.routed = routed
        self.catalog = catalog

    def _book_for(self, item: BookItem) -> CommandBook | None:
        if self.book is None:
            kind = getattr(item, "twin_type", None)
            twin = item.twin_id
            ttype = (self.twin_types or {}).get(twin) or self.catalog.get(kind or "")
            if ttype is None:
                return None
            self.book = CommandBook(ttype, command_settings(self.config, self.routed(twin)))
        return self.book

    def on_item(self, value: BookItem) -> tuple[Iterable[BookOut], bool]:
        book = self._book_for(value)
        if book is None:  # an outcome before anything else of this twin: nothing to follow
            return [], StatefulLogic.RETAIN
        now = self.clock()
        out: list[BookOut] = [Resend(c) for c in book.resend(now)]
        if isinstance(value, Command):
            out += book.submit(value, now)
        elif isinstance(value, DesiredChange):
            out += book.desire(value, now)
        elif isinstance(value, CommandOutcome):
            out += book.outcome(value, now)
        elif isinstance(value, TwinState):
            out += book.observe(value, now)
        else:
            raise TypeError(f"command_book got a {type(value).__name__}")
        deadline = book.next_deadline()
        if deadline is not None and deadline <= now:
            out += book.tick(now)
        return out, StatefulLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[BookOut], bool]:
        if self.book is None:
            return [], StatefulLogic.RETAIN
        now = self.clock()
        out: list[BookOut] = [Resend(c) for c in self.book.resend(now)]
        out += self.book.tick(now)
        return out, StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        if self.book is None:
            return None
        if self.book.resend_due:  # resumed: send the open commands again without waiting
            return datetime.now(UTC)
        if self.book.next_deadline() is None:
            return None
        return datetime.now(UTC) + timedelta(seconds=TICK_S)

    def snapshot(self) -> CommandBook | None:
        return copy.deepcopy(self.book)


@dataclass(frozen=True)
class CommandBookStep:
    """The builder ``command_book`` (stateful) calls with a twin's resumed book, if any."""

    config: FlowConfig
    clock: Callable[[], float]
    twin_types: TwinTypes
    routed: Callable[[str], bool]
    catalog: Mapping[str, TwinType] = field(default_factory=lambda: CATALOG)

    def __call__(self, resume: CommandBook | None) -> CommandBookLogic:
        return CommandBookLogic(
            resume, self.config, self.clock, self.twin_types, self.routed, self.catalog
        )


def to_actuators(routed: Callable[[str], bool]) -> Callable[[BookOut], Command | None]:
    """What the actuators receive of the book's output, for twins with an actuator route:
    queued commands, and the commands a resumed book sends again."""

    def wanted(item: BookOut) -> Command | None:
        command = item.command if isinstance(item, Resend) else item
        if command.status is CommandStatus.QUEUED and routed(command.twin_id):
            return command
        return None

    return wanted


def transition_of(item: BookOut) -> Command | None:
    """The book's output without what it sends again: the rows of the commands outputs."""
    return None if isinstance(item, Resend) else item


def everyone(_twin_id: str) -> bool:
    """The default actuator route: every twin has one."""
    return True


def send_commands(
    step_id: str, queued: Stream[Command], sinks: Sink[Any] | Sequence[Sink[Any]] | None
) -> None:
    """Queued commands to the actuator sinks: a fixed-partitioned one (commands placed on the
    worker of their twin's device, :mod:`twinflow.connectors.placement`) takes them keyed by
    twin, a dynamic one as they are (step ids get a suffix when there are several)."""
    if sinks is None:
        return
    many = list(sinks) if isinstance(sinks, Sequence) else [sinks]
    keyed: Stream[tuple[str, Command]] | None = None
    for i, sink in enumerate(many):
        name = step_id if len(many) == 1 else f"{step_id}_{i}"
        if isinstance(sink, FixedPartitionedSink):
            if keyed is None:
                keyed = op.key_on(f"{step_id}_by_twin", queued, _twin_of)
            op.output(name, keyed, sink)
        else:
            op.output(name, queued, sink)


def _twin_of(command: Command) -> str:
    return command.twin_id
