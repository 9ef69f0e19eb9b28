"""What every protocol command sink does alike: :class:`CommandSink` and :class:`CommandPartition`.

The MQTT, OPC UA and Modbus sinks act on the flow's commands the same way up to the wire:

- items that are not :class:`~twinflow.core.records.Command` are a wiring mistake
  (``TypeError``); commands not in status QUEUED are bookkeeping and ignored;
- a command id the sink has taken on before (a Bytewax replay) is not acted on again;
- a command is REJECTED ("not sent: ...") when its twin has no binding in the sink, is bound
  as another twin type, its binding maps no write for the command, the twin type's catalogue
  refuses it (:meth:`~twinflow.operators.catalog.TwinType.command_problem`), or the protocol
  cannot plan the write (say, a value a register cannot hold); it is EXPIRED when its
  ``expires_at`` has passed; in neither case is anything sent;
- the write is tried with one :class:`~twinflow.core.backoff.Backoff`: a transient failure
  is retried until the tries run out (FAILED "gave up after N attempts") or the command
  expires (EXPIRED);
- each outcome is logged and reported to the process's
  :class:`~twinflow.connectors.feedback.CommandFeedback`.

A protocol sink says what is its own: its name (:attr:`CommandSink.protocol`), which writes a
binding maps (:meth:`CommandSink.writes`), how a write is planned (:meth:`CommandSink.plan`)
and done (one try: :meth:`CommandSink.deliver`'s ``attempt``; or, where acknowledgements come
later on another thread, :meth:`CommandSink.expire_if_due` and :meth:`CommandSink.retry_after`),
and its metrics (:meth:`CommandSink.count`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from twinflow.connectors.feedback import CommandFeedback, SeenIds, report
from twinflow.connectors.sections import kind_of
from twinflow.core.backoff import DEFAULT_BACKOFF, Backoff, Outcome
from twinflow.core.records import Command, CommandStatus
from twinflow.core.times import epoch, iso
from twinflow.operators.catalog import twin_type
from twinflow.operators.twin_type import TwinType

log = logging.getLogger(__name__)


class Bound(Protocol):
    """What the shared checks read of a binding."""

    @property
    def twin_id(self) -> str: ...

    @property
    def twin_type(self) -> str: ...


B = TypeVar("B", bound=Bound)
P = TypeVar("P")

#: One try of a write: its final outcome, or what went wrong in a way worth another try.
Try = Callable[[int], Awaitable[Outcome | str]]


def catalogue_problem(
    command: Command, bound_type: str, bound: str = "is bound as", kind: TwinType | None = None
) -> str | None:
    """Why ``command`` does not fit a twin of type ``bound_type`` (the type differs, or the
    type's catalogue refuses the command and its parameters), or ``None``.

    >>> from twinflow.core.records import Command
    >>> from twinflow.core.times import utc
    >>> cmd = Command("c1", "p-1", "pump", "set_flow", {"m3h": 900.0}, utc(0), utc(60), "doc")
    >>> catalogue_problem(cmd, "pump")
    'set_flow: m3h=900 is outside [20, 400]'
    >>> catalogue_problem(cmd, "motor", "is")
    "twin 'p-1' is a motor, not a pump"
    """
    if command.twin_type != bound_type:
        return f"twin {command.twin_id!r} {bound} a {bound_type}, not a {command.twin_type}"
    spec = kind if kind is not None else twin_type(bound_type)
    return spec.command_problem(command.name, command.params)


class CommandSink(DynamicSink[Command], Generic[B, P]):
    """A Bytewax sink of commands to the twins of ``bindings``, planned as ``P`` values.

    ``feedback`` receives the outcomes; ``backoff`` paces the tries; ``clock`` (epoch
    seconds) judges expiry; ``max_ids`` bounds the command ids remembered against replays.
    """

    #: The protocol's name in messages, e.g. "OPC UA".
    protocol: ClassVar[str]

    def __init__(
        self,
        bindings: Iterable[B],
        *,
        feedback: CommandFeedback | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        clock: Callable[[], float] = time.time,
        max_ids: int = 100_000,
    ) -> None:
        self.bindings: tuple[B, ...] = tuple(bindings)
        self.feedback = feedback
        self.backoff = backoff
        self.clock = clock
        self.max_ids = max_ids
        self.seen = SeenIds(max_ids)
        self.binding_of: dict[str, B] = {b.twin_id: b for b in self.bindings}

    # -- what a protocol says ---------------------------------------------------------------

    def writes(self, binding: B) -> Collection[str] | None:
        """The command names ``binding`` maps to a write; ``None``: any (one channel)."""
        return None

    @abstractmethod
    def plan(self, command: Command, binding: B) -> P | str:
        """What to write for a checked ``command``, or why it cannot be written."""

    def count(self, event: str, status: CommandStatus | None = None) -> None:
        """Protocol metrics: ``event`` is ``ignored``, ``duplicate``, ``unknown_twin``,
        ``rejected``, ``retried`` or a reported status's value (``status`` then set)."""

    # -- the checks -------------------------------------------------------------------------

    def admit(self, items: Iterable[object]) -> list[tuple[Command, P]]:
        """The commands of ``items`` to write, with their plans; the other queued ones are
        reported (REJECTED or EXPIRED) or counted (ignored, duplicate)."""
        out: list[tuple[Command, P]] = []
        for cmd in items:
            if not isinstance(cmd, Command):
                raise TypeError(
                    f"{type(self).__name__} takes twinflow.core.records.Command items, got "
                    f"{type(cmd).__name__}; route only commands to this sink"
                )
            if cmd.status is not CommandStatus.QUEUED:
                self.count("ignored")
            elif not self.seen.claim(cmd.command_id):  # a replay: in flight or done already
                self.count("duplicate")
            elif (binding := self.binding_of.get(cmd.twin_id)) is None:
                why = f"twin {cmd.twin_id!r} has no {self.protocol} binding"
                self.report(cmd, CommandStatus.REJECTED, f"not sent: {why}", event="unknown_twin")
            elif isinstance(plan := self._checked_plan(cmd, binding), str):
                self.report(cmd, CommandStatus.REJECTED, f"not sent: {plan}", event="rejected")
            elif self.clock() > epoch(cmd.expires_at):
                self.report(
                    cmd, CommandStatus.EXPIRED, f"expired at {iso(cmd.expires_at)}, not sent"
                )
            else:
                out.append((cmd, plan))
        return out

    def _checked_plan(self, cmd: Command, binding: B) -> P | str:
        if cmd.twin_type == binding.twin_type:
            mapped = self.writes(binding)
            if mapped is not None and cmd.name not in mapped:
                return (
                    f"twin {cmd.twin_id!r} binds no {self.protocol} write for command "
                    f"{cmd.name!r}; bound: {', '.join(mapped) or 'none'}"
                )
        problem = catalogue_problem(cmd, binding.twin_type, kind=kind_of(binding))
        return problem if problem is not None else self.plan(cmd, binding)

    # -- outcomes -------------------------------------------------------------------------

    def report(
        self,
        command: Command,
        status: CommandStatus,
        detail: str,
        attempt: int = 1,
        *,
        event: str | None = None,
    ) -> None:
        """Count, log and hand an outcome of ``command`` to the feedback hub."""
        self.count(event or status.value, status)
        report(self.feedback, command, status, detail, attempt=attempt, clock=self.clock)

    # -- retries: on an event loop ----------------------------------------------------------

    async def deliver(self, command: Command, target: str, attempt: Try) -> None:
        """Try ``attempt(n)`` (n = 1, 2, ...) until it gives an outcome, the tries run out or
        ``command`` expires, pausing as :attr:`backoff` says; report the final outcome."""
        try:
            outcome = await self._tries(command, target, attempt)
        except asyncio.CancelledError:
            log.warning("command %s: the sink closed before its write finished", command.command_id)
            raise
        except Exception as err:  # never leave a command without an end state
            log.exception("write of command %s failed unexpectedly", command.command_id)
            outcome = CommandStatus.FAILED, f"unexpected {type(err).__name__}: {err}", 1
        self.report(command, *outcome)

    async def _tries(self, command: Command, target: str, attempt: Try) -> Outcome:
        last = ""
        for n in range(1, self.backoff.max_attempts + 1):
            expired = await self.backoff.before_try(command, n, self.clock, last)
            if expired is not None:
                return expired
            result = await attempt(n)
            if not isinstance(result, str):
                return result
            last = result
            if n < self.backoff.max_attempts:
                self.count("retried")
        return self.backoff.gave_up(target, last)

    # -- retries: driven by a protocol's own thread (acknowledged later) --------------------

    def expire_if_due(self, command: Command, tries: int, last_error: str) -> bool:
        """Before another try: report EXPIRED (and say so) when ``command`` has expired."""
        outcome = self.backoff.expired(command, tries, self.clock(), last_error)
        if outcome is not None:
            self.report(command, *outcome)
        return outcome is not None

    def retry_after(
        self, command: Command, attempt: int, last_error: str, target: str = ""
    ) -> float | None:
        """After failed try ``attempt``: the pause before the next, or ``None`` once the
        tries ran out (FAILED "gave up after N attempts" is then reported)."""
        if attempt >= self.backoff.max_attempts:
            self.report(command, *self.backoff.gave_up(target, last_error))
            return None
        self.count("retried")
        return self.backoff.pause(command, attempt, self.clock())


class CommandPartition(StatelessSinkPartition[Command], Generic[P]):
    """A partition that checks each batch with its sink and hands the admitted on."""

    def __init__(self, sink: CommandSink[Any, P]) -> None:
        self.sink = sink

    def write_batch(self, items: list[Command]) -> None:
        for command, plan in self.sink.admit(items):
            self.submit(command, plan)

    @abstractmethod
    def submit(self, command: Command, plan: P) -> None:
        """Start writing ``command`` as ``plan`` says; must not block on the network."""


__all__ = ["Bound", "CommandPartition", "CommandSink", "Try", "catalogue_problem"]
