"""Event-time windows: statistics equal numpy per window, late data is counted exactly."""

from __future__ import annotations

import itertools
import math
import pickle
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.operators.oracle import numpy_stats
from twinflow.connectors.simulator.types import MOTOR, PUMP
from twinflow.core.errors import ConfigError, ValidationError
from twinflow.core.records import TelemetryFrame, WaveformFrame, WindowFeatures
from twinflow.core.times import utc
from twinflow.operators.features import spectrum_features
from twinflow.operators.windows import WindowAggregator

T0 = 1_700_000_000.0
PUMP_SIGNALS = [s.name for s in PUMP.signals]
STATS = ("mean", "std", "min", "max", "rms", "peak", "slope", "missing")


def signal_features(w: WindowFeatures, name: str) -> dict[str, float]:
    return {s: w.features[f"{name}.{s}"] for s in STATS if f"{name}.{s}" in w.features}


def assert_close(got: dict[str, float], want: dict[str, float], scale: float) -> None:
    assert set(got) == set(want), (got, want)
    for key, value in want.items():
        tol = 1e-6 * scale * 3600 if key == "slope" else 1e-9 * scale
        assert math.isclose(got[key], value, rel_tol=1e-9, abs_tol=tol), (key, got[key], value)


def make_frames(seed: int, n: int, pieces: int, shuffle: float) -> list[TelemetryFrame]:
    """A random pump stream: 0.5 s time grid, NaN dropouts, random signal subsets and an
    extra derived signal, cut into frames whose order is partly shuffled."""
    rng = np.random.default_rng(seed)
    times = T0 + np.sort(rng.integers(0, 6000, n)) * 0.5
    names = [*PUMP_SIGNALS, "efficiency"]
    cuts = np.unique(np.concatenate(([0, n], rng.integers(0, n, pieces))))
    frames = []
    for a, b in itertools.pairwise(cuts.tolist()):
        chosen = [x for x in names if rng.random() < 0.6] or [names[0]]
        signals = {}
        for name in chosen:
            v = rng.normal(rng.uniform(-100, 100), rng.uniform(0.1, 50), b - a)
            v[rng.random(b - a) < 0.15] = np.nan
            signals[name] = v
        frames.append(TelemetryFrame("P1", "pump", times[a:b], signals))
    order = np.arange(len(frames))
    swaps = rng.random(len(frames)) < shuffle
    for i in np.flatnonzero(swaps):
        j = rng.integers(0, len(frames))
        order[i], order[j] = order[j], order[i]
    return [frames[i] for i in order]


def reference(frames: list[TelemetryFrame], length: float, lateness: float):  # type: ignore[no-untyped-def]
    """Plain model: a reading is late when it is before the last window boundary at or
    below (newest earlier time - lateness); the others go to window floor(t / length)."""
    newest, late = -math.inf, 0
    data: dict[int, dict[str, list[tuple[np.ndarray, np.ndarray]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for f in frames:
        closed = (
            math.floor((newest - lateness) / length) * length if newest > -math.inf else -math.inf
        )
        keep = f.times >= closed
        late += int((~keep).sum()) * len(f.signals)
        t = f.times[keep]
        if t.size == 0:
            continue
        newest = max(newest, float(t.max()))
        k = np.floor(t / length).astype(int)
        for name, v in f.signals.items():
            for w in np.unique(k):
                data[int(w)][name].append((t[k == w], v[keep][k == w]))
    return data, late


@settings(max_examples=80)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 600),
    pieces=st.integers(0, 40),
    length=st.sampled_from([1.0, 7.5, 60.0, 300.0]),
    lateness=st.sampled_from([0.0, 5.0, 60.0, 1000.0]),
    shuffle=st.sampled_from([0.0, 0.2, 1.0]),
)
def test_windows_equal_numpy_and_late_is_exact(
    seed: int, n: int, pieces: int, length: float, lateness: float, shuffle: float
) -> None:
    frames = make_frames(seed, n, pieces, shuffle)
    # the reference is the plain watermark; holding jumps ahead is tested in test_hold_ahead.py
    agg = WindowAggregator("P1", PUMP, length_s=length, lateness_s=lateness, hold_ahead=False)
    emitted: list[WindowFeatures] = []
    late_letters = 0
    for f in frames:
        windows, dead = agg.add(f)
        for w in windows:
            assert w.end.timestamp() <= agg.watermark
        emitted += windows
        late_letters += sum(d.readings for d in dead)
        assert all(d.stage == "window" and d.twin_id == "P1" for d in dead)
        assert len(dead) <= 1
    emitted += agg.flush()
    assert agg.open_windows == 0

    data, late = reference(frames, length, lateness)
    assert late_letters == late == agg.late_total
    assert sum(w.late for w in emitted) + agg.pending_late == late

    starts = [w.start.timestamp() for w in emitted]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    assert starts == [k * length for k in sorted(data)]
    for w in emitted:
        assert w.end.timestamp() - w.start.timestamp() == length
        assert w.start.tzinfo is not None
        parts = data[round(w.start.timestamp() / length)]
        for name in {*PUMP_SIGNALS, *parts}:
            if name not in parts:
                assert signal_features(w, name) == {"missing": 1.0}
                assert w.counts[name] == 0
                continue
            t = np.concatenate([p[0] for p in parts[name]])
            v = np.concatenate([p[1] for p in parts[name]])
            scale = float(np.nanmax(np.abs(v))) if np.isfinite(v).any() else 1.0
            assert_close(signal_features(w, name), numpy_stats(t, v), scale)
            assert w.counts[name] == int(np.isfinite(v).sum())
        assert not any(math.isnan(x) for x in w.features.values())


def pump(times: list[float], **signals: list[float]) -> TelemetryFrame:
    return TelemetryFrame(
        "P1",
        "pump",
        T0 + np.array(times, dtype=float),
        {k: np.array(v, dtype=float) for k, v in signals.items()},
    )


def test_frame_spanning_windows_and_gaps() -> None:
    agg = WindowAggregator("P1", PUMP, length_s=300.0, lateness_s=0.0)
    # T0 is 1_700_000_000 = 5_666_666 × 300 + 200: the first window ends at T0 + 100.
    windows, dead = agg.add(pump([0, 50, 100, 1000, 5000], flow_m3h=[1, 2, 3, 4, 5]))
    assert dead == []
    assert [(w.start, w.counts["flow_m3h"]) for w in windows] == [
        (utc(T0 - 200), 2),
        (utc(T0 + 100), 1),
        (utc(T0 + 1000), 1),
    ]
    assert windows[0].features["flow_m3h.mean"] == 1.5
    assert agg.open_windows == 1


def test_missing_signals_and_extra_signals() -> None:
    agg = WindowAggregator("P1", PUMP, length_s=60.0, lateness_s=0.0)
    agg.add(
        pump(
            [-190, -185],
            flow_m3h=[1, np.nan],
            suction_bar=[np.nan, np.nan],
            power_residual_kw=[-3.0, 5.0],
        )
    )
    (w,) = agg.flush()
    assert signal_features(w, "flow_m3h") == {
        "missing": 0.5,
        "mean": 1.0,
        "std": 0.0,
        "min": 1.0,
        "max": 1.0,
        "rms": 1.0,
        "peak": 1.0,
    }
    assert signal_features(w, "suction_bar") == {"missing": 1.0}
    assert signal_features(w, "discharge_bar") == {"missing": 1.0}
    residual = signal_features(w, "power_residual_kw")
    assert residual["mean"] == 1.0 and residual["peak"] == 5.0
    assert residual["slope"] == pytest.approx(8.0 / 5.0 * 3600)
    assert w.counts == {
        "flow_m3h": 1,
        "suction_bar": 0,
        "discharge_bar": 0,
        "motor_current_a": 0,
        "motor_voltage_v": 0,
        "flow_setpoint_m3h": 0,
        "power_residual_kw": 2,
    }


def test_late_readings_are_dead_letters_and_counted() -> None:
    agg = WindowAggregator("P1", PUMP, length_s=60.0, lateness_s=10.0)
    base = -200.0  # T0 - 200 is a window boundary (60 s grid)
    windows, _ = agg.add(pump([base + 0, base + 70], flow_m3h=[1, 2]))
    assert [w.start for w in windows] == [utc(T0 + base)]
    windows, dead = agg.add(
        pump([base + 30, base + 59, base + 60], flow_m3h=[7, 8, 9], suction_bar=[1, 1, 1])
    )
    assert windows == []
    (letter,) = dead
    assert letter.readings == 4 and letter.stage == "window" and letter.twin_id == "P1"
    assert letter.reason.startswith(
        "late by 40 s: window [2023-11-14T22:10:00Z, 2023-11-14T22:11:00Z) already closed"
    )
    assert letter.time == utc(T0 + base + 70)
    assert agg.late_total == 4
    (w,) = agg.flush()
    assert w.late == 4 and w.counts["flow_m3h"] == 2 and w.features["flow_m3h.mean"] == 5.5
    _, dead = agg.add(pump([base + 100], flow_m3h=[1]))
    assert dead[0].readings == 1 and agg.late_total == 5


def test_waveforms_fold_moments_and_average_spectra() -> None:
    agg = WindowAggregator("M1", MOTOR, length_s=300.0, lateness_s=0.0)
    rate, n = 8192.0, 4096
    start = T0 - 200  # window boundary
    t = np.arange(n) / rate
    bursts = [np.sin(2 * np.pi * 100.0 * t), 2 * np.sin(2 * np.pi * 300.0 * t)]
    bursts[1][7] = np.nan
    for i, x in enumerate(bursts):
        out = agg.add(WaveformFrame("M1", "motor", "vibration", start + 60 * i, rate, x))
        assert out == ([], [])
    windows, _ = agg.add(WaveformFrame("M1", "motor", "vibration", start + 300, rate, bursts[0]))
    (w,) = windows
    spectra = [spectrum_features(x, rate, MOTOR.bands, MOTOR.fault_frequencies) for x in bursts]
    for key in spectra[0]:
        assert w.features[f"vibration.{key}"] == pytest.approx(
            (spectra[0][key] + spectra[1][key]) / 2
        )
    assert {
        "vibration.dominant_hz",
        "vibration.band_0_50",
        "vibration.fault_bpfo",
        "vibration.fault_ratio",
    } <= set(w.features)
    times = np.concatenate([start + t, start + 60 + t])
    values = np.concatenate(bursts)
    assert_close(signal_features(w, "vibration"), numpy_stats(times, values), 2.0)
    assert w.counts["vibration"] == 2 * n - 1
    assert w.features["winding_temp.missing"] == 1.0
    _, dead = agg.add(WaveformFrame("M1", "motor", "vibration", start + 100, rate, bursts[0]))
    assert dead[0].readings == n and agg.late_total == n


def test_state_is_bounded_and_picklable() -> None:
    agg = WindowAggregator("P1", PUMP, length_s=300.0, lateness_s=60.0)
    rng = np.random.default_rng(0)
    sizes = []
    emitted = 0
    for i in range(2000):  # 2000 frames of 60 s: 400 windows
        times = T0 + 60.0 * i + np.arange(60.0)
        frame = TelemetryFrame("P1", "pump", times, {k: rng.normal(size=60) for k in PUMP_SIGNALS})
        emitted += len(agg.add(frame)[0])
        assert agg.open_windows <= 2
        if i % 100 == 99:
            sizes.append(len(pickle.dumps(agg)))
    assert emitted == 400
    assert max(sizes) < 8192
    assert max(sizes) - min(sizes) < 64
    restored = pickle.loads(pickle.dumps(agg))
    assert [w.features for w in restored.flush()] == [w.features for w in agg.flush()]


def test_refuses_other_twins_and_bad_settings() -> None:
    with pytest.raises(ValidationError, match=r"windows of twin 'P2'.*twin 'P1'"):
        WindowAggregator("P2", PUMP).add(pump([0], flow_m3h=[1]))
    with pytest.raises(ConfigError, match="length_s must be > 0"):
        WindowAggregator("P1", PUMP, length_s=0.0)
    with pytest.raises(ConfigError, match="lateness_s must be >= 0"):
        WindowAggregator("P1", PUMP, lateness_s=-1.0)


def test_flush_on_empty_aggregator() -> None:
    agg = WindowAggregator("P1", PUMP)
    assert agg.flush() == []
    assert agg.add(pump([0], flow_m3h=[1]))[1] == []
