"""Versioned JSON to a Kafka topic, keyed by twin, with nothing accepted lost silently.

:class:`KafkaJsonSink` takes the flow's ``(twin_id, item)`` pairs (the pair's key picks the
sink partition) and produces ``key=item.twin_id``, ``value=to_json(item)`` as compact UTF-8
JSON, with headers ``schema`` and ``version`` copied from the document. Keying by twin sends
each twin's events to one Kafka partition, and one sink partition (one producer) writes each
twin, so they stay in order.

Delivery: the producer is idempotent with ``acks=all``
(see :mod:`twinflow.connectors.kafka.config`);
librdkafka retries until ``message.timeout.ms`` (default 300 s, settable in ``kafka.extra``).
A message that still fails is counted in ``twinflow_kafka_delivery_errors_total{topic}``,
logged, and raised as :class:`KafkaDeliveryError` at the next write or snapshot. Every
snapshot waits until all messages written so far are acknowledged, so the Bytewax epoch that
held a lost message never commits, and a flow run with recovery writes it again on resume.
Without recovery the flow stops with the error: nothing fails silently. (``close`` only
logs: Bytewax snapshots before it closes, and aborts the process if ``close`` raises while
a failed flow is torn down.)

The guarantee is at-least-once: a replay after recovery writes the epoch again, with the
same deterministic ids (alerts, commands) or the same (twin, time) (twin states), so
consumers deduplicate.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from confluent_kafka import KafkaError, Message, Producer
from prometheus_client import Counter

from twinflow.connectors.bindings import KafkaSettings
from twinflow.connectors.kafka.config import producer_config
from twinflow.connectors.kafka.errors import KafkaDeliveryError
from twinflow.core.errors import ConfigError, TwinflowError

ToJson = Callable[[Any], Mapping[str, Any]]
KeyOf = Callable[[Any], str]


def twin_id_of(item: Any) -> str:
    """The Kafka key of an alert, command or twin state: its twin id."""
    return str(item.twin_id)


log = logging.getLogger(__name__)

DELIVERY_ERRORS = Counter(
    "twinflow_kafka_delivery_errors",
    "Messages to Kafka that the brokers did not acknowledge in time (each stops the flow)",
    ["topic"],
)

#: How long write_batch waits for room when librdkafka's local queue is full, per try.
_ROOM_WAIT_S = 0.1
#: How long close waits for outstanding acknowledgements (a snapshot has waited already).
CLOSE_TIMEOUT_S = 10.0


class _JsonPartition(StatefulSinkPartition[Any, None]):
    """One producer; a snapshot waits for every acknowledgement, close for a bounded time."""

    def __init__(self, sink: KafkaJsonSink, part: str) -> None:
        settings = sink.settings
        self._topic = topic = sink.topic
        self._to_json = sink.to_json
        self._key_of = sink.key_of
        self._failed = 0
        self._first_failure = ""
        self._producer = Producer(
            producer_config(
                settings,
                **{"on_delivery": self._on_delivery, "delivery.report.only.error": True},
            )
        )
        log.debug("kafka sink partition %s writes topic %r", part, topic)

    def _on_delivery(self, error: KafkaError | None, msg: Message) -> None:
        if error is None:
            return
        self._failed += 1
        DELIVERY_ERRORS.labels(self._topic).inc()
        if not self._first_failure:
            self._first_failure = f"key {msg.key()!r}: {error.str()} ({error.name()})"
        log.error("kafka topic %r: delivery of key %r failed: %s", self._topic, msg.key(), error)

    def _raise_if_failed(self) -> None:
        if self._failed:
            raise KafkaDeliveryError(
                f"{self._failed} message(s) to Kafka topic {self._topic!r} were not "
                f"acknowledged (first: {self._first_failure}); the flow stops so that nothing "
                "is lost: check the brokers, then restart it (with recovery it writes them "
                "again)"
            )

    def write_batch(self, items: list[Any]) -> None:
        self._raise_if_failed()
        producer, topic, key_of = self._producer, self._topic, self._key_of
        for item in items:
            key = key_of(item)
            value, headers = self._encode(key, item)
            while True:
                try:
                    producer.produce(topic, value, key.encode(), headers=headers)
                    break
                except BufferError:  # local queue full: let librdkafka send, then retry
                    producer.poll(_ROOM_WAIT_S)
        producer.poll(0)

    def _encode(self, key: str, item: Any) -> tuple[bytes, list[tuple[str, str | bytes | None]]]:
        try:
            doc = self._to_json(item)
            value = json.dumps(doc, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise TwinflowError(
                f"cannot write {type(item).__name__} of twin {key!r} to Kafka topic "
                f"{self._topic!r} as JSON: {exc}"
            ) from exc
        headers: list[tuple[str, str | bytes | None]] = [
            (h, str(doc[h]).encode()) for h in ("schema", "version") if h in doc
        ]
        return value.encode(), headers

    def snapshot(self) -> None:
        """The epoch's barrier: wait until every message so far is acknowledged, or raise."""
        remaining = self._producer.flush()
        self._raise_if_failed()
        if remaining:  # pragma: no cover - flush() without a timeout waits for every message
            raise KafkaDeliveryError(
                f"{remaining} message(s) to Kafka topic {self._topic!r} still unacknowledged"
            )

    def close(self) -> None:
        """Send what is left (bounded wait); failures are logged and counted, not raised.

        At the end of a run Bytewax snapshots before it closes, so the snapshot has already
        raised any failure; an exception here, while a failing flow is being torn down,
        would make Bytewax abort the whole process.
        """
        remaining = self._producer.flush(CLOSE_TIMEOUT_S)
        if remaining or self._failed:
            log.error(
                "kafka topic %r: closing with %d message(s) unacknowledged and %d failed",
                self._topic,
                remaining,
                self._failed,
            )


class KafkaJsonSink(FixedPartitionedSink[Any, None]):
    """Write ``(twin_id, item)`` pairs to ``topic`` as JSON made by ``to_json``.

    ``key_of(item)`` is the Kafka key (default: the item's ``twin_id``). ``partitions`` sink
    partitions (each its own producer) share the twins by the pair's key; one is enough
    below tens of thousands of messages per second.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        to_json: ToJson,
        *,
        key_of: KeyOf = twin_id_of,
        partitions: int = 1,
    ) -> None:
        if not topic:
            raise ConfigError("Kafka sink needs a topic name, got an empty one")
        self.settings = settings
        self.topic = topic
        self.to_json = to_json
        self.key_of = key_of
        self.partitions = partitions
        producer_config(settings)  # refuse a bad kafka.extra when the flow is built

    def list_parts(self) -> list[str]:
        return [f"{self.topic}-{i}" for i in range(self.partitions)]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _JsonPartition:
        return _JsonPartition(self, for_part)


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
