"""Kafka consumer lag per partition, for the progress line and ``/metrics``.

twinflow's Kafka source never commits offsets to a consumer group (its position is Bytewax
recovery state), so the broker cannot tell the lag. :class:`KafkaLag` learns each
partition's position from the source itself (the ``tap`` of
:func:`twinflow.flows.shutdown.stoppable` reads the partition's resume state, the offset of
the next message, after every batch) and asks the broker for each partition's end offset
every few seconds with a consumer of its own that reads nothing.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from prometheus_client import Gauge

LAG = Gauge(
    "twinflow_kafka_consumer_lag",
    "Messages between a source partition's position and the partition's end (high watermark), "
    "sampled every few seconds",
    ["topic", "partition"],
)

log = logging.getLogger(__name__)

#: librdkafka's own log lines of the lag consumer (a broker away) go here, silenced.
_QUIET = logging.getLogger("twinflow.kafka_lag.librdkafka")
_QUIET.setLevel(logging.CRITICAL)
_QUIET.propagate = False


def is_kafka(source: Any) -> bool:
    """Whether ``source`` is twinflow's Kafka source (without importing confluent-kafka when
    no Kafka is configured)."""
    return type(source).__name__ == "KafkaMessageSource" and hasattr(source, "settings")


class KafkaLag:
    """Positions of the Kafka partitions a flow reads, and their lag (thread-safe)."""

    def __init__(self, every_s: float = 5.0) -> None:
        self.every_s = every_s
        self._lock = threading.Lock()
        self._settings: dict[str, Any] = {}  # topic -> KafkaSettings
        self._next: dict[tuple[str, int], int] = {}
        self._lag: dict[tuple[str, int], int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, source: Any) -> None:
        """Follow the partitions of ``source`` (a Kafka source)."""
        with self._lock:
            for topic in source.topics:
                self._settings[topic] = source.settings

    def tap(self, _step_id: str, part: str, inner: Any, _items: list[Any]) -> None:
        """After a batch: the partition's next offset (its resume state)."""
        index, _, topic = part.partition("-")
        offset = inner.snapshot()
        if topic in self._settings and isinstance(offset, int) and offset >= 0:
            with self._lock:
                self._next[(topic, int(index))] = offset

    @property
    def active(self) -> bool:
        """Whether any Kafka source is followed."""
        with self._lock:
            return bool(self._settings)

    def total(self) -> int | None:
        """The summed lag of every partition known, or ``None`` before the first sample."""
        with self._lock:
            return sum(self._lag.values()) if self._lag else None

    def by_partition(self) -> dict[tuple[str, int], int]:
        with self._lock:
            return dict(self._lag)

    def sample(self, consumer: Any) -> None:
        """Ask the broker for each known partition's end; update the lag and the gauge."""
        from confluent_kafka import KafkaException, TopicPartition

        with self._lock:
            positions = dict(self._next)
        for (topic, index), position in positions.items():
            try:
                _low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, index), timeout=2.0, cached=False
                )
            except KafkaException as exc:
                log.debug("kafka lag of %s[%d] not sampled: %s", topic, index, exc)
                continue
            lag = max(int(high) - position, 0)
            with self._lock:
                self._lag[(topic, index)] = lag
            LAG.labels(topic, str(index)).set(lag)

    def start(self) -> None:
        """Sample in a thread of its own until :meth:`stop` (nothing when no Kafka source)."""
        if not self._settings or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="twinflow-kafka-lag", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from confluent_kafka import Consumer

        from twinflow.connectors.kafka.config import consumer_config

        settings = next(iter(self._settings.values()))
        consumer = Consumer(
            consumer_config(
                settings,
                **{"group.id": f"{settings.group_id}-lag", "enable.auto.commit": False},
                logger=_QUIET,
            )
        )
        try:
            while not self._stop.wait(self.every_s):
                self.sample(consumer)
            self.sample(consumer)
        finally:
            consumer.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
