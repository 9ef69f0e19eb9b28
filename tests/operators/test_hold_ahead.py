"""Issue 11: a reading far ahead of a twin's data does not push its windows ahead."""

from __future__ import annotations

import pickle

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from twinflow.core.records import TelemetryFrame
from twinflow.operators.catalog import twin_type
from twinflow.operators.windows import MAX_HELD, WindowAggregator

PUMP = twin_type("pump")
T0 = 1_767_225_600.0  # 2026-01-01, a window boundary


def reading(t: float, value: float = 250.0) -> TelemetryFrame:
    return TelemetryFrame("P1", "pump", np.array([t]), {"flow_m3h": np.array([value])})


def counted(windows: list) -> int:  # type: ignore[type-arg]
    return sum(w.counts["flow_m3h"] for w in windows)


def test_one_future_reading_does_not_make_the_next_ones_late() -> None:
    agg = WindowAggregator("P1", PUMP, length_s=60.0, lateness_s=10.0)
    windows, dead = [], []
    for i in range(30):
        w, d = agg.add(reading(T0 + i))
        windows += w
        dead += d
    w, d = agg.add(reading(T0 + 30 + 250))  # a clock error inside max_future_s (300 s)
    windows += w
    dead += d
    assert agg.held == 1
    for i in range(30, 400):
        w, d = agg.add(reading(T0 + i))
        windows += w
        dead += d
    assert dead == [], [x.reason for x in dead]
    assert agg.held == 0  # folded once the twin's data reached it
    windows += agg.flush()
    assert counted(windows) == 401  # every good reading, and the future one in its window


def test_future_row_in_a_merged_batch_is_held_alone() -> None:
    agg = WindowAggregator("P1", PUMP, length_s=60.0, lateness_s=10.0)
    for i in range(10):
        agg.add(reading(T0 + i))
    batch = TelemetryFrame(
        "P1", "pump", np.array([T0 + 10, T0 + 11, T0 + 280]), {"flow_m3h": np.ones(3)}
    )
    agg.add(batch)
    assert agg.held == 1 and agg.watermark == T0 + 11 - 10
    _, dead = agg.add(reading(T0 + 12))
    assert dead == []


def test_a_real_jump_is_followed() -> None:
    """A twin that resumes after an hour's pause: its windows move on after a few frames."""
    agg = WindowAggregator("P1", PUMP, length_s=60.0, lateness_s=10.0)
    for i in range(120):
        agg.add(reading(T0 + i))
    windows = []
    for i in range(8):
        w, dead = agg.add(reading(T0 + 3600 + i))
        windows += w
        assert dead == []
    assert agg.held == 0
    assert agg.watermark == T0 + 3607 - 10
    assert windows and windows[-1].end.timestamp() <= T0 + 3600


def test_the_hold_is_bounded() -> None:
    agg = WindowAggregator("P1", PUMP, length_s=60.0, lateness_s=0.0)
    for i in range(20):
        agg.add(reading(T0 + i))
    for i in range(40):  # far-future readings, each alone, then the twin's data again
        agg.add(reading(T0 + 10_000 + 1000 * i))
        agg.add(reading(T0 + 20 + i))
        assert agg.held <= MAX_HELD


def test_old_snapshots_resume() -> None:
    agg = WindowAggregator("P1", PUMP)
    agg.add(reading(T0))
    state = agg.__dict__.copy()
    for key in ("_held", "_steps", "hold_ahead"):
        del state[key]
    old = WindowAggregator.__new__(WindowAggregator)
    old.__setstate__(state)
    restored = pickle.loads(pickle.dumps(old))
    assert restored.add(reading(T0 + 1))[1] == []
    assert restored.held == 0


@given(
    steps=st.lists(st.floats(0.0, 5.0), min_size=1, max_size=200),
    jumps=st.lists(st.tuples(st.integers(0, 199), st.floats(-500.0, 300.0)), max_size=5),
    lateness=st.sampled_from([0.0, 10.0, 60.0]),
)
def test_no_reading_is_lost(
    steps: list[float], jumps: list[tuple[int, float]], lateness: float
) -> None:
    """Every reading ends in a window or in a late dead letter, with the hold on."""
    times = T0 + np.cumsum(steps)
    frames = [reading(float(t)) for t in times]
    for i, offset in jumps:
        frames.insert(min(i, len(frames)), reading(float(times[min(i, len(times) - 1)]) + offset))
    agg = WindowAggregator("P1", PUMP, length_s=60.0, lateness_s=lateness)
    windows, late = [], 0
    for f in frames:
        w, dead = agg.add(f)
        windows += w
        late += sum(d.readings for d in dead)
    windows += agg.flush()
    assert counted(windows) + late == len(frames)
    starts = [w.start for w in windows]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
