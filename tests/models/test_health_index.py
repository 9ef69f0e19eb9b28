"""The anomaly-score health index, degradation onset and the RUL interval, on synthetic
degradation whose onset and failure time are known."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from twinflow.models.degradation import TrendRul, failure_level
from twinflow.models.health_index import OnsetDetector, ScoreHealth, score_index

FAILURE = 5.0
LIFE = 100.0  # hours from onset (t = 0) to failure


def trend(shape: str, t: np.ndarray) -> np.ndarray:
    """Excess of the index over its healthy level that reaches FAILURE at t = LIFE."""
    if shape == "linear":
        return FAILURE * t / LIFE
    if shape == "exponential":
        return FAILURE * np.exp(3.0 * (t - LIFE) / LIFE)
    return FAILURE * ((t + 1.0) / (LIFE + 1.0)) ** 2


def estimate_at_half_life(shape: str, seed: int, noise: float = 0.15) -> tuple[float, ...]:
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, LIFE / 2 + 1.0)
    h = trend(shape, t) + rng.normal(0.0, noise, t.size)
    rul = TrendRul(failure=FAILURE, baseline=0.0, coverage=0.9)
    rul.start(0.0)
    for ti, hi in zip(t, h, strict=True):
        rul.add(float(ti), float(hi))
    e = rul.estimate()
    return e.hours, e.low_hours, e.high_hours, LIFE - t[-1]


@pytest.mark.parametrize("shape", ["linear", "exponential", "power"])
def test_the_interval_covers_the_truth_at_its_stated_rate(shape: str) -> None:
    runs = [estimate_at_half_life(shape, seed) for seed in range(80)]
    covered = sum(low <= truth <= high for _, low, high, truth in runs) / len(runs)
    within = sum(abs(mid - truth) <= 0.2 * truth for mid, _, _, truth in runs) / len(runs)
    # 90 % stated; 80 seeded units put the observed rate within about +-7 % of the true one
    assert 0.78 <= covered <= 0.99, covered
    assert within >= 0.6, within
    assert all(low <= mid <= high for mid, low, high, _ in runs)


def test_a_flat_index_has_no_finite_life() -> None:
    rng = np.random.default_rng(3)
    rul = TrendRul(failure=FAILURE, baseline=0.0)
    rul.start(0.0)
    for t in range(40):
        e = rul.update(float(t), 0.5 + float(rng.normal(0.0, 0.1)))
    assert math.isinf(e.hours) and math.isinf(e.high_hours)
    assert 0.85 < e.health <= 1.0


def test_no_estimate_before_the_onset_and_zero_at_failure() -> None:
    rul = TrendRul(failure=FAILURE, baseline=0.0)
    for t in range(20):
        e = rul.update(float(t), 0.2 * t)
    assert math.isinf(e.hours)  # no onset given: no trend is fitted
    rul.update(21.0, 6.0)
    rul.update(22.0, 6.0)
    e = rul.update(23.0, 6.0)
    assert (e.hours, e.low_hours, e.high_hours, e.health) == (0.0, 0.0, 0.0, 0.0)


def test_the_buffer_stays_bounded_over_a_long_degradation() -> None:
    rul = TrendRul(failure=1e9, baseline=0.0, capacity=32)
    rul.start(0.0)
    for t in range(2000):
        rul.add(float(t), 1.0 + t)
    assert len(pickle.dumps(rul)) < 4096
    e = rul.estimate()
    assert e.low_hours <= e.hours <= e.high_hours


def test_onset_is_found_near_the_true_change_point() -> None:
    found = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        det = OnsetDetector()
        onset = None
        for t in range(200):
            level = 0.4 + (0.02 * (t - 100) if t >= 100 else 0.0)
            onset = det.update(float(t), level + float(rng.normal(0.0, 0.05)))
            if onset is not None:
                break
        assert onset is not None
        found.append((onset, t))
    # the CUSUM estimate falls near the true start (t = 100) and the alarm follows soon, but
    # for a rare early false onset (a warm-up of 24 values estimates the deviation roughly)
    near = [(onset, t) for onset, t in found if 90 <= onset <= 112 and t <= 130]
    assert len(near) >= 18, found


def test_no_onset_on_a_healthy_index_and_recovery_after_a_repair() -> None:
    rng = np.random.default_rng(11)
    det = OnsetDetector(recover=10)
    assert all(det.update(float(t), 0.4 + float(rng.normal(0, 0.05))) is None for t in range(500))
    for t in range(500, 530):
        det.update(float(t), 2.0)
    assert det.onset is not None
    for t in range(530, 545):
        det.update(float(t), 0.4)
    assert det.onset is None


def test_score_health_follows_a_degrading_anomaly_score() -> None:
    rng = np.random.default_rng(2)
    sh = ScoreHealth(failure=4.0)
    threshold = 7.5  # any unit: the index is the score over the threshold
    estimates = []
    for t in range(300):
        excess = 0.0 if t < 100 else 3.6 * ((t - 100) / 200.0) ** 1.5  # fails at t = 300
        score = threshold * (0.4 + excess + float(rng.normal(0.0, 0.04)))
        estimates.append(sh.update(float(t), score, threshold))
    assert all(e is None for e in estimates[:23]) and estimates[24] is not None
    assert sh.onset_time is not None and 95 <= sh.onset_time <= 140
    late = [e for e in estimates[250:] if e is not None]
    assert all(math.isfinite(e.hours) for e in late)
    e = late[0]  # truth: failure at t = 300
    assert abs(e.hours - 50.0) <= 0.2 * 50.0 and e.low_hours <= e.hours <= e.high_hours
    assert e.health < late[0].health + 1e-9 and late[-1].health < 0.3


def test_the_index_is_nan_without_a_threshold() -> None:
    assert math.isnan(score_index(1.0, None)) and math.isnan(score_index(None, 2.0))
    assert math.isnan(score_index(1.0, 0.0)) and score_index(2.0, 4.0) == 0.5
    assert ScoreHealth().update(0.0, None, None) is None


def test_failure_level_from_history_and_bad_settings() -> None:
    assert failure_level([2.0, math.nan, 4.0, 3.0]) == 3.0
    assert math.isnan(failure_level([]))
    with pytest.raises(ValueError, match="above baseline"):
        TrendRul(failure=0.0, baseline=1.0)
    with pytest.raises(ValueError, match="fits"):
        TrendRul(failure=1.0, fits=("cubic",))
    with pytest.raises(ValueError, match="failure"):
        ScoreHealth(failure=math.nan)


def test_the_signal_driving_a_degradation_picks_its_learned_failure_level() -> None:
    levels = {"*": (50.0, 0.1), "temp": (20.0, 0.2), "flow": (200.0, 0.3)}
    by_driver = {}
    for driver in ("temp", "flow", "other"):
        sh = ScoreHealth(levels=levels)
        for t in range(120):
            excess = 0.0 if t < 40 else 0.05 * (t - 40) ** 1.5
            sh.update(float(t), 0.4 + excess + 0.01 * (t % 3), 1.0, driver=driver)
        by_driver[driver] = sh.level()
    assert by_driver == {"temp": (20.0, 0.2), "flow": (200.0, 0.3), "other": (50.0, 0.1)}
    assert ScoreHealth(failure=4.0).level() == (4.0, 0.0)


def test_an_uncertain_failure_level_widens_the_interval() -> None:
    widths = []
    for spread in (0.0, 0.3):
        rul = TrendRul(failure=FAILURE, baseline=0.0, spread=spread)
        rul.start(0.0)
        for t in range(51):
            rul.add(float(t), float(trend("linear", np.array([float(t)]))[0]) + 0.01 * (t % 2))
        e = rul.estimate()
        widths.append(e.high_hours - e.low_hours)
    assert widths[1] > 3 * widths[0]
    with pytest.raises(ValueError, match="spread"):
        TrendRul(failure=1.0, spread=-1.0)
