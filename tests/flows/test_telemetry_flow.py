"""The telemetry flow run through Bytewax's testing helpers (run_main, 2-worker cluster_main)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main
from jsonschema import Draft202012Validator

from twinflow.connectors.simulator import Plant, PlantConfig, SimulatedPlantSource
from twinflow.core.records import (
    Alert,
    DeadLetter,
    RawMessage,
    TelemetryFrame,
    TwinState,
    WindowFeatures,
)
from twinflow.flows.config import FlowConfig
from twinflow.flows.metrics import RunStats
from twinflow.flows.telemetry import FlowOutputs, build_flow

SCHEMAS = Path(__file__).resolve().parents[2] / "operators" / "schemas"
START = datetime(2026, 1, 1, tzinfo=UTC).timestamp()


@dataclass
class Collected:
    dead: list[Any] = field(default_factory=list)
    alerts: list[Any] = field(default_factory=list)
    commands: list[Any] = field(default_factory=list)
    windows: list[Any] = field(default_factory=list)
    states: list[Any] = field(default_factory=list)

    def outputs(self) -> FlowOutputs:
        return FlowOutputs(
            dead_letters=TestingSink(self.dead),
            alerts=TestingSink(self.alerts),
            commands=TestingSink(self.commands),
            windows=TestingSink(self.windows),
            twin_states=TestingSink(self.states),
        )

    def values(self, name: str) -> list[Any]:
        return [v for _k, v in getattr(self, name)]


def _frame(twin: str, t0: float, n: int = 60, **overrides: float) -> TelemetryFrame:
    times = t0 + np.arange(n, dtype=np.float64)
    base = {
        "winding_temp": 85.0,
        "current_a": 120.0,
        "speed_rpm": 1480.0,
        "load_pct": 80.0,
    }
    base.update(overrides)
    return TelemetryFrame(
        twin_id=twin,
        twin_type="motor",
        times=times,
        signals={k: np.full(n, v) + 0.01 * np.sin(times) for k, v in base.items()},
    )


def _plant_flow(plant: Plant, got: Collected, cfg: FlowConfig) -> Any:
    return build_flow(
        SimulatedPlantSource(plant, partitions=4),
        got.outputs(),
        cfg,
        clock=plant.now,
        twins=dict(plant.twins),
    )


def test_frames_become_windows_states_and_alerts_with_run_main() -> None:
    frames: list[Any] = []
    t = START
    for _ in range(60):  # one hour of one motor, 60 s a frame, overheating after 30 min
        temp = 85.0 if t < START + 1800 else 140.0
        frames.append(_frame("m-1", t, winding_temp=temp))
        t += 60
    frames.append(RawMessage("test:mqtt", b"{not json", received=t))
    got = Collected()
    stats = RunStats()
    flow = build_flow(
        TestingSource(frames),
        got.outputs(),
        FlowConfig(window_s=300, lateness_s=30),
        clock=lambda: t,
        stats=stats,
    )
    run_main(flow)
    windows = got.values("windows")
    assert all(isinstance(w, WindowFeatures) for w in windows)
    assert len(windows) == 12  # one hour in 5-minute windows, the last flushed at EOF
    assert windows[0].features["winding_temp.mean"] == pytest.approx(85.0, abs=0.1)
    assert stats.readings == 60 * 60 * 4
    assert [d.stage for d in got.values("dead")] == ["decode"]
    states = got.values("states")
    assert states and all(isinstance(s, TwinState) for s in states)
    alerts = got.values("alerts")
    assert any(a.rule == "overheating" or a.diagnosis == "overheating" for a in alerts)
    assert got.values("commands"), "an overheating motor is derated"
    assert {c.name for c in got.values("commands")} == {"derate"}


def test_bad_inputs_become_dead_letters_and_good_ones_survive() -> None:
    good = _frame("m-1", START)
    bad = [
        RawMessage("test", b"\xff\xfe", received=START),
        RawMessage("test", b'{"twin_id": "m-1"}', received=START),
        TelemetryFrame("m-1", "motor", np.array([START]), {"no_such_signal": np.array([1.0])}),
        TelemetryFrame("m-1", "spaceship", np.array([START]), {"x": np.array([1.0])}),
        _frame("m-1", START + 86400 * 3650),
        "just a string",
    ]
    got = Collected()
    flow = build_flow(
        TestingSource([good, *bad]), got.outputs(), FlowConfig(), clock=lambda: START + 60
    )
    run_main(flow)
    dead = got.values("dead")
    assert len(dead) == len(bad)
    assert all(isinstance(d, DeadLetter) and d.reason for d in dead)
    windows = got.values("windows")
    assert len(windows) == 1 and windows[0].counts["winding_temp"] == 60


def test_two_workers_match_one_worker() -> None:
    cfg = FlowConfig(window_s=300, lateness_s=30)
    plant_cfg = PlantConfig(n_twins=6, duration_s=3600, seed=3, bad_message_rate=0.01)

    one = Collected()
    run_main(_plant_flow(Plant(plant_cfg), one, cfg))
    two = Collected()
    cluster_main(_plant_flow(Plant(plant_cfg), two, cfg), [], 0, worker_count_per_proc=2)

    def key(w: WindowFeatures) -> tuple[Any, ...]:
        feats = tuple(sorted((k, round(v, 6)) for k, v in w.features.items() if math.isfinite(v)))
        return (w.twin_id, w.start, feats)

    assert sorted(map(key, one.values("windows"))) == sorted(map(key, two.values("windows")))
    assert sorted(a.alert_id for a in one.values("alerts")) == sorted(
        a.alert_id for a in two.values("alerts")
    )
    assert len(one.values("dead")) == len(two.values("dead")) > 0
    assert {w.twin_id for w in one.values("windows")} == {t for t, _ in Plant(plant_cfg).twins}


def test_alerts_and_commands_match_their_json_schemas() -> None:
    alert_schema = Draft202012Validator(json.loads((SCHEMAS / "alert.v1.json").read_text()))
    command_schema = Draft202012Validator(json.loads((SCHEMAS / "command.v2.json").read_text()))
    dead_schema = Draft202012Validator(json.loads((SCHEMAS / "deadletter.v1.json").read_text()))
    frames = [
        _frame("m-1", START + 60 * i, winding_temp=85.0 if i < 20 else 150.0) for i in range(60)
    ]
    frames.append(RawMessage("test", b"[]", received=START))
    got = Collected()
    run_main(
        build_flow(TestingSource(frames), got.outputs(), FlowConfig(), clock=lambda: START + 3600)
    )
    alerts = got.values("alerts")
    assert alerts
    for a in alerts:
        assert isinstance(a, Alert)
        alert_schema.validate(a.to_json())
    for c in got.values("commands"):
        command_schema.validate(c.to_json())
    for d in got.values("dead"):
        dead_schema.validate(d.to_json())
