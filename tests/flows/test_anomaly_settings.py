"""The raw-sample anomaly settings reach each twin's model and alarm: the alarm's sample
counts from the flow's settings, the model's spans in event time (hold, half-life, smoothing,
recovery, refit) sized with the twin's own sampling period."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.operators.compressor import load_compressor
from twinflow.core.records import AlertState, TelemetryFrame
from twinflow.flows.anomaly_steps import SampleAlarmStep, SampleAnomalyStep
from twinflow.flows.config import FlowConfig
from twinflow.flows.steps import TypeOf
from twinflow.models.spc import SpcDetector
from twinflow.operators.sample_anomaly import SAMPLE_SIGNAL

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
FIVE_MIN = 300.0


def scores_frame(scores: list[float], period: float = FIVE_MIN) -> TelemetryFrame:
    times = START + period * np.arange(len(scores), dtype=np.float64)
    return TelemetryFrame("comp-1", "compressor", times, {SAMPLE_SIGNAL: np.array(scores)})


def raised_at(step: SampleAlarmStep, scores: list[float]) -> list[int]:
    """Indexes of the samples at which the alarm was raised."""
    _, alerts = step(None, scores_frame(scores))
    return [
        round((a.time.timestamp() - START) / FIVE_MIN)
        for a in alerts
        if a.state is AlertState.RAISED
    ]


def test_the_alarm_counts_are_flow_settings() -> None:
    defaults = SampleAlarmStep.from_config(FlowConfig())
    assert (defaults.raise_n, defaults.clear_n, defaults.settle_n, defaults.recover_n) == (
        3,
        6,
        30,
        20,
    )
    assert (defaults.raise_s, defaults.clear_s, defaults.settle_s) == (10.0, 120.0, 60.0)
    # 5-minute samples: 30 watched after warm-up, then 5 above the limit
    scores = [0.5] * 30 + [2.0] * 5 + [0.5] * 10
    assert raised_at(defaults, scores) == [32]  # the third sample above the limit
    five = SampleAlarmStep.from_config(FlowConfig(sample_alarm_raise_n=5))
    assert raised_at(five, scores) == [34]
    six = SampleAlarmStep.from_config(FlowConfig(sample_alarm_raise_n=6))
    assert raised_at(six, scores) == []
    unwatched = SampleAlarmStep.from_config(
        FlowConfig(sample_alarm_settle_n=0, sample_alarm_settle_s=0.0)
    )
    assert raised_at(unwatched, [2.0] * 5) == [2]


def test_the_alarm_clears_after_its_quiet_samples() -> None:
    step = SampleAlarmStep.from_config(
        FlowConfig(sample_alarm_settle_n=0, sample_alarm_settle_s=0.0, sample_alarm_clear_n=4)
    )
    _, alerts = step(None, scores_frame([2.0] * 3 + [0.5] * 6))
    cleared = [a for a in alerts if a.state is AlertState.CLEARED]
    assert [round((a.time.timestamp() - START) / FIVE_MIN) for a in cleared] == [6]


def compressor(n: int, period: float) -> list[TelemetryFrame]:
    """``n`` healthy samples ``period`` seconds apart, in frames of 60."""
    rng = np.random.default_rng(1)
    times = START + period * np.arange(n, dtype=np.float64)
    power = 120.0 + rng.normal(0, 1.0, n)
    pressure = 4.0 + 0.03 * power + rng.normal(0, 0.05, n)
    temp = 40.0 + 0.3 * power + 2.0 * (pressure - 7.0) + rng.normal(0, 0.3, n)
    signals = {"motor_power": power, "discharge_pressure": pressure, "discharge_temp": temp}
    return [
        TelemetryFrame(
            "comp-1",
            "compressor",
            times[i : i + 60],
            {k: v[i : i + 60] for k, v in signals.items()},
        )
        for i in range(0, n, 60)
    ]


def warmed(tmp_path: Path, config: FlowConfig, n: int, period: float) -> SpcDetector:
    """The twin's sample model after ``n`` healthy samples ``period`` seconds apart."""
    step = SampleAnomalyStep.from_config(config, TypeOf({"comp-1": load_compressor(tmp_path)}))
    scorer = None
    for frame in compressor(n, period):
        scorer, _ = step(scorer, frame)
    assert scorer is not None and scorer.detector is not None and scorer.detector.warm
    return scorer.detector


def sized(tmp_path: Path, config: FlowConfig, n: int, period: float) -> tuple[int, float]:
    """The hold and half-life (rows) of the twin's sample model after its warm-up."""
    det = warmed(tmp_path, config, n, period)
    return det.hold, det.half_life


def test_smoothing_recovery_and_refit_follow_the_twins_clock(tmp_path: Path) -> None:
    def spans(config: FlowConfig, period: float) -> tuple[int, int, int, bool]:
        det = warmed(tmp_path, config, 360, period)
        return det.smooth, det.recover_rows, det.refit_every, det.mewma

    assert spans(FlowConfig(), 1.0) == (30, 30, 600, True)  # 1 Hz: rows equal seconds
    assert spans(FlowConfig(), 0.1) == (300, 300, 6000, True)  # 10 Hz: as many seconds
    short = FlowConfig(sample_warmup_slow_s=0.0)  # a warm-up of 300 samples, not a week
    assert spans(short, FIVE_MIN) == (30, 30, 600, True)  # slower: the least rows
    counted = FlowConfig(sample_smooth_s=0.0, sample_recover_s=0.0, sample_refit_s=0.0)
    assert spans(counted, 0.1) == (30, 30, 600, True)
    # one sample every 5 minutes, 30 s is less than a sample and the least is 1: no average
    unsmoothed = FlowConfig(sample_smooth=1, sample_warmup_slow_s=0.0)
    assert spans(unsmoothed, FIVE_MIN)[0::3] == (1, False)
    assert spans(unsmoothed, 1.0)[0::3] == (30, True)


def test_hold_and_half_life_follow_the_twins_clock(tmp_path: Path) -> None:
    assert sized(tmp_path, FlowConfig(), 360, 1.0) == (60, 86400.0)
    # every 5 minutes: the warm-up lasts a week (2,017 samples), the half-life as long;
    # the hold of a minute is less than a sample, so its least samples
    assert sized(tmp_path, FlowConfig(), 2100, FIVE_MIN) == (3, 2017.0)
    short = FlowConfig(sample_warmup_slow_s=0.0, sample_half_life_s=7200.0)
    assert sized(tmp_path, short, 360, FIVE_MIN) == (3, 300.0)  # 24 samples < warm-up's 300
    hours = FlowConfig(sample_warmup_slow_s=0.0, sample_hold_s=3600.0, sample_hold=1)
    assert sized(tmp_path, hours, 360, FIVE_MIN) == (12, 300.0)
    counted = FlowConfig(sample_hold_s=0.0, sample_half_life_s=0.0, sample_hold=60)
    assert sized(tmp_path, counted, 360, 1.0) == (60, 0.0)  # rows only: never forgotten
