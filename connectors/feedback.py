"""What the command sinks learn about commands, back into the flow: :class:`CommandFeedback`.

The MQTT, OPC UA and Modbus command sinks report each step of a command they were handed
(sent, acknowledged, succeeded, failed, expired, rejected) as a
:class:`~twinflow.core.records.CommandOutcome` to one per-process hub. The hub is bounded and
never blocks a sink: when full, the oldest undrained outcome is dropped and counted in
``twinflow_command_feedback_dropped_total``. :class:`CommandFeedbackSource` is the Bytewax
input that drains it into the flow, where the command book turns outcomes into status
transitions; tests and tools wait on :meth:`CommandFeedback.wait_for` instead.

The sinks also share :class:`SeenIds` (replay guard) and :func:`report` (log and report); their
retry pacing is :class:`twinflow.core.backoff.Backoff`.

>>> from twinflow.core.records import CommandStatus
>>> from twinflow.core.times import utc
>>> hub = CommandFeedback(capacity=2)
>>> for i in range(3):
...     hub.report(CommandOutcome(f"c{i}", "m1", CommandStatus.SENT, utc(0)))
>>> [o.command_id for o in hub.drain()], hub.dropped
(['c1', 'c2'], 1)
>>> [o.status.value for o in hub.history("c0")]
['sent']
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta

from bytewax.inputs import DynamicSource, StatelessSourcePartition
from prometheus_client import Counter

from twinflow.core.errors import ConfigError
from twinflow.core.records import Command, CommandOutcome, CommandStatus
from twinflow.core.times import utc

log = logging.getLogger(__name__)

DROPPED = Counter(
    "twinflow_command_feedback_dropped",
    "Command outcomes dropped undrained because the feedback hub was full (oldest first)",
)
OUTCOMES = Counter(
    "twinflow_command_outcomes",
    "Command outcomes reported by the protocol sinks, by status",
    ["status"],
)


class CommandFeedback:
    """A thread-safe, bounded hub of :class:`CommandOutcome`\\ s reported by the sinks.

    ``capacity`` bounds the outcomes waiting to be drained (drop-oldest when full);
    ``history_commands`` bounds how many command ids keep a history (least recently
    reported forgotten first) and ``history_per_command`` how many outcomes each keeps.
    """

    def __init__(
        self,
        capacity: int = 10_000,
        *,
        history_commands: int = 10_000,
        history_per_command: int = 32,
    ) -> None:
        for name, value in (
            ("capacity", capacity),
            ("history_commands", history_commands),
            ("history_per_command", history_per_command),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"CommandFeedback {name} must be an integer >= 1, got {value!r}")
        self.capacity = capacity
        self.history_commands = history_commands
        self.history_per_command = history_per_command
        self._cond = threading.Condition()
        self._queue: deque[CommandOutcome] = deque()
        self._history: OrderedDict[str, deque[CommandOutcome]] = OrderedDict()
        self._dropped = 0
        self._closed = False

    def report(self, outcome: CommandOutcome) -> None:
        """Add ``outcome``; never blocks beyond a short lock (drops the oldest when full)."""
        dropped = False
        with self._cond:
            if len(self._queue) >= self.capacity:
                self._queue.popleft()
                self._dropped += 1
                dropped = True
            self._queue.append(outcome)
            past = self._history.get(outcome.command_id)
            if past is None:
                past = self._history[outcome.command_id] = deque(maxlen=self.history_per_command)
                while len(self._history) > self.history_commands:
                    self._history.popitem(last=False)
            else:
                self._history.move_to_end(outcome.command_id)
            past.append(outcome)
            self._cond.notify_all()
        OUTCOMES.labels(outcome.status.value).inc()
        if dropped:
            DROPPED.inc()

    def drain(self, max_items: int = 1000) -> list[CommandOutcome]:
        """Take up to ``max_items`` outcomes, oldest first."""
        with self._cond:
            n = min(max_items, len(self._queue))
            return [self._queue.popleft() for _ in range(n)]

    def history(self, command_id: str) -> list[CommandOutcome]:
        """What was reported for ``command_id`` (bounded, oldest first); drained or not."""
        with self._cond:
            return list(self._history.get(command_id, ()))

    def wait_for(
        self, command_id: str, statuses: Collection[CommandStatus], timeout_s: float
    ) -> CommandOutcome | None:
        """The first reported outcome of ``command_id`` with a status in ``statuses``,
        waiting up to ``timeout_s``; ``None`` if none came."""
        wanted = frozenset(statuses)

        def found() -> CommandOutcome | None:
            return next((o for o in self._history.get(command_id, ()) if o.status in wanted), None)

        with self._cond:
            self._cond.wait_for(lambda: found() is not None, timeout_s)
            return found()

    def close(self) -> None:
        """No more outcomes are expected: the source ends once it drained the rest."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    @property
    def dropped(self) -> int:
        """Outcomes this hub dropped because it was full."""
        with self._cond:
            return self._dropped

    def __len__(self) -> int:
        """Outcomes waiting to be drained."""
        with self._cond:
            return len(self._queue)


class _FeedbackPartition(StatelessSourcePartition[CommandOutcome]):
    def __init__(self, source: CommandFeedbackSource) -> None:
        self._source = source
        self._awake: datetime | None = None

    def next_batch(self) -> list[CommandOutcome]:
        feedback = self._source.feedback
        until = self._source.until
        # Read first: what was reported before the close is still drained.
        closed = feedback.closed or (until is not None and until())
        batch = feedback.drain(self._source.max_batch)
        if batch:
            self._awake = None
            return batch
        if closed:
            raise StopIteration
        self._awake = datetime.now(UTC) + timedelta(seconds=self._source.idle_s)
        return []

    def next_awake(self) -> datetime | None:
        return self._awake


class CommandFeedbackSource(DynamicSource[CommandOutcome]):
    """Bytewax input of the outcomes in ``feedback``, in batches of up to ``max_batch``.

    Every worker's partition drains its process's hub (draining is thread-safe, and each
    outcome is taken once), so in a cluster of several processes the outcomes that the sinks
    of each process report reach the flow; the flow then routes each to its twin's worker.
    When the hub is empty a partition idles ``idle_s``. It ends once ``feedback`` is closed
    and drained, or once ``until()`` is true and it is drained (e.g. when a finite telemetry
    source is done, so that a flow over recorded or simulated input still ends).
    """

    def __init__(
        self,
        feedback: CommandFeedback,
        *,
        max_batch: int = 1000,
        idle_s: float = 0.05,
        until: Callable[[], bool] | None = None,
    ) -> None:
        if not (isinstance(idle_s, int | float) and math.isfinite(idle_s) and idle_s >= 0):
            raise ConfigError(f"CommandFeedbackSource idle_s must be >= 0, got {idle_s!r}")
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ConfigError(f"CommandFeedbackSource max_batch must be >= 1, got {max_batch!r}")
        self.feedback = feedback
        self.max_batch = max_batch
        self.idle_s = idle_s
        self.until = until

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _FeedbackPartition:
        return _FeedbackPartition(self)


class SeenIds:
    """Command ids a sink has taken on (bounded, oldest forgotten first); thread-safe."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, command_id: str) -> bool:
        """True the first time ``command_id`` is claimed (a replay then gets False)."""
        with self._lock:
            if command_id in self._ids:
                return False
            self._ids[command_id] = None
            while len(self._ids) > self.limit:
                self._ids.popitem(last=False)
            return True


def report(
    feedback: CommandFeedback | None,
    command: Command,
    status: CommandStatus,
    detail: str = "",
    *,
    attempt: int = 1,
    clock: Callable[[], float] = time.time,
) -> None:
    """Log one outcome of ``command`` and report it to ``feedback`` when there is one."""
    log.log(
        logging.WARNING if status in _BAD else logging.INFO,
        "command %s (%s %s) %s (attempt %d): %s",
        command.command_id,
        command.twin_id,
        command.name,
        status.value,
        attempt,
        detail,
    )
    if feedback is not None:
        feedback.report(
            CommandOutcome(
                command.command_id, command.twin_id, status, utc(clock()), detail, attempt
            )
        )


_BAD = frozenset({CommandStatus.FAILED, CommandStatus.EXPIRED, CommandStatus.REJECTED})


__all__ = [
    "DROPPED",
    "OUTCOMES",
    "CommandFeedback",
    "CommandFeedbackSource",
    "SeenIds",
    "report",
]
