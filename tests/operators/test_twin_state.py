"""Twin state: last values, quality, staleness, status transitions and snapshots."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from twinflow.connectors.simulator.types import MOTOR, PUMP
from twinflow.core.errors import ValidationError
from twinflow.core.records import Quality, SyncStatus, TelemetryFrame, TwinState, WaveformFrame
from twinflow.core.times import utc
from twinflow.operators.twin_state import TwinStateTracker

T0 = 1_700_000_000.0
PUMP_SIGNALS = [s.name for s in PUMP.signals]


def frame(
    times: list[float], quality: dict[str, Quality] | None = None, **signals: list[float]
) -> TelemetryFrame:
    t = np.array(times) + T0
    data = {k: np.array(v, dtype=float) for k, v in signals.items()}
    return TelemetryFrame("P1", "pump", t, data, quality=quality or {})


def full(times: list[float], value: float = 1.0, **q: Quality) -> TelemetryFrame:
    return frame(times, quality=q, **{k: [value] * len(times) for k in PUMP_SIGNALS})


def statuses(states: list[TwinState]) -> list[str]:
    return [s.status.value for s in states]


def test_initializing_until_every_signal_has_a_value() -> None:
    tr = TwinStateTracker("P1", PUMP)
    first = tr.update(frame([0, 1], flow_m3h=[1, 2], suction_bar=[np.nan, np.nan]))
    assert statuses(first) == ["initializing"]
    assert set(first[0].signals) == {"flow_m3h", "suction_bar"}
    assert math.isnan(first[0].signals["suction_bar"].value)  # reported, no value yet
    assert tr.update(frame([2], flow_m3h=[3])) == []  # unchanged status: nothing new
    assert statuses(tr.update(full([3]))) == ["synchronized"]


def test_last_non_nan_value_and_its_time() -> None:
    tr = TwinStateTracker("P1", PUMP)
    tr.update(full([0]))
    tr.update(frame([1, 2, 3], flow_m3h=[5, 6, np.nan], suction_bar=[np.nan] * 3))
    state = tr.snapshot_state()
    assert state.signals["flow_m3h"].value == 6.0
    assert state.signals["flow_m3h"].time == T0 + 2
    assert state.signals["suction_bar"].value == 1.0
    assert state.signals["suction_bar"].time == T0
    assert state.time == utc(T0 + 3)


def test_older_frames_do_not_roll_back() -> None:
    tr = TwinStateTracker("P1", PUMP)
    tr.update(full([10], value=2.0))
    tr.update(full([5], value=9.0, flow_m3h=Quality.BAD))
    state = tr.snapshot_state()
    assert state.signals["flow_m3h"].value == 2.0
    assert state.signals["flow_m3h"].quality is Quality.GOOD
    assert state.time == utc(T0 + 10)


def test_stale_threshold_is_exclusive() -> None:
    tr = TwinStateTracker("P1", PUMP, stale_factor=3.0, min_stale_s=5.0)
    tr.update(full([0]))
    assert tr.update(frame([5], flow_m3h=[1])) == []  # 5 s silent: not yet stale
    states = tr.update(frame([5.5], flow_m3h=[1]))
    assert statuses(states) == ["stale"]
    sig = states[0].signals
    assert sig["suction_bar"].stale and not sig["flow_m3h"].stale
    assert statuses(tr.update(full([6]))) == ["synchronized"]


def test_stale_factor_uses_expected_interval() -> None:
    tr = TwinStateTracker("M1", MOTOR, stale_factor=3.0, min_stale_s=5.0)
    scalars = {s.name: np.ones(1) for s in MOTOR.scalar_signals}
    burst = WaveformFrame("M1", "motor", "vibration", T0, 8192.0, np.full(8192, 2.0))
    tr.update(burst)
    tr.update(TelemetryFrame("M1", "motor", np.array([T0]), scalars))
    assert tr.status() is SyncStatus.SYNCHRONIZED
    vib = tr.snapshot_state().signals["vibration"]
    assert vib.value == pytest.approx(2.0)  # burst RMS
    assert vib.time == T0 + 8191 / 8192
    for t in range(1, 181):  # bursts every 60 s: stale only after 3 × 60 s
        tr.update(TelemetryFrame("M1", "motor", np.array([T0 + t]), scalars))
    assert tr.status() is SyncStatus.SYNCHRONIZED
    assert statuses(tr.update(TelemetryFrame("M1", "motor", np.array([T0 + 181.5]), scalars))) == [
        "stale"
    ]


def test_bad_quality_is_an_error_until_good_again() -> None:
    tr = TwinStateTracker("P1", PUMP)
    tr.update(full([0]))
    states = tr.update(frame([1], quality={"flow_m3h": Quality.BAD}, flow_m3h=[np.nan]))
    assert statuses(states) == ["error"]
    assert states[0].signals["flow_m3h"].quality is Quality.BAD
    assert statuses(tr.update(frame([2], flow_m3h=[3.0]))) == ["synchronized"]


def test_quality_without_values_and_reported_stale() -> None:
    tr = TwinStateTracker("P1", PUMP)
    tr.update(full([0]))
    states = tr.update(frame([1], quality={"discharge_bar": Quality.STALE}, flow_m3h=[1]))
    assert statuses(states) == ["stale"]
    assert states[0].signals["discharge_bar"].stale


def test_error_outranks_stale() -> None:
    tr = TwinStateTracker("P1", PUMP)
    tr.update(full([0]))
    states = tr.update(frame([100], quality={"flow_m3h": Quality.BAD}, flow_m3h=[1]))
    assert statuses(states) == ["error"]


def test_periodic_snapshot_in_event_time() -> None:
    tr = TwinStateTracker("P1", PUMP, snapshot_interval_s=60.0)
    emitted = []
    for t in range(0, 200):
        emitted += tr.update(full([t]))
    assert [s.time for s in emitted] == [utc(T0 + t) for t in (0, 60, 120, 180)]
    assert {s.status for s in emitted} == {SyncStatus.SYNCHRONIZED}


def test_readings_and_dead_letters_are_counted() -> None:
    tr = TwinStateTracker("P1", PUMP)
    tr.update(full([0, 1]))
    tr.update(frame([2, 3, 4], flow_m3h=[1, 2, np.nan]))
    tr.count_dead_letters(2)
    tr.count_dead_letters()
    state = tr.snapshot_state()
    assert state.readings == 2 * len(PUMP_SIGNALS) + 3
    assert state.dead_letters == 3


def test_extra_signals_are_ignored() -> None:
    tr = TwinStateTracker("P1", PUMP)
    tr.update(frame([0], quality={"efficiency": Quality.BAD}, flow_m3h=[1], efficiency=[0.7]))
    assert set(tr.snapshot_state().signals) == {"flow_m3h"}


def test_snapshot_before_any_frame() -> None:
    state = TwinStateTracker("P1", PUMP).snapshot_state()
    assert state.status is SyncStatus.INITIALIZING
    assert state.time == utc(0.0) and dict(state.signals) == {}


def test_other_twins_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"tracker of twin 'P2'.*twin 'P1'"):
        TwinStateTracker("P2", PUMP).update(full([0]))


def test_all_nan_waveform_keeps_last_value() -> None:
    tr = TwinStateTracker("M1", MOTOR)
    tr.update(WaveformFrame("M1", "motor", "vibration", T0, 100.0, np.array([3.0, -3.0])))
    samples = np.array([np.nan, 4.0, np.nan])
    tr.update(WaveformFrame("M1", "motor", "vibration", T0 + 5, 100.0, samples))
    vib = tr.snapshot_state().signals["vibration"]
    assert vib.value == 4.0 and vib.time == pytest.approx(T0 + 5.01)
    tr.update(WaveformFrame("M1", "motor", "vibration", T0 + 9, 100.0, np.full(4, np.nan)))
    assert tr.snapshot_state().signals["vibration"].value == 4.0


def test_state_is_small_and_does_not_grow() -> None:
    tr = TwinStateTracker("P1", PUMP)
    tr.update(full(list(range(60))))
    size = len(pickle.dumps(tr))
    for k in range(1, 500):
        tr.update(full([60.0 * k + i for i in range(60)], value=float(k)))
    blob = pickle.dumps(tr)
    assert len(blob) <= size + 16 and len(blob) < 4096
    copy = pickle.loads(blob)
    assert copy.snapshot_state() == tr.snapshot_state()
