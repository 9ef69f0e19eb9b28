"""The OPC UA source: data changes of bound nodes as one telemetry frame per twin and batch.

One Bytewax partition per server connection (endpoint URL + security + user), so the
servers spread over the workers. The partition lends its session to the OPC UA command sink
of its process (:mod:`twinflow.connectors.shared_connections`), whose partitions have the same
keys and so run on the same worker: a server sees one client of the cluster. Each partition
runs a :class:`Subscriber` in its own thread and drains its queue in ``next_batch`` without
blocking: changes are held at most ``max_batch_s`` (from the arrival of the oldest) and then
emitted as one frame per twin, so frames carry many readings while latency stays bounded.

What a consumer can rely on:

- **Time and quality**: a reading's time is the node's SourceTimestamp (else the server's
  timestamp, else the receive time); its quality is the StatusCode's severity (Good, Uncertain,
  Bad; a Bad value is NaN). A frame's quality per signal is the worst of the batch.
- **What is reported**: without a deadband, every change of status, value *or* source
  timestamp, so a constant value the device keeps stamping still arrives; with an absolute
  deadband, only status changes and value changes larger than it (a constant signal then
  stays silent).
- **Order**: within a server, frames follow the server's publish order; rows inside a frame are
  sorted by time. Across servers there is no order.
- **Reconnect**: a lost session is re-established and the subscription re-created, with
  exponential backoff, for ever; ``next_batch`` never raises for a server that is away.
- **Staleness**: when a session is lost, every twin on that server gets one frame with a single
  row at its newest source time, all its bound signals NaN with quality STALE, so its state
  turns stale at once (event time does not move for a silent twin, and the marker does not
  move it either). Values after the reconnect carry their own quality again.
- **Delivery**: at most once. OPC UA subscriptions have no replay: changes made while the
  session is down, or that overflow the server's monitored-item queues, are lost (the gap is
  visible as missing rows after the STALE marker). Recovery snapshots hold nothing.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from twinflow.connectors.bindings import OpcUaBinding
from twinflow.connectors.opcua.connection import Endpoint, check_bindings, group_by_endpoint
from twinflow.connectors.opcua.frames import Change, Target, build_frames, stale_frames
from twinflow.connectors.opcua.subscriber import Chunk, Item, LinkSettings, Lost, Subscriber
from twinflow.core.errors import ConfigError
from twinflow.core.records import DeadLetter, TelemetryFrame

Output = TelemetryFrame | DeadLetter


def targets_of(endpoint: Endpoint) -> list[Target]:
    """Every bound node of the endpoint's twins, in binding order."""
    return [
        Target(b.twin_id, b.twin_type, signal, node)
        for b in endpoint.bindings
        for signal, node in b.nodes.items()
    ]


class OpcUaSource(FixedPartitionedSource[Output, None]):
    """Telemetry from OPC UA servers by subscription; see the module docstring for guarantees.

    ``max_batch_s`` bounds how long a change waits in the source before it is emitted;
    ``max_batch_changes`` flushes earlier when that many are waiting. ``queue_chunks`` bounds
    the publish responses held between the client thread and ``next_batch``.
    ``keepalive_s`` is the keep-alive period asked of the server (silence for two periods
    counts as a lost link); ``reconnect_min_s``/``reconnect_max_s`` bound the backoff.
    ``stale_on_disconnect`` turns the STALE marker frames off. Setting ``stop`` (a
    ``threading.Event``) ends the source: what has arrived is emitted, then end of input.
    """

    def __init__(
        self,
        bindings: Sequence[OpcUaBinding],
        max_batch_s: float = 0.5,
        *,
        max_batch_changes: int = 100_000,
        queue_chunks: int = 1024,
        poll_s: float = 0.05,
        request_timeout_s: float = 4.0,
        keepalive_s: float = 5.0,
        session_timeout_s: float = 60.0,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        monitored_queue_size: int = 1000,
        stale_on_disconnect: bool = True,
        stop: threading.Event | None = None,
    ) -> None:
        check_bindings(bindings)
        for name, value in (
            ("max_batch_s", max_batch_s),
            ("poll_s", poll_s),
            ("request_timeout_s", request_timeout_s),
            ("keepalive_s", keepalive_s),
            ("session_timeout_s", session_timeout_s),
            ("reconnect_min_s", reconnect_min_s),
            ("reconnect_max_s", reconnect_max_s),
        ):
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"OpcUaSource {name} must be a number >= 0, got {value!r}")
        for name, count in (
            ("max_batch_changes", max_batch_changes),
            ("queue_chunks", queue_chunks),
            ("monitored_queue_size", monitored_queue_size),
        ):
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ConfigError(f"OpcUaSource {name} must be an integer >= 1, got {count!r}")
        self.bindings = tuple(bindings)
        self.max_batch_s = max_batch_s
        self.max_batch_changes = max_batch_changes
        self.queue_chunks = queue_chunks
        self.poll_s = poll_s
        self.request_timeout_s = request_timeout_s
        self.keepalive_s = keepalive_s
        self.session_timeout_s = session_timeout_s
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.monitored_queue_size = monitored_queue_size
        self.stale_on_disconnect = stale_on_disconnect
        self.stop = stop
        self.endpoints = {e.key: e for e in group_by_endpoint(self.bindings) if e.reads}
        if not self.endpoints:
            raise ConfigError(
                "OpcUaSource: no binding names any node to read; give each twin's binding "
                "'nodes' (signal -> node id)"
            )

    @property
    def settings(self) -> LinkSettings:
        return LinkSettings(
            request_timeout_s=self.request_timeout_s,
            keepalive_s=self.keepalive_s,
            session_timeout_s=self.session_timeout_s,
            reconnect_min_s=self.reconnect_min_s,
            reconnect_max_s=max(self.reconnect_min_s, self.reconnect_max_s),
            monitored_queue_size=self.monitored_queue_size,
        )

    def list_parts(self) -> list[str]:
        return list(self.endpoints)

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> OpcUaPartition:
        return OpcUaPartition(self, self.endpoints[for_part])


class OpcUaPartition(StatefulSourcePartition[Output, None]):
    """One server connection as a source partition (built by :class:`OpcUaSource`)."""

    def __init__(self, source: OpcUaSource, endpoint: Endpoint) -> None:
        self.source = source
        self.endpoint = endpoint
        self.targets = targets_of(endpoint)
        self._queue: queue.Queue[Item] = queue.Queue(maxsize=source.queue_chunks)
        self._pending: list[Change] = []
        self._since = 0.0
        self._awake: datetime | None = None
        self._ending = False
        self._newest: dict[str, float] = {}
        self.subscriber = Subscriber(endpoint, self.targets, self._queue, source.settings)
        self.subscriber.start()

    @property
    def connected(self) -> bool:
        """True while the partition has a live session and subscription."""
        return self.subscriber.connected.is_set()

    def next_batch(self) -> list[Output]:
        if self._ending:
            raise StopIteration
        src = self.source
        out: list[Output] = []
        while len(self._pending) < src.max_batch_changes:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, Chunk):
                if not self._pending:
                    self._since = item.arrived
                self._pending.extend(item.changes)
            elif isinstance(item, Lost):
                out.extend(self._flush())
                if src.stale_on_disconnect:
                    out.extend(stale_frames(self.targets, self._newest))
            else:
                out.append(item)
        stopping = src.stop is not None and src.stop.is_set()
        now = time.monotonic()
        if self._pending and (
            stopping
            or now - self._since >= src.max_batch_s
            or len(self._pending) >= src.max_batch_changes
        ):
            out.extend(self._flush())
        if stopping and self._queue.empty():
            self._ending = True
            self._awake = None
        elif self._pending:
            wait = max(0.0, self._since + src.max_batch_s - now)
            self._awake = datetime.now(UTC) + timedelta(seconds=min(wait, src.poll_s))
        else:
            self._awake = datetime.now(UTC) + timedelta(seconds=src.poll_s)
        return out

    def _flush(self) -> list[Output]:
        if not self._pending:
            return []
        changes, self._pending = self._pending, []
        out = build_frames(changes, self.targets, time.time())
        newest = self._newest
        for item in out:
            if isinstance(item, TelemetryFrame):
                newest[item.twin_id] = max(item.end, newest.get(item.twin_id, item.end))
        return out

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self.subscriber.stop(self.source.request_timeout_s + 1.0)
