"""A replication link cut for minutes while faults develop, over mosquitto and over Kafka.

Edge-a is the flow of a deployment with ``replication: {role: edge}``: the simulated plant
serves a wind turbine and a motor over MQTT, both with an overheating fault that develops
during the run (seed 3, plant time at 120x). Edge-b and the central instance are
:class:`ReplicationNode` s in the test (what their flows' nodes do). Edge-a's replication
link is cut (its devices' MQTT is not: the site goes on). Meanwhile:

- edge-a's flow keeps raising alerts and issuing and completing its own commands (the derate
  policy), and its local desired changes wait in its outbox (sync status ``link_down``);
- the central instance and edge-a change the same desired properties: the turbine's
  ``power_limit`` centrally first, then at the edge (the edge's wins), and the motor's
  ``load_setpoint`` at the edge first, then centrally (central's wins);
- edge-b, whose link is up, goes on writing and receives central's change for its twin.

After the link returns, every replica holds the registers of a reference replica that
received every write once (what an uncut link would have delivered), the same two conflicts
are reported everywhere with the earlier write as the loser, the central instance received
each of edge-a's writes once, and edge-a's command loop issued one command for the central
change that won (none for the one that lost), which the device carried out. The scenario is
:func:`tests.flows.long_cut.run_long_cut`; the transports:

- **MQTT** (mosquitto): edge-a's link client is disconnected for 62 s (``MqttLink.cut``:
  the client is closed, as a lost uplink would drop it) and reconnects with its persistent
  session, whose queue the broker kept.
- **Kafka** (Tansu): the cut is in the network, not in twinflow. Every Kafka client reaches
  Tansu through a loopback TCP relay (``KafkaBroker(proxied=True)``) that reads each new
  connection's ``client.id``; the test cuts edge-a's clients alone (``cut_client``: their
  connections are closed and every new one is closed after its first request) for
  :data:`KAFKA_CUT_S` = 150 s, while central and edge-b go on through the same relay and
  broker. The link is the one ``twinflow run`` builds (``KafkaLink`` with its defaults,
  librdkafka's defaults otherwise). The cut is longer than every client timeout that could
  lose or duplicate a write on the way:

  - the producer's delivery timeout (``delivery_timeout_s`` 10 s, ``message.timeout.ms``):
    every batch produced during the cut fails and stays in the outbox, and a batch the
    broker took but whose acknowledgement the cut lost is produced again (a duplicate that
    the merge must absorb and central must not count as new);
  - librdkafka's reconnect backoff (``reconnect.backoff.max.ms``, 10 s), its connection
    set-up timeout (``socket.connection.setup.timeout.ms``, 30 s) and request timeout
    (``socket.timeout.ms``, 60 s): the clients give up on their requests and reconnect
    several times at their longest backoff before the link returns;
  - the consumer session (``session.timeout.ms``, 45 s): a group member would have been
    evicted; the link's consumer is assigned its partitions (no membership) and must go on
    from its own position and committed offsets, not re-read nor skip.

  ``max.poll.interval.ms`` (300 s) applies to subscribed consumers only and is not exceeded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.flows.long_cut import run_long_cut
from tests.services.kafka import KafkaBroker, KafkaUnavailable, create_topic
from tests.services.mosquitto import Mosquitto, running_broker
from twinflow.connectors.bindings import MqttSettings
from twinflow.connectors.replication import DiskOutbox
from twinflow.connectors.replication.kafka_link import KafkaLink, kafka_topics
from twinflow.connectors.replication.mqtt_link import MqttLink, central_topics, edge_topics
from twinflow.connectors.replication.node import ReplicationNode
from twinflow.operators.replication import TwinReplica

pytestmark = pytest.mark.services

#: How long edge-a's MQTT link stays cut (wall clock seconds).
MQTT_CUT_S = 62.0
#: How long edge-a's Kafka link stays cut: beyond every client timeout above.
KAFKA_CUT_S = 150.0


@pytest.fixture(scope="module")
def mqtt() -> Iterator[Mosquitto]:
    yield from running_broker()


class OverMqtt:
    """Every replica on the mosquitto of the plant; edge-a's link client closed to cut."""

    link = "mqtt"
    cut_s = MQTT_CUT_S
    duration = "4h"

    def __init__(self, broker: Mosquitto) -> None:
        self.broker = broker

    def services(self, base: str) -> str:
        return ""

    def node(
        self, folder: Path, name: str, base: str, role: str, owned: dict[str, str]
    ) -> ReplicationNode:
        settings = MqttSettings(
            host=self.broker.host, port=self.broker.port, client_id=f"{base}-{name}",
            reconnect_min_s=0.05, reconnect_max_s=0.5,
        )  # fmt: skip
        central = role == "central"
        topics = central_topics(base) if central else edge_topics(base, name)
        box = DiskOutbox(folder / name)
        return ReplicationNode(
            MqttLink(TwinReplica(name), box, settings, *topics, relay=central), role, owned=owned
        )

    def cut(self, base: str, edge_a: ReplicationNode) -> None:
        edge_a.link.cut()  # type: ignore[attr-defined]

    def restore(self, base: str, edge_a: ReplicationNode) -> None:
        edge_a.link.restore()  # type: ignore[attr-defined]


class OverKafka:
    """Every replica on one Tansu behind a relay; edge-a's clients alone cut at the relay."""

    link = "kafka"
    cut_s = KAFKA_CUT_S
    duration = "8h"  # 240 s of wall clock: the cut and the catch-up with the plant running

    def __init__(self, broker: KafkaBroker) -> None:
        self.broker = broker
        self._topics: set[str] = set()

    def services(self, base: str) -> str:
        self._create(base)
        return (
            f'  kafka: {{bootstrap: "{self.broker.bootstrap}", group_id: {base},\n'
            f'          extra: {{"client.id": "{base}-edge-a"}},\n'
            "          alerts_topic: null, commands_topic: null, twin_state_topic: null}\n"
        )

    def node(
        self, folder: Path, name: str, base: str, role: str, owned: dict[str, str]
    ) -> ReplicationNode:
        self._create(base)
        central = role == "central"
        link = KafkaLink(
            TwinReplica(name), DiskOutbox(folder / name), self.broker.bootstrap,
            *kafka_topics(base, central), f"{base}-replication-{name}", relay=central,
            config={"client.id": f"{base}-{name}"},
        )  # fmt: skip
        return ReplicationNode(link, role, owned=owned)

    def _create(self, base: str) -> None:
        for topic in kafka_topics(base, central=True):
            if topic not in self._topics:
                create_topic(self.broker.bootstrap, topic, partitions=2)
                self._topics.add(topic)

    def cut(self, base: str, edge_a: ReplicationNode) -> None:
        self.broker.cut_client(f"{base}-edge-a")

    def restore(self, base: str, edge_a: ReplicationNode) -> None:
        self.broker.mend_client(f"{base}-edge-a")


@pytest.mark.timeout(300)
def test_a_link_cut_for_a_minute_loses_nothing_and_resolves_conflicts_as_specified(
    tmp_path: Path, mqtt: Mosquitto
) -> None:
    run_long_cut(tmp_path, mqtt, OverMqtt(mqtt))


@pytest.mark.timeout(420)
def test_a_kafka_link_cut_longer_than_every_client_timeout_loses_nothing(
    tmp_path: Path, mqtt: Mosquitto
) -> None:
    try:
        broker = KafkaBroker(local=True, proxied=True).start()
    except KafkaUnavailable as e:
        pytest.fail(str(e), pytrace=False)
    try:
        run_long_cut(tmp_path, mqtt, OverKafka(broker))
    finally:
        broker.stop()
