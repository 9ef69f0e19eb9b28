"""Two edge replicas and a central one over a real mosquitto: a cut link, then convergence.

Each replica has its own on-disk outbox and MQTT link (tests/services/ starts the broker on a
free loopback port). While the link of edge-a is cut, both edge-a and the central replica
change the same desired property, and both edges keep writing; after the link returns, every
replica must hold the state of a reference replica that received every write once, with the
same conflict recorded, and no write applied as new twice. Every wait is bounded.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.services.mosquitto import Mosquitto, MosquittoMissing, running_broker
from tests.services.waiting import wait_until
from twinflow.connectors.bindings import MqttSettings
from twinflow.connectors.replication import DiskOutbox
from twinflow.connectors.replication.mqtt_link import MqttLink, central_topics, edge_topics
from twinflow.operators.replication import Applied, TwinReplica, Write, encode_update

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def broker() -> Iterator[Mosquitto]:
    yield from running_broker()


class Site:
    """One replica with its outbox and link; records the writes it applied as new."""

    def __init__(self, broker: Mosquitto, folder: Path, name: str, base: str) -> None:
        self.replica = TwinReplica(name)
        self.outbox = DiskOutbox(folder / name, segment_bytes=64 * 1024)
        pub, sub = central_topics(base) if name == "central" else edge_topics(base, name)
        settings = MqttSettings(
            host=broker.host,
            port=broker.port,
            client_id=f"{base}-{name}",
            reconnect_min_s=0.05,
            reconnect_max_s=0.5,
        )
        self.new: list[str] = []
        self.link = MqttLink(
            self.replica,
            self.outbox,
            settings,
            pub,
            sub,
            relay=name == "central",
            on_applied=self.applied,
        )

    def applied(self, w: Write, outcome: Applied) -> None:
        if outcome in (Applied.WON, Applied.LOST):
            self.new.append(w.stamp.text() + str(w.key))


def test_a_cut_edge_catches_up_and_every_replica_converges(
    broker: Mosquitto, tmp_path: Path
) -> None:
    base = f"tf-{uuid.uuid4().hex[:8]}"
    sites = {n: Site(broker, tmp_path, n, base) for n in ("central", "edge-a", "edge-b")}
    central, a, b = sites["central"], sites["edge-a"], sites["edge-b"]
    made: list[Write] = []
    try:
        for s in sites.values():
            s.link.start()
        wait_until("three connected links", lambda: all(s.link.connected for s in sites.values()))
        # linked: each edge reports its pump, central sets a desired speed for pump-a
        made.append(a.link.write("pump-a", "reported", "speed_rpm", 1480))
        made.append(b.link.write("pump-b", "reported", "speed_rpm", 990))
        made.append(central.link.write("pump-a", "desired", "speed_rpm", 1450))
        made.append(central.link.write("pump-b", "metadata", "site", "north"))
        wait_until(
            "edge-a sees central's desired speed",
            lambda: a.replica.get("pump-a", "desired", "speed_rpm") is not None,
        )

        a.link.cut()
        wait_until("edge-a's link down", lambda: not a.link.connected)
        # cut: both sides change pump-a's desired speed without seeing each other
        edge_choice = a.link.write("pump-a", "desired", "speed_rpm", 1500)
        time.sleep(0.005)
        central_choice = central.link.write("pump-a", "desired", "speed_rpm", 1400)
        for i in range(150):  # the edges keep working: reported values and metadata
            made.append(a.link.write("pump-a", "reported", "temp_c", 60 + i))
            made.append(b.link.write("pump-b", "reported", "temp_c", 40 + i))
        made.append(b.link.write("pump-b", "desired", "speed_rpm", 1000))
        made += [edge_choice, central_choice]
        assert a.outbox.pending >= 151  # kept on disk while the link is down
        wait_until(
            "central has edge-b's writes",
            lambda: central.replica.get("pump-b", "desired", "speed_rpm") is not None,
        )
        assert central.replica.get("pump-a", "reported", "temp_c") is None  # nothing from a yet
        assert a.replica.get("pump-b", "desired", "speed_rpm") is None

        a.link.restore()
        reference = TwinReplica("reference", keep=central.replica.keep)
        for w in made:
            reference.apply(w)
        expected = reference.registers()
        wait_until(
            "every replica equal to the reference",
            lambda: all(s.replica.registers() == expected for s in sites.values()),
        )
        wait_until("edge-a's outbox drained", lambda: a.outbox.pending == 0)
        # central relays edge-a's writes back down too: edge-a merges them and nothing
        # changes (duplicates, or stale: older than the writes its registers keep)
        echoes = a.link.counts
        wait_until("edge-a's writes echoed", lambda: echoes["duplicate"] + echoes["stale"] >= 151)
        assert a.replica.registers() == expected
    finally:
        for s in sites.values():
            s.link.stop()
            s.outbox.close()

    # the concurrent desired change: the larger stamp won everywhere, the other is a conflict
    winner, loser = sorted([edge_choice, central_choice], key=Write.order, reverse=True)
    for s in sites.values():
        assert s.replica.get("pump-a", "desired", "speed_rpm") == winner
        [conflict] = s.replica.conflicts("pump-a")
        assert (conflict.winner, conflict.loser) == (winner, loser)
        assert s.replica.conflicts("pump-b") == []
    # nothing applied as new twice, and central applied every edge write it kept
    for s in sites.values():
        assert len(s.new) == len(set(s.new))
    assert not any(s.link.dead_letters for s in sites.values())
    assert a.link.counts["sent"] >= 152


def test_a_bad_update_is_a_dead_letter_with_its_reason(broker: Mosquitto, tmp_path: Path) -> None:
    base = f"tf-{uuid.uuid4().hex[:8]}"
    central = Site(broker, tmp_path, "central", base)
    central.link.start()
    good = TwinReplica("edge-x").write("pump-x", "desired", "speed_rpm", 1200)
    lines = [b'{"schema": "twinflow.twin_update", "version": 9}', encode_update(good), b"not json"]
    try:
        wait_until("central connected", lambda: central.link.connected)
        raw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{base}-raw")
        raw.connect(broker.host, broker.port)
        raw.loop_start()
        # one message of three documents (JSON Lines), as a link sends a backlog
        raw.publish(f"{base}/up/edge-x", b"\n".join(lines), qos=1).wait_for_publish(5)
        raw.disconnect()
        raw.loop_stop()
        wait_until("two dead letters", lambda: len(central.link.dead_letters) == 2)
    finally:
        central.link.stop()
        central.outbox.close()
    reasons = [r for _, r in central.link.dead_letters]
    assert "version 9" in reasons[0] and "not JSON" in reasons[1]
    assert central.replica.values() == {("pump-x", "desired", "speed_rpm"): 1200}
    # the good one is relayed to the edges: sent, or still in the outbox when the link stopped
    assert central.outbox.pending + central.link.counts["sent"] == 1


def test_every_replica_converges_after_the_broker_was_down(tmp_path: Path) -> None:
    try:
        broker = Mosquitto(data_dir=tmp_path / "broker").start()
    except MosquittoMissing as e:
        pytest.fail(str(e), pytrace=False)
    base = f"tf-{uuid.uuid4().hex[:8]}"
    sites = {n: Site(broker, tmp_path, n, base) for n in ("central", "edge-a", "edge-b")}
    made: list[Write] = []
    try:
        for s in sites.values():
            s.link.start()
        wait_until("three connected links", lambda: all(s.link.connected for s in sites.values()))
        made.append(sites["edge-a"].link.write("pump-c", "reported", "speed_rpm", 700))
        wait_until(
            "edge-b sees edge-a's write",
            lambda: sites["edge-b"].replica.get("pump-c", "reported", "speed_rpm") is not None,
        )
        broker.stop()
        wait_until("every link down", lambda: not any(s.link.connected for s in sites.values()))
        # all three set pump-c's desired speed without seeing the others; edges keep reporting
        choices = [
            s.link.write("pump-c", "desired", "speed_rpm", 800 + i)
            for i, s in enumerate(sites.values())
        ]
        made += choices
        for i in range(50):
            made.append(sites["edge-a"].link.write("pump-c", "reported", "temp_c", i))
            made.append(sites["edge-b"].link.write("pump-d", "reported", "temp_c", i))
        broker.start()
        reference = TwinReplica("reference")
        for w in made:
            reference.apply(w)
        wait_until(
            "every replica equal to the reference",
            lambda: all(s.replica.registers() == reference.registers() for s in sites.values()),
        )
    finally:
        for s in sites.values():
            s.link.stop()
            s.outbox.close()
        broker.close()
    winner, *losers = sorted(choices, key=Write.order, reverse=True)
    for s in sites.values():
        assert s.replica.get("pump-c", "desired", "speed_rpm") == winner
        conflicts = s.replica.conflicts("pump-c")
        assert [(c.winner, c.loser) for c in conflicts] == [(winner, x) for x in losers]
