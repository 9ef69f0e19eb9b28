"""The SPC model's warm-up and adaptation on synthetic data with known answers: a warm-up that
restarts after a level shift (and only then), its cap, learning frozen while anomalous, the
drift rule on a slow ramp, and the false-alarm rate on independent noise."""

from __future__ import annotations

import numpy as np
import pytest

from twinflow.models.spc import SpcDetector
from twinflow.models.spc_warmup import Warmup, level_shift

NAMES = tuple(f"x{i}" for i in range(4))


def noise(n: int, seed: int = 0, k: int = 4) -> np.ndarray:
    """Four correlated signals of unit-ish spread (two latent factors plus noise)."""
    rng = np.random.default_rng(seed)
    f = rng.standard_normal((n, 2))
    mix = np.array([[1.0, 0.5, 0.0, -0.5], [0.0, 0.5, 1.0, 0.5]])[:, :k]
    out: np.ndarray = f @ mix + 0.5 * rng.standard_normal((n, k))
    return out


def detector(**kw: float) -> SpcDetector:
    args: dict[str, float] = dict(
        warmup=300, warmup_shift=4.0, warmup_cap=600, quantile=0.99, smooth=30, margin=1.5
    )
    args.update(kw)
    return SpcDetector(NAMES, **args)  # type: ignore[arg-type]


def feed(det: SpcDetector, rows: np.ndarray, start: int = 0, batch: int = 60) -> np.ndarray:
    """Score ``rows`` in frames of ``batch`` rows, one per second from ``start``."""
    out = [
        det.update(np.arange(start + i, start + i + len(chunk), dtype=float), chunk)
        for i in range(0, len(rows), batch)
        for chunk in [rows[i : i + batch]]
    ]
    return np.concatenate(out)


@pytest.mark.parametrize("at", [60, 150, 240])
def test_level_shift_finds_the_step(at: int) -> None:
    rows = noise(300, seed=at)
    rows[at:, 1] += 5.0
    k, d = level_shift(rows, np.zeros(4), 30)
    assert abs(k - at) <= 3
    assert d > 4.0


def test_a_ramp_never_reads_as_a_step() -> None:
    """However steep, a steady ramp stays under the √12 / 2 of a uniform spread."""
    t = np.linspace(0.0, 1.0, 300)[:, None]
    for slope in (1.0, 10.0, 1000.0):
        _k, d = level_shift(slope * t + 0.01 * noise(300, k=1), np.zeros(1), 30)
        assert d < 3.5


def test_warmup_restarts_after_a_level_shift_and_learns_the_new_level() -> None:
    rows = noise(900, seed=1)
    rows[200:, 0] += 6.0  # the machine changes state 200 s into its warm-up
    det = detector()
    scores = feed(det, rows)
    assert det.restarts == 1 and not det.unsettled
    # the warm-up went on until 150 rows (half of it) followed the shift
    assert det.warm and np.isnan(scores[:349]).all() and np.isfinite(scores[360:]).all()
    assert np.nanmean(scores[400:] > 1.0) < 0.02  # the new level is normal
    old = noise(120, seed=2)  # and the old one is not
    assert np.nanmean(feed(det, old, start=900) > 1.0) > 0.5


def test_a_stable_warmup_does_not_restart() -> None:
    for seed in range(5):
        det = detector()
        scores = feed(det, noise(400, seed=10 + seed))
        assert det.restarts == 0
        assert np.isnan(scores[:300]).all() and np.isfinite(scores[300:]).all()


def test_without_the_test_the_shift_is_learned_as_normal_spread() -> None:
    """The failure the restart exists for: a warm-up spanning two levels calibrates its
    limits on both, so a later fault of the same size hides inside them."""
    rows = noise(900, seed=3)
    rows[200:, 0] += 6.0
    rows[600:, 0] -= 4.0  # a fault: the signal falls back most of the way
    plain = feed(detector(warmup_shift=0.0), rows)
    restarted = feed(detector(), rows)
    assert np.nanmean(plain[620:] > 1.0) < 0.5
    assert np.nanmean(restarted[620:] > 1.0) > 0.9


def test_the_cap_fits_a_machine_that_never_settles() -> None:
    rows = noise(900, seed=4)
    for start in range(250, 900, 80):  # from 250 s on, a new level every 80 s
        rows[start:, 2] += 10.0
    det = detector()
    scores = feed(det, rows)
    assert det.unsettled and det.warm
    assert det.n_seen == 600  # the cap
    assert np.isnan(scores[:600]).all() and np.isfinite(scores[600:]).all()


def test_the_cap_never_cuts_a_warmup_sized_in_time() -> None:
    """Slow sampling: one row every 5 minutes, a warm-up of a week (2016 rows) and the
    default cap of 600 rows. The warm-up lasts the week (the cap bounds restarts only);
    without ``warmup_s`` the cap still ends a warm-up that never settles at 600 rows."""
    rows = noise(2400, seed=3)
    det = detector(warmup_s=7 * 86400.0)
    out = [
        det.update(300.0 * np.arange(i, i + 60, dtype=float), rows[i : i + 60])
        for i in range(0, len(rows), 60)
    ]
    scores = np.concatenate(out)
    assert np.isnan(scores[:2016]).all() and np.isfinite(scores[2017:]).all()
    wu = Warmup(300, cap=600)
    assert wu.needed(np.arange(700.0)) == (300, True)
    timed = Warmup(300, seconds=1000.0, cap=600)
    assert timed.needed(np.arange(700.0)) == (700, False)  # 699 s seen: not yet due
    timed.keep(np.zeros((700, 1)))
    assert timed.needed(np.arange(990.0, 1000.0)) == (10, False)
    assert timed.needed(np.arange(1000.0, 1010.0)) == (1, True)


def test_warmup_bookkeeping_is_bounded() -> None:
    wu = Warmup(50, shift=4.0, cap=100, max_rows=64)
    rng = np.random.default_rng(0)
    for _ in range(10):
        wu.keep(rng.standard_normal((20, 3)))
    assert len(wu.rows) == 50 and wu.stride == 4 and wu.seen == 200  # every 4th row kept


def test_learning_is_frozen_while_anomalous() -> None:
    """A lasting offset (a fault) is never absorbed by the drift rule: its score stays above
    the limit for its whole length, and the level is where it was before."""
    rows = noise(1500, seed=5)
    rows[600:, 1] += 4.0
    det = detector(track=60.0)
    scores = feed(det, rows)
    assert (scores[640:] > 1.0).all()
    assert abs(det._shift[1]) < 0.5  # in warm-up deviations: it did not follow the fault


def test_the_drift_rule_follows_a_slow_ramp() -> None:
    """A warming machine: +1.2 warm-up deviations per 10 minutes on one signal (about what the
    water temperature of SKAB's healthy recording does). Followed with the drift rule; without
    it the same ramp becomes an anomaly."""
    n = 2400
    rows = noise(n, seed=6)
    ramp = np.clip(np.arange(n) - 300, 0, None) * (1.2 / 600.0)
    rows[:, 3] += ramp * rows[:300, 3].std()
    followed = feed(detector(track=150.0), rows)
    frozen = feed(detector(track=0.0), rows)
    assert np.nanmean(followed[300:] > 1.0) < 0.01
    assert np.nanmean(frozen[1800:] > 1.0) > 0.5


@pytest.mark.parametrize("seed", [20, 21, 22])
def test_false_alarm_rate_on_independent_noise_is_calibrated(seed: int) -> None:
    """Unsmoothed and without the vector average or margin, a row of fresh noise passes the
    limit about ``1 - quantile`` of the time (the limits are quantiles of held-out scores,
    widened by Hotelling's small-sample factor)."""
    rows = np.random.default_rng(seed).standard_normal((300 + 20000, 4))
    det = SpcDetector(NAMES, warmup=300, quantile=0.99, smooth=1, mewma=False, adapt=False)
    scores = feed(det, rows, batch=500)
    rate = float(np.mean(scores[300:] > 1.0))
    assert 0.001 < rate < 0.03
    # the sample model's defaults (smoothing, vector average, margin) are far quieter still
    quiet = feed(detector(track=150.0), rows, batch=500)
    assert float(np.mean(quiet[300:] > 1.0)) < 0.002


def test_scores_do_not_depend_on_how_rows_are_batched() -> None:
    """The drift rule moves normal at fixed row counts, so one row at a time, small frames
    and one large frame give the same scores (with a warm-up restart and a slow ramp)."""
    rows = noise(1500, seed=8)
    rows[150:, 0] += 5.0  # a level shift inside the warm-up
    rows[700:, 2] += np.arange(800) * (1.5 / 600.0)
    runs = [feed(detector(track=150.0), rows, batch=b) for b in (1, 7, 60, 1500)]
    for other in runs[1:]:
        np.testing.assert_allclose(other, runs[0], equal_nan=True, rtol=1e-9, atol=1e-9)


def test_a_detector_pickled_before_the_warmup_object_unpickles() -> None:
    """A snapshot taken by an older twinflow (warm-up rows on the detector itself, no drift
    rule) loads, finishes its warm-up and scores."""
    rows = noise(600, seed=9)
    det = SpcDetector(NAMES, warmup=300)
    det.update(np.arange(100.0), rows[:100])
    state = dict(det.__dict__)
    wu = state.pop("_wu")
    for key in ("track", "_judged", "_drift", "_drift_n"):
        del state[key]
    state.update(n_seen=wu.seen, _stride=wu.stride, _buffer=wu.rows, start=wu.start)
    old = SpcDetector.__new__(SpcDetector)
    old.__setstate__(state)
    scores = old.update(np.arange(100.0, 600.0), rows[100:])
    assert old.warm and old.n_seen == 300 and old.track == 0.0
    assert np.isfinite(scores[200:]).all()


def test_a_warmup_that_never_settles_keeps_every_state_it_saw() -> None:
    """A machine that moves to a new level every 80 rows from row 250 never settles: at the
    cap the model is fitted on every row of the warm-up (its changes are its normal), not on
    its last level alone."""
    wu = Warmup(300, shift=4.0, cap=600, max_rows=1000)
    rng = np.random.default_rng(4)
    rows = rng.standard_normal((600, 2))
    for start in range(250, 600, 80):
        rows[start:, 0] += 10.0
    fed, ended = 0, False
    while not ended:
        take, due = wu.needed(np.arange(fed, 600, dtype=float))
        wu.keep(rows[fed : fed + take])
        fed += take
        ended = due and wu.settled(0, np.zeros(2))
    assert wu.unsettled and wu.restarts >= 1 and fed == 600
    assert len(wu.rows) == 600  # every row, every level
