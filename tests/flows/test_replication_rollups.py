"""Roll-ups across sites at a central ``twinflow run`` flow, over a real mosquitto.

Two edges (nodes in the test, forwarding the records their flows' forward steps hand them:
alerts, windows with their RUL estimate, command transitions, and twin states) and one
central flow of a deployment with ``replication: {role: central}`` and a database. Faults
raised at each edge show in the central instance's roll-ups: each site's twins in alarm, by
severity, and the fleet's total, in ``rollups.jsonl``, PostgreSQL's ``asset_rollups`` and the
site summaries of ``fleet_status.jsonl`` (with the gauges, and an edge's report of its own
link); a clear at one edge lowers them. The summaries are in PostgreSQL's ``fleet_status``
and ``fleet_status_latest`` too.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from bytewax.testing import run_main
from prometheus_client import REGISTRY

from tests.services.mosquitto import Mosquitto, free_port
from tests.services.postgres import Postgres
from tests.services.waiting import came_true
from twinflow.connectors.bindings import MqttSettings
from twinflow.connectors.files import read_jsonl
from twinflow.connectors.postgres import migrate
from twinflow.connectors.postgres.connection import psycopg
from twinflow.connectors.replication import DiskOutbox
from twinflow.connectors.replication.forward import FORWARDS
from twinflow.connectors.replication.mqtt_link import MqttLink, edge_topics
from twinflow.connectors.replication.node import ReplicationNode
from twinflow.core.records import (
    Alert,
    AlertState,
    Command,
    CommandStatus,
    RulEstimate,
    Severity,
    WindowFeatures,
)
from twinflow.core.times import utc
from twinflow.flows.deploy import load_deployment
from twinflow.flows.replication import running, stop_nodes
from twinflow.flows.run import deployment_flow
from twinflow.operators.replication import TwinReplica

pytestmark = [pytest.mark.services, pytest.mark.timeout(180)]

TYPES = {"pump-1": "pump", "pump-2": "pump", "fan-1": "motor"}


@pytest.fixture(scope="module")
def mqtt() -> Iterator[Mosquitto]:
    with Mosquitto() as broker:
        yield broker


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with Postgres() as pg:
        url = pg.create_database("replication_rollups")
        migrate(url)
        yield url


def edge(mqtt: Mosquitto, folder: Path, name: str, base: str, twins: list[str]) -> ReplicationNode:
    settings = MqttSettings(
        host=mqtt.host, port=mqtt.port, client_id=f"{base}-{name}",
        reconnect_min_s=0.05, reconnect_max_s=0.5,
    )  # fmt: skip
    link = MqttLink(
        TwinReplica(name), DiskOutbox(folder / name), settings, *edge_topics(base, name)
    )
    return ReplicationNode(
        link, "edge", owned={t: TYPES[t] for t in twins}, forward=FORWARDS
    ).start()


def alert(twin: str, rule: str, state: AlertState, severity: Severity, at: float) -> Alert:
    raised = utc(at - 1 if state is AlertState.CLEARED else at)
    return Alert(
        Alert.make_id(twin, rule, raised), twin, TYPES[twin], rule, state, severity,
        utc(at), raised, f"{rule} on {twin}",
    )  # fmt: skip


def newest(path: Path, key: str) -> dict[str, dict[str, Any]]:
    """The newest document per ``key`` in a JSON Lines file (empty while it is missing)."""
    return {d[key]: d for d in read_jsonl(path)} if path.exists() else {}


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_faults_at_two_edges_roll_up_per_site_and_for_the_fleet(
    tmp_path: Path, mqtt: Mosquitto, database: str
) -> None:
    base = f"fleet-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "central.yaml"
    twins = "\n".join(f"  - {{id: {t}, type: {k}, protocol: replay}}" for t, k in TYPES.items())
    path.write_text(f"""
version: 1
site: hq
services:
  mqtt: {{url: "mqtt://127.0.0.1:{mqtt.port}", client_id: "central-{free_port()}"}}
  database: {{url: "{database}"}}
twins:
{twins}
replication: {{role: central, replica: hq, topic: {base}, status_interval_s: 0.5}}
""")
    stop = threading.Event()
    out = tmp_path / "out"
    flow = deployment_flow(
        load_deployment(path, env={}), out, limits={"replication": {"until": stop.is_set}}
    )
    (central,) = running()
    runner = threading.Thread(target=run_main, args=(flow,), daemon=True)
    runner.start()
    north = south = None
    try:
        assert came_true(lambda: central.link.connected, 30)
        north = edge(mqtt, tmp_path, "north", base, ["pump-1", "pump-2"])
        south = edge(mqtt, tmp_path, "south", base, ["fan-1"])
        t = time.time()
        for node, twin in ((north, "pump-1"), (north, "pump-2"), (south, "fan-1")):
            state = {"status": "ok", "time": "", "readings": 10, "signals": {}}
            node.link.write(twin, "metadata", "state", state)
        north.forward(alert("pump-1", "overheat", AlertState.RAISED, Severity.CRITICAL, t))
        north.forward(alert("pump-2", "vibration", AlertState.RAISED, Severity.WARNING, t))
        south.forward(alert("fan-1", "overheat", AlertState.RAISED, Severity.WARNING, t))
        rul = RulEstimate("efficiency", 0.37, 90.0, 60.0, 130.0)
        north.forward(WindowFeatures("pump-2", "pump", utc(t - 60), utc(t), {}, rul=rul))
        derate = Command(
            "c-1", "fan-1", "motor", "derate", {}, issued_at=utc(t), expires_at=utc(t + 600),
            reason="overheat", status=CommandStatus.SENT,
        )  # fmt: skip
        south.forward(derate)

        status_file = out / "fleet_status.jsonl"
        rollups_file = out / "rollups.jsonl"

        def fleet_in_alarm(n: int) -> Callable[[], bool]:
            def check() -> bool:
                fleet = newest(rollups_file, "asset_id").get("fleet")
                return fleet is not None and fleet["twins_in_alarm"] == n

            return check

        assert came_true(fleet_in_alarm(3), 30), list(read_jsonl(rollups_file))
        assert came_true(lambda: newest(status_file, "site").get("fleet", {}).get(
            "commands_in_flight") == 1, 10)  # fmt: skip
        rolled = newest(rollups_file, "asset_id")
        assert rolled["north"]["asset_type"] == "site"
        assert rolled["north"]["in_alarm_by_severity"] == {"info": 0, "warning": 1, "critical": 1}
        assert rolled["south"]["in_alarm_by_severity"] == {"info": 0, "warning": 1, "critical": 0}
        assert rolled["fleet"]["asset_type"] == "fleet" and rolled["fleet"]["twins_total"] == 3
        assert rolled["fleet"]["in_alarm_by_severity"] == {"info": 0, "warning": 2, "critical": 1}
        assert (rolled["fleet"]["worst_health"], rolled["fleet"]["worst_twin"]) == (0.37, "pump-2")
        status = newest(status_file, "site")
        assert set(status) == {"north", "south", "fleet"}
        fleet = status["fleet"]
        assert fleet["sites"] == 2 and fleet["twins_reporting"] == 3
        assert fleet["open_alarms_by_rule"] == {"overheat": 2, "vibration": 1}
        assert (fleet["lowest_rul_h"], fleet["lowest_rul_twin"]) == (90.0, "pump-2")
        assert status["south"]["commands_in_flight"] == 1
        assert status["north"]["last_received_ms"] > 0
        # up, once the link is checked again (under load a check may have read it down)
        north_link = lambda: newest(status_file, "site")["north"]["link"]  # noqa: E731
        assert came_true(lambda: north_link() == "up", 20), north_link()
        assert gauge("twinflow_fleet_twins_in_alarm", site="fleet", severity="warning") == 2
        # The edge's report of its own link (what its flow writes each sync-status tick).
        south.report_link = True
        south.sync_status()
        reported = lambda: newest(status_file, "site")["south"].get("edge_connected")  # noqa: E731
        assert came_true(lambda: reported() is True, 10)
        assert newest(status_file, "site")["south"]["edge_pending"] is not None
        assert gauge("twinflow_fleet_twins_reporting", site="south") == 1

        # A clear at one edge lowers its site and the fleet; the command ends.
        north.forward(alert("pump-1", "overheat", AlertState.CLEARED, Severity.CRITICAL, t + 1))
        south.forward(replace(derate, status=CommandStatus.SUCCEEDED))
        assert came_true(fleet_in_alarm(2), 30)
        in_flight = lambda: newest(status_file, "site")["fleet"]["commands_in_flight"]  # noqa: E731
        assert came_true(lambda: in_flight() == 0, 10)
        rolled = newest(rollups_file, "asset_id")
        assert rolled["north"]["in_alarm_by_severity"] == {"info": 0, "warning": 1, "critical": 0}
        assert rolled["fleet"]["in_alarm_by_severity"] == {"info": 0, "warning": 2, "critical": 0}

        def stored() -> dict[str, tuple[int, int]]:
            with psycopg.connect(database) as conn:
                rows = conn.execute(
                    "SELECT asset_id, twins_in_alarm, in_alarm_critical "
                    "FROM twinflow.asset_rollups_latest"
                ).fetchall()
            return {r[0]: (r[1], r[2]) for r in rows}

        want = {"fleet": (2, 0), "north": (1, 0), "south": (1, 0)}
        assert came_true(lambda: stored() == want, 15), stored()

        # Every summary of fleet_status.jsonl is a row too; the newest per site is the file's.
        def summaries() -> dict[str, dict[str, Any]]:
            with psycopg.connect(database) as conn:
                rows = conn.execute(
                    "SELECT site, doc, twins_in_alarm, commands_in_flight, link, "
                    "lowest_rul_h, edge_connected FROM twinflow.fleet_status_latest"
                ).fetchall()
            return {r[0]: {**r[1], "columns": r[2:]} for r in rows}

        def same_as_file() -> bool:
            docs = {
                k: {f: v for f, v in d.items() if f != "columns"} for k, d in summaries().items()
            }
            return docs == newest(status_file, "site")

        assert came_true(same_as_file, 15), (summaries(), newest(status_file, "site"))
        rows = summaries()
        assert set(rows) == {"north", "south", "fleet"}
        assert rows["fleet"]["columns"] == (2, 0, "up", 90.0, None)
        assert rows["south"]["columns"] == (1, 0, "up", None, True)
        assert rows["north"]["open_alarms_by_rule"] == {"vibration": 1}

        def history_is_the_file() -> bool:  # every summary the file holds, each once
            with psycopg.connect(database) as conn:
                docs = conn.execute(
                    "SELECT doc FROM twinflow.fleet_status ORDER BY stored_at"
                ).fetchall()
            return [d for (d,) in docs] == list(read_jsonl(status_file))  # in the same order

        assert came_true(history_is_the_file, 15)
    finally:
        stop.set()
        runner.join(timeout=60)
        for n in (north, south):
            if n is not None:
                n.stop()
        stop_nodes()
    assert not runner.is_alive()
