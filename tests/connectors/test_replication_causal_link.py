"""Causal writes over a real mosquitto: held by the central node until their dependency
arrives, pending with what they wait for meanwhile, then exposed, relayed in order, stored.

Edge-a's replica declares its desired properties causal and writes ``mode`` and then
``speed`` (which depends on it) while its link is down. The central link is handed the
``speed`` write first, as a broker that redelivered out of order would; it holds it (not
exposed, not relayed), its sync status says ``pending`` and ``waiting_for`` the ``mode``
write. When edge-a's link comes up, ``mode`` arrives through the broker: ``speed`` is
released, both are relayed to edge-b in causal order (edge-b holds nothing) and handed to
central's flow once each.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services.mosquitto import Mosquitto, running_broker
from tests.services.waiting import wait_until
from twinflow.connectors.bindings import MqttSettings
from twinflow.connectors.replication import DiskOutbox
from twinflow.connectors.replication.mqtt_link import MqttLink, central_topics, edge_topics
from twinflow.connectors.replication.node import ReplicationNode
from twinflow.operators.replication import PropertyKey, TwinReplica
from twinflow.operators.replication.compact import batch, encode_row
from twinflow.operators.replication.replica import converge
from twinflow.operators.replication.status import SyncState

pytestmark = [pytest.mark.services, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def broker() -> Iterator[Mosquitto]:
    yield from running_broker()


def causal(key: PropertyKey) -> bool:
    return key.kind == "desired"


def node(broker: Mosquitto, folder: Path, name: str, base: str, role: str) -> ReplicationNode:
    settings = MqttSettings(
        host=broker.host, port=broker.port, client_id=f"{base}-{name}",
        reconnect_min_s=0.05, reconnect_max_s=0.5,
    )  # fmt: skip
    central = role == "central"
    topics = central_topics(base) if central else edge_topics(base, name)
    replica = TwinReplica(name, causal=causal)
    link = MqttLink(replica, DiskOutbox(folder / name), settings, *topics, relay=central)
    return ReplicationNode(link, role, consistency=lambda _t, _p: "causal")


def test_a_causal_write_waits_centrally_for_its_dependency_then_flows_in_order(
    broker: Mosquitto, tmp_path: Path
) -> None:
    base = f"causal-{uuid.uuid4().hex[:8]}"
    central = node(broker, tmp_path, "central", base, "central").start()
    edge_b = node(broker, tmp_path, "edge-b", base, "edge").start()
    edge_a = node(broker, tmp_path, "edge-a", base, "edge")  # not started: its link is down
    order: list[str] = []
    inner = edge_b.link.on_applied

    def seen(w: object, outcome: object) -> None:
        if inner is not None:
            inner(w, outcome)  # type: ignore[arg-type]
        order.append(f"{w.key.name}:{outcome.value}")  # type: ignore[attr-defined]

    edge_b.link.on_applied = seen
    try:
        wait_until("central and edge-b connected", lambda: central.link.connected, 30)
        wait_until("edge-b connected", lambda: edge_b.link.connected, 30)
        mode = edge_a.link.write("pump-1", "desired", "mode", "manual")
        speed = edge_a.link.write("pump-1", "desired", "speed", 900)
        assert speed.deps == (("mode", mode.stamp),)
        central.link._receive_payload(batch([encode_row(speed)]))  # ahead of its dependency
        assert central.replica.get("pump-1", "desired", "speed") is None
        [status] = central.sync_status()
        assert (status.prop, status.state, status.consistency) == (
            "speed", SyncState.PENDING, "causal"
        )  # fmt: skip
        assert status.waiting_for == f"desired/mode@{mode.stamp.text()}"
        assert central.take_received() == [] and central.link.counts["held"] == 1
        edge_a.start()
        wait_until(
            "edge-b has both writes",
            lambda: edge_b.replica.get("pump-1", "desired", "speed") is not None,
            30,
        )
        assert order == ["mode:won", "speed:won"] and edge_b.link.counts["held"] == 0
        assert central.link.counts["released"] == 1 and central.link.counts["forced"] == 0
        assert central.link.counts["duplicate"] == 1  # the broker's copy of the held write
        assert [r.write for r in central.take_received()] == [mode, speed]
        states = {s.prop: (s.state, s.waiting_for) for s in central.sync_status()}
        assert states == {"mode": (SyncState.IN_SYNC, None), "speed": (SyncState.IN_SYNC, None)}
        wait_until(
            "every replica converged",
            lambda: converge([central.replica, edge_a.replica, edge_b.replica]),
            30,
        )
    finally:
        for n in (edge_a, edge_b, central):
            n.stop()
