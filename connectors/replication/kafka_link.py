"""Replication over Kafka: a replica's outbox produced to a topic, its inbound topic consumed.

Edges produce to an *up* topic and consume the *down* topic; the central replica consumes
*up*, produces its own writes to *down* and relays there every write that was new to it
(:func:`kafka_topics`). Each replica reads every partition of its inbound topic (assigned,
not subscribed) and commits its offsets under its own group id, so every replica reads
every update.

Sending is store-and-forward (:class:`~twinflow.connectors.replication.link.ReplicaLink`):
a batch of pending records is produced (key: the twin id, so one twin's updates keep their
order in a partition; value: a ``twin_updates.v2`` batch of that twin's writes) and
acknowledged in the outbox only when the broker confirmed every record (``acks=all``).
While the broker is unreachable, deliveries fail after ``delivery_timeout_s`` and the batch
is produced again later: the receivers merge a resend as a duplicate. Consumed offsets are
committed after the records were merged (at least once); a record merged twice changes
nothing.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twinflow.connectors.replication.link import ReplicaLink
from twinflow.connectors.replication.outbox import DiskOutbox, Entry
from twinflow.core.errors import TwinflowError
from twinflow.core.optional import require
from twinflow.operators.replication import Applied, TwinReplica, Write

log = logging.getLogger(__name__)


def kafka_topics(base: str, central: bool) -> tuple[str, str]:
    """(produce, consume) topics: an edge produces ``<base>.up`` and consumes
    ``<base>.down``, the central replica the other way round."""
    up, down = f"{base}.up", f"{base}.down"
    return (down, up) if central else (up, down)


class KafkaLink(ReplicaLink):
    """Connects one :class:`TwinReplica` and its :class:`DiskOutbox` to a Kafka cluster.

    ``group_id`` is the replica's consumer group (one per replica); ``config`` adds
    librdkafka settings to both clients (security, timeouts); ``delivery_timeout_s`` is how
    long a produced record may wait for the broker before its batch counts as not sent.
    ``per_record`` bounds the writes one Kafka record carries (one ``twin_updates.v2``
    batch of one twin's writes). ``fetch_wait_ms`` (librdkafka ``fetch.wait.max.ms``) and
    ``linger_ms`` trade latency for fewer requests: the defaults favour latency (an idle
    consumer asks every 5 ms).
    The other parameters are :class:`ReplicaLink`'s.
    """

    def __init__(
        self,
        replica: TwinReplica,
        outbox: DiskOutbox,
        bootstrap: str,
        produce_topic: str,
        consume_topic: str,
        group_id: str,
        *,
        relay: bool = False,
        batch: int = 2000,
        delivery_timeout_s: float = 10.0,
        fetch_wait_ms: int = 5,
        per_record: int = 500,
        linger_ms: int = 0,
        config: Mapping[str, Any] | None = None,
        dead_letters: int = 100,
        on_applied: Callable[[Write, Applied], None] | None = None,
    ) -> None:
        super().__init__(
            replica,
            outbox,
            relay=relay,
            batch=batch,
            dead_letters=dead_letters,
            on_applied=on_applied,
        )
        if delivery_timeout_s <= 0:
            raise TwinflowError(
                f"replication link of {replica.replica_id!r}: delivery_timeout_s must be > 0, "
                f"got {delivery_timeout_s}"
            )
        self.bootstrap = bootstrap
        self.produce_topic = produce_topic
        self.consume_topic = consume_topic
        self.group_id = group_id
        self.delivery_timeout_s = delivery_timeout_s
        self.fetch_wait_ms = fetch_wait_ms
        self.per_record = per_record
        self.linger_ms = linger_ms
        self.config = dict(config or {})
        self._producer: Any = None
        self._consumer: Any = None
        self._poller: threading.Thread | None = None
        self._kafka: Any = None
        self._polling = threading.Event()
        self._reachable = True  # False from "all brokers down" until a broker is up again

    @property
    def connected(self) -> bool:
        """Whether the link works: its last batch was delivered and the clients reach a
        broker. librdkafka says at once when every broker connection is lost (a cut link
        with nothing to send reads down too) and the consumer's statistics say when one is
        up again."""
        return self._send_ok and self._reachable

    def _on_error(self, err: Any) -> None:
        if err.code() == self._kafka.KafkaError._ALL_BROKERS_DOWN:
            self._reachable = False
        log.warning("replication link %s: %s", self.replica.replica_id, err)

    def _on_stats(self, doc: str) -> None:
        if self._reachable:
            return  # parsed only while the brokers were down
        brokers = json.loads(doc).get("brokers", {}).values()
        self._reachable = any(b.get("state") == "UP" and b.get("nodeid", -1) >= 0 for b in brokers)

    def start(self) -> KafkaLink:
        """Create the clients, start consuming and sending."""
        kafka = require("confluent_kafka", extra="kafka", what="the Kafka replication link")
        self._kafka = kafka  # before the clients: their callbacks use it
        # librdkafka's own messages go to Python logging, not stderr
        common = {
            "bootstrap.servers": self.bootstrap,
            "logger": log,
            "socket.nagle.disable": True,  # small records leave at once
            "error_cb": self._on_error,
            **self.config,
        }
        self._producer = kafka.Producer(
            {
                **common,
                "acks": "all",
                # not idempotent: in the outage test (Tansu), an idempotent producer whose
                # records timed out never delivered again; resends are harmless here
                "enable.idempotence": False,
                "linger.ms": self.linger_ms,
                "message.timeout.ms": int(self.delivery_timeout_s * 1000),
            }
        )
        self._consumer = kafka.Consumer(
            {
                **common,
                "group.id": self.group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": self.fetch_wait_ms,
                # a broker up again after "all brokers down" (see ``connected``)
                "statistics.interval.ms": 1000,
                "stats_cb": self._on_stats,
            }
        )
        self._polling.set()
        self._poller = threading.Thread(
            target=self._poll_loop, name=f"replication-in-{self.replica.replica_id}", daemon=True
        )
        self._poller.start()
        self._start_sender()
        return self

    def stop(self) -> None:
        """Stop sending and consuming; the outbox keeps what was not sent."""
        self._stop_sender()
        self._polling.clear()
        if self._poller is not None:
            self._poller.join(timeout=30)
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        self._producer = None

    def _assign(self) -> bool:
        """Read every partition of the inbound topic from the group's committed offsets
        (the earliest without one). Partitions are assigned, not subscribed: no group
        rebalance to wait for, and the replica reads all partitions anyway."""
        try:
            meta = self._consumer.list_topics(self.consume_topic, timeout=5)
        except self._kafka.KafkaException as exc:
            log.warning("replication link %s: %s", self.replica.replica_id, exc)
            return False
        topic = meta.topics.get(self.consume_topic)
        if topic is None or topic.error is not None or not topic.partitions:
            return False
        stored = self._kafka.OFFSET_STORED
        tp = self._kafka.TopicPartition
        self._consumer.assign([tp(self.consume_topic, p, stored) for p in topic.partitions])
        return True

    def _poll_loop(self) -> None:
        consumer = self._consumer
        while self._polling.is_set() and not self._assign():
            time.sleep(0.5)  # the broker is not reachable yet: ask again
        self._send_ok = True  # the broker answered (a failed send says otherwise later)
        while self._polling.is_set():
            # consume(n, timeout) waits for n records or the whole timeout: wait for the
            # first record alone, then take what else has arrived without waiting
            first = consumer.poll(0.2)
            if first is None:
                continue
            records = [first, *consumer.consume(num_messages=499, timeout=0)]
            good = [r for r in records if r.error() is None]
            for r in records:
                if r.error() is not None:
                    log.warning("replication link %s: %s", self.replica.replica_id, r.error())
            for r in good:
                self._receive_payload(r.value() or b"")
            if good:
                consumer.commit(asynchronous=True)

    def _ready(self) -> bool:
        return self._producer is not None

    def _send(self, entries: Sequence[Entry]) -> bool:
        producer = self._producer
        failed: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                failed.append(str(err))

        by_twin: dict[str, list[Entry]] = {}
        for e in entries:  # one twin's records keep their order in its partition
            by_twin.setdefault(e.key.split("/", 1)[0], []).append(e)
        for twin, records in by_twin.items():
            for message in self._messages(records, self.per_record):
                while True:
                    try:
                        producer.produce(
                            self.produce_topic, value=message, key=twin, on_delivery=delivered
                        )
                        break
                    except BufferError:  # librdkafka's queue is full: let it drain
                        producer.poll(0.1)
        left = producer.flush(self.delivery_timeout_s + 1)
        if failed or left:
            log.warning(
                "replication link %s: %d records not delivered (%s); they will be sent again",
                self.replica.replica_id,
                len(failed) + left,
                failed[0] if failed else "timeout",
            )
            return False
        return True
