"""Replica state on disk and state transfer, over a real mosquitto.

A replica's snapshot survives a stop (saved at stop, loaded at start); a central replica that
restarts empty (its disk and broker session lost) asks the edges for their state and
converges to what it held, receiving each edge's kept writes rather than every write the
edges ever made; a finite run's end (:meth:`ReplicationNode.settled`) waits for the outbox.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.services.kafka import KafkaBroker, KafkaUnavailable, create_topic
from tests.services.mosquitto import Mosquitto, running_broker
from tests.services.waiting import wait_until
from twinflow.connectors.bindings import MqttSettings
from twinflow.connectors.replication import DiskOutbox
from twinflow.connectors.replication.kafka_link import KafkaLink, kafka_topics
from twinflow.connectors.replication.link import ReplicaLink
from twinflow.connectors.replication.mqtt_link import MqttLink, central_topics, edge_topics
from twinflow.connectors.replication.node import ReplicationNode
from twinflow.connectors.replication.state import (
    answers,
    is_control,
    load_state,
    save_state,
    state_request,
)
from twinflow.core.records import DesiredChange
from twinflow.core.times import utc
from twinflow.operators.replication import TwinReplica
from twinflow.operators.replication.replica import converge

ROUNDS = 40  # writes per property and edge: the history a state transfer must not resend
PROPS = ("speed_rpm", "flow_setpoint", "mode")


def test_snapshot_round_trip_keeps_registers_and_moves_the_clock(tmp_path: Path) -> None:
    a = TwinReplica("edge-a", now_ms=lambda: 10_000)
    b = TwinReplica("central", now_ms=lambda: 10_001)
    for i in range(6):
        a.write("pump-1", "desired", "speed_rpm", 1000 + i)
    b.write("pump-1", "desired", "speed_rpm", 900)  # concurrent: a conflict in the history
    a.merge(b)
    path = tmp_path / "state.jsonl"
    assert save_state(a.writes(), path) == sum(len(w) for w in a.registers().values())
    back = TwinReplica("edge-a", now_ms=lambda: 0)  # a clock far behind the saved stamps
    assert load_state(back, path) > 0
    assert converge([a, back]) and back.conflicts() == a.conflicts()
    newest = max(w.stamp for w in a.writes())
    assert back.write("pump-1", "desired", "speed_rpm", 1).stamp > newest
    assert load_state(TwinReplica("x"), tmp_path / "none.jsonl") == 0
    # A torn line is skipped; so is a write too far ahead of a clock that went back.
    path.write_bytes(path.read_bytes() + b'{"schema": "twinflow.twin_update", "ver')
    assert load_state(TwinReplica("edge-a"), path) == len(list(a.writes()))
    behind = TwinReplica("edge-a", now_ms=lambda: 0, max_drift_ms=1_000)  # 10 s behind
    assert load_state(behind, path) == 0 and not behind.registers()


def test_a_held_causal_write_is_saved_and_held_again_when_loaded(tmp_path: Path) -> None:
    def causal(key: object) -> bool:
        return getattr(key, "kind", None) == "desired"

    central = TwinReplica("central", now_ms=lambda: 10_000, causal=causal)
    mode = central.write("pump-1", "desired", "mode", "manual")
    speed = central.write("pump-1", "desired", "speed", 900)
    edge = TwinReplica("edge-a", now_ms=lambda: 10_000)
    edge.apply(speed)  # held: its dependency (mode) has not arrived
    path = tmp_path / "state.jsonl"
    assert save_state(edge.writes(), path) == 1
    back = TwinReplica("edge-a", now_ms=lambda: 10_000)
    assert load_state(back, path) == 1
    assert [h.write for h in back.held()] == [speed] and back.registers() == {}
    assert back.take_released() == []  # nothing let go by the load itself
    back.apply(mode)
    assert [w for w, _, _ in back.take_released()] == [speed]
    assert back.twin("pump-1") == {"desired": {"mode": "manual", "speed": 900}}


def test_state_requests_are_answered_by_the_other_role_only() -> None:
    central, edge = TwinReplica("central"), TwinReplica("edge-a")
    from_central = state_request(central, central=True)
    from_edge = state_request(edge, central=False)
    assert is_control(from_central) and not central.registers()  # not kept
    assert answers(from_central, "edge-a", central=False)
    assert not answers(from_central, "central-2", central=True)
    assert answers(from_edge, "central", central=True)
    assert not answers(from_edge, "edge-b", central=False)
    assert not answers(from_edge, "edge-a", central=True)  # never itself


@pytest.fixture(scope="module")
def broker() -> Iterator[Mosquitto]:
    yield from running_broker()


@pytest.fixture(scope="module")
def kafka() -> Iterator[KafkaBroker]:
    try:
        b = KafkaBroker(local=True).start()
    except KafkaUnavailable as e:
        pytest.fail(str(e), pytrace=False)
    yield b
    b.stop()


class Site:
    """A node per replica name over one broker, each with its outbox and snapshot file."""

    def __init__(self, broker: Mosquitto | KafkaBroker, folder: Path) -> None:
        self.broker = broker
        self.folder = folder
        self.base = f"state-{uuid.uuid4().hex[:8]}"
        if isinstance(broker, KafkaBroker):
            for topic in kafka_topics(self.base, central=True):
                create_topic(broker.bootstrap, topic, partitions=2)

    def node(self, name: str, *, session: str = "", disk: str = "") -> ReplicationNode:
        central = name == "central"
        where = self.folder / (disk or name)
        box = DiskOutbox(where / "outbox", segment_bytes=64 * 1024)
        client = f"{self.base}-{name}{session}"
        link: ReplicaLink
        if isinstance(self.broker, KafkaBroker):
            link = KafkaLink(
                TwinReplica(name), box, self.broker.bootstrap,
                *kafka_topics(self.base, central), client, relay=central, delivery_timeout_s=5.0,
            )  # fmt: skip
        else:
            settings = MqttSettings(
                host=self.broker.host,
                port=self.broker.port,
                client_id=client,
                reconnect_min_s=0.05,
                reconnect_max_s=0.5,
            )
            topics = central_topics(self.base) if central else edge_topics(self.base, name)
            link = MqttLink(TwinReplica(name), box, settings, *topics, relay=central)
        return ReplicationNode(
            link,
            "central" if central else "edge",
            state_path=where / "replica-state.jsonl",
            snapshot_interval_s=0.2,
            ask_state=True,
        ).start()


@pytest.mark.services
@pytest.mark.parametrize("transport", ["mqtt", "kafka"])
def test_central_restarted_empty_gets_the_state_not_the_history(
    transport: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    site = Site(request.getfixturevalue("broker" if transport == "mqtt" else "kafka"), tmp_path)
    central = site.node("central")
    edges = [site.node("edge-a"), site.node("edge-b")]
    nodes = [central, *edges]
    if transport == "mqtt":
        wait_until("links up", lambda: all(n.link.connected for n in nodes))
    for i in range(ROUNDS):
        for e in edges:
            for p in PROPS:
                e.link.write(f"pump-{e.replica.replica_id}", "desired", p, i)
    central.link.write("pump-edge-a", "desired", "speed_rpm", -1)  # central's own write
    history = ROUNDS * len(PROPS) * len(edges) + 1
    wait_until("converged", lambda: converge(n.replica for n in nodes), 60)
    before = central.replica.registers()
    central.stop()

    # The central instance lost its disk and its broker session: it starts empty.
    earlier = [e.link.counts["state_sent"] for e in edges]  # answers to its first start

    def answered() -> list[int]:
        return [e.link.counts["state_sent"] - n for e, n in zip(edges, earlier, strict=True)]

    def merged() -> int:
        return sum(fresh.link.counts[o] for o in ("won", "lost", "duplicate", "stale"))

    fresh = site.node("central", session="-2", disk="central-2")
    assert fresh.asked is not None and fresh.loaded == 0
    wait_until("state received", lambda: fresh.replica.registers() == before, 60)
    wait_until("both edges answered", lambda: all(answered()))
    kept = sum(len(w) for w in before.values())
    assert answered() == [kept, kept] and 2 * kept < history  # the kept writes, not all
    if transport == "mqtt":  # a new session gets only what is sent from now on: the answers
        wait_until("every answer merged", lambda: merged() == 2 * kept)
    else:  # a new group also reads what the topic retained: the history is there too
        assert merged() >= history - 1
    assert converge([fresh.replica, *(e.replica for e in edges)])

    # An edge stopped and started again loads its snapshot and asks nothing.
    edges[0].stop()
    again = site.node("edge-a")
    assert again.loaded > 0 and again.asked is None
    assert again.replica.registers() == fresh.replica.registers()
    for n in (fresh, again, edges[1]):
        n.stop()


@pytest.mark.services
def test_settled_waits_for_the_outbox_and_a_quiet_spell(broker: Mosquitto, tmp_path: Path) -> None:
    edge = Site(broker, tmp_path).node("edge-a")  # no central: its state request goes unanswered
    wait_until("the request sent", lambda: edge.link.outbox.pending == 0)
    edge.link.cut()
    at = utc(time.time())
    edge.desire(
        DesiredChange("pump-1", "pump", "speed_rpm", 5.0, at, "r1", at + timedelta(minutes=5))
    )
    assert edge.link.outbox.pending == 1
    assert not edge.settled(quiet_s=0.0)  # the write waits in the outbox
    edge.link.restore()
    wait_until("drained", lambda: edge.link.outbox.pending == 0)
    assert not edge.settled(quiet_s=60.0)  # written moments ago
    assert edge.settled(quiet_s=0.0)
    edge.stop()
