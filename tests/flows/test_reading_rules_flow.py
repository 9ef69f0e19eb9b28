"""Per-reading rules in the flow: an out-of-range reading raises its alert at the reading's
event time, not at its window's end, once (the window evaluator leaves the rule alone), in
the alert contract, and a replay gives the same alerts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from bytewax.testing import TestingSink, TestingSource, run_main
from jsonschema import Draft202012Validator

from twinflow.core.records import Alert, TelemetryFrame
from twinflow.flows.config import FlowConfig
from twinflow.flows.telemetry import FlowOutputs, build_flow

SCHEMAS = Path(__file__).resolve().parents[2] / "operators" / "schemas"
START = datetime(2026, 1, 1, tzinfo=UTC).timestamp()


def motor_frames() -> list[TelemetryFrame]:
    """Two minutes of one motor in 10 s frames; winding_temp reads 400 (range: -40..250)
    for the 11 readings from 30 s."""
    out = []
    for k in range(12):
        times = START + 10.0 * k + np.arange(10.0)
        temp = 85.0 + 0.1 * np.sin(times)
        temp[(times >= START + 30) & (times <= START + 40)] = 400.0
        signals = {
            "winding_temp": temp,
            "current_a": 120.0 + 0.5 * np.sin(times / 3),
            "speed_rpm": 1480.0 + np.cos(times),
            "load_pct": 80.0 + 0.2 * np.sin(times / 5),
        }
        out.append(TelemetryFrame("m-1", "motor", times, signals))
    return out


def run_once() -> list[Alert]:
    alerts: list[Any] = []
    outputs = FlowOutputs(dead_letters=None, alerts=TestingSink(alerts), commands=None)
    flow = build_flow(
        TestingSource(motor_frames()), outputs, FlowConfig(), clock=lambda: START + 120.0
    )
    run_main(flow)
    return [a for _k, a in alerts]


def test_an_out_of_range_reading_alerts_at_its_own_time_not_at_the_window_end() -> None:
    alerts = run_once()
    ranged = [a for a in alerts if a.rule == "winding_temp_out_of_range"]
    assert [a.state.value for a in ranged] == ["raised"]  # not again when the window closes
    (alert,) = ranged
    # the third reading in a row out of range, 268 s of event time before the window's end
    assert alert.time.timestamp() == START + 32.0
    assert alert.diagnosis == "sensor_fault"
    assert alert.evidence["winding_temp.out_of_range"] == 1.0
    schema = json.loads((SCHEMAS / "alert.v1.json").read_text())
    Draft202012Validator(schema).validate(json.loads(json.dumps(alert.to_json())))


def test_a_replay_gives_the_same_alerts() -> None:
    first, again = run_once(), run_once()
    assert first and [a.to_json() for a in first] == [a.to_json() for a in again]
