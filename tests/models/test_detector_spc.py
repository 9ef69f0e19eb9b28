"""SpcDetector on synthetic data with known answers: warm-up, calibration, freezing,
adaptation, operating settings and the signals that drive a score."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from twinflow.models.spc import SpcDetector

NAMES = ("a", "b", "c", "d")


def healthy(rng: np.random.Generator, n: int, load: np.ndarray | None = None) -> np.ndarray:
    """Four correlated signals (two latent factors), optionally driven by a load."""
    f = rng.standard_normal((n, 2))
    y = np.column_stack([f[:, 0], f[:, 0] + f[:, 1], f[:, 1], f[:, 0] - f[:, 1]])
    y = y + 0.2 * rng.standard_normal((n, 4))
    if load is not None:
        y = y + np.outer((load - 50) / 10, [1.0, 2.0, -1.0, 0.5])
    return y


def feed(det: SpcDetector, rows: np.ndarray, t0: float = 0.0) -> np.ndarray:
    """Rows in one-minute frames at 1 Hz; the scores."""
    t = t0 + np.arange(len(rows), dtype=float)
    return np.concatenate(
        [det.update(t[i : i + 60], rows[i : i + 60]) for i in range(0, len(rows), 60)]
    )


def test_warm_up_in_samples_then_scores():
    rng = np.random.default_rng(0)
    det = SpcDetector(NAMES, warmup=120)
    scores = feed(det, healthy(rng, 180))
    assert not det.warm or det.n_seen >= 120
    assert np.isnan(scores[:120]).all()
    assert det.warm and np.isfinite(scores[121:]).all()  # row 0 lacks d: not counted


def test_warm_up_in_time_lasts_until_both_are_reached():
    rng = np.random.default_rng(1)
    det = SpcDetector(NAMES, warmup=60, warmup_s=600.0)
    feed(det, healthy(rng, 540))
    assert not det.warm  # 540 samples but only 539 s of event time
    feed(det, healthy(rng, 120), t0=540.0)
    assert det.warm


def test_calibration_false_positive_rate_matches_the_quantile():
    rng = np.random.default_rng(2)
    det = SpcDetector(NAMES, warmup=2000, quantile=0.99, adapt=False)
    feed(det, healthy(rng, 2000))
    scores = feed(det, healthy(rng, 20000))
    rate = float((scores > 1.0).mean())
    assert 0.001 < rate < 0.03  # about 1 - quantile: the limits come from held-out rows


def test_scores_are_scale_free():
    """Units and offsets of a signal change nothing (no floor tied to a signal's mean)."""
    rng = np.random.default_rng(3)
    rows = healthy(rng, 600)
    rows[400:450, 2] += 3.0
    scaled = rows * [1.0, 1e6, 1e-4, 7.0] + [0.0, -3e5, 1e3, 12.0]
    a = feed(SpcDetector(NAMES, warmup=300), rows)
    b = feed(SpcDetector(NAMES, warmup=300), scaled)
    assert np.allclose(a[300:], b[300:], rtol=1e-6)


def test_a_broken_correlation_is_anomalous_and_names_its_signal():
    rng = np.random.default_rng(4)
    det = SpcDetector(NAMES, warmup=300, smooth=5, adapt=False)
    feed(det, healthy(rng, 300))
    normal = feed(det, healthy(rng, 600))
    broken = healthy(rng, 300)
    broken[:, 1] = -broken[:, 1]  # b no longer follows a + c
    scores = feed(det, broken)
    assert (normal > 1.0).mean() < 0.05
    assert (scores[10:] > 1.0).mean() > 0.9
    top = det.contributions(det.fill(broken[-1:])[0])
    assert next(iter(top)) == "b" and math.isclose(sum(det.shares(broken[-1:])[0]), 1.0)


def test_learning_is_frozen_while_anomalous():
    """A persisting fault stays anomalous: it is never learned as normal (adapt on)."""
    rng = np.random.default_rng(5)
    det = SpcDetector(NAMES, warmup=300, half_life=200.0, adapt=True)
    feed(det, healthy(rng, 300))
    faulty = healthy(rng, 3000)
    faulty[:, 0] += 2.0
    scores = feed(det, faulty)
    assert (scores[-600:] > 1.0).mean() > 0.95


def test_adaptation_follows_slow_drift_that_a_frozen_model_flags():
    rng = np.random.default_rng(6)
    n = 6000
    drift = np.linspace(0.0, 2.5, n)[:, None] * [1.0, 1.0, 0.0, 1.0]  # slow, consistent
    warm = healthy(rng, 300)
    rows = healthy(rng, n) + drift
    frozen = SpcDetector(NAMES, warmup=300, adapt=False, smooth=5)
    adapting = SpcDetector(NAMES, warmup=300, adapt=True, half_life=300.0, smooth=5)
    feed(frozen, warm), feed(adapting, warm)
    f, a = feed(frozen, rows), feed(adapting, rows)
    assert (f[-1000:] > 1.0).mean() > 0.5
    assert (a[-1000:] > 1.0).mean() < 0.05


def test_operating_setting_conditions_the_model():
    """A load change is no anomaly when the load is an operating setting; without it, the
    same change is flagged for as long as it lasts."""
    rng = np.random.default_rng(7)
    load = np.concatenate([np.full(300, 50.0), np.full(900, 65.0)]) + rng.normal(0, 0.5, 1200)
    rows = np.column_stack([load, healthy(rng, 1200, load)])
    cols = ("load", *NAMES)
    cond = SpcDetector(cols, operating=("load",), warmup=300, smooth=5)
    plain = SpcDetector(cols, warmup=300, smooth=5)
    c, p = feed(cond, rows)[300:], feed(plain, rows)[300:]
    judged = c[np.isfinite(c)]
    assert judged.size > 600 and (judged > 1.0).mean() < 0.1
    assert (p > 1.0).mean() > 0.9
    assert cond.variables == NAMES and plain.variables == cols


def test_a_new_operating_point_is_learned_not_judged():
    rng = np.random.default_rng(8)
    cols = ("load", *NAMES)
    load = np.concatenate([np.full(150, 30.0), np.full(150, 50.0)])
    load = load + rng.normal(0, 0.5, 300)
    det = SpcDetector(cols, operating=("load",), warmup=300, refit_every=60, smooth=5)
    feed(det, np.column_stack([load, healthy(rng, 300, load)]))
    new = np.full(600, 90.0) + rng.normal(0, 0.5, 600)
    scores = feed(det, np.column_stack([new, healthy(rng, 600, new)]), t0=300.0)
    assert np.isnan(scores[:60]).all()  # outside every learned load: not judged
    judged = scores[np.isfinite(scores)]
    assert judged.size > 300 and (judged > 1.0).mean() < 0.1


def test_missing_values_hold_the_last_reading():
    rng = np.random.default_rng(9)
    det = SpcDetector(NAMES, warmup=120)
    rows = healthy(rng, 300)
    rows[::2, 3] = np.nan  # d arrives every other second
    scores = feed(det, rows)
    assert det.warm and np.isfinite(scores[121:]).all()  # row 0 lacks d: not counted
    first = SpcDetector(NAMES, warmup=120)
    assert np.isnan(first.update(np.array([0.0]), np.array([[1.0, 2.0, 3.0, np.nan]]))).all()


def test_constant_signal_is_left_out_not_divided_by_zero():
    rng = np.random.default_rng(10)
    rows = healthy(rng, 600)
    rows[:, 2] = 5.0
    det = SpcDetector(NAMES, warmup=300)
    scores = feed(det, rows)
    assert np.isfinite(scores[300:]).all() and (scores[300:] > 1.0).mean() < 0.05
    assert det.model is not None and not det.model.keep[2]


def test_single_rows_state_size_and_pickle():
    rng = np.random.default_rng(11)
    names = tuple(f"s{i}" for i in range(8))
    det = SpcDetector(("load", *names), operating=("load",), warmup=300)
    load = rng.uniform(30, 70, 900)
    y = np.hstack([healthy(rng, 900, load), healthy(rng, 900, load)])
    feed(det, np.column_stack([load, y]))
    blob = pickle.dumps(det)
    assert len(blob) < 16 * 1024
    copy = pickle.loads(blob)
    x = dict(zip(("load", *names), [50.0, *y[0]], strict=True))
    assert copy.score_one(x) == det.score_one(x)
    assert set(copy.explain(x)) <= set(names)
    assert math.isfinite(copy.learn_one(x, 900.0))


@pytest.mark.parametrize(
    "kwargs",
    [{"warmup": 2}, {"quantile": 1.0}, {"margin": 0.0}, {"variance": 0.0}],
)
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError, match="SpcDetector needs"):
        SpcDetector(NAMES, **kwargs)


def test_only_settings_is_refused():
    with pytest.raises(ValueError, match="monitored"):
        SpcDetector(("load",), operating=("load",))


def test_a_short_warm_up_widens_its_limits_instead_of_alarming():
    """24 rows cannot show a 99.5 % tail: Hotelling's F limit and the chi-squared
    extrapolation keep the healthy alarm rate near the quantile's promise."""
    rates = []
    for seed in range(5):
        rng = np.random.default_rng(100 + seed)
        det = SpcDetector(NAMES, warmup=24, quantile=0.995, margin=1.0, adapt=False)
        feed(det, healthy(rng, 24))
        rates.append(float((feed(det, healthy(rng, 3000)) > 1.0).mean()))
    assert float(np.median(rates)) < 0.03


def test_the_averaged_vector_finds_a_small_lasting_shift_the_row_statistics_miss():
    rng = np.random.default_rng(3)
    f = rng.standard_normal((900, 2))
    rows = np.column_stack([f[:, 0], f[:, 0] + f[:, 1], f[:, 1], -f[:, 0]])
    rows = rows + 0.3 * rng.standard_normal((900, 4))
    rows[600:, 2] += 0.8  # from row 600 on, signal c reads 0.8 high
    flagged = {}
    for mewma in (False, True):
        det = SpcDetector(NAMES, warmup=300, margin=1.5, smooth=30, mewma=mewma)
        scores = det.update(np.arange(900.0), rows)
        assert not (scores[300:600] > 1).any()  # healthy: nothing either way
        flagged[mewma] = int((scores[600:] > 1).sum())
    assert flagged[False] < 100 and flagged[True] > 140  # of the 300 shifted rows


def test_after_a_fault_a_lasting_new_level_becomes_normal_a_lasting_fault_does_not():
    rng = np.random.default_rng(5)
    f = rng.standard_normal((1300, 2))
    rows = np.column_stack([f[:, 0], f[:, 0] + f[:, 1], f[:, 1], -f[:, 0]])
    rows = rows + 0.3 * rng.standard_normal((1300, 4))
    settled = rows.copy()
    settled[600:800, 2] += 8.0  # a fault ...
    settled[800:, 2] += 1.5  # ... after which the machine settles a little off its warm-up
    lasting = rows.copy()
    lasting[600:, 2] += 8.0  # a fault that stays
    out = {}
    for name, data, recover in (
        ("settled", settled, 0.1),
        ("kept", settled, 0.0),
        ("lasting", lasting, 0.1),
    ):
        det = SpcDetector(NAMES, warmup=300, margin=1.5, smooth=30, recover=recover)
        scores = feed(det, data)
        out[name] = (int((scores[600:800] > 1).sum()), int((scores[900:] > 1).sum()))
        assert det.recoveries == (1 if name == "settled" else 0)
    assert out["settled"] == (200, 0)  # the fault fully flagged, the new level learned
    assert out["kept"] == (200, 400)  # without the rule it is judged against warm-up forever
    assert out["lasting"] == (200, 400)  # a fault whose score stays near its peak stays one
