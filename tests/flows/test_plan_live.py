"""Re-planning in the flow: the simulated plant's RUL estimates move as a motor's fault
grows, and the flow emits a new version of the maintenance plan each time they do."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path
from typing import Any

from bytewax.testing import TestingSink, TestingSource, run_main
from jsonschema import Draft202012Validator

from tests.flows.test_whatif import CONFIG
from tests.operators.test_maintenance_replan import SETTINGS
from twinflow.connectors.simulator import Plant
from twinflow.core.records import TelemetryFrame
from twinflow.flows.config import FlowConfig
from twinflow.flows.decide_steps import Decide
from twinflow.flows.telemetry import FlowOutputs, build_flow

SCHEMA = Path(__file__).parents[2] / "operators" / "schemas" / "maintenance_plan.v1.json"


def test_the_flow_replans_when_a_motors_rul_moves() -> None:
    frames = [i for i in Plant(CONFIG).items() if isinstance(i, TelemetryFrame)]
    end = max(float(f.times[-1]) for f in frames)
    got: list[Any] = []
    flow = build_flow(
        TestingSource(frames),
        FlowOutputs(dead_letters=TestingSink([]), alerts=None, commands=None),
        FlowConfig(replan_min_interval_s=900.0, replan_change=0.2),
        clock=lambda: end,
        decide=Decide(maintenance=SETTINGS, plan_sinks=[TestingSink(got)]),
    )
    run_main(flow)  # type: ignore[no-untyped-call]
    plans = [p for _k, p in got]
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
