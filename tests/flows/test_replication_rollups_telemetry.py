"""Raw telemetry forwarded downsampled, edge flow -> central flow over a real mosquitto.

The edge is a telemetry flow (``build_flow``) with ``telemetry`` forwarded every 10 s; its
link is cut while the flow runs, so every bucket waits in the outbox, and restored after.
Its outbox is small: state writes made during the cut overflow it, and its compaction keeps
every bucket. The central instance is a ``twinflow run`` flow: each bucket lands once in its
telemetry files, one row per twin and bucket (each signal's mean over the bucket), whatever
the cut; a second edge node receives the first edge's state through it, and no bucket.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from bytewax.testing import TestingSource, run_main

from tests.services.mosquitto import Mosquitto, free_port
from tests.services.waiting import came_true
from twinflow.connectors.bindings import MqttSettings
from twinflow.connectors.files import read_jsonl, read_parquet_dir
from twinflow.connectors.replication import DiskOutbox
from twinflow.connectors.replication.forward import FORWARDS
from twinflow.connectors.replication.mqtt_link import MqttLink, edge_topics
from twinflow.connectors.replication.node import ReplicationNode
from twinflow.core.records import TelemetryFrame
from twinflow.flows.config import FlowConfig
from twinflow.flows.deploy import load_deployment
from twinflow.flows.replication import Replication, running, stop_nodes
from twinflow.flows.run import deployment_flow
from twinflow.flows.telemetry import FlowOutputs, build_flow
from twinflow.operators.replication import TwinReplica

pytestmark = [pytest.mark.services, pytest.mark.timeout(180)]

EVERY_S = 10.0
SECONDS = 60  # readings at 1 Hz: buckets 0..5 close, the one at 60 s stays open


@pytest.fixture(scope="module")
def mqtt() -> Iterator[Mosquitto]:
    with Mosquitto() as broker:
        yield broker


def frames(t0: float) -> list[TelemetryFrame]:
    """Pump P1 at 1 Hz, ten readings a frame, flow = the second; one reading at 60 s."""
    out = []
    for start in range(0, SECONDS + 1, 10):
        secs = [s for s in range(start, min(start + 10, SECONDS + 1))]
        flow = np.array([float(s) for s in secs])
        out.append(
            TelemetryFrame("P1", "pump", t0 + np.array(secs, dtype=float), {"flow_m3h": flow})
        )
    return out


def test_downsampled_telemetry_crosses_a_cut_link_once(tmp_path: Path, mqtt: Mosquitto) -> None:
    base = f"tel-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "central.yaml"
    path.write_text(f"""
version: 1
site: hq
services:
  mqtt: {{url: "mqtt://127.0.0.1:{mqtt.port}", client_id: "central-{free_port()}"}}
twins:
  - {{id: P1, type: pump, protocol: replay}}
replication: {{role: central, replica: hq, topic: {base}, status_interval_s: 0.5}}
""")
    stop = threading.Event()
    out = tmp_path / "out"
    central_flow = deployment_flow(
        load_deployment(path, env={}), out, limits={"replication": {"until": stop.is_set}}
    )
    (central,) = running()
    runner = threading.Thread(target=run_main, args=(central_flow,), daemon=True)
    runner.start()

    settings = MqttSettings(
        host=mqtt.host, port=mqtt.port, client_id=f"{base}-north",
        reconnect_min_s=0.05, reconnect_max_s=0.5,
    )  # fmt: skip
    box = DiskOutbox(tmp_path / "north", segment_bytes=4096, max_bytes=16 * 1024)
    link = MqttLink(TwinReplica("north"), box, settings, *edge_topics(base, "north"))
    edge = ReplicationNode(
        link, "edge", owned={"P1": "pump"}, forward=(*FORWARDS, "telemetry"),
        telemetry_every_s=EVERY_S,
    )  # fmt: skip
    south_settings = replace(settings, client_id=f"{base}-south")
    south_link = MqttLink(
        TwinReplica("south"), DiskOutbox(tmp_path / "south"), south_settings,
        *edge_topics(base, "south"),
    )  # fmt: skip
    south = ReplicationNode(south_link, "edge", owned={"P2": "pump"})
    edge_done = threading.Event()
    try:
        assert came_true(lambda: central.link.connected, 30)
        edge.start()
        south.start()
        assert came_true(lambda: link.connected and south_link.connected, 30)
        link.cut()  # the whole edge run happens while the link is down
        t0 = math.floor((time.time() - 300) / EVERY_S) * EVERY_S
        edge_flow = build_flow(
            TestingSource(frames(t0)),
            FlowOutputs(dead_letters=None, alerts=None, commands=None),
            FlowConfig(out_dir=str(tmp_path / "edge-out")),
            twins={"P1": "pump"},
            replication=Replication(edge, until=edge_done.is_set),
        )
        edge_runner = threading.Thread(target=run_main, args=(edge_flow,), daemon=True)
        edge_runner.start()

        def waiting_buckets() -> int:
            return sum(e.append_only for e in box.peek(10_000))

        assert came_true(lambda: waiting_buckets() >= 6, 30), box.pending
        for i in range(100):  # about 40 KiB of one state register: over the outbox's cap
            link.write("P3", "metadata", "state", {"status": "ok", "n": i, "pad": "x" * 300})
        assert box.compactions >= 1 and box.dropped == 0
        assert waiting_buckets() == 6  # no bucket merged away
        time.sleep(1.0)
        assert not any(
            d["property"] == "telemetry" for d in read_jsonl(out / "replicated.jsonl")
        ) if (out / "replicated.jsonl").exists() else True  # fmt: skip
        link.restore()
        assert came_true(lambda: link.outbox.pending == 0, 30)
        stored = out / "replicated.jsonl"

        def received() -> list[dict[str, object]]:
            if not stored.exists():
                return []
            return [d for d in read_jsonl(stored) if d["property"] == "telemetry"]

        assert came_true(lambda: len(received()) >= 6, 30), received()

        def south_has_newest() -> bool:
            w = south.replica.get("P3", "metadata", "state")
            return w is not None and w.value["n"] == 99

        assert came_true(south_has_newest, 30)  # relayed after every bucket reached central
        time.sleep(1.0)  # anything more (a duplicate) would arrive now
        edge_done.set()
        edge_runner.join(timeout=60)
    finally:
        edge_done.set()
        stop.set()
        runner.join(timeout=60)
        edge.stop()
        south.stop()
        stop_nodes()
    assert not runner.is_alive()
    assert south.replica.get("P1", "metadata", "telemetry") is None  # central relayed none
    assert not [r for r in south.take_received() if r.write.key.name == "telemetry"]
    docs = received()
    assert len(docs) == len({d["update_id"] for d in docs}) == 6  # each bucket once
    rows = read_parquet_dir(out / "telemetry").sort("time")
    assert rows["twin_id"].to_list() == ["P1"] * 6
    starts = [t.timestamp() for t in rows["time"].to_list()]
    assert starts == [t0 + 10 * k for k in range(6)]
    # each bucket's mean: the seconds s..s+9 average to s + 4.5
    assert rows["flow_m3h"].to_list() == [10 * k + 4.5 for k in range(6)]


def test_the_section_names_telemetry_its_bucket_and_the_silence_limit(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("""
version: 1
site: north
services:
  mqtt: {url: "mqtt://127.0.0.1:1883", client_id: edge}
twins:
  - {id: P1, type: pump, protocol: mqtt}
replication:
  role: edge
  forward: [alerts, telemetry]
  telemetry_every_s: 30s
  site_silent_s: 2m
""")
    settings = load_deployment(path, env={}).replication
    assert settings is not None
    assert settings.forward == ("alerts", "telemetry")
    assert (settings.telemetry_every_s, settings.site_silent_s) == (30.0, 120.0)
    assert "telemetry" not in FORWARDS  # the default forward list leaves it out
