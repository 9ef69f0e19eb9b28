"""The window model (T²/SPE over window means) in the ``anomaly`` step: warm-up, operating
settings, a fault named by its signal, and its settings taken from the flow or the type."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.operators.compressor import load_compressor
from twinflow.core.records import WindowFeatures
from twinflow.core.times import utc
from twinflow.flows.anomaly_steps import AnomalyStep
from twinflow.flows.config import FlowConfig
from twinflow.flows.steps import TypeOf
from twinflow.models.anomaly import WindowAnomalyDetector
from twinflow.models.spc import SpcDetector
from twinflow.operators.rules import DRIVER_PREFIX

T0 = 1_767_225_600.0


def windows(n: int, fault_from: int | None = None, seed: int = 0) -> list[WindowFeatures]:
    """5-minute windows of a compressor whose load moves; temperature and pressure follow."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        power = 100.0 + 40.0 * ((k // 6) % 3) / 2 + rng.normal(0, 1.0)
        pressure = 4.0 + 0.03 * power + rng.normal(0, 0.02)
        temp = 40.0 + 0.3 * power + rng.normal(0, 0.2)
        if fault_from is not None and k >= fault_from:
            temp += 3.0
        features = {
            "motor_power.mean": power,
            "discharge_pressure.mean": pressure,
            "discharge_temp.mean": temp,
            "discharge_temp.std": abs(rng.normal(0.3, 0.05)),
        }
        start = T0 + 300.0 * k
        out.append(WindowFeatures("c-1", "compressor", utc(start), utc(start + 300), features))
    return out


def run(step: AnomalyStep, series: list[WindowFeatures]) -> list[WindowFeatures]:
    model = None
    out = []
    for w in series:
        model, scored = step(model, w)
        out.append(scored)
    return out


def test_the_window_model_conditions_on_the_load_and_names_the_fault(tmp_path: Path) -> None:
    kind = load_compressor(tmp_path, "anomaly:\n  operating: [motor_power]\n")
    step = AnomalyStep.from_config(FlowConfig(), TypeOf({"c-1": kind}))
    healthy = run(step, windows(80))
    assert all(w.anomaly_score is None for w in healthy[:24])  # warm-up: 24 windows
    # 24 warm-up windows calibrate roughly: some healthy windows pass the limit, few in a row
    flagged = [w.is_anomalous for w in healthy[24:]]
    assert sum(flagged) <= 0.2 * len(flagged)
    assert not any(all(flagged[i : i + 3]) for i in range(len(flagged) - 2))
    faulty = run(step, windows(80, fault_from=60))
    assert all(w.is_anomalous for w in faulty[61:])
    drivers = {k: v for k, v in faulty[70].features.items() if k.startswith(DRIVER_PREFIX)}
    assert max(drivers, key=lambda k: drivers[k]) == DRIVER_PREFIX + "discharge_temp.mean"


def test_the_detector_comes_from_the_type_or_the_flow(tmp_path: Path) -> None:
    w = windows(1)[0]
    plain = load_compressor(tmp_path / "a")
    chosen = load_compressor(tmp_path / "b", "anomaly:\n  detector: zscore\n")
    spc = AnomalyStep.from_config(FlowConfig(), TypeOf({"c-1": plain}))
    assert isinstance(spc(None, w)[0], SpcDetector)
    assert spc(None, w)[0].operating == ()  # the compressor declares no setting
    by_type = AnomalyStep.from_config(FlowConfig(), TypeOf({"c-1": chosen}))
    assert isinstance(by_type(None, w)[0], WindowAnomalyDetector)
    by_flow = AnomalyStep.from_config(FlowConfig(anomaly_detector="zscore"), TypeOf({}))
    assert isinstance(by_flow(None, w)[0], WindowAnomalyDetector)
