"""Telemetry buckets over a real mosquitto: an edge's full outbox, the central relay.

An edge forwards downsampled telemetry buckets and its twin's state while its link is cut,
into an outbox far too small for them: compaction merges the state writes and keeps every
bucket until the cap forces drops, which take the oldest buckets and are counted. Once the
link is back, the central replica receives each bucket that was kept, once, and relays the
state to the other edge but no bucket. Every wait is bounded.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from tests.services.mosquitto import Mosquitto, running_broker
from tests.services.waiting import wait_until
from twinflow.connectors.bindings import MqttSettings
from twinflow.connectors.replication import DiskOutbox
from twinflow.connectors.replication.forward import FORWARDS
from twinflow.connectors.replication.mqtt_link import MqttLink, central_topics, edge_topics
from twinflow.connectors.replication.node import Received, ReplicationNode
from twinflow.core.records import Quality, SignalState, SyncStatus, TwinState
from twinflow.core.times import utc
from twinflow.operators.replication import TwinReplica
from twinflow.operators.replication.downsample import TelemetryBucket

pytestmark = [pytest.mark.services, pytest.mark.timeout(120)]

T0 = 1_767_225_600.0
BUCKETS = 120


@pytest.fixture(scope="module")
def broker() -> Iterator[Mosquitto]:
    yield from running_broker()


def node(broker: Mosquitto, base: str, name: str, box: DiskOutbox) -> ReplicationNode:
    central = name == "central"
    settings = MqttSettings(
        host=broker.host, port=broker.port, client_id=f"{base}-{name}",
        reconnect_min_s=0.05, reconnect_max_s=0.5,
    )  # fmt: skip
    topics = central_topics(base) if central else edge_topics(base, name)
    link = MqttLink(TwinReplica(name), box, settings, *topics, relay=central)
    return ReplicationNode(
        link, "central" if central else "edge", owned={} if central else {"P1": "pump"},
        forward=(*FORWARDS, "telemetry"), telemetry_every_s=10.0,
    )  # fmt: skip


def state(k: int) -> TwinState:
    at = T0 + 10 * k
    signal = {"flow_m3h": SignalState(float(k), at, Quality.GOOD)}
    return TwinState("P1", "pump", utc(at), SyncStatus.SYNCHRONIZED, signal)


def bucket(k: int) -> TelemetryBucket:
    return TelemetryBucket("P1", "pump", T0 + 10 * k, 10.0, {"flow_m3h": k + 4.5}, {"flow_m3h": 10})


def dropped_metric(replica: str) -> float:
    value = REGISTRY.get_sample_value(
        "twinflow_replication_outbox_dropped_total", {"replica": replica}
    )
    return value or 0.0


def test_a_full_outbox_keeps_the_newest_buckets_and_central_relays_none(
    broker: Mosquitto, tmp_path: Path
) -> None:
    base = f"tel-{uuid.uuid4().hex[:8]}"
    central = node(broker, base, "central", DiskOutbox(tmp_path / "central"))
    south = node(broker, base, "south", DiskOutbox(tmp_path / "south"))
    box = DiskOutbox(tmp_path / "north", segment_bytes=4096, max_bytes=16 * 1024)
    north = node(broker, base, "north", box)
    central.feeds.watch_telemetry()
    nodes = (central, south, north)
    try:
        for n in nodes:
            n.start()
        wait_until("every link connected", lambda: all(n.link.connected for n in nodes))
        north.link.cut()  # type: ignore[attr-defined]
        wait_until("north sees its link down", lambda: not north.link.connected)
        for k in range(BUCKETS):  # about 300 bytes a bucket: far more than 16 KiB
            assert north.forward(state(k)) == 1
            assert north.forward(bucket(k)) == 1
        assert box.compactions >= 1 and box.dropped > 0
        assert dropped_metric("north") == box.dropped  # every loss is counted and exported
        kept = BUCKETS - box.dropped  # only buckets were dropped: the state compacts
        assert sum(e.append_only for e in box.peek(10_000)) == kept

        north.link.restore()  # type: ignore[attr-defined]
        got: list[Received] = []

        def central_has_all() -> bool:
            got.extend(central.take_received())
            return sum(r.write.key.name == "telemetry" for r in got) >= kept and any(
                r.write.key.name == "state" for r in got
            )

        wait_until("central receives every kept bucket and the state", central_has_all)

        def south_has_state() -> bool:
            doc = south.replica.get("P1", "metadata", "state")
            return doc is not None and doc.value["signals"]["flow_m3h"] == BUCKETS - 1

        wait_until("south receives north's newest state through central", south_has_state)
        wait_until("north's outbox drained", lambda: box.pending == 0)
        wait_until("central's outbox drained", lambda: central.link.outbox.pending == 0)
    finally:
        for n in nodes:
            n.stop()
    got.extend(central.take_received())
    buckets = [r for r in got if r.write.key.name == "telemetry"]
    ids = {r.write.stamp.text() for r in buckets}
    assert len(buckets) == len(ids) == kept  # each kept bucket once
    frames = central.feeds.take_telemetry(10_000)
    starts = [f.times[0] for f in frames]
    assert starts == [T0 + 10 * k for k in range(BUCKETS - kept, BUCKETS)]  # the newest
    # the other edge got north's state through central, and no bucket
    assert south.replica.get("P1", "metadata", "telemetry") is None
    assert not [r for r in south.take_received() if r.write.key.name == "telemetry"]
    assert central.link.counts["sent"] < north.link.counts["sent"]  # the buckets stayed
