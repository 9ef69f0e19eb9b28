"""Rules judged per reading (operators/reading_rules.py): which rules qualify, known raise and
clear times for each kind, the same alerts however the readings are cut into frames, and no
rule judged twice (the window evaluator leaves them alone)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from tests.operators.compressor import load_compressor
from twinflow.core.records import Alert, AlertState, TelemetryFrame, WindowFeatures
from twinflow.core.times import utc
from twinflow.operators.catalog import TwinType
from twinflow.operators.reading_rules import STUCK_QUIET_S, ReadingAlarms, reading_plan
from twinflow.operators.rules import AlarmTracker

T0 = 1_767_225_600.0  # a multiple of the 300 s blocks

HOT = """\
rules:
  hot_now:
    {feature: discharge_temp, above: 120, clear: 110, for: 30s, diagnosis: overheating,
     context: [motor_power]}
  hot_mean:
    {feature: discharge_temp.mean, above: 120, clear: 110, for: 10m, diagnosis: overheating}
"""


@pytest.fixture
def kind(tmp_path: Path) -> TwinType:
    return load_compressor(tmp_path, HOT)


def frames(
    times: np.ndarray,
    cuts: list[int],
    oor: dict[str, np.ndarray] | None = None,
    **signals: np.ndarray,
) -> list[TelemetryFrame]:
    """The readings cut into frames at ``cuts`` (indices)."""
    edges = [0, *cuts, len(times)]
    out = []
    for a, b in itertools.pairwise(edges):
        masks = {k: m[a:b] for k, m in (oor or {}).items() if m[a:b].any()}
        sig = {k: v[a:b] for k, v in signals.items()}
        out.append(TelemetryFrame("c-1", "compressor", times[a:b], sig, out_of_range=masks))
    return out


def run(kind: TwinType, batch: list[TelemetryFrame], spread: float | None = 0.35) -> list[Alert]:
    """The alerts of the frames in order; ``spread``: the pressure's std in a closed window
    (the spike rule's scale; ``None``: no window closed yet)."""
    alarms = ReadingAlarms("c-1", "compressor")
    if spread is not None:
        alarms.learn_window({"discharge_pressure.std": spread}, kind)
    return [a for f in batch for a in alarms.update(f, kind)]


def moves(times: np.ndarray, level: float = 8.0) -> np.ndarray:
    """A healthy signal: a slow wave and small deterministic wiggle (every reading differs)."""
    return level + 0.5 * np.sin(times / 50.0) + 0.01 * np.sin(times * 1.7)


def summary(alerts: list[Alert], rule: str) -> list[tuple[str, float]]:
    return [(a.state.value, a.time.timestamp() - T0) for a in alerts if a.rule == rule]


def test_rules_on_a_raw_value_or_a_scalar_sensor_qualify_window_statistics_do_not(
    kind: TwinType,
) -> None:
    names = reading_plan(kind).names
    assert {"hot_now", "discharge_pressure_stuck", "discharge_pressure_spikes"} <= names
    assert {"discharge_pressure_out_of_range", "motor_power_out_of_range"} <= names
    assert not names & {"hot_mean", "anomaly", "discharge_pressure_dropout"}


def test_a_limit_on_a_raw_signal_raises_after_its_duration_and_clears_with_hysteresis(
    kind: TwinType,
) -> None:
    t = T0 + np.arange(200.0)
    temp = np.where((t >= T0 + 10) & (t < T0 + 100), 125.0, 100.0)
    temp[50] = np.nan  # a dropout changes nothing
    power = np.full(len(t), 180.0)
    alerts = run(kind, frames(t, [37, 120], discharge_temp=temp, motor_power=power))
    # first breach at 10 s, held 30 s: raised at 40 s; below 110 from 100 s for 30 s: 130 s
    assert summary(alerts, "hot_now") == [("raised", 40.0), ("cleared", 130.0)]
    raised = alerts[0]
    assert raised.state is AlertState.RAISED and raised.diagnosis == "overheating"
    assert raised.evidence == {"discharge_temp": 125.0, "threshold": 120.0, "motor_power": 180.0}
    assert raised.raised_at == raised.time == utc(T0 + 40)
    assert alerts[1].alert_id == raised.alert_id == Alert.make_id("c-1", "hot_now", utc(T0 + 40))


def test_a_short_breach_does_not_raise(kind: TwinType) -> None:
    t = T0 + np.arange(100.0)
    temp = np.where((t >= T0 + 10) & (t < T0 + 30), 125.0, 100.0)
    assert run(kind, frames(t, [20], discharge_temp=temp)) == []


def test_range_needs_readings_in_a_row_and_clears_after_half_an_hour_in_range(
    kind: TwinType,
) -> None:
    t = T0 + np.arange(2000.0)
    oor = np.zeros(len(t), dtype=bool)
    oor[[5, 6]] = True  # two in a row: not yet
    oor[[20, 21, 22, 23]] = True  # the third in a row raises
    pressure = np.where(oor, np.nan, moves(t))
    alerts = run(kind, frames(t, [21, 600], {"discharge_pressure": oor},
                              discharge_pressure=pressure))  # fmt: skip
    assert summary(alerts, "discharge_pressure_out_of_range") == [
        ("raised", 22.0),
        ("cleared", 24.0 + 1800.0),
    ]
    assert alerts[0].evidence["discharge_pressure.out_of_range"] == 1.0


def test_a_sensor_that_freezes_raises_stuck_after_quiet_plus_duration(kind: TwinType) -> None:
    t = T0 + np.arange(3600.0)
    frozen_at = 1800  # after six blocks of movement
    pressure = moves(t)
    pressure[frozen_at:] = pressure[frozen_at]
    alerts = run(kind, frames(t, list(range(60, 3600, 60)), discharge_pressure=pressure))
    expected = frozen_at + STUCK_QUIET_S + 600.0
    assert summary(alerts, "discharge_pressure_stuck") == [("raised", expected)]
    assert alerts[0].diagnosis == "sensor_fault"


def test_a_signal_that_never_moved_is_not_stuck(kind: TwinType) -> None:
    t = T0 + np.arange(3600.0)
    alerts = run(kind, frames(t, list(range(60, 3600, 60)), discharge_pressure=np.full(3600, 8.0)))
    assert summary(alerts, "discharge_pressure_stuck") == []


def test_a_spike_raises_at_the_reading_after_it_and_a_step_does_not(kind: TwinType) -> None:
    t = T0 + np.arange(4000.0)
    pressure = moves(t)
    pressure[2000:] += 4.0  # a step of 25 % of the range: no spike
    pressure[1000] += 6.0  # out and back: 37 % of the 16 bar range
    alerts = run(kind, frames(t, list(range(60, 4000, 60)), discharge_pressure=pressure))
    assert summary(alerts, "discharge_pressure_spikes") == [
        ("raised", 1001.0),
        ("cleared", 1002.0 + 1800.0),  # the first reading after it starts the clear time
    ]
    assert alerts[0].evidence["discharge_pressure.spike_pct"] == pytest.approx(37.5, abs=1.0)


def test_a_spike_is_judged_against_the_signals_spread_in_its_last_window(
    kind: TwinType,
) -> None:
    t = T0 + np.arange(1200.0)
    pressure = moves(t)
    pressure[600] += 6.0
    cut = list(range(60, 1200, 60))
    spikes = "discharge_pressure_spikes"
    assert (
        summary(run(kind, frames(t, cut, discharge_pressure=pressure), spread=None), spikes) == []
    )
    # a signal that swings by a bar in its windows: a 6 bar jump is 6 deviations, not a spike
    assert summary(run(kind, frames(t, cut, discharge_pressure=pressure), spread=1.0), spikes) == []
    assert summary(run(kind, frames(t, cut, discharge_pressure=pressure), spread=0.4), spikes) == [
        ("raised", 601.0)
    ]


def test_the_same_alerts_however_the_readings_are_cut_into_frames(kind: TwinType) -> None:
    t = T0 + np.arange(5000.0)
    pressure = moves(t)
    pressure[1200] += 6.0
    pressure[3000:] = pressure[3000]
    temp = np.where((t >= T0 + 500) & (t < T0 + 700), 130.0, 100.0)
    oor = np.zeros(len(t), dtype=bool)
    oor[4000:4010] = True
    pressure[oor] = np.nan
    series = {"discharge_pressure": pressure, "discharge_temp": temp}
    by_minute = run(kind, frames(t, list(range(60, 5000, 60)), {"discharge_pressure": oor},
                                 **series))  # fmt: skip
    odd = run(kind, frames(t, list(range(37, 5000, 53)), {"discharge_pressure": oor}, **series))
    again = run(kind, frames(t, list(range(60, 5000, 60)), {"discharge_pressure": oor},
                             **series))  # fmt: skip
    assert {a.rule for a in by_minute} == {
        "hot_now",
        "discharge_pressure_spikes",
        "discharge_pressure_stuck",
        "discharge_pressure_out_of_range",
    }
    assert by_minute == again
    assert [(a.alert_id, a.state, a.time) for a in by_minute] == [
        (a.alert_id, a.state, a.time) for a in odd
    ]


def test_the_window_evaluator_leaves_per_reading_rules_alone(kind: TwinType) -> None:
    window = WindowFeatures(
        "c-1",
        "compressor",
        utc(T0),
        utc(T0 + 300),
        {"discharge_pressure.out_of_range": 0.5, "discharge_temp.mean": 100.0},
    )
    both = AlarmTracker("c-1", "compressor").evaluate(window, kind)
    assert "discharge_pressure_out_of_range" in {a.rule for a in both}
    left = AlarmTracker("c-1", "compressor", per_reading=True).evaluate(window, kind)
    assert "discharge_pressure_out_of_range" not in {a.rule for a in left}
