"""Raw-sample anomaly scoring through the flow, for a type defined only by files: a load
change is no anomaly, a fault is, and its alert names the signal that drives it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from bytewax.testing import TestingSink, TestingSource, run_main

from tests.operators.compressor import load_compressor
from twinflow.core.records import Alert, TelemetryFrame, WindowFeatures
from twinflow.flows.anomaly_steps import SampleAnomalyStep
from twinflow.flows.config import FlowConfig
from twinflow.flows.steps import TypeOf
from twinflow.flows.telemetry import FlowOutputs, build_flow
from twinflow.operators.anomaly_profile import operating_signals
from twinflow.operators.catalog import TwinType
from twinflow.operators.sample_anomaly import SAMPLE_SIGNAL

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
LOADED = "anomaly:\n  operating: [motor_power]\n  samples: true\n"


def compressor(minutes: int, fault_from: int | None, seed: int = 0) -> list[TelemetryFrame]:
    """1 Hz frames of a minute: the load (motor power) steps between levels; pressure and
    temperature follow it; from ``fault_from`` the temperature runs 3 K hot."""
    rng = np.random.default_rng(seed)
    levels = [100.0, 100.0, 140.0, 120.0, 140.0, 100.0, 120.0, 140.0, 100.0]
    out = []
    for m in range(minutes):
        times = START + 60.0 * m + np.arange(60, dtype=np.float64)
        power = levels[(m // 10) % len(levels)] + rng.normal(0, 1.0, 60)
        pressure = 4.0 + 0.03 * power + rng.normal(0, 0.05, 60)
        temp = 40.0 + 0.3 * power + 2.0 * (pressure - 7.0) + rng.normal(0, 0.3, 60)
        if fault_from is not None and m >= fault_from:
            temp = temp + 3.0
        signals = {"motor_power": power, "discharge_pressure": pressure, "discharge_temp": temp}
        out.append(TelemetryFrame("comp-1", "compressor", times, signals))
    return out


def run(kind: TwinType, frames: list[TelemetryFrame]) -> tuple[list[Any], list[Any], list[Any]]:
    windows: list[Any] = []
    alerts: list[Any] = []
    telemetry: list[Any] = []
    flow = build_flow(
        TestingSource(frames),
        FlowOutputs(
            windows=TestingSink(windows),
            alerts=TestingSink(alerts),
            telemetry=TestingSink(telemetry),
            dead_letters=TestingSink([]),
            commands=TestingSink([]),
        ),
        FlowConfig(window_s=300, lateness_s=30),
        clock=lambda: START + 6000,
        twins={"comp-1": "compressor"},
        twin_types={"comp-1": kind},
        catalog={"compressor": kind},
    )
    run_main(flow)
    got = [w for _k, w in windows if isinstance(w, WindowFeatures)]
    return got, [a for _k, a in alerts if isinstance(a, Alert)], [f for _k, f in telemetry]


def test_operating_settings_come_from_the_profile(tmp_path: Path) -> None:
    kind = load_compressor(tmp_path, LOADED)
    assert operating_signals(kind) == ("motor_power",)
    assert operating_signals(load_compressor(tmp_path / "plain")) == ()


def test_load_changes_raise_nothing_and_a_fault_is_alerted_with_its_signal(
    tmp_path: Path,
) -> None:
    kind = load_compressor(tmp_path, LOADED)
    healthy_windows, healthy_alerts, _ = run(kind, compressor(90, None))
    assert healthy_alerts == []
    assert not any(w.is_anomalous for w in healthy_windows)
    windows, alerts, telemetry = run(kind, compressor(90, 60))
    raised = [a for a in alerts if a.state.value == "raised"]
    assert [a.rule for a in raised] == ["anomaly_sample", "anomaly"]
    quick, alert = raised
    # the raw-sample alarm: seconds after the fault starts, naming the signal
    assert START + 60 * 60 < quick.time.timestamp() < START + 62 * 60
    assert "driven by discharge_temp" in quick.message
    assert alert.time.timestamp() >= START + 60 * 60
    assert "driven by discharge_temp" in alert.message
    assert max(alert.evidence, key=lambda k: alert.evidence[k] if "share" in k else -1) == (
        "anomaly.share.discharge_temp"
    )
    # every raw sample after the warm-up carries its score, written with the telemetry
    scores = np.concatenate(
        [f.signals[SAMPLE_SIGNAL] for f in telemetry if SAMPLE_SIGNAL in f.signals]
    )
    times = np.concatenate([f.times for f in telemetry if SAMPLE_SIGNAL in f.signals])
    judged = np.isfinite(scores)
    faulty = times >= START + 61 * 60  # after the smoothing's first minute
    assert (scores[judged & faulty] > 1.0).mean() > 0.9
    assert (scores[judged & ~faulty] > 1.0).mean() < 0.05
    assert any(w.is_anomalous for w in windows)


def test_without_the_setting_a_load_change_is_an_anomaly(tmp_path: Path) -> None:
    kind = load_compressor(tmp_path)
    config = FlowConfig(sample_anomaly=True)
    step = SampleAnomalyStep.from_config(config, TypeOf({"comp-1": kind}))
    scorer = None
    flagged = 0
    for frame in compressor(30, None):
        scorer, out = step(scorer, frame)
        if SAMPLE_SIGNAL in out.signals:
            flagged += int((out.signals[SAMPLE_SIGNAL] > 1.0).sum())
    assert flagged > 300  # the step to 140 kW after ten minutes at 100 kW


def test_sample_scoring_is_on_by_default_and_off_when_the_deployment_says(
    tmp_path: Path,
) -> None:
    kind = load_compressor(tmp_path)
    on = SampleAnomalyStep.from_config(FlowConfig(), TypeOf({"comp-1": kind}))
    scorer, _ = on(None, compressor(1, None)[0])
    assert scorer is not None and scorer.detector is not None
    off = SampleAnomalyStep.from_config(FlowConfig(sample_anomaly=False), TypeOf({"comp-1": kind}))
    scorer = None
    for frame in compressor(10, None):
        scorer, out = off(scorer, frame)
        assert out is frame
    assert scorer is not None and scorer.detector is None


def test_sample_scoring_can_be_switched_off_per_type(tmp_path: Path) -> None:
    kind = load_compressor(tmp_path, "anomaly:\n  samples: false\n")
    config = FlowConfig(sample_anomaly=True)
    step = SampleAnomalyStep.from_config(config, TypeOf({"comp-1": kind}))
    scorer = None
    for frame in compressor(10, None):
        scorer, out = step(scorer, frame)
        assert SAMPLE_SIGNAL not in out.signals
