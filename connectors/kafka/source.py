"""Kafka topics as a Bytewax source that resumes from its own offsets.

:class:`KafkaMessageSource` has one Bytewax partition per Kafka partition (named
``"{partition}-{topic}"``, as Bytewax's ``KafkaSource`` names them); its resume state is the
offset of the next message to read, so after a crash a recovering flow re-reads exactly what
followed its last snapshot. Offsets are never committed to the consumer group.

Why not ``bytewax.connectors.kafka.KafkaSource`` itself: it wraps every message in a
``KafkaSourceMessage`` (eight fields, headers, latency and timestamp looked up), which
halved throughput against Tansu when measured here (about 100k against 210k messages/s;
``tests/benchmarks/bench_kafka.py`` compares both), and with
``raise_on_errors=False`` it moves its resume offset past error events as if they were
messages. This source maps each batch of ``confluent_kafka.Message`` straight to the flow's
items with a ``map_batch`` function and keeps the offset of real messages only.

Consumer errors (an error event in a fetched batch, e.g. a topic ACL refusal) become
:class:`DeadLetter` items (stage ``decode``), are counted in
``twinflow_kafka_consumer_errors_total{topic}`` and logged; reading goes on, as librdkafka
retries. Lost connections never reach the flow: librdkafka reconnects with backoff; the
source logs once that it has no broker connection and once that it is back, and keeps
``twinflow_connection_up{protocol="kafka",role="source"}`` (:mod:`.links`); librdkafka's own
lines are collapsed to one per condition a minute. A fatal client error raises
:class:`KafkaConnectorError`.

A broker that comes back without its data (restarted on empty storage, or the topic deleted
and created again) is followed: a partition whose log now ends before the offset the source
is at (the high watermark of its last fetch is lower), or whose topic's id changed (checked
every ``watch_s`` seconds, 5 by default, through an admin client, and before the first batch
read after the brokers were unreachable is used), is read again from its beginning, with a
warning that says so, instead of waiting for the new log to reach the old offset.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from prometheus_client import Counter

from twinflow.connectors.bindings import KafkaSettings
from twinflow.connectors.kafka.config import admin_config, consumer_config
from twinflow.connectors.kafka.errors import KafkaConnectorError
from twinflow.connectors.kafka.links import STATS_INTERVAL_MS, BrokerLink
from twinflow.core.errors import ConfigError
from twinflow.core.records import DeadLetter
from twinflow.core.times import utc

#: Turns the messages of one fetched batch (errors removed) into flow items; ``received`` is
#: the wall time of the fetch in epoch seconds.
MapBatch = Callable[[Sequence[Message], float], list[Any]]

log = logging.getLogger(__name__)

CONSUMER_ERRORS = Counter(
    "twinflow_kafka_consumer_errors",
    "Error events read from Kafka topics (each also sent to the dead-letter output)",
    ["topic"],
)

_EOF = KafkaError._PARTITION_EOF
#: How long list_parts and build_part wait for a topic's metadata.
METADATA_TIMEOUT_S = 10.0
#: How often a partition checks that its log is still the one it was reading.
WATCH_S = 5.0
#: After the brokers were unreachable, how long the first batch read waits for that check.
VERIFY_S = 10.0


class _KafkaPartition(StatefulSourcePartition[Any, int]):
    """Reads one Kafka partition from ``offset`` on; emits what ``map_batch`` makes."""

    def __init__(
        self,
        consumer: Consumer,
        topic: str,
        partition: int,
        offset: int,
        map_batch: MapBatch,
        batch_size: int,
        tail: bool,
        max_idle_wait_s: float,
        admin: AdminClient | None = None,
        watch_s: float = WATCH_S,
        link: BrokerLink | None = None,
    ) -> None:
        consumer.assign([TopicPartition(topic, partition, offset)])
        self._consumer = consumer
        self._admin = admin
        self._link = link
        self._suspect = False  # the brokers were away: check the log before reading on
        self._held: list[Message] | None = None  # the first batch after that, until checked
        self._held_until = 0.0
        self._verified = False
        self._topic_id: str | None = None
        self._described: Future[Any] | None = None
        self._watch_s = watch_s
        self._watched_at = -watch_s  # the first check asks for the topic id at once
        self._watch_due = time.monotonic()
        self._topic = topic
        self._partition = partition
        self._offset = offset
        self._map_batch = map_batch
        self._batch_size = batch_size
        self._tail = tail
        self._max_idle_wait_s = max_idle_wait_s
        self._idle_wait_s = 0.0
        self._awake: datetime | None = None
        self._eof = False

    def next_batch(self) -> list[Any]:
        if self._eof:
            raise StopIteration
        now = time.monotonic()
        link = self._link
        if link is not None and link.seen and not link.connected:
            self._suspect = True
        if now >= self._watch_due:
            self._watch_due = now + (0.1 if self._held is not None else 1.0)
            self._watch(now)
        if self._held is not None:  # the first batch after an outage waits for the check
            if not self._verified and now < self._held_until:
                self._awake = datetime.now(UTC) + timedelta(seconds=0.05)
                return []
            msgs, self._held = self._held, None
            return self.process(msgs, time.time())
        msgs = self._consumer.consume(self._batch_size, 0)
        if msgs and self._suspect and self._admin is not None:
            # Read after the brokers were away: the log may be a new one (a broker that lost
            # its data) read at the old offset. Ask for the topic's id before using it.
            self._suspect, self._verified = False, False
            self._held, self._held_until = msgs, now + VERIFY_S
            self._described, self._watched_at, self._watch_due = None, -math.inf, now
            self._awake = None
            return []
        if not msgs:
            # Nothing fetched yet: come back later, waiting longer while the topic is quiet
            # (1 ms doubling up to max_idle_wait_s) instead of blocking the worker.
            self._idle_wait_s = min(max(self._idle_wait_s * 2, 0.001), self._max_idle_wait_s)
            self._awake = datetime.now(UTC) + timedelta(seconds=self._idle_wait_s)
            return []
        self._idle_wait_s = 0.0
        self._awake = None
        return self.process(msgs, time.time())

    def _watch(self, now: float) -> None:
        """Read from the beginning again if the broker's log is no longer the one read."""
        tp = TopicPartition(self._topic, self._partition)
        _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
        if 0 <= high < self._offset:
            self._rewind(f"its log now ends at offset {high}")
            return
        if self._admin is None:
            return
        if self._described is not None and self._described.done():
            self._check_topic_id(self._described)
            self._described = None
        every = 0.2 if self._held is not None else self._watch_s
        if self._described is None and now - self._watched_at >= every:
            self._watched_at = now
            collection = TopicCollection([self._topic])
            self._described = self._admin.describe_topics(collection)[self._topic]

    def _check_topic_id(self, described: Future[Any]) -> None:
        try:
            topic_id = str(described.result().topic_id)
        except KafkaException:  # broker away or too old for topic ids: the next check retries
            return
        if self._topic_id is not None and topic_id != self._topic_id:
            self._rewind(f"the topic was created again (its id changed from {self._topic_id})")
        self._topic_id = topic_id
        self._verified = True

    def _rewind(self, why: str) -> None:
        log.warning(
            "kafka topic %r partition %d: %s, before offset %d where reading was: the broker "
            "lost its data or the topic was recreated; reading the partition again from its "
            "beginning",
            self._topic,
            self._partition,
            why,
            self._offset,
        )
        self._offset = 0
        self._held = None  # read from the old position in the new log: dropped
        self._consumer.assign([TopicPartition(self._topic, self._partition, OFFSET_BEGINNING)])

    def process(self, msgs: list[Message], received: float) -> list[Any]:
        """The items a fetched batch becomes; moves the resume offset past its messages."""
        if any(m.error() is not None for m in msgs):
            return self._with_errors(msgs, received)
        self._offset = _next_offset(msgs[-1])
        return self._map_batch(msgs, received)

    def _with_errors(self, msgs: list[Message], received: float) -> list[Any]:
        good: list[Message] = []
        errors: list[DeadLetter] = []
        for m in msgs:
            error = m.error()
            if error is None:
                good.append(m)
            elif error.code() == _EOF:
                self._eof = not self._tail
            elif error.fatal():
                raise KafkaConnectorError(
                    f"fatal Kafka error reading topic {self._topic!r} partition "
                    f"{self._partition}: {error.str()}; the consumer cannot continue"
                )
            else:
                errors.append(self._dead_letter(error, received))
        if good:
            self._offset = _next_offset(good[-1])
        return [*errors, *(self._map_batch(good, received) if good else [])]

    def _dead_letter(self, error: KafkaError, received: float) -> DeadLetter:
        CONSUMER_ERRORS.labels(self._topic).inc()
        log.warning("kafka topic %r partition %d: %s", self._topic, self._partition, error)
        return DeadLetter(
            stage="decode",
            reason=f"Kafka consumer error on partition {self._partition} near offset "
            f"{self._offset}: {error.str()} ({error.name()}); reading continues",
            source=f"kafka:{self._topic}",
            time=utc(received),
        )

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> int:
        return self._offset

    def close(self) -> None:
        self._consumer.close()
        self._admin = None


class KafkaMessageSource(FixedPartitionedSource[Any, int]):
    """Every partition of ``topics``, each item made by ``map_batch`` from a fetched batch.

    ``tail=False`` stops at the end each partition had when it was reached (for tests,
    benchmarks and backfills); ``starting_offset`` applies where there is no resume state
    (``OFFSET_BEGINNING`` or ``OFFSET_END`` from confluent_kafka).
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topics: Sequence[str],
        map_batch: MapBatch,
        *,
        tail: bool = True,
        starting_offset: int = OFFSET_BEGINNING,
        batch_size: int = 1000,
        max_idle_wait_s: float = 0.01,
        watch_s: float = WATCH_S,
    ) -> None:
        if isinstance(topics, str) or not topics:
            raise ConfigError(f"Kafka source needs a list of topics, got {topics!r}")
        self.settings = settings
        self.topics = tuple(topics)
        self.map_batch = map_batch
        self.tail = tail
        self.starting_offset = starting_offset
        self.batch_size = batch_size
        self.max_idle_wait_s = max_idle_wait_s
        self.watch_s = watch_s

    def list_parts(self) -> list[str]:
        admin = AdminClient(admin_config(self.settings))
        parts: list[str] = []
        for topic in self.topics:
            # One topic at a time, so a broker that auto-creates topics does so.
            meta = admin.list_topics(topic, timeout=METADATA_TIMEOUT_S).topics[topic]
            if meta.error is not None:
                raise KafkaConnectorError(
                    f"cannot read Kafka topic {topic!r} at {self.settings.bootstrap}: "
                    f"{meta.error.str()}; create the topic or check its name and the ACLs"
                )
            parts.extend(f"{p}-{topic}" for p in sorted(meta.partitions))
        return parts

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _KafkaPartition:
        idx, topic = for_part.split("-", 1)
        if topic not in self.topics:
            raise ConfigError(
                f"the recovery state of step {step_id!r} holds offsets of Kafka topic {topic!r}, "
                f"which is no longer among {list(self.topics)}; keep the topic or start with a "
                "fresh recovery directory"
            )
        link = BrokerLink("source", self.settings.bootstrap)
        config = consumer_config(
            self.settings,
            **{
                "enable.partition.eof": not self.tail,
                "stats_cb": link.update,  # broker connection states, served by consume()
                "statistics.interval.ms": STATS_INTERVAL_MS,
            },
        )
        consumer = Consumer(config)
        try:
            # Ask for the topic's metadata first: assign() alone waits about 0.5 s for it.
            consumer.list_topics(topic, timeout=METADATA_TIMEOUT_S)
        except KafkaException as exc:  # the broker is away: assign anyway, librdkafka retries
            log.warning(
                "kafka topic %r: no metadata yet (%s); reading starts when it can", topic, exc
            )
        return _KafkaPartition(
            consumer,
            topic,
            int(idx),
            self.starting_offset if resume_state is None else resume_state,
            self.map_batch,
            self.batch_size,
            self.tail,
            self.max_idle_wait_s,
            AdminClient(admin_config(self.settings)) if self.tail else None,
            self.watch_s,
            link,
        )


__all__ = ["CONSUMER_ERRORS", "KafkaMessageSource", "MapBatch"]


def _next_offset(message: Message) -> int:
    """The offset after a message that was read (a read message always has one)."""
    offset = message.offset()
    if offset is None:
        raise KafkaConnectorError("a Kafka message without an offset cannot be resumed after")
    return offset + 1
