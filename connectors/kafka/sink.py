"""Versioned JSON to a Kafka topic, keyed by twin, that an unavailable broker cannot hang.

:class:`KafkaJsonSink` takes the flow's ``(twin_id, item)`` pairs (the pair's key picks the
sink partition) and produces ``key=item.twin_id``, ``value=to_json(item)`` as compact UTF-8
JSON, with headers ``schema`` and ``version`` copied from the document. Keying by twin sends
each twin's events to one Kafka partition, and one sink partition (one producer) writes each
twin, so they stay in order.

Delivery: the producer is idempotent with ``acks=all`` (see
:mod:`twinflow.connectors.kafka.config`) and librdkafka retries without a deadline
(``message.timeout.ms: 0`` unless ``kafka.extra`` sets one). Every accepted message is also
held in the partition's :class:`~twinflow.connectors.kafka.outbox.Outbox` until the brokers
acknowledge it, bounded by ``max_messages`` and ``max_bytes``. The outbox keeps each
``write_batch`` as one write whose delivery callback only counts acknowledgements; a write
leaves it once all its messages are acknowledged (so what is sent again below is whole
writes: a message of a write not fully acknowledged may be delivered twice).

- **Outage**: writes go on into the outbox and the flow with them; after ``down_after_s``
  without an acknowledgement the output is marked down (one log line, the
  ``twinflow_output_*`` metrics of :mod:`twinflow.connectors.outage`). Only when the outbox is
  full does ``write_batch`` wait (back-pressure on the whole flow), logging that it waits.
- **Broker back with its data**: librdkafka delivers the queue in order; the output is up.
- **Broker back without its data, or a fatal producer error** (unknown producer id, out of
  order sequence; a delivery error when ``message.timeout.ms`` is set): the producer is
  dropped, a new one made, and the outbox sent again in acceptance order, with a growing pause
  between such restarts (counted in ``twinflow_output_retries_total``). A producer stuck
  while a broker connection is up (no acknowledgement for ``stall_s``; librdkafka's
  statistics tell the connection state) is restarted the same way.
- **Snapshot** (every Bytewax epoch, with or without recovery) costs nothing unless Bytewax
  pickles it (with recovery): then it waits for the brokers at most ``snapshot_wait_s``
  while the output is up, and not at all while it is down, and keeps the outbox's messages
  as the partition's state. A flow resumed with
  ``--recovery-dir`` builds its partitions from that state and sends those messages again,
  and replays the input after the snapshot, so every message accepted before a crash is
  delivered at least once. Without recovery, what is unacknowledged when the process ends is
  lost (``close`` waits ``close_wait_s`` for it and logs what is left).

The guarantee is at-least-once: a message may be delivered twice (a restart re-sends what was
written but not acknowledged; a replay writes an epoch again), with the same deterministic ids
(alerts, commands) or the same (twin, time) (twin states), so consumers deduplicate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from prometheus_client import Counter

from twinflow.connectors.bindings import KafkaSettings
from twinflow.connectors.kafka.config import log_error, producer_config, sink_producer_config
from twinflow.connectors.kafka.encoding import KeyOf, ToJson, encode, twin_id_of
from twinflow.connectors.kafka.links import BrokerLink
from twinflow.connectors.kafka.outbox import Headers, Held, HeldState, Outbox, Sent
from twinflow.connectors.kafka.spare import Spares
from twinflow.connectors.outage import OutputHealth
from twinflow.connectors.placement_keys import PlacedParts
from twinflow.core.errors import ConfigError

log = logging.getLogger(__name__)

DELIVERY_ERRORS = Counter(
    "twinflow_kafka_delivery_errors",
    "Messages to Kafka that the brokers refused or did not acknowledge in time (each is sent "
    "again by a new producer)",
    ["topic"],
)

#: How long a wait for room polls the producer at a time.
_ROOM_WAIT_S = 0.1
#: A wait for room in the outbox this long is logged when it ends.
LONG_WAIT_S = 5.0
#: Longest pause between two producer restarts.
RESTART_CAP_S = 60.0


class _JsonPartition(StatefulSinkPartition[Any, list[Held] | None]):
    """One producer and its outbox; see the module docstring for the outage behaviour."""

    def __init__(self, sink: KafkaJsonSink, part: str, resume: list[Held] | None) -> None:
        self._sink = sink
        self._topic = sink.topic
        self._to_json = sink.to_json
        self._key_of = sink.key_of
        self._outbox = Outbox(sink.max_messages, sink.max_bytes)
        self._health = OutputHealth(f"kafka:{sink.topic}", log)
        self._generation = 0
        self._fatal = ""  # why the producer must be replaced, set by its callbacks
        self._last_error = ""
        self._link = BrokerLink("sink", sink.settings.bootstrap, log_transitions=False)
        self._progress_at = time.monotonic()  # last ack, or when the outbox became non-empty
        self._acks = 0  # acknowledgements counted at the last _tend
        self._restart_at = 0.0  # no producer restart before this monotonic time
        self._restart_pause_s = sink.stall_s
        spare = sink.spares.take(part)  # made at start-up, so already warm
        if spare is None:
            self._producer = self._new_producer()
        else:
            self._producer, relay = spare
            relay.on_error, relay.on_stats = partial(self._on_error, 0), partial(self._on_stats, 0)
        log.debug("kafka sink partition %s writes topic %r", part, self._topic)
        if resume:
            log.warning(
                "kafka topic %r: sending again %d message(s) held unacknowledged at the last "
                "snapshot",
                self._topic,
                len(resume),
            )
            sent = self._outbox.open(self._generation, self._on_delivery_error)
            for key, value, headers in resume:
                self._outbox.add(sent, key, value, headers)
                self._produce(sent, key, value, headers)
            self._outbox.seal(sent)
            self._health.set_backlog(len(self._outbox))

    # -- the producer ------------------------------------------------------------------

    def _new_producer(self) -> Producer:
        generation = self._generation
        return self._sink.make_producer(
            partial(self._on_error, generation), partial(self._on_stats, generation)
        )

    def _on_error(self, generation: int, error: KafkaError) -> None:
        log_error(error)
        if generation != self._generation:
            return
        self._last_error = error.str()
        if error.fatal():
            self._fatal = f"fatal producer error: {error.str()}"

    def _on_stats(self, generation: int, stats: str) -> None:
        if generation == self._generation:
            self._link.update(stats)

    def _on_delivery_error(self, sent: Sent, error: KafkaError, msg: Message) -> None:
        """A message the brokers refused (acknowledgements are counted by ``sent.report``)."""
        if sent.generation != self._generation:
            return  # a report of a producer that was replaced; the outbox sent it again
        DELIVERY_ERRORS.labels(self._topic).inc()
        self._last_error = f"{error.str()} ({error.name()})"
        self._fatal = self._fatal or f"delivery of key {msg.key()!r} failed: {self._last_error}"

    def _produce(self, sent: Sent, key: bytes, value: bytes, headers: Headers) -> None:
        while True:
            try:
                self._producer.produce(
                    self._topic, value, key, headers=headers, on_delivery=sent.report
                )
                return
            except BufferError:  # librdkafka's queue is full: let it send, then retry
                self._producer.poll(_ROOM_WAIT_S)
            except KafkaException as exc:  # a fatal producer: the restart sends it again
                self._fatal = f"producer refused a message: {exc}"
                return

    def _restart(self, reason: str) -> None:
        """Replace the producer and send the outbox again, in acceptance order."""
        old = self._producer
        self._generation += 1
        self._fatal = ""
        try:
            old.purge()
            old.poll(0)
        except KafkaException:  # a producer in a fatal state may refuse; it is dropped anyway
            log.debug("purging a failed producer failed", exc_info=True)
        self._health.retried()
        log.warning(
            "kafka topic %r: %s; starting a new producer and sending again %d unacknowledged "
            "message(s) (next restart no sooner than %.0f s)",
            self._topic,
            reason,
            len(self._outbox),
            self._restart_pause_s,
        )
        self._link.reset()
        self._producer = self._new_producer()
        now = time.monotonic()
        self._restart_at = now + self._restart_pause_s
        self._restart_pause_s = min(self._restart_pause_s * 2, RESTART_CAP_S)
        for sent in self._outbox.resend(self._generation, self._on_delivery_error):
            for key, value, headers in sent.messages:
                self._produce(sent, key, value, headers)

    def _tend(self) -> None:
        """Serve reports, update the output's state, restart a failed or stuck producer."""
        self._producer.poll(0)
        acks = self._outbox.collect()
        now = time.monotonic()
        waiting = bool(len(self._outbox))
        if acks != self._acks or not waiting:
            self._acks = acks
            self._progress_at = now
            self._restart_pause_s = self._sink.stall_s
        quiet_s = now - self._progress_at
        health = self._health
        health.set_backlog(len(self._outbox))
        if waiting and quiet_s >= self._sink.down_after_s:
            health.went_down(
                f"no acknowledgement from the brokers for {quiet_s:.0f} s"
                + (f" ({self._last_error})" if self._last_error else "")
            )
        elif not health.is_up and quiet_s < self._sink.down_after_s:
            health.came_back()
        if now < self._restart_at:
            return
        if self._fatal:
            self._restart(self._fatal)
        elif (
            waiting
            and quiet_s >= self._sink.stall_s
            and self._link.connected_since is not None
            and now - self._link.connected_since >= self._sink.stall_s
        ):
            self._restart(f"no acknowledgement for {quiet_s:.0f} s while a broker is connected")

    # -- Bytewax -----------------------------------------------------------------------

    def write_batch(self, items: list[Any]) -> None:
        self._tend()  # an empty outbox restarts the clock of acknowledgements here
        outbox, key_of, topic = self._outbox, self._key_of, self._topic
        sent = outbox.open(self._generation, self._on_delivery_error)
        for item in items:
            key = key_of(item)
            value, headers = encode(self._to_json, item, key, topic)
            if not outbox.has_room(len(value)):
                outbox.seal(sent)  # what is written so far may leave while the flow waits
                self._wait_for_room(len(value))
                sent = outbox.open(self._generation, self._on_delivery_error)
            kb = key.encode()
            outbox.add(sent, kb, value, headers)
            try:  # the common case inline; _produce handles a full queue and a failed producer
                self._producer.produce(topic, value, kb, headers=headers, on_delivery=sent.report)
            except (BufferError, KafkaException):
                self._produce(sent, kb, value, headers)
        outbox.seal(sent)
        self._producer.poll(0)

    def _wait_for_room(self, size: int) -> None:
        """Back-pressure: the outbox is full, so the flow waits for acknowledgements."""
        started = time.monotonic()
        if not self._health.is_up:  # a full outbox of a fast flow is routine: say so only
            log.warning(  # when the brokers are away
                "kafka topic %r: %d message(s) (%d bytes) wait for the brokers, the bound of "
                "this output; the flow waits until they are acknowledged",
                self._topic,
                len(self._outbox),
                self._outbox.bytes,
            )
        while not self._outbox.has_room(size):
            self._producer.poll(_ROOM_WAIT_S)
            self._tend()
        waited = time.monotonic() - started
        self._health.blocked(waited)
        if waited >= LONG_WAIT_S:
            log.warning("kafka topic %r: the flow waited %.1f s", self._topic, waited)

    def snapshot(self) -> list[Held] | None:
        """The unacknowledged messages (None when all are acknowledged), at once; only a
        snapshot that Bytewax pickles (with recovery) waits a little for acknowledgements
        (:class:`~.outbox.HeldState`, :meth:`durable_state`)."""
        self._tend()
        held = self._outbox.held()
        return HeldState(held, self.durable_state) if held else None

    def durable_state(self) -> list[Held]:
        """The unacknowledged messages for a snapshot that is kept; never blocks long.

        While a broker is connected and the output up it gives the brokers up to
        ``snapshot_wait_s`` to acknowledge what is in flight, so the state is usually empty;
        otherwise it does not wait.
        """
        connected = self._link.connected or not self._link.seen
        if len(self._outbox) and connected and self._health.is_up:
            self._producer.flush(self._sink.snapshot_wait_s)
            self._tend()
        return self._outbox.held()

    def close(self) -> None:
        """Send what is left, waiting at most ``close_wait_s``; log what stays unsent.

        Never raises: Bytewax aborts the process if ``close`` raises while a failed flow is
        torn down. With recovery, the last snapshot holds the messages left here; they are
        purged from the producer, so that it cannot send them later behind a resumed run.
        """
        if len(self._outbox):
            self._producer.flush(self._sink.close_wait_s)
        self._producer.poll(0)
        self._outbox.collect()
        self._health.set_backlog(len(self._outbox))
        if len(self._outbox):
            log.error(
                "kafka topic %r: closing with %d message(s) unacknowledged (%s); a run resumed "
                "from --recovery-dir sends them again, without recovery they are lost",
                self._topic,
                len(self._outbox),
                self._last_error or "no answer from the brokers",
            )
            self._generation += 1  # their reports no longer count
            try:
                self._producer.purge()
                self._producer.poll(0)
            except KafkaException:  # a producer in a fatal state: nothing left to send anyway
                log.debug("purging the producer at close failed", exc_info=True)


class KafkaJsonSink(PlacedParts, FixedPartitionedSink[Any, list[Held] | None]):
    """Write ``(twin_id, item)`` pairs to ``topic`` as JSON made by ``to_json``.

    ``key_of(item)`` is the Kafka key (default: the item's ``twin_id``). ``partitions`` sink
    partitions (each its own producer) share the twins by the pair's key; one is enough
    below tens of thousands of messages per second (in a cluster, :func:`.placement_keys.place`
    gives every worker one and sends a twin's items to its state's worker).
    ``max_messages``/``max_bytes`` bound each partition's unacknowledged messages;
    ``down_after_s``, ``stall_s``, ``snapshot_wait_s`` and ``close_wait_s`` tune the outage
    handling described in the module docstring.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        to_json: ToJson,
        *,
        key_of: KeyOf = twin_id_of,
        partitions: int = 1,
        max_messages: int = 100_000,
        max_bytes: int = 64 * 1024 * 1024,
        down_after_s: float = 5.0,
        stall_s: float = 10.0,
        snapshot_wait_s: float = 0.5,
        close_wait_s: float = 10.0,
    ) -> None:
        if not topic:
            raise ConfigError("Kafka sink needs a topic name, got an empty one")
        if max_messages < 1 or max_bytes < 1:
            raise ConfigError(
                f"Kafka sink of {topic!r} needs max_messages and max_bytes >= 1, got "
                f"{max_messages} and {max_bytes}"
            )
        self.settings = settings
        self.topic = topic
        self.to_json = to_json
        self.key_of = key_of
        self.partitions = partitions
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.down_after_s = down_after_s
        self.stall_s = stall_s
        self.snapshot_wait_s = snapshot_wait_s
        self.close_wait_s = close_wait_s
        self.spares = Spares()
        producer_config(settings)  # refuse a bad kafka.extra when the flow is built

    def make_producer(
        self, on_error: Callable[[KafkaError], None], on_stats: Callable[[str], None]
    ) -> Producer:
        """A producer of this sink's settings that reports to ``on_error`` and ``on_stats``."""
        return Producer(sink_producer_config(self.settings, self.max_messages, on_error, on_stats))

    def list_parts(self) -> list[str]:
        """The partitions; Bytewax lists them at start-up, so their producers are made here
        (:mod:`.spare`) and have their producer ids by the first item."""
        parts = [f"{self.topic}-{i}" for i in range(self.partitions)]
        self.spares.make(parts, self.make_producer)
        return parts

    def build_part(
        self, step_id: str, for_part: str, resume_state: list[Held] | None
    ) -> _JsonPartition:
        return _JsonPartition(self, for_part, resume_state)


def kafka_json_sink(
    settings: KafkaSettings,
    topic: str,
    to_json: ToJson,
    *,
    key_of: KeyOf = twin_id_of,
    partitions: int = 1,
) -> KafkaJsonSink:
    """A sink of ``(twin_id, item)`` pairs to ``topic``: ``key_of(item)``, ``to_json(item)``."""
    return KafkaJsonSink(settings, topic, to_json, key_of=key_of, partitions=partitions)


__all__ = ["DELIVERY_ERRORS", "KafkaJsonSink", "KeyOf", "ToJson", "kafka_json_sink", "twin_id_of"]
