"""An edge `twinflow run` flow and a central replica over a real mosquitto.

The edge is the flow of a deployment with ``replication: {role: edge}``: the simulated plant
serves its wind turbine over MQTT, and the flow forwards the twin's state, windows, alerts and
command outcomes. The central replica is a :class:`ReplicationNode` in the test (what the
central flow's node does). A desired change made centrally with strong consistency reaches
the edge, becomes one command of its command loop, reaches the simulated device, and is in
sync centrally only once the edge's answer came back; while central is away for a few
seconds the edge's flow goes on, and central gets each of its writes once when it returns.
A second test runs a central ``twinflow run`` process, which stores what an edge node
forwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from bytewax.testing import run_main

from tests.flows.test_run_deployment import SimulatorThread
from tests.services.mosquitto import Mosquitto, free_port
from tests.services.waiting import came_true
from twinflow.connectors.bindings import MqttSettings
from twinflow.connectors.files import read_jsonl
from twinflow.connectors.replication import DiskOutbox
from twinflow.connectors.replication.mqtt_link import MqttLink, central_topics, edge_topics
from twinflow.connectors.replication.node import ReplicationNode
from twinflow.core.records import DesiredChange
from twinflow.core.times import utc
from twinflow.flows.deploy import load_deployment
from twinflow.flows.replication import running, stop_nodes
from twinflow.flows.run import deployment_flow
from twinflow.operators.replication import Applied, TwinReplica, Write
from twinflow.operators.replication.status import SyncState
from twinflow.operators.replication.update import update_id

pytestmark = [pytest.mark.services, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def mqtt() -> Iterator[Mosquitto]:
    with Mosquitto() as broker:
        yield broker


def node(mqtt: Mosquitto, folder: Path, name: str, base: str, role: str) -> ReplicationNode:
    settings = MqttSettings(
        host=mqtt.host,
        port=mqtt.port,
        client_id=f"{base}-{name}",
        reconnect_min_s=0.05,
        reconnect_max_s=0.5,
    )
    central = role == "central"
    topics = central_topics(base) if central else edge_topics(base, name)
    link = MqttLink(TwinReplica(name), DiskOutbox(folder / name), settings, *topics, relay=central)
    return ReplicationNode(
        link,
        role,
        owned={} if central else {"wt-001": "wind_turbine"},
        consistency=lambda _t, _p: "strong",
        forward=("twin_state", "alerts", "command_outcomes"),
    )


def test_a_strong_central_change_is_carried_out_by_the_edge_flow_once(
    tmp_path: Path, mqtt: Mosquitto
) -> None:
    base = f"rep-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "edge.yaml"
    path.write_text(f"""
version: 1
site: north
services:
  mqtt: {{url: "mqtt://127.0.0.1:{mqtt.port}", client_id: "edge-{free_port()}"}}
simulator: {{twins: 1, seed: 7, speed: 10, duration: 2h}}
flow: {{max_future_s: 864000, command_timeout_s: 10}}
twins:
  - {{id: wt-001, type: wind_turbine, protocol: mqtt}}
replication: {{role: edge, replica: edge-a, topic: {base}, status_interval_s: 0.5}}
""")
    dep = load_deployment(path, env={})
    central = node(mqtt, tmp_path, "central", base, "central").start()
    central_link = central.link
    assert isinstance(central_link, MqttLink)
    assert came_true(lambda: central_link.connected, 30)  # subscribed before the edge writes
    sim = SimulatorThread(dep)
    stop = threading.Event()
    out = tmp_path / "out"
    flow = deployment_flow(
        dep,
        out,
        limits={
            "mqtt": {"idle_timeout_s": 8.0},
            "feedback": {"until": stop.is_set},
            "replication": {"until": stop.is_set},
        },
    )
    (edge,) = running()
    made: list[Write] = []  # every write the edge makes
    write = edge.link.write

    def kept(twin_id: str, kind: str, name: str, value: object) -> Write:
        w = write(twin_id, kind, name, value)
        made.append(w)
        return w

    edge.link.write = kept  # type: ignore[method-assign]
    got: list[Write] = []
    inner = central.link.on_applied

    def arrived(w: Write, outcome: Applied) -> None:
        if inner is not None:
            inner(w, outcome)
        if outcome in (Applied.WON, Applied.LOST):
            got.append(w)

    central.link.on_applied = arrived
    sim.start()
    assert sim.up.wait(30) and sim.plant is not None, sim.error
    result: dict[str, object] = {}

    def drive() -> None:
        try:
            state = ("wt-001", "metadata", "state")
            result["forwarded"] = came_true(lambda: central.replica.get(*state) is not None, 60)
            # The central side is away for a while: the edge's flow goes on, its writes wait.
            central_link.cut()
            before = len(made)
            # a state or window is due every 300 s of plant time: 30 s of wall clock at 10x
            came_true(lambda: len(made) > before, 90)
            time.sleep(0.5)
            result["wrote_while_cut"] = len(made) - before
            central_link.restore()
            result["reconnected"] = came_true(lambda: central_link.connected, 30)
            at = utc(time.time())
            change = DesiredChange(
                "wt-001", "wind_turbine", "power_limit", 1200.0, at, "central-1",
                at + timedelta(minutes=5),
            )  # fmt: skip
            w = central.desire(change)
            assert w is not None
            result["uid"] = update_id(w)

            def in_sync() -> bool:
                got = [s for s in central.sync_status() if s.prop == "power_limit"]
                result["states"] = [s.state for s in got]
                return bool(got) and got[0].state is SyncState.IN_SYNC

            result["pending_first"] = [s.state for s in central.sync_status()] == [
                SyncState.PENDING
            ]
            result["in_sync"] = came_true(in_sync, 90)

            def applied() -> bool:  # the plant applies a command at the twin's next chunk
                log = sim.plant.command_log if sim.plant else []
                return any(r.twin_id == "wt-001" and r.accepted for r in log)

            came_true(applied, 30)
        finally:
            sim.stop_flag.set()
            sim.join(timeout=30)
            stop.set()

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    try:
        run_main(flow)
    finally:
        driver.join(timeout=120)
        stop_nodes()
    try:
        assert sim.error is None, sim.error
        assert result.get("forwarded"), "the edge forwarded no twin state"
        assert result.get("in_sync"), f"never in sync: {result}"
        assert result.get("pending_first"), "a strong change is pending until answered"
        uid = str(result["uid"])
        commands = [c for c in read_jsonl(out / "commands.jsonl") if uid in c["reason"]]
        assert commands, "the edge's command loop issued no command for the central change"
        assert len({c["command_id"] for c in commands}) == 1  # once
        assert commands[-1]["status"] == "succeeded", commands
        log = sim.plant.command_log if sim.plant else []
        assert sum(1 for r in log if r.twin_id == "wt-001" and r.accepted) == 1, log
        # The edge's command outcome reached central, and central holds the twin's state.
        assert central.replica.get("wt-001", "metadata", "accepted:power_limit") is not None
        statuses = list(read_jsonl(out / "sync_status.jsonl"))
        assert any(s["property"] == "power_limit" for s in statuses)
        # The edge went on while central was away, and central got each of its writes once.
        assert result.get("reconnected") and int(str(result["wrote_while_cut"])) > 0
        assert came_true(lambda: len(got) >= len(made), 30), (len(got), len(made))
        key = lambda w: (w.key, w.stamp)  # noqa: E731
        assert sorted(map(key, got)) == sorted(map(key, made))
    finally:
        central.stop()


def test_a_central_twinflow_run_stores_what_an_edge_forwards(
    tmp_path: Path, mqtt: Mosquitto
) -> None:
    base = f"rep-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "central.yaml"
    path.write_text(f"""
version: 1
site: hq
services:
  mqtt: {{url: "mqtt://127.0.0.1:{mqtt.port}", client_id: "central-{free_port()}"}}
twins:
  - {{id: wt-001, type: wind_turbine, protocol: replay}}
replication: {{role: central, replica: central, topic: {base}, status_interval_s: 0.5}}
""")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from twinflow.flows.cli import main; sys.exit(main())",
            "run",
            str(path),
            "--out",
            str(out),
            "--quiet",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    edge = node(mqtt, tmp_path, "edge-a", base, "edge").start()
    try:
        stored = out / "replicated.jsonl"

        def count() -> int:
            return len(list(read_jsonl(stored))) if stored.exists() else 0

        # Write until the central process is up and has stored a first write.
        value = 0
        while count() == 0 and value < 600:
            edge.link.write("wt-001", "metadata", "note", value)
            value += 1
            time.sleep(0.1)
        assert count() > 0, "the central run stored nothing"
        for v in range(5):
            edge.link.write("wt-001", "reported", "power_limit", 1000.0 + v)

        def reported_stored() -> int:
            return sum(1 for d in read_jsonl(stored) if d["kind"] == "reported")

        assert came_true(lambda: reported_stored() >= 5, 30)  # before the run is stopped
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        edge.stop()
    assert proc.returncode == 0, output.decode()[-3000:]
    docs = list(read_jsonl(stored))
    ids = [d["update_id"] for d in docs]
    assert len(ids) == len(set(ids))  # each write stored once
    reported = [d["value"] for d in docs if d["kind"] == "reported"]
    assert reported == [1000.0 + v for v in range(5)]
    assert all(d["received_by"] == "central" for d in docs)
