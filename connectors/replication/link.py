"""What every replication transport shares: write through the outbox, send, receive, count.

:class:`ReplicaLink` joins a :class:`TwinReplica` and its :class:`DiskOutbox`.
:meth:`ReplicaLink.write` stamps a write in the replica and appends it to the outbox; a
sender thread hands pending records to the transport's :meth:`ReplicaLink._send` whenever
:meth:`ReplicaLink._ready` says the transport can take them, and acknowledges them in the
outbox only when :meth:`_send` reports the broker has them; records travel as
``twin_updates.v2`` batches (:mod:`twinflow.operators.replication.compact`). Received
payloads (a batch, or ``twin_update.v1`` documents one per line) go through
:meth:`ReplicaLink._receive_payload`: merged into the replica, or kept as a dead letter with
the reason. With ``relay``, a received write that
was new to the replica is appended to the outbox too (the central replica's job), unless it
is append-only (:func:`~twinflow.connectors.replication.forward.append_only`: a telemetry
bucket is for the central instance alone); such writes enter the outbox flagged, so its
compaction keeps each of them.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import Counter as MetricCounter
from prometheus_client import Gauge

from twinflow.connectors.replication.forward import append_only
from twinflow.connectors.replication.outbox import DiskOutbox, Entry
from twinflow.connectors.replication.state import (
    answers,
    is_control,
    state_request,
    state_writes,
)
from twinflow.core.errors import TwinflowError
from twinflow.operators.replication import (
    Applied,
    ClockDriftError,
    TwinReplica,
    UpdateError,
    Write,
)
from twinflow.operators.replication.compact import batch, decode_payload, encode_row, is_batch

log = logging.getLogger(__name__)

UPDATES = MetricCounter(
    "twinflow_replication_updates",
    "Replicated twin updates by outcome: sent (acknowledged by the broker), won, lost, "
    "duplicate, stale (received and merged), held (a causal write waiting for its "
    "dependencies), released and forced (let go with or without them), dead_letter (refused)",
    ["replica", "outcome"],
)
PENDING = Gauge(
    "twinflow_replication_outbox_pending", "Updates waiting in the outbox to be sent", ["replica"]
)
DROPPED = MetricCounter(
    "twinflow_replication_outbox_dropped",
    "Updates the full outbox dropped (after compacting state to the newest per property: "
    "append-only ones such as telemetry buckets oldest first, then the others)",
    ["replica"],
)


class ReplicaLink:
    """The transport-independent half of a replication link (see the module docstring).

    ``batch`` bounds the records handed to one :meth:`_send`; ``dead_letters`` how many
    refused payloads are kept; ``on_applied`` is called with each received write and its
    outcome.
    """

    def __init__(
        self,
        replica: TwinReplica,
        outbox: DiskOutbox,
        *,
        relay: bool = False,
        batch: int = 2000,
        dead_letters: int = 100,
        on_applied: Callable[[Write, Applied], None] | None = None,
    ) -> None:
        if batch < 1:
            raise TwinflowError(
                f"replication link of {replica.replica_id!r}: batch must be >= 1, got {batch}"
            )
        self.replica = replica
        self.outbox = outbox
        self.relay = relay
        self.batch = batch
        self.on_applied = on_applied
        #: Received payloads refused, with the reason (the newest ``dead_letters``).
        self.dead_letters: deque[tuple[bytes, str]] = deque(maxlen=dead_letters)
        #: Counts by outcome, as in the ``twinflow_replication_updates`` metric.
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()  # the replica, the counts, the dead letters
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._sender: threading.Thread | None = None
        self._dropped_seen = outbox.dropped
        self._send_ok = False
        #: Called (on the sender thread) with each batch the broker acknowledged.
        self.on_sent: Callable[[Sequence[Entry]], None] | None = None

    @property
    def connected(self) -> bool:
        """Whether the link works: its last batch reached the broker (a transport that sees
        its connection says so instead)."""
        return self._send_ok

    @property
    def lock(self) -> threading.Lock:
        """The lock that guards the replica (hold it to read the replica consistently)."""
        return self._lock

    def start(self) -> ReplicaLink:
        """Connect and start sending (each transport)."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop sending and receiving (each transport)."""
        raise NotImplementedError

    # -- for the transports -----------------------------------------------------------------

    def _ready(self) -> bool:
        """Whether the transport can send now."""
        raise NotImplementedError

    def _send(self, entries: Sequence[Entry]) -> bool:
        """Send the records; True once the broker has every one of them."""
        raise NotImplementedError

    def _start_sender(self) -> None:
        self._stop.clear()
        self._sender = threading.Thread(
            target=self._send_loop, name=f"replication-{self.replica.replica_id}", daemon=True
        )
        self._sender.start()

    def _stop_sender(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._sender is not None:
            self._sender.join(timeout=30)

    def _receive_payload(self, payload: bytes) -> None:
        """Merge every write of a received payload (a ``twin_updates.v2`` batch, or
        ``twin_update.v1`` documents one per line): decoded in one go, merged under one hold
        of the lock; a write refused is a dead letter, the others count."""
        got = decode_payload(payload)
        if is_batch(payload):
            sources = [payload] * len(got)
        else:
            sources = [line for line in payload.split(b"\n") if line.strip()]
        writes = [w for w in got if not isinstance(w, UpdateError)]
        if any(is_control(w) for w in writes):
            self._control([w for w in writes if is_control(w)])
            writes = [w for w in writes if not is_control(w)]
            sources = [src for src, w in zip(sources, got, strict=True) if not _is_control(w)]
            got = [w for w in got if not _is_control(w)]
        done: list[tuple[Write, Applied]] = []
        with self._lock:
            for source, bad in zip(sources, got, strict=True):
                if isinstance(bad, UpdateError):
                    self._refuse(source, bad)
            try:
                done = list(zip(writes, self.replica.apply_many(writes), strict=True))
            except ClockDriftError:  # one by one, to refuse only the drifted writes
                for w in writes:
                    try:
                        done.append((w, self.replica.apply(w)))
                    except ClockDriftError as exc:
                        self._refuse(encode_row(w), exc)
            for _w, outcome in done:
                self._count(outcome.value)
            done.extend(self._released())
        for write, outcome in done:
            self._after(write, outcome)

    def release_held(self) -> int:
        """Expose the causal writes held past their timeout (the replica checks its clock):
        relayed and told like received writes; returns how many. The sender thread calls it
        every half second."""
        with self._lock:
            done = self._released()
        for write, outcome in done:
            self._after(write, outcome)
        return len(done)

    def _released(self) -> list[tuple[Write, Applied]]:
        """The held causal writes the replica let go, counted (the caller holds the lock):
        ``released`` when their dependencies arrived, ``forced`` when exposed without them
        (timeout or a full buffer; logged)."""
        out = []
        for write, outcome, why in self.replica.take_released():
            self._count("released" if why == "ready" else "forced")
            if why != "ready":
                log.warning(
                    "replication link %s: causal write %s of %s exposed without its "
                    "dependencies (%s)", self.replica.replica_id, write.stamp.text(),
                    write.key, why,
                )  # fmt: skip
            out.append((write, outcome))
        return out

    def _messages(self, entries: Sequence[Entry], per: int) -> list[bytes]:
        """Pending records as messages of up to ``per`` writes: ``twin_updates.v2`` batches
        (records written before, as ``twin_update.v1`` documents, as JSON Lines)."""
        out: list[bytes] = []
        run: list[bytes] = []
        rows = True
        for e in entries:
            is_row = e.payload.startswith(b"[")
            if run and (is_row != rows or len(run) >= per):
                out.append(batch(run) if rows else b"\n".join(run))
                run = []
            rows = is_row
            run.append(e.payload)
        if run:
            out.append(batch(run) if rows else b"\n".join(run))
        return out

    # -- state transfer (see :mod:`~twinflow.connectors.replication.state`) -----------------

    def request_state(self) -> Write:
        """Ask the replicas of the other role for their whole state (sent by the outbox)."""
        with self._lock:
            request = state_request(self.replica, central=self.relay)
        self._append(request)
        self._count("state_requested")
        return request

    def send_state(self) -> int:
        """Append every kept write of the replica to the outbox (the central replica's
        answer leaves out the append-only ones, as its relay does); returns how many."""
        writes = state_writes(self.replica, self._lock)
        if self.relay:
            writes = [w for w in writes if not append_only(w.key)]
        for w in writes:
            self._append(w)
        self._count("state_sent", len(writes))
        return len(writes)

    def _control(self, writes: Sequence[Write]) -> None:
        """Answer the state requests of replicas of the other role."""
        rid = self.replica.replica_id
        if any(answers(w, rid, central=self.relay) for w in writes):
            log.info("replication link %s: sending its state on request", rid)
            self.send_state()

    # -- writing, sending, receiving --------------------------------------------------------

    def write(self, twin_id: str, kind: str, name: str, value: Any) -> Write:
        """Set a property in the replica and keep the write for sending."""
        with self._lock:
            w = self.replica.write(twin_id, kind, name, value)
        self._append(w)
        return w

    def _append(self, w: Write) -> None:
        k = w.key
        key = f"{k.twin_id}/{k.kind}/{k.name}"
        self.outbox.append(key, encode_row(w), append_only=append_only(k))
        rid = self.replica.replica_id
        PENDING.labels(rid).set(self.outbox.pending)
        if self.outbox.dropped > self._dropped_seen:
            DROPPED.labels(rid).inc(self.outbox.dropped - self._dropped_seen)
            self._dropped_seen = self.outbox.dropped
        self._wake.set()

    def _send_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=0.5)
            self._wake.clear()
            self.release_held()
            while not self._stop.is_set() and self._ready():
                entries = self.outbox.peek(self.batch)
                if not entries:
                    break
                self._send_ok = self._send(entries)
                if not self._send_ok:
                    break  # the link broke: the records stay and go again
                self.outbox.ack(entries)
                with self._lock:
                    self._count("sent", len(entries))
                PENDING.labels(self.replica.replica_id).set(self.outbox.pending)
                if self.on_sent is not None:
                    self.on_sent(entries)

    def _receive(self, payload: bytes) -> None:
        """Merge one ``twin_update.v1`` document."""
        self._receive_payload(payload)

    def _refuse(self, payload: bytes, exc: Exception) -> None:
        """Keep a refused payload as a dead letter (the caller holds the lock)."""
        self.dead_letters.append((payload, str(exc)))
        self._count("dead_letter")
        log.warning("replication link %s: dead letter: %s", self.replica.replica_id, exc)

    def _after(self, write: Write, outcome: Applied) -> None:
        """Relay a write that was new (central; not an append-only one), and tell
        ``on_applied``."""
        if self.relay and outcome in (Applied.WON, Applied.LOST) and not append_only(write.key):
            self._append(write)
        if self.on_applied is not None:
            self.on_applied(write, outcome)

    def _count(self, outcome: str, n: int = 1) -> None:
        self.counts[outcome] += n
        UPDATES.labels(self.replica.replica_id, outcome).inc(n)


def _is_control(item: Write | UpdateError) -> bool:
    return isinstance(item, Write) and is_control(item)
