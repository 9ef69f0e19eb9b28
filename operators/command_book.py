"""One twin's command book: every command from decision to end state, checked against the model.

Commands reach a twin from three origins: the flow's policy (``derate`` on overheating), a
request from outside (a Kafka command request) and a change of a desired property
(:class:`~twinflow.core.records.DesiredChange`). The book handles them alike:

1. **Check** before anything is sent: the twin's DTDL model must declare the command, the
   payload must match its request schema and the parameter limits; the command must not have
   expired; the twin's rate limit must allow it. The flow's own safety commands (origin
   ``policy``) have a rate budget and open-command cap of their own, so external requests and
   desired changes cannot use up what a policy derate needs. A failed check ends it ``rejected`` (or
   ``expired``) with the reason in ``detail``; a passed one becomes ``queued`` and goes to
   the actuators.
2. **Follow** it: the protocol edges report ``sent``, ``acknowledged``, ``succeeded`` and
   ``failed`` (:class:`~twinflow.core.records.CommandOutcome`); a command that sets a property
   with a reported signal succeeds when the reported value comes within the property's
   tolerance of the target; one without a reported counterpart succeeds when the device
   acknowledges it (a write accepted by an OPC UA or Modbus server) or says so (MQTT).
3. **Time out**: a command with no end state ``timeout_s`` after it was queued ends
   ``timed_out`` (a device that does not answer, an unreachable server).
4. **Send again after a restore**: the sinks hold what they are delivering in memory, so a
   book restored from a recovery snapshot (unpickled: :meth:`CommandBook.__setstate__`)
   hands its open commands that the device has not acknowledged, have not expired and have
   not timed out to the actuators once more (:meth:`CommandBook.resend`, one more
   ``attempt``, a fresh ``timeout_s``), with the same id and parameters. Safe because every
   bundled command sets a value (a setpoint, the derate fraction), so a device that got it
   before the crash ends as it was; an MQTT device sees the same ``command_id``.

Every status a command reaches is one :class:`~twinflow.core.records.Command` on the output,
with its ``status_at`` (the reference clock) and ``attempt``, output once whatever order the
outcomes come in (in a cluster, ``sent`` comes from the sending process and the device's
answer may come first through another). The status only moves forward; a ``sent`` or
``acknowledged`` learnt after a later status, even after the end, is output as a history row
with the outcome's own time. Replayed outcomes, a second end state and outcomes of unknown
commands are ignored. State is bounded: at most ``max_open`` open commands and as many ended
ones (kept for late outcomes until ``timeout_s`` after they expire), the ids of the last
``remember`` finished ones (a replayed command is not queued twice), and the ids of finished
requests and desired changes until they expire (up to ``4 * remember``, soonest to expire
forgotten first), so a copied request is refused however many commands came since.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import MutableSequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any

from twinflow.core.errors import ValidationError
from twinflow.core.records import (
    TERMINAL_COMMAND_STATUSES,
    Command,
    CommandOutcome,
    CommandStatus,
    DesiredChange,
    TwinState,
    deterministic_id,
)
from twinflow.core.times import epoch, utc
from twinflow.operators.catalog import PropertySpec, TwinType
from twinflow.operators.snapshots import copy_sharing

#: Order of the statuses a command moves through; an outcome never moves it backwards.
_RANK = {
    CommandStatus.ISSUED: 0,
    CommandStatus.QUEUED: 1,
    CommandStatus.SENT: 2,
    CommandStatus.ACKNOWLEDGED: 3,
}
#: Progress the sinks report that may arrive after a later status: kept as a history row.
_HISTORY = frozenset({CommandStatus.SENT, CommandStatus.ACKNOWLEDGED})
#: Open statuses whose command may not have reached the device: sent again after a restore.
_RESEND = frozenset({CommandStatus.QUEUED, CommandStatus.SENT})
#: Statuses of a command whose value reached its device: an older open command of the same
#: name is not sent again after a restore.
_SUPERSEDES = frozenset({CommandStatus.ACKNOWLEDGED, CommandStatus.SUCCEEDED})


@dataclass(frozen=True, slots=True)
class CommandSettings:
    """How the book treats commands (times in seconds of the reference clock).

    ``rate_limit`` commands may be queued per twin within any ``rate_window_s``; more are
    rejected. The flow's own safety commands (origin ``policy``) count against a budget of
    their own, ``safety_rate_limit`` (default: ``rate_limit``), and ``max_open`` holds for
    each budget apart. ``routed`` is False for twins without an actuator protocol (their commands
    are queued for an external executor that reads the commands stream, and not followed).
    """

    timeout_s: float = 30.0
    rate_limit: int = 6
    rate_window_s: float = 60.0
    max_open: int = 64
    remember: int = 256
    routed: bool = True
    safety_rate_limit: int | None = None

    @property
    def safety_limit(self) -> int:
        """The safety commands' rate budget."""
        return self.rate_limit if self.safety_rate_limit is None else self.safety_rate_limit

    def __post_init__(self) -> None:
        for name in ("timeout_s", "rate_window_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValidationError(f"CommandSettings.{name} must be > 0, got {value!r}")
        for name in ("rate_limit", "max_open", "remember", "safety_rate_limit"):
            value = getattr(self, name)
            if value is None and name == "safety_rate_limit":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValidationError(f"CommandSettings.{name} must be an integer >= 1")


@dataclass(slots=True)
class _Open:
    """A command, what decides its success and the statuses it output; ``deadline`` is
    its time-out while open, when it is forgotten once ended."""

    command: Command
    deadline: float
    #: (reported signal, target value, tolerance) when the command sets a reported property.
    target: tuple[str, float, float] | None
    #: Statuses already on the output: each is output once.
    stored: set[CommandStatus] = field(default_factory=set)


def is_safety(command: Command) -> bool:
    """Whether ``command`` is one of the flow's own safety commands (origin ``policy``)."""
    return command.origin == "policy"


def desired_command_id(twin_id: str, prop: str, request_id: str) -> str:
    """The deterministic id of the command that carries a desired-property change."""
    return deterministic_id("desired", twin_id, prop, request_id)


@dataclass
class CommandBook:
    """The command lifecycle of one twin of type ``twin_type``; ``now`` is epoch seconds.

    >>> from datetime import UTC, datetime
    >>> from twinflow.operators.catalog import ActuatorSpec, TwinType
    >>> fan = TwinType("fan", (), (ActuatorSpec("set_speed", {"rpm": (200.0, 1500.0)}),))
    >>> book = CommandBook(fan)
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> cmd = Command("c1", "F1", "fan", "set_speed", {"rpm": 2000.0}, t0,
    ...               utc(t0.timestamp() + 60), "test")
    >>> [(c.status.value, c.detail) for c in book.submit(cmd, t0.timestamp())]
    [('rejected', 'set_speed: rpm=2000 is outside [200, 1500]')]
    """

    twin_type: TwinType
    settings: CommandSettings = field(default_factory=CommandSettings)
    open: dict[str, _Open] = field(default_factory=dict)
    # Lists, not deques: an empty deque takes 600 B and most twins never get a command.
    # Snapshots taken before hold deques, which support the same operations.
    finished: MutableSequence[str] = field(default_factory=list)
    queued_times: MutableSequence[float] = field(default_factory=list)
    #: Queue times of the flow's own safety commands (their own budget).
    safety_times: MutableSequence[float] = field(default_factory=list)
    #: Finished external commands that have not expired: id -> expiry (epoch seconds).
    unexpired: dict[str, float] = field(default_factory=dict)
    #: Ended commands kept so that an outcome arriving after the end still gets its row.
    ended: dict[str, _Open] = field(default_factory=dict)
    #: Restored from a snapshot and its open commands not yet sent again (:meth:`resend`).
    resend_due: bool = field(default=False, init=False, repr=False, compare=False)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A book restored from a snapshot: its open commands are due to be sent again.

        Also resumes a snapshot taken before safety commands had a budget of their own,
        before external request ids were kept until they expire, or before outputs were kept
        per status (an open command then has output its statuses up to its current one)."""
        state["resend_due"] = True
        state.setdefault("safety_times", deque())
        state.setdefault("unexpired", {})
        state.setdefault("ended", {})
        for entry in state["open"].values():
            if not hasattr(entry, "stored"):
                rank = _RANK[entry.command.status]
                entry.stored = {s for s, r in _RANK.items() if 0 < r <= rank}
        self.__dict__.update(state)

    def __deepcopy__(self, memo: dict[int, Any]) -> CommandBook:
        """A snapshot shares the twin type and the settings (immutable)."""
        return copy_sharing(self, memo, ("twin_type", "settings"))

    # -- inputs --------------------------------------------------------------------------

    def submit(self, command: Command, now: float) -> list[Command]:
        """A new command (status ``issued``): checked, then queued or ended."""
        if command.status is not CommandStatus.ISSUED:
            # Decided elsewhere (e.g. a policy holding a command back): pass it on as it is.
            return [command] if command.status in TERMINAL_COMMAND_STATUSES else []
        self._forget_expired(now)
        seen = (self.open, self.unexpired)
        if any(command.command_id in ids for ids in seen) or command.command_id in self.finished:
            return []  # a replay of a command this book already has
        if now >= epoch(command.expires_at):
            return [self._end(command, CommandStatus.EXPIRED, now, "expired before it was sent")]
        problems = self.check(command)
        if problems:
            return [self._end(command, CommandStatus.REJECTED, now, "; ".join(problems))]
        safety = is_safety(command)
        times, limit = (
            (self.safety_times, self.settings.safety_limit)
            if safety
            else (self.queued_times, self.settings.rate_limit)
        )
        while times and times[0] <= now - self.settings.rate_window_s:
            del times[0]
        budget = "safety " if safety else ""
        if len(times) >= limit:
            window = self.settings.rate_window_s
            detail = f"{budget}rate limit: {limit} commands within {window:g} s"
            return [self._end(command, CommandStatus.REJECTED, now, detail)]
        if (
            sum(is_safety(e.command) == safety for e in self.open.values())
            >= self.settings.max_open
        ):
            detail = f"{self.settings.max_open} {budget}commands still open for this twin"
            return [self._end(command, CommandStatus.REJECTED, now, detail)]
        times.append(now)
        queued = replace(command, status=CommandStatus.QUEUED, status_at=utc(now), detail="")
        if not self.settings.routed:
            self._remember(command)
            detail = "no actuator protocol: left to the executor reading the commands stream"
            return [replace(queued, detail=detail)]
        self.open[command.command_id] = _Open(
            queued, now + self.settings.timeout_s, self._target(command), {CommandStatus.QUEUED}
        )
        return [queued]

    def desire(self, change: DesiredChange, now: float) -> list[Command]:
        """A desired-property change becomes the property's command, then as :meth:`submit`."""
        base = Command(
            command_id=desired_command_id(change.twin_id, change.prop, change.request_id),
            twin_id=change.twin_id,
            twin_type=self.twin_type.name,
            name=f"desired:{change.prop}",  # until the property's command is known
            params=MappingProxyType({}),
            issued_at=change.at,
            expires_at=change.expires_at,
            reason=f"desired:{change.prop}={change.value:g} ({change.request_id})",
            origin="desired",
        )
        try:
            spec = self.twin_type.property(change.prop)
        except ValidationError as exc:
            return [self._end(base, CommandStatus.REJECTED, now, str(exc))]
        problems = _property_problems(spec, change.value)
        if problems:
            name = spec.command or base.name
            return [self._end(replace(base, name=name), CommandStatus.REJECTED, now, problems)]
        assert spec.command is not None
        params = MappingProxyType(spec.command_params(change.value))
        return self.submit(replace(base, name=spec.command, params=params), now)

    def outcome(self, report: CommandOutcome, now: float) -> list[Command]:
        """What a protocol edge reported: moves the command forward (never back); an earlier
        status learnt late, open or ended, is output once as history."""
        self._forget_ended(now)
        entry = self.open.get(report.command_id)
        if entry is None:
            ended = self.ended.get(report.command_id)
            return [] if ended is None else self._history(ended, report)
        current = entry.command
        status = report.status
        attempt = max(current.attempt, report.attempt)
        if status in TERMINAL_COMMAND_STATUSES:
            return [self._end(current, status, now, report.detail, attempt)]
        if status in entry.stored or status not in _HISTORY:
            if attempt != current.attempt:
                entry.command = replace(current, attempt=attempt)
            return []
        if _RANK[status] < _RANK[current.status]:
            return self._history(entry, report)
        moved = replace(
            current, status=status, status_at=utc(now), detail=report.detail, attempt=attempt
        )
        entry.command = moved
        entry.stored.add(status)
        out = [moved]
        if status is CommandStatus.ACKNOWLEDGED and entry.target is None:
            out.append(self._end(moved, CommandStatus.SUCCEEDED, now, "acknowledged by the device"))
        return out

    def observe(self, state: TwinState, now: float) -> list[Command]:
        """Reported values: commands whose target is reached succeed."""
        out = []
        for entry in list(self.open.values()):
            if entry.target is None or entry.command.status is CommandStatus.QUEUED:
                continue
            signal, target, tolerance = entry.target
            reported = state.signals.get(signal)
            if reported is None or not math.isfinite(reported.value):
                continue
            if abs(reported.value - target) <= tolerance:
                detail = f"reported {signal}={reported.value:g} (target {target:g})"
                out.append(self._end(entry.command, CommandStatus.SUCCEEDED, now, detail))
        return out

    def tick(self, now: float) -> list[Command]:
        """Commands past their deadline end ``timed_out``."""
        late = [e for e in self.open.values() if e.deadline <= now]
        out = []
        for entry in sorted(late, key=lambda e: e.deadline):
            last = entry.command.status.value
            detail = f"no end state within {self.settings.timeout_s:g} s (last: {last})"
            out.append(self._end(entry.command, CommandStatus.TIMED_OUT, now, detail))
        return out

    def resend(self, now: float) -> list[Command]:
        """Once after a restore, the open commands to hand to the actuators again.

        The sinks' retries and pending writes died with the process, so a command still
        ``queued``, or ``sent`` without an acknowledgement, would never reach its device.
        Each such command that has neither expired nor timed out is returned as ``queued``
        (what the sinks take) with the same id and parameters and one more ``attempt``; its
        time-out starts again. The book's own status stays where it was (no row is output
        for this), and the ones not sent again time out as before. A command superseded by a
        later one of the same name (issued later, and open or succeeded) is not sent again:
        written after it, the older value would undo the newer one.
        """
        if not self.resend_due:
            return []
        self.resend_due = False
        newest: dict[str, datetime] = {}
        for kept in (*self.open.values(), *self.ended.values()):
            c = kept.command
            if c.status in _RESEND or c.status in _SUPERSEDES:
                newest[c.name] = max(newest.get(c.name, c.issued_at), c.issued_at)
        out = []
        for entry in self.open.values():
            current = entry.command
            if (
                current.status not in _RESEND
                or entry.deadline <= now
                or now >= epoch(current.expires_at)
                or current.issued_at < newest[current.name]
            ):
                continue
            entry.command = replace(current, attempt=current.attempt + 1)
            entry.deadline = now + self.settings.timeout_s
            detail = f"sent again after a restore (was {current.status.value})"
            again = replace(entry.command, status=CommandStatus.QUEUED, status_at=utc(now))
            out.append(replace(again, detail=detail))
        return out

    # -- queries -------------------------------------------------------------------------

    def check(self, command: Command) -> list[str]:
        """Problems that forbid sending ``command`` to this twin type (empty when none)."""
        try:
            actuator = self.twin_type.actuator(command.name)
        except ValidationError as exc:
            return [str(exc)]
        problems = [f"{command.name}: {p}" for p in actuator.check(command.params)]
        if not problems and actuator.request_schema is not None:
            from twinflow.operators.dtdl import validate_payload

            payload = {k: float(v) for k, v in command.params.items()}
            problems = [
                f"{command.name}: {p}" for p in validate_payload(actuator.request_schema, payload)
            ]
        return problems

    def next_deadline(self) -> float | None:
        """When the next open command times out (``None`` when nothing is open)."""
        return min((e.deadline for e in self.open.values()), default=None)

    # -- internals -----------------------------------------------------------------------

    def _end(
        self,
        command: Command,
        status: CommandStatus,
        now: float,
        detail: str,
        attempt: int | None = None,
    ) -> Command:
        entry = self.open.pop(command.command_id, None)
        self._remember(command)
        ended = replace(
            command,
            status=status,
            status_at=utc(now),
            detail=detail,
            attempt=command.attempt if attempt is None else attempt,
        )
        if entry is not None:
            # Kept for late outcomes until they can no longer come (the sinks stop at expiry).
            forget = max(epoch(command.expires_at), now) + self.settings.timeout_s
            self.ended[command.command_id] = _Open(ended, forget, None, entry.stored | {status})
            while len(self.ended) > self.settings.max_open:
                del self.ended[next(iter(self.ended))]
        return ended

    def _history(self, entry: _Open, report: CommandOutcome) -> list[Command]:
        """An earlier status learnt after a later one: its row, with the outcome's own time
        and detail, unless it was output already; the command's status does not change."""
        if report.status not in _HISTORY or report.status in entry.stored:
            return []
        entry.stored.add(report.status)
        row = replace(entry.command, status=report.status, status_at=report.at)
        return [replace(row, detail=report.detail, attempt=report.attempt)]

    def _forget_ended(self, now: float) -> None:
        """Drop ended commands no late outcome can come for any more."""
        if self.ended and min(e.deadline for e in self.ended.values()) <= now:
            self.ended = {k: e for k, e in self.ended.items() if e.deadline > now}

    def _remember(self, command: Command) -> None:
        self.finished.append(command.command_id)
        while len(self.finished) > self.settings.remember:
            del self.finished[0]
        if is_safety(command):
            return
        self.unexpired[command.command_id] = epoch(command.expires_at)
        if len(self.unexpired) > 4 * self.settings.remember:
            soonest = min(self.unexpired, key=self.unexpired.__getitem__)
            del self.unexpired[soonest]

    def _forget_expired(self, now: float) -> None:
        """Drop the ids of external commands that have expired (a replay ends ``expired``)."""
        if self.unexpired and min(self.unexpired.values()) <= now:
            self.unexpired = {k: t for k, t in self.unexpired.items() if t > now}

    def _target(self, command: Command) -> tuple[str, float, float] | None:
        """The reported value that shows ``command`` took effect, when its type has one."""
        for prop in self.twin_type.properties:
            if (
                prop.command == command.name
                and prop.reported_signal in self.twin_type.signal_names
                and prop.param is not None
                and prop.param in command.params
                and prop.scale != 0
            ):
                value = float(command.params[prop.param]) / prop.scale
                return prop.reported_signal, value, prop.tolerance
        return None


def _property_problems(spec: PropertySpec, value: float) -> str:
    if not spec.writable:
        return f"property {spec.name!r} is read-only in the twin's model"
    if spec.command is None or spec.param is None:
        return f"property {spec.name!r} has no command that sets it"
    return "; ".join(spec.check(value))
