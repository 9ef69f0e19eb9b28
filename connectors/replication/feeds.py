"""What a central node keeps for its flow besides the writes it stores: the fleet roll-ups'
writes and the received telemetry buckets (:class:`CentralFeeds`, thread-safe: the link
fills it on its threads, the flow's sources drain it).

Each feed is off until its ``watch_*`` method is called (by the flow step that drains it),
so a node whose flow has no such step keeps nothing.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

from twinflow.core.records import TelemetryFrame
from twinflow.operators.replication import Applied, Write
from twinflow.operators.replication.downsample import frame_of
from twinflow.operators.replication.fleet import Seen, tracked

log = logging.getLogger(__name__)


class CentralFeeds:
    """The fleet roll-ups' writes (:meth:`take_fleet`) and the telemetry buckets as frames
    (:meth:`take_telemetry`); ``cap`` bounds each (full: the oldest is dropped, counted in
    ``dropped`` and logged)."""

    def __init__(self, replica_id: str, cap: int = 100_000) -> None:
        self.replica_id = replica_id
        self.cap = cap
        self.dropped = 0
        self._lock = threading.Lock()
        self._fleet: deque[Seen] | None = None
        self._telemetry: deque[TelemetryFrame] | None = None

    def watch_fleet(self, held: Iterable[Write]) -> None:
        """Keep the received writes that won and feed the fleet roll-ups, starting with
        ``held``: the newest of each such register the replica holds (e.g. loaded from its
        snapshot)."""
        with self._lock:
            self._fleet = deque(Seen(w) for w in held if tracked(w.key.kind, w.key.name))

    def watch_telemetry(self) -> None:
        """Keep each received ``metadata/telemetry`` write that was new (won or lost: every
        bucket is a reading to store)."""
        with self._lock:
            self._telemetry = deque()

    def applied(self, write: Write, outcome: Applied, now_ms: int) -> None:
        """A received write that was new here (``outcome`` won or lost)."""
        key = write.key
        if key.kind != "metadata":
            return
        with self._lock:
            if self._telemetry is not None and key.name == "telemetry":
                doc = write.value
                source = f"replication:{write.stamp.replica}"
                frame = frame_of(key.twin_id, doc, source) if isinstance(doc, dict) else None
                if frame is not None:
                    self._put(self._telemetry, frame)
            fleet = self._fleet
            if fleet is not None and outcome is Applied.WON and tracked(key.kind, key.name):
                self._put(fleet, Seen(write, now_ms))

    def take_fleet(self, limit: int = 10_000) -> list[Seen]:
        """The fleet roll-ups' writes since the last call, oldest first."""
        with self._lock:
            return _take(self._fleet, limit)

    def take_telemetry(self, limit: int = 1000) -> list[TelemetryFrame]:
        """The received telemetry buckets as one-row frames, oldest first."""
        with self._lock:
            return _take(self._telemetry, limit)

    def waiting(self) -> int:
        """How many items wait to be taken."""
        with self._lock:
            return len(self._fleet or ()) + len(self._telemetry or ())

    def _put(self, queue: deque[Any], item: Any) -> None:
        if len(queue) >= self.cap:
            queue.popleft()
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning(
                    "replication %s: the flow is not taking roll-up or telemetry writes; "
                    "%d dropped",
                    self.replica_id,
                    self.dropped,
                )
        queue.append(item)


def _take(queue: deque[Any] | None, limit: int) -> list[Any]:
    if queue is None:
        return []
    return [queue.popleft() for _ in range(min(limit, len(queue)))]


__all__ = ["CentralFeeds"]
