"""The sample model's spans given in event time (hold, half-life, smoothing, recovery, refit):
sized in rows at the end of the warm-up from its measured sampling period, so a slowly sampled
twin forgets in a day as a 1 Hz one does, a 10 Hz twin averages its score over as many
seconds, and a 1 Hz twin is scored exactly as with the same spans counted in rows."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

from twinflow.models.spc import SpcDetector
from twinflow.models.spc_warmup import rows_in

NAMES = ("a", "b", "c")
DAY = 86400.0


def machine(n: int, seed: int = 0, fault_from: int | None = None) -> np.ndarray:
    """Three correlated signals; from ``fault_from`` the second breaks away by 3 sd."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 1))
    rows = np.hstack([base, 2 * base, -base]) + 0.2 * rng.standard_normal((n, 3))
    if fault_from is not None:
        rows[fault_from:, 1] += 3.0
    return rows


def run(det: SpcDetector, rows: np.ndarray, period: float) -> np.ndarray:
    times = period * np.arange(len(rows), dtype=float)
    out = [det.update(times[i : i + 60], rows[i : i + 60]) for i in range(0, len(rows), 60)]
    return np.concatenate(out)


def spans(period: float, **kw: Any) -> SpcDetector:
    args: dict[str, Any] = dict(warmup=100, smooth=30, margin=1.5, hold=3, hold_s=60.0)
    args.update(kw)
    det = SpcDetector(NAMES, half_life_s=DAY, **args)
    run(det, machine(120), period)
    assert det.warm
    return det


def test_rows_in_rounds_up_but_not_for_rounding_error() -> None:
    assert rows_in(60.0, 1.0) == 60
    assert rows_in(60.0, 60.0 / 7.0) == 7  # 7.000000000000001 would be 8 by a plain ceil
    assert rows_in(60.0, 300.0) == 1
    assert rows_in(3600.0, 300.0) == 12


def test_at_one_hertz_the_rows_equal_the_seconds() -> None:
    det = spans(1.0)
    assert det.period == 1.0
    assert det.hold == 60 and det.half_life == DAY


def test_every_five_minutes_a_day_is_288_rows_and_the_hold_its_least_rows() -> None:
    det = spans(300.0)
    assert det.period == 300.0
    assert det.half_life == 288.0  # a day of 5-minute rows, not 86,400 rows (300 days)
    assert det.hold == 3  # 60 s is less than one row: the least rows


def test_the_half_life_is_never_shorter_than_the_warm_up() -> None:
    hourly = spans(3600.0)
    assert hourly.half_life == 100.0  # 24 rows a day, but the warm-up took 100
    week = SpcDetector(
        NAMES, warmup=100, warmup_slow_s=7 * DAY, hold=3, hold_s=60.0, half_life_s=DAY
    )
    run(week, machine(2100), 300.0)
    assert week.warm and week.n_seen == 2017  # a week of 5-minute rows
    assert week.half_life == 2017.0


def test_without_the_times_the_rows_stay() -> None:
    det = SpcDetector(NAMES, warmup=100, hold=60, half_life=500.0)
    run(det, machine(120), 300.0)
    assert det.hold == 60 and det.half_life == 500.0


def test_one_hertz_scores_equal_the_same_spans_counted_in_rows() -> None:
    rows = machine(1500, seed=3, fault_from=900)
    old = SpcDetector(NAMES, warmup=300, smooth=30, margin=1.5, hold=60, half_life=DAY)
    new = SpcDetector(
        NAMES, warmup=300, smooth=30, margin=1.5, hold=3, hold_s=60.0, half_life_s=DAY
    )
    a, b = run(old, rows, 1.0), run(new, rows, 1.0)
    np.testing.assert_array_equal(a, b)
    assert (b[950:] > 1.0).mean() > 0.9  # the fault is found


def test_scores_do_not_depend_on_the_time_unit() -> None:
    """The same rows stamped every second or every 5 minutes, with every span in event time
    scaled alike, score the same: the spans follow the twin's own clock."""
    rows = machine(1500, seed=4, fault_from=900)
    fast = SpcDetector(NAMES, warmup=300, smooth=30, hold=3, hold_s=60.0, half_life_s=600.0)
    slow = SpcDetector(
        NAMES, warmup=300, smooth=30, hold=3, hold_s=300 * 60.0, half_life_s=300 * 600.0
    )
    np.testing.assert_allclose(run(fast, rows, 1.0), run(slow, rows, 300.0))
    assert slow.half_life == fast.half_life == 600.0 and slow.hold == fast.hold == 60


def test_a_detector_pickled_before_the_times_existed_keeps_its_rows() -> None:
    det = spans(300.0)
    state = det.__dict__.copy()
    del state["hold_s"], state["half_life_s"]
    old = SpcDetector.__new__(SpcDetector)
    old.__setstate__(state)
    assert old.hold_s == 0.0 and old.half_life_s == 0.0
    back = pickle.loads(pickle.dumps(old))
    assert back.hold == 3 and back.half_life == 288.0


#: Every span in event time, at 1 Hz the rows a 1 Hz detector is given.
SECONDS: dict[str, float] = dict(
    hold_s=60.0, half_life_s=DAY, smooth_s=30.0, recover_s=30.0, refit_s=600.0
)


def test_one_hertz_scores_equal_every_span_counted_in_rows() -> None:
    rows = machine(2400, seed=5, fault_from=900)
    rows[1500:, 1] -= 2.0  # the fault ends at a new level: the recovery rule moves normal
    old = SpcDetector(NAMES, warmup=300, margin=1.5, hold=60, half_life=DAY, smooth=30)
    new = SpcDetector(NAMES, warmup=300, margin=1.5, hold=3, smooth=1, **SECONDS)
    a, b = run(old, rows, 1.0), run(new, rows, 1.0)
    np.testing.assert_array_equal(a, b)
    assert (new.smooth, new.recover_rows, new.refit_every, new.mewma) == (30, 30, 600, True)
    assert new.recoveries == old.recoveries >= 1


def test_ten_hertz_scores_equal_one_hertz_with_every_span_in_time() -> None:
    """The same rows stamped ten a second with the least rows a tenth (or one): every span
    comes from the time, so the scores are those of the 1 Hz twin."""
    rows = machine(2400, seed=6, fault_from=900)
    rows[1500:, 1] -= 2.0
    args: dict[str, Any] = dict(warmup=300, margin=1.5, **SECONDS)
    slow = SpcDetector(NAMES, hold=60, smooth=30, recover_rows=30, refit_every=600, **args)
    args.update({k: v / 10.0 for k, v in SECONDS.items()})
    fast = SpcDetector(NAMES, hold=1, smooth=1, recover_rows=1, refit_every=1, **args)
    np.testing.assert_allclose(run(fast, rows, 0.1), run(slow, rows, 1.0))
    assert fast.period == pytest.approx(0.1)
    assert (fast.smooth, fast.recover_rows, fast.refit_every) == (30, 30, 600)
    assert fast.recoveries == slow.recoveries >= 1


def test_a_ten_hertz_twin_averages_over_seconds_not_rows() -> None:
    """Noise at 10 Hz: an average over 30 rows (3 s) is noisier than one over 30 s, so the
    calibrated limit sits higher and a small lasting shift stays under it for longer."""
    rng = np.random.default_rng(7)
    base = rng.standard_normal((9000, 1))
    rows = np.hstack([base, 2 * base, -base]) + 0.5 * rng.standard_normal((9000, 3))
    rows[6000:, 1] += 0.6  # small: a row's T² barely moves, an average of many does
    rows_only = SpcDetector(NAMES, warmup=3000, margin=1.5, smooth=30)
    in_time = SpcDetector(NAMES, warmup=3000, margin=1.5, smooth=30, smooth_s=30.0)
    a, b = run(rows_only, rows, 0.1), run(in_time, rows, 0.1)
    assert in_time.smooth == 300 and rows_only.smooth == 30
    assert (b[6600:] > 1.0).mean() > (a[6600:] > 1.0).mean()


def test_a_detector_pickled_before_smoothing_in_time_keeps_its_rows() -> None:
    det = spans(1.0)
    state = det.__dict__.copy()
    del state["smooth_s"], state["recover_s"], state["refit_s"]
    old = SpcDetector.__new__(SpcDetector)
    old.__setstate__(state)
    assert (old.smooth_s, old.recover_s, old.refit_s) == (0.0, 0.0, 0.0)
    back = pickle.loads(pickle.dumps(old))
    assert (back.smooth, back.recover_rows, back.refit_every) == (30, 30, 600)
