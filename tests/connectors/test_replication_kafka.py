"""Two edge replicas and a central one over a real Kafka-protocol broker (Tansu), cut and mended.

The broker sits behind a relay that the test closes (``KafkaBroker(proxied=True)``): every
replica loses the broker while all three set the same desired property and the edges keep
writing; once it is reachable again, every replica must hold the state of a reference
replica that received every write once, with the same conflicts. A second test loses only
the broker's answers to one edge (``cut_client(replies_only=True)``): the batch it produced
again is merged once. Every wait is bounded.
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


def test_a_batch_whose_acknowledgement_was_lost_is_produced_again_and_merged_once(
    tmp_path: Path,
) -> None:
    """The broker takes edge-a's batch but its answers never come back (the relay drops them
    for edge-a's clients alone) for longer than ``delivery_timeout_s``: the edge counts the
    batch as not sent and, once answers flow again, produces it again. Central must merge
    each write once (``won``) and a resend of what it already has as a ``duplicate``,
    relaying nothing twice."""
    try:
        broker = KafkaBroker(local=True, proxied=True).start()
    except KafkaUnavailable as e:
        pytest.fail(str(e), pytrace=False)
    base = f"tf-{uuid.uuid4().hex[:8]}"
    for topic in kafka_topics(base, central=True):
        create_topic(broker.bootstrap, topic, partitions=2)
    links = {
        name: KafkaLink(
            TwinReplica(name),
            DiskOutbox(tmp_path / name),
            broker.bootstrap,
            *kafka_topics(base, central=name == "central"),
            group_id=f"{base}-{name}",
            relay=name == "central",
            delivery_timeout_s=2.0,
            config={**FAST, "client.id": f"{base}-{name}"},
        )
        for name in ("central", "edge-a")
    }
    central, edge = links["central"], links["edge-a"]
    try:
        for link in links.values():
            link.start()
        made = [edge.write("pump-a", "reported", "speed_rpm", 700)]
        wait_until("central has edge-a's first write", lambda: central.counts["won"] == 1, 60)
        broker.cut_client(f"{base}-edge-a", replies_only=True)
        made += [edge.write("pump-a", "reported", f"temp_{i}", i) for i in range(20)]
        # the records reach the broker (how many depends on how the sender batched them
        # before the first failure: then it probes with one), their acknowledgements do not
        wait_until("edge-a counts it as not sent", lambda: not edge.connected, 60)
        wait_until("central has what reached the broker", lambda: central.counts["won"] >= 2, 60)
        assert edge.outbox.pending == 20  # no acknowledgement: kept for a resend
        broker.mend_client(f"{base}-edge-a")
        wait_until("edge-a's outbox drained", lambda: edge.outbox.pending == 0, 90)
        wait_until("central merges every write", lambda: central.counts["won"] == 21, 60)
        wait_until("a resend reaches central", lambda: central.counts["duplicate"] >= 1, 60)
        wait_until("edge-a holds the relayed state", lambda: _same(central, edge), 60)
        wait_until("central's outbox drained", lambda: central.outbox.pending == 0, 60)
    finally:
        for link in links.values():
            link.stop()
            link.outbox.close()
        broker.stop()
    reference = TwinReplica("reference")
    reference.apply_many(made)
    assert central.replica.registers() == reference.registers()
    assert central.counts["won"] == len(made)  # each write new once, however often it came
    assert central.counts["sent"] == len(made)  # and relayed once
    assert not central.dead_letters and not edge.dead_letters


def _same(a: KafkaLink, b: KafkaLink) -> bool:
    with a.lock, b.lock:
        return a.replica.registers() == b.replica.registers()


def test_an_idle_link_reads_down_while_its_broker_is_unreachable(tmp_path: Path) -> None:
    """A replica with nothing to send learns of a cut from its clients, not from a failed
    delivery, and reads up again once a broker answers."""
    try:
        broker = KafkaBroker(local=True, proxied=True).start()
    except KafkaUnavailable as e:
        pytest.fail(str(e), pytrace=False)
    base = f"tf-{uuid.uuid4().hex[:8]}"
    for topic in kafka_topics(base, central=True):
        create_topic(broker.bootstrap, topic, partitions=2)
    link = KafkaLink(
        TwinReplica("edge-a"),
        DiskOutbox(tmp_path / "edge-a"),
        broker.bootstrap,
        *kafka_topics(base, central=False),
        group_id=f"{base}-edge-a",
        config={**FAST, "client.id": f"{base}-edge-a"},
    )
    try:
        link.start()
        wait_until("the link is up", lambda: link.connected, 30)
        broker.cut_client(f"{base}-edge-a")
        wait_until("the idle link reads down", lambda: not link.connected, 10)
        assert link.outbox.pending == 0  # nothing was sent: no delivery failed
        broker.mend_client(f"{base}-edge-a")
        wait_until("the link reads up again", lambda: link.connected, 30)
    finally:
        link.stop()
        link.outbox.close()
        broker.stop()
