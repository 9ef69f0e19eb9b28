"""Re-planning in the flow: the simulated plant's RUL estimates move as a motor's fault
grows, and the flow emits a new version of the maintenance plan each time they do."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main
from jsonschema import Draft202012Validator

from tests.flows.test_plan import COSTS
from tests.flows.test_whatif import CONFIG
from tests.operators.test_maintenance_replan import SETTINGS
from tests.services.postgres import Postgres
from twinflow.connectors.postgres import migrate
from twinflow.connectors.postgres.connection import connect
from twinflow.connectors.simulator import Plant
from twinflow.core.records import TelemetryFrame
from twinflow.flows.config import FlowConfig
from twinflow.flows.decide_steps import FLEET, Decide, LatestPlanFile, PlanStoreSink, decide_for
from twinflow.flows.deploy import load_deployment
from twinflow.flows.telemetry import FlowOutputs, build_flow

SCHEMA = Path(__file__).parents[2] / "operators" / "schemas" / "maintenance_plan.v1.json"


def test_the_flow_replans_when_a_motors_rul_moves() -> None:
    plans = plans_of_the_plant()  # the defaults: 15 min apart at least, 20 % moves
    assert len(plans) >= 3  # 4 h of 1 Hz data in 5-min windows: far fewer than 48 plans
    assert len(plans) < 48 // 3
    times = [p.time for p in plans]
    assert times == sorted(times) and len({p.plan_id for p in plans}) == len(plans)
    gaps = [(b - a).total_seconds() for a, b in pairwise(times)]
    assert min(gaps) >= 900.0  # debounced
    check = Draft202012Validator(json.loads(SCHEMA.read_text()))
    for p in plans:
        check.validate(p.to_json())
        assert {i.twin_type for i in p.items} == {"motor"}  # only types with costs
    rul = [{i.twin_id: i.rul_hours for i in p.items}.get("motor-006") for p in plans]
    assert rul[0] == float("inf") and any(h is not None and 0 < h < 24 for h in rul)
    acting = [p for p in plans if any(i.twin_id == "motor-006" and i.chosen.at for i in p.items)]
    assert acting, "a plan acts on the failing motor once its RUL is short"


def plans_of_the_plant() -> list[Any]:
    frames = [i for i in Plant(CONFIG).items() if isinstance(i, TelemetryFrame)]
    end = max(float(f.times[-1]) for f in frames)
    got: list[Any] = []
    flow = build_flow(
        TestingSource(frames),
        FlowOutputs(dead_letters=TestingSink([]), alerts=None, commands=None),
        FlowConfig(),
        clock=lambda: end,
        decide=Decide(maintenance=SETTINGS, plan_sinks=[TestingSink(got)]),
    )
    run_main(flow)  # type: ignore[no-untyped-call]
    return [p for _k, p in got]


def test_a_deployment_with_costs_and_topics_gets_its_sinks(tmp_path: Path) -> None:
    path = tmp_path / "plant.yaml"
    path.write_text(f"""
version: 1
services:
  kafka: {{bootstrap: "127.0.0.1:9", telemetry_topics: [t], whatif_results_topic: wr,
          maintenance_plan_topic: mp}}
  database: {{url: "postgresql://twinflow@127.0.0.1:9/twinflow"}}
twins:
  - {{id: motor-1, type: motor, protocol: kafka}}
{COSTS}""")
    decide = decide_for(load_deployment(path), tmp_path / "out")
    assert decide.maintenance is not None and set(decide.maintenance.types) == {"motor"}
    assert [type(s).__name__ for s in decide.plan_sinks] == [
        "JsonLinesSink", "LatestPlanFile", "KafkaJsonSink", "PlanStoreSink"
    ]  # fmt: skip
    assert [type(s).__name__ for s in decide.whatif_sinks or ()] == [
        "JsonLinesSink", "KafkaJsonSink"
    ]  # fmt: skip
    bare = tmp_path / "bare.yaml"
    bare.write_text(
        'version: 1\nservices: {kafka: {bootstrap: "127.0.0.1:9", telemetry_topics: [t]}}\n'
        "twins:\n  - {id: motor-1, type: motor, protocol: kafka}\n"
    )
    nothing = decide_for(load_deployment(bare), tmp_path / "out")
    assert nothing.whatif_sinks is None and nothing.plan_sinks == []


@pytest.mark.services
@pytest.mark.timeout(120)
def test_plan_versions_are_stored_in_postgresql_and_the_newest_is_the_file(
    tmp_path: Path,
) -> None:
    plans = plans_of_the_plant()[:2]
    latest = tmp_path / "maintenance_plan.json"
    with Postgres() as pg:
        url = pg.create_database("replan")
        migrate(url, use_timescaledb=False)
        flow = Dataflow("store")
        stream = op.input("plans", flow, TestingSource([(FLEET, p) for p in plans]))
        op.output("db", stream, PlanStoreSink(url))
        op.output("file", stream, LatestPlanFile(latest))
        run_main(flow)  # type: ignore[no-untyped-call]
        with connect(url) as conn:
            rows = conn.execute(
                "SELECT plan_id::text FROM twinflow.maintenance_plans ORDER BY time"
            ).fetchall()
    assert [r[0] for r in rows] == [p.plan_id for p in plans]
    assert json.loads(latest.read_text())["plan_id"] == plans[-1].plan_id
