"""One MQTT session of :class:`~twinflow.connectors.mqtt.source.MqttSource`: :class:`MqttPartition`.

A paho client with a persistent session and manual acknowledgements, and the buffer that
hands its messages to Bytewax's worker thread; the delivery guarantees it keeps (at least
once, acknowledged after the flow took a batch, redeliveries recognised) are described in
:mod:`twinflow.connectors.mqtt.source`. :func:`twin_partition` gives the session of a twin
when the twins are spread over ``partitions`` sessions.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from bytewax.inputs import StatefulSourcePartition

from twinflow.connectors import connection_state
from twinflow.connectors.mqtt.client import (
    CONNECTED,
    MESSAGES,
    RECONNECTS,
    is_failure,
    make_client,
    subscribe_options,
)
from twinflow.core.records import DeadLetter, TelemetryFrame

if TYPE_CHECKING:
    from twinflow.connectors.mqtt.source import MqttSource

# The logger of the source it was split from, so that log names and filters stay as they were.
log = logging.getLogger("twinflow.connectors.mqtt.source")

Item = TelemetryFrame | DeadLetter

#: How long closing waits for the broker to confirm the last acknowledgements, in seconds.
CLOSE_WAIT_S = 5.0


def twin_partition(twin_id: str, partitions: int) -> int:
    """The session (of ``partitions``) that reads a twin: stable across processes and runs
    (Python's ``hash`` of a string is not)."""
    return zlib.crc32(twin_id.encode()) % partitions


class _Received(NamedTuple):
    """One message as paho delivered it, tagged with the connection it came on (a tuple:
    one is made per message in paho's thread, so it must be cheap)."""

    gen: int
    topic: str | None
    payload: bytes
    mid: int
    qos: int
    #: A redelivery of a message already handed to the flow: acknowledge, do not emit.
    skip: bool = False


class MqttPartition(StatefulSourcePartition[Item, None]):
    """The one partition of :class:`MqttSource`: a paho client and its hand-over buffer.

    paho's network thread appends received messages to a buffer; ``next_batch`` (Bytewax's
    worker thread) acknowledges what it handed over last time, then takes up to
    ``max_batch`` messages and decodes them into one frame per twin plus dead letters. The
    broker sends at most ``receive_maximum`` unacknowledged messages, which bounds the buffer.
    """

    def __init__(self, source: MqttSource, index: int | None = None) -> None:
        self._settings = source.settings
        self._decoder = source.decoder
        self._max_batch = source.max_batch
        self._max_messages = source.max_messages
        self._idle_timeout_s = source.idle_timeout_s
        self._poll = timedelta(seconds=source.poll_interval_s)
        group = source.settings.client_id
        self.client_id = group if index is None else f"{group}-{index}"
        #: The twins this session reads (``partitions``); None: every twin of its filters.
        self._owned: frozenset[str] | None = None
        self._lock = threading.Lock()
        self._buffer: deque[_Received] = deque()
        self._unacked: list[_Received] = []
        self._redelivered: dict[int, tuple[str | None, bytes]] = {}
        self._redelivered_limit = 2 * source.receive_maximum
        self._gen = 0
        self._live = False  # connected (as far as paho's callbacks have told us)
        self._connections = 0
        self._closing = False
        self._taken = 0
        self._last_arrival = time.monotonic()
        self._watchdog_at = 0.0
        self._filters = self._decoder.router.filters
        if index is not None and source.partitions:  # the session of a share of the twins
            self.client_id = f"{group}-p{index}"
            self._owned = frozenset(
                b.twin_id
                for b in source.bindings
                if twin_partition(b.twin_id, source.partitions) == index
            )
            self._filters = self._decoder.router.filters_of(self._owned)
        elif index is not None:  # one session of a shared subscription group
            self._filters = tuple(f"$share/{group}/{f}" for f in self._filters)
        self._sub_mids: dict[int, list[str]] = {}
        self._barriers: dict[int, threading.Event] = {}
        #: Set once the broker has granted every subscription (readiness, for tests and probes).
        self.ready = threading.Event()
        self._metrics = {
            k: MESSAGES.labels(self.client_id, k) for k in ("decoded", "dead_letter", "redelivered")
        }
        self._client = make_client(
            self._settings,
            self.client_id,
            v5=True,
            persistent=True,
            session_expiry_s=source.session_expiry_s,
            receive_maximum=source.receive_maximum,
            manual_ack=True,
        )
        self._peer = f"{self._settings.host}:{self._settings.port}"
        connection_state.down("mqtt", "source", self._peer)  # until the broker answers
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._failures = 0
        self._client.loop_start()

    # ---------------------------------------------------------------- paho's network thread

    def _on_connect(self, client: Any, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if is_failure(reason):
            log.error(
                "MQTT source %r: broker %s:%s refused the connection: %s; retrying with backoff",
                self.client_id,
                self._settings.host,
                self._settings.port,
                reason,
            )
            return
        self._failures = 0
        with self._lock:
            self._gen += 1
            self._live = True
            self._connections += 1
            if flags.session_present:
                # The broker resends every unacknowledged QoS>0 message of the session: drop
                # our copies of those not yet handed, and recognise the redelivery of those
                # handed but not acknowledged.
                self._buffer = deque(r for r in self._buffer if r.qos == 0)
                for r in self._unacked:
                    self._redelivered[r.mid] = (r.topic, r.payload)
                if len(self._redelivered) > self._redelivered_limit:
                    self._redelivered.clear()
            else:
                if self._connections > 1:
                    log.warning(
                        "MQTT source %r: the broker had no session for us (expired or lost); "
                        "messages it held for us are gone, buffered ones are still delivered",
                        self.client_id,
                    )
                self._redelivered.clear()
            self._unacked.clear()
        if self._connections > 1:
            RECONNECTS.labels(self.client_id).inc()
        CONNECTED.labels(self.client_id).set(1)
        connection_state.up("mqtt", "source", self._peer, reconnected=self._connections > 1)
        opts = subscribe_options(self._settings.qos)
        if not self._filters:  # a partition that no twin hashed to: nothing to read
            self.ready.set()
            return
        _rc, mid = client.subscribe([(f, opts) for f in self._filters])
        self._sub_mids[mid] = list(self._filters)
        log.info(
            "MQTT source %r connected to %s:%s (session %s), subscribing to %d filters",
            self.client_id,
            self._settings.host,
            self._settings.port,
            "resumed" if flags.session_present else "new",
            len(self._filters),
        )

    def _on_connect_fail(self, _c: Any, _u: Any) -> None:
        """A connection attempt failed (nothing listens, a timeout): said once per outage."""
        self._failures += 1
        connection_state.down("mqtt", "source", self._peer)
        log.log(
            logging.WARNING if self._failures == 1 else logging.DEBUG,
            "MQTT source %r cannot reach the broker at %s; check that it runs and that "
            "services.mqtt (or MQTT_URL) names it; retrying with backoff",
            self.client_id,
            self._peer,
        )

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, reasons: Any, _p: Any) -> None:
        with self._lock:
            barrier = self._barriers.pop(mid, None)
        if barrier is not None:
            barrier.set()
            return
        filters = self._sub_mids.pop(mid, [])
        refused = [(f, rc) for f, rc in zip(filters, reasons, strict=False) if is_failure(rc)]
        for f, rc in refused:
            log.error("MQTT source %r: subscription to %r refused: %s", self.client_id, f, rc)
        if not refused:
            self.ready.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        with self._lock:
            self._live = False
        CONNECTED.labels(self.client_id).set(0)
        if not self._closing:
            connection_state.down("mqtt", "source", self._peer)
            log.warning(
                "MQTT source %r lost the broker %s:%s (%s); reconnecting with backoff",
                self.client_id,
                self._settings.host,
                self._settings.port,
                reason,
            )

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        try:
            topic: str | None = msg.topic
        except UnicodeDecodeError:
            topic = None
        payload = msg.payload
        with self._lock:
            skip = False
            if msg.dup and self._redelivered:
                skip = self._redelivered.pop(msg.mid, None) == (topic, payload)
            self._buffer.append(_Received(self._gen, topic, payload, msg.mid, msg.qos, skip))
            self._last_arrival = time.monotonic()

    # ---------------------------------------------------------------- Bytewax's worker thread

    def _ack_handed(self) -> None:
        """Acknowledge what the flow took last time (lock held). While disconnected nothing
        is acknowledged: the next connection's handler decides (the broker redelivers those
        messages when it kept the session, and they are recognised then)."""
        if not self._live:
            return
        gen, client = self._gen, self._client
        for r in self._unacked:
            if r.gen == gen:
                client.ack(r.mid, r.qos)
        self._unacked.clear()

    def next_batch(self) -> list[Item]:
        now = time.monotonic()
        if now >= self._watchdog_at:  # restart paho's thread should it ever have died
            self._client.loop_start()
            self._watchdog_at = now + 1.0
        limit = self._max_batch
        if self._max_messages is not None:
            limit = min(limit, self._max_messages - self._taken)
        taken: list[_Received] = []
        with self._lock:
            self._ack_handed()
            if self._done(now):
                raise StopIteration
            buf, live = self._buffer, 0
            while buf and live < limit:
                r = buf.popleft()
                taken.append(r)
                live += not r.skip
            self._unacked.extend(r for r in taken if r.qos > 0)
        if not taken:
            return []
        self._taken += live
        if live < len(taken):
            self._metrics["redelivered"].inc(len(taken) - live)
        if not live:
            return []
        items = self._decoder.decode(
            [(r.topic, r.payload) for r in taken if not r.skip], time.time()
        )
        owned = self._owned
        if owned is not None:  # a topic of another share's twin (overlapping wildcards)
            items = [i for i in items if isinstance(i, DeadLetter) or i.twin_id in owned]
        dead = sum(1 for i in items if isinstance(i, DeadLetter))
        self._metrics["decoded"].inc(live - dead)
        if dead:
            self._metrics["dead_letter"].inc(dead)
        return items

    def _done(self, now: float) -> bool:
        if self._max_messages is not None and self._taken >= self._max_messages:
            return True
        idle = self._idle_timeout_s
        return idle is not None and not self._buffer and now - self._last_arrival >= idle

    def next_awake(self) -> datetime | None:
        if self._buffer or (self._unacked and self._live):
            return None
        return datetime.now(UTC) + self._poll

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        """Acknowledge what the flow took, then disconnect; the session stays on the broker
        with everything not yet taken.

        Before disconnecting it waits (bounded) until the broker has processed the
        acknowledgements: closing a socket that still has unread incoming data makes the
        kernel reset the connection, and the broker would drop what it had not read yet.
        """
        with self._lock:
            self._ack_handed()
            self._closing = True
            barrier = self._barrier()
        if barrier is not None and not barrier.wait(CLOSE_WAIT_S):
            log.warning("MQTT source %r: broker did not confirm in time at close", self.client_id)
        self._client.disconnect()
        self._client.loop_stop()
        CONNECTED.labels(self.client_id).set(0)
        connection_state.forget("mqtt", "source", self._peer)

    def _barrier(self) -> threading.Event | None:
        """Subscribe again to the same filters (lock held): the broker handles a client's
        packets in order, so its SUBACK confirms every acknowledgement sent before."""
        opts = subscribe_options(self._settings.qos)
        if not self._filters:
            return None
        rc, mid = self._client.subscribe([(f, opts) for f in self._filters])
        if rc != 0 or mid is None:
            return None
        event = self._barriers[mid] = threading.Event()
        return event

    def abort(self) -> None:
        """Drop the connection without acknowledging anything, as a crash would: the broker
        redelivers everything not acknowledged to the next client with this id."""
        with self._lock:
            self._closing = True
            self._unacked.clear()
            self._buffer.clear()
        self._client.loop_stop()
        sock = self._client.socket()
        if sock is not None:
            sock.close()
        CONNECTED.labels(self.client_id).set(0)

    @property
    def connected(self) -> bool:
        return bool(self._client.is_connected())
