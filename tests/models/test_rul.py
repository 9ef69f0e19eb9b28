"""RulEstimator: trend fits against synthetic degradations with known failure times."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinflow.models.rul import RulEstimator


def feed(est: RulEstimator, times, values):
    r = None
    for t, y in zip(times, values, strict=True):
        r = est.update(float(t), float(y))
    return r


@given(
    slope=st.floats(0.05, 20.0),
    start=st.floats(-50.0, 50.0),
    gap=st.floats(1.0, 200.0),
    n=st.integers(6, 40),
)
def test_linear_degradation_hits_known_failure_time(slope, start, gap, n):
    failure = start + gap  # indicator reaches the failure level ``gap / slope`` h after t=0
    est = RulEstimator(failure_level=failure, history=48, min_points=6)
    times = np.linspace(0.0, 0.5 * gap / slope, n)
    r = feed(est, times, start + slope * times)
    true = gap / slope - times[-1]
    assert r.hours == pytest.approx(true, rel=1e-6, abs=1e-6)
    assert r.low_hours <= r.hours <= r.high_hours
    assert 0.0 <= r.health <= 1.0


def test_noisy_linear_interval_covers_truth_most_of_the_time():
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(100):
        est = RulEstimator(failure_level=10.0, history=48, min_points=6)
        t = np.arange(30) / 6.0  # 5 h of 10-min points
        r = feed(est, t, 1.0 + 1.0 * t + rng.normal(0, 0.3, t.size))
        true = 9.0 - t[-1]
        covered += r.low_hours <= true <= r.high_hours
    assert covered >= 75  # a ~90 % interval


def test_exponential_degradation():
    # excess over a healthy level of 2 grows as e^(0.8 t): reaches 30 (level 32) at ln(30)/0.8 h
    est = RulEstimator(failure_level=32.0, fit="exponential", baseline=2.0, history=24)
    t = np.linspace(0.0, 2.0, 25)
    r = feed(est, t, 2.0 + np.exp(0.8 * t))
    assert r.hours == pytest.approx(math.log(30.0) / 0.8 - 2.0, rel=1e-6)
    assert r.health == pytest.approx((32.0 - (2.0 + math.exp(1.6))) / 30.0, rel=1e-6)


def test_exponential_ignores_points_within_the_noise_floor():
    est = RulEstimator(failure_level=10.0, fit="exponential", baseline=0.0, floor=0.1)
    rng = np.random.default_rng(1)
    r = feed(est, np.arange(40) / 12.0, rng.normal(0.0, 0.03, 40))
    assert math.isinf(r.hours) and r.health == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("values", [np.full(30, 5.0), 5.0 - 0.1 * np.arange(30)])
def test_flat_or_improving_means_no_failure_in_sight(values):
    est = RulEstimator(failure_level=10.0)
    r = feed(est, np.arange(30) / 12.0, values)
    assert math.isinf(r.hours) and math.isinf(r.high_hours)


def test_noise_without_trend_gives_infinite_central_estimate():
    rng = np.random.default_rng(2)
    infinite = 0
    for _ in range(50):
        est = RulEstimator(failure_level=10.0)
        r = feed(est, np.arange(48) / 12.0, 5.0 + rng.normal(0, 0.5, 48))
        infinite += math.isinf(r.hours)
    assert infinite >= 40


def test_at_failure_level():
    est = RulEstimator(failure_level=3.0, min_points=3)
    r = feed(est, [0.0, 1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0])
    assert (r.hours, r.low_hours, r.high_hours, r.health) == (0.0, 0.0, 0.0, 0.0)


def test_before_min_points_and_bad_points():
    est = RulEstimator(failure_level=10.0, min_points=4, name="x")
    r = est.update(0.0, 1.0)
    assert r.indicator == "x" and math.isinf(r.hours) and r.health == 1.0
    est.update(1.0, math.nan)  # skipped
    est.update(1.0, 2.0)
    est.update(0.5, 99.0)  # older than the newest point: ignored
    est.update(1.0, 2.5)  # same time: replaces
    assert est.points == 2 and list(est._y) == [1.0, 2.5]


def test_bounded_and_picklable():
    est = RulEstimator(failure_level=1e9, history=48)
    for i in range(5000):
        est.update(i / 12.0, float(i))
    assert est.points == 48
    clone = pickle.loads(pickle.dumps(est))
    assert clone.estimate() == est.estimate()
    assert len(pickle.dumps(est)) < 2500


@pytest.mark.parametrize(
    "kwargs",
    [{"fit": "cubic"}, {"min_points": 2}, {"history": 4, "min_points": 6}, {"coverage": 1.5}],
)
def test_invalid_parameters(kwargs):
    with pytest.raises(ValueError):
        RulEstimator(failure_level=1.0, **kwargs)
