"""Edge and central roles over a real mosquitto: forwarding, desired changes, sync status.

Three :class:`ReplicationNode`\\ s (two edges, each owning one pump, and the central one)
linked through one broker on a free loopback port. What a flow's steps would call is called
directly: ``forward`` for the records an edge forwards, ``desire`` for a desired change made
at a replica, ``take_desired`` for what an edge's command loop receives. Every wait is
bounded.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

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
from twinflow.core.records import (
    Command,
    CommandStatus,
    DesiredChange,
    PropertyState,
    Quality,
    SignalState,
    SyncStatus,
    TwinState,
)
from twinflow.core.times import utc
from twinflow.operators.command_book import desired_command_id
from twinflow.operators.replication import TwinReplica, Write
from twinflow.operators.replication.status import SyncState

pytestmark = pytest.mark.services

OWNED = {"edge-a": {"pump-a": "pump"}, "edge-b": {"pump-b": "pump"}, "central": {}}


@pytest.fixture(scope="module")
def broker() -> Iterator[Mosquitto]:
    yield from running_broker()


def mqtt_link(broker: Mosquitto, base: str, name: str, box: DiskOutbox) -> MqttLink:
    central = name == "central"
    settings = MqttSettings(
        host=broker.host,
        port=broker.port,
        client_id=f"{base}-{name}",
        reconnect_min_s=0.05,
        reconnect_max_s=0.5,
    )
    topics = central_topics(base) if central else edge_topics(base, name)
    return MqttLink(TwinReplica(name), box, settings, *topics, relay=central)


def kafka_link(broker: KafkaBroker, base: str, name: str, box: DiskOutbox) -> KafkaLink:
    central = name == "central"
    if central:
        for topic in kafka_topics(base, central=True):
            create_topic(broker.bootstrap, topic, partitions=2)
    produce, consume = kafka_topics(base, central)
    return KafkaLink(
        TwinReplica(name), box, broker.bootstrap, produce, consume, f"{base}-{name}",
        relay=central, delivery_timeout_s=5.0,
    )  # fmt: skip


class Nodes:
    """The three nodes; every write any of them makes is also kept, for a reference run."""

    def __init__(self, broker: Mosquitto | KafkaBroker, folder: Path) -> None:
        base = f"roles-{uuid.uuid4().hex[:8]}"
        self.writes: list[Write] = []
        self.by_name: dict[str, ReplicationNode] = {}
        self.links: dict[str, Any] = {}
        for name in ("central", "edge-a", "edge-b"):
            central = name == "central"
            box = DiskOutbox(folder / name, segment_bytes=64 * 1024)
            link: ReplicaLink
            if isinstance(broker, Mosquitto):
                link = mqtt_link(broker, base, name, box)
            else:
                link = kafka_link(broker, base, name, box)
            self._keep_writes(link)
            self.links[name] = link
            self.by_name[name] = ReplicationNode(
                link,
                "central" if central else "edge",
                owned=OWNED[name],
                consistency=lambda _t, p: "strong" if p == "flow_setpoint" else "eventual",
                forward=("twin_state", "windows", "alerts", "command_outcomes"),
            )

    def _keep_writes(self, link: ReplicaLink) -> None:
        write = link.write

        def kept(twin_id: str, kind: str, name: str, value: object) -> Write:
            w = write(twin_id, kind, name, value)
            self.writes.append(w)
            return w

        link.write = kept  # type: ignore[method-assign]

    def __getitem__(self, name: str) -> ReplicationNode:
        return self.by_name[name]

    def start(self) -> Nodes:
        for n in self.by_name.values():
            n.start()
        wait_until("every link connected", lambda: all(x.connected for x in self.links.values()))
        return self

    def stop(self) -> None:
        for n in self.by_name.values():
            n.stop()

    def converged(self) -> bool:
        states = [n.replica.registers() for n in self.by_name.values()]
        return all(s == states[0] for s in states[1:]) and len(states[0]) > 0


@pytest.fixture
def nodes(broker: Mosquitto, tmp_path: Path) -> Iterator[Nodes]:
    n = Nodes(broker, tmp_path).start()
    yield n
    n.stop()


def change(twin: str, prop: str, value: float, source: str = "request") -> DesiredChange:
    at = utc(time.time())
    rid = f"req-{uuid.uuid4().hex[:6]}"
    return DesiredChange(twin, "pump", prop, value, at, rid, at + timedelta(minutes=5), source)


def answered(twin: str, got: DesiredChange, status: CommandStatus) -> Command:
    """The command an edge's command loop made of ``got``, in state ``status``."""
    at = utc(time.time())
    cid = desired_command_id(twin, got.prop, got.request_id)
    return Command(
        cid,
        twin,
        "pump",
        "set_flow",
        {"m3h": got.value},
        at,
        at + timedelta(minutes=5),
        f"desired:{got.prop}={got.value:g} ({got.request_id})",
        status,
        origin="desired",
    )


def sync_of(node: ReplicationNode, twin: str, prop: str) -> SyncState | None:
    for s in node.sync_status():
        if (s.twin_id, s.kind, s.prop) == (twin, "desired", prop):
            return s.state
    return None


@pytest.fixture(scope="module")
def kafka() -> Iterator[KafkaBroker]:
    try:
        b = KafkaBroker(local=True).start()
    except KafkaUnavailable as e:
        pytest.fail(str(e), pytrace=False)
    yield b
    b.stop()


@pytest.fixture(params=["mqtt", "kafka"])
def linked(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Nodes]:
    """The three nodes over mosquitto, then over Kafka (Tansu)."""
    name = "broker" if request.param == "mqtt" else "kafka"
    n = Nodes(request.getfixturevalue(name), tmp_path).start()
    yield n
    n.stop()


def test_a_strong_central_change_waits_for_the_owning_edge_and_is_handed_over_once(
    linked: Nodes,
) -> None:
    nodes = linked
    central, a, b = nodes["central"], nodes["edge-a"], nodes["edge-b"]
    w = central.desire(change("pump-a", "flow_setpoint", 150.0))
    assert w is not None
    got: list[DesiredChange] = []
    wait_until("edge-a receives the change", lambda: bool(got.extend(a.take_desired()) or got))
    assert [(c.twin_id, c.prop, c.value, c.source) for c in got] == [
        ("pump-a", "flow_setpoint", 150.0, "replication")
    ]
    wait_until(
        "edge-b has the write too",
        lambda: b.replica.get("pump-a", "desired", "flow_setpoint") is not None,
    )
    assert b.take_desired() == []  # not its twin: edge-b issues nothing
    assert sync_of(central, "pump-a", "flow_setpoint") is SyncState.PENDING  # strong: not yet

    a.forward(answered("pump-a", got[0], CommandStatus.QUEUED))  # not an answer yet
    a.forward(answered("pump-a", got[0], CommandStatus.SUCCEEDED))
    wait_until(
        "the central change is in sync",
        lambda: sync_of(central, "pump-a", "flow_setpoint") is SyncState.IN_SYNC,
    )
    time.sleep(0.3)
    assert a.take_desired() == []  # handed over once, however often it was merged
    wait_until("all converge", nodes.converged)


def test_an_edge_forwards_twin_state_changes_and_central_stores_each_once(nodes: Nodes) -> None:
    central, a = nodes["central"], nodes["edge-a"]

    def state(value: float, reported: float) -> TwinState:
        return TwinState(
            "pump-a",
            "pump",
            utc(1_767_225_600 + value),
            SyncStatus.SYNCHRONIZED,
            {"flow_m3h": SignalState(value, 1_767_225_600 + value, Quality.GOOD)},
            properties={"flow_setpoint": PropertyState(reported=reported)},
        )

    assert a.forward(state(10.0, 120.0)) == 2  # reported flow_setpoint + metadata/state
    assert a.forward(state(10.0, 120.0)) == 0  # nothing changed: nothing sent
    assert a.forward(state(11.0, 120.0)) == 1  # only the state changed
    received: list[str] = []

    def three() -> bool:
        received.extend(f"{r.write.key.kind}/{r.write.key.name}" for r in central.take_received())
        return len(received) >= 3

    wait_until("central receives the three writes", three)
    time.sleep(0.3)
    received.extend(f"{r.write.key.kind}/{r.write.key.name}" for r in central.take_received())
    assert sorted(received) == ["metadata/state", "metadata/state", "reported/flow_setpoint"]
    assert central.replica.twin("pump-a")["reported"] == {"flow_setpoint": 120.0}


def test_a_late_sent_row_does_not_overwrite_a_forwarded_end_state(nodes: Nodes) -> None:
    """In a cluster the command book may output a command's ``sent`` after its end state
    (a history row); the edge forwards the furthest status only."""
    central, a = nodes["central"], nodes["edge-a"]
    got = change("pump-a", "flow_setpoint", 130.0)
    for status in (CommandStatus.QUEUED, CommandStatus.SUCCEEDED):
        assert a.forward(answered("pump-a", got, status)) >= 1
    assert a.forward(answered("pump-a", got, CommandStatus.SENT)) == 0  # learnt late
    assert a.forward(answered("pump-a", got, CommandStatus.SUCCEEDED)) == 0  # replayed

    def ended() -> bool:
        central.take_received()
        doc = central.replica.twin("pump-a").get("metadata", {}).get("command:set_flow")
        return isinstance(doc, dict) and doc["status"] == "succeeded"

    wait_until("central holds the command's end state", ended)


@pytest.mark.parametrize("edge_last", [True, False])
def test_a_cut_link_with_changes_on_both_sides_converges_as_an_uncut_run(
    nodes: Nodes, edge_last: bool
) -> None:
    central, a, b = nodes["central"], nodes["edge-a"], nodes["edge-b"]
    nodes.links["edge-a"].cut()
    wait_until("edge-a sees its link down", lambda: not nodes.links["edge-a"].connected)
    first, second = (central, a) if edge_last else (a, central)
    first.desire(change("pump-a", "flow_setpoint", 160.0))
    time.sleep(0.01)
    second.desire(change("pump-a", "flow_setpoint", 170.0))  # concurrent: neither saw the other
    b.desire(change("pump-b", "flow_setpoint", 90.0))
    a.desire(change("pump-a", "speed_limit", 0.8))  # edge-a's own, while cut
    statuses = {s.prop: s.state for s in a.sync_status() if s.twin_id == "pump-a"}
    assert statuses["speed_limit"] is SyncState.LINK_DOWN
    time.sleep(1.0)  # the link stays cut for a while
    nodes.links["edge-a"].restore()
    wait_until("every replica converges", nodes.converged)

    # The same state as a replica that got every write once, in any order, with no cut.
    reference = TwinReplica("reference", now_ms=lambda: 2**52)
    for w in reversed(nodes.writes):
        reference.apply(w)
    assert central.replica.registers() == reference.registers()
    assert central.replica.twin("pump-a")["desired"]["flow_setpoint"] == 170.0  # the later
    lost = [c.loser.value for c in central.replica.conflicts("pump-a")]
    assert lost == [160.0]  # the earlier concurrent write is the conflict, on every replica
    assert [c.loser.value for c in a.replica.conflicts("pump-a")] == [160.0]
    # The owning edge issues a command for the winner only, and only if it came from central.
    handed = [(c.prop, c.value) for c in a.take_desired()]
    assert handed == ([] if edge_last else [("flow_setpoint", 170.0)])
    assert b.take_desired() == []  # pump-b's change was made at edge-b itself
    # Central stored every write once: no update id twice among those new to it.
    ids = [r.write.stamp.text() + str(r.write.key) for r in central.take_received()]
    assert len(ids) == len(set(ids))
