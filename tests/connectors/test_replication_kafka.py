"""Two edge replicas and a central one over a real Kafka-protocol broker (Tansu), cut and mended.

The broker sits behind a relay that the test closes (``KafkaBroker(proxied=True)``): every
replica loses the broker while all three set the same desired property and the edges keep
writing; once it is reachable again, every replica must hold the state of a reference
replica that received every write once, with the same conflicts. Every wait is bounded.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from tests.services.kafka import KafkaBroker, KafkaUnavailable, create_topic
from tests.services.waiting import wait_until
from twinflow.connectors.replication import DiskOutbox, KafkaLink
from twinflow.connectors.replication.kafka_link import kafka_topics
from twinflow.operators.replication import TwinReplica, Write

pytestmark = pytest.mark.services

#: librdkafka settings that make the clients reconnect quickly after the cut.
FAST = {"reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500}
KAFKA_WAIT_S = 30.0  # a Kafka rebalance after the cut takes longer than mosquitto's reconnect


def test_every_replica_converges_after_the_kafka_broker_was_unreachable(tmp_path: Path) -> None:
    try:
        broker = KafkaBroker(local=True, proxied=True).start()
    except KafkaUnavailable as e:
        pytest.fail(str(e), pytrace=False)
    base = f"tf-{uuid.uuid4().hex[:8]}"
    for topic in kafka_topics(base, central=True):
        create_topic(broker.bootstrap, topic, partitions=2)
    links: dict[str, KafkaLink] = {}
    for name in ("central", "edge-a", "edge-b"):
        produce, consume = kafka_topics(base, central=name == "central")
        links[name] = KafkaLink(
            TwinReplica(name),
            DiskOutbox(tmp_path / name),
            broker.bootstrap,
            produce,
            consume,
            group_id=f"{base}-{name}",
            relay=name == "central",
            delivery_timeout_s=2.0,
            config=FAST,
        )
    replicas = {n: link.replica for n, link in links.items()}
    made: list[Write] = []
    try:
        for link in links.values():
            link.start()
        made.append(links["edge-a"].write("pump-c", "reported", "speed_rpm", 700))
        wait_until(
            "edge-b sees edge-a's write through central",
            lambda: replicas["edge-b"].get("pump-c", "reported", "speed_rpm") is not None,
            KAFKA_WAIT_S,
        )
        broker.cut()
        choices = [
            link.write("pump-c", "desired", "speed_rpm", 800 + i)
            for i, link in enumerate(links.values())
        ]
        made += choices
        for i in range(50):
            made.append(links["edge-a"].write("pump-c", "reported", "temp_c", i))
            made.append(links["edge-b"].write("pump-d", "reported", "temp_c", i))
        time.sleep(0.5)  # let the first attempts fail against the cut broker
        assert replicas["central"].get("pump-d", "reported", "temp_c") is None
        assert links["edge-a"].outbox.pending >= 51  # kept on disk while unreachable
        broker.mend()
        reference = TwinReplica("reference")
        for w in made:
            reference.apply(w)
        wait_until(
            "every replica equal to the reference",
            lambda: all(r.registers() == reference.registers() for r in replicas.values()),
            KAFKA_WAIT_S,
        )
        wait_until(
            "outboxes drained",
            lambda: all(x.outbox.pending == 0 for x in links.values()),
            KAFKA_WAIT_S,
        )
    finally:
        for link in links.values():
            link.stop()
            link.outbox.close()
        broker.stop()
    winner, *losers = sorted(choices, key=Write.order, reverse=True)
    for r in replicas.values():
        assert r.get("pump-c", "desired", "speed_rpm") == winner
        assert [(c.winner, c.loser) for c in r.conflicts("pump-c")] == [(winner, x) for x in losers]
    assert not any(link.dead_letters for link in links.values())
