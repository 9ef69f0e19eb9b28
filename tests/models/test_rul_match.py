"""Matching a twin's whole course of a (vector) index to run-to-failure courses, its kept
points and the interval calibrated on leave-one-out errors, on synthetic data with known
answers."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from twinflow.core.records import RulEstimate
from twinflow.models.rul_match import Buffer, Calibration, CourseMatch, course
from twinflow.models.similarity import trajectory


def linear_course(life: float, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Healthy (index 0) for a fifth of the life, then rising linearly to 1 at failure."""
    t = np.linspace(0.0, life, n)
    return t, np.clip((t - 0.2 * life) / (0.8 * life), 0.0, 1.0)[:, None]


def test_a_course_is_binned_up_to_the_failure() -> None:
    t, x = linear_course(10.0, 200)
    c = course(t + 5.0, x, 15.0, points=20)
    assert c is not None and len(c.ages) == 20 and c.life == 10.0
    assert c.ages[0] >= 0.0 and c.values[-1][0] > 0.95
    assert course(t[:3], x[:3], 10.0) is None  # too few points
    assert set(c.to_json()) == {"ages", "values", "life"}


def test_a_course_and_a_trajectory_bin_a_unit_alike() -> None:
    # one binning for both (similarity.bin_medians): the same unsorted noisy series gives the
    # same ages and medians, a bin's median time and value, up to the failure only
    rng = np.random.default_rng(3)
    t = rng.permutation(np.arange(0.0, 12.0, 0.1)) + 2.0
    h = 0.1 * t + rng.normal(0.0, 0.05, t.size)
    c, tr = course(t, h[:, None], 11.0, points=9), trajectory(t, h, 11.0, points=9)
    assert c is not None and tr is not None
    assert c.ages == tr.ages and [v[0] for v in c.values] == list(tr.values)
    assert c.life == tr.life == 9.0 and len(c.ages) == 9
    first = np.sort(t)[:10]  # the first bin: ages 0 to 1 since the first point
    assert c.ages[0] == round(float(np.median(first - 2.0)), 4)


def test_a_twin_gets_a_finite_life_from_its_second_point() -> None:
    # a history of lives 8-12.5 h rising linearly from their start; a twin like the 10 h one
    # gets its life from two points (6 were needed before: an infinite life for 5 windows)
    lib = []
    for life in (8.0, 10.0, 12.5):
        t = np.linspace(0.0, life, 60)
        c = course(t, (t / life)[:, None], life)
        assert c is not None
        lib.append(c)
    r = CourseMatch(lib).estimate([0.5, 1.0], [[0.05], [0.1]])
    assert math.isfinite(r.hours) and abs(r.hours - 9.0) <= 0.1 * 9.0
    assert r.low_hours <= r.hours <= r.high_hours
    assert math.isinf(CourseMatch(lib).estimate([1.0], [[0.1]]).hours)  # one point: none


def test_the_buffer_keeps_the_whole_course_in_bounded_points() -> None:
    b = Buffer(16)
    for i in range(1000):
        b.push(float(i), (i / 1000.0, 0.0))
    assert len(b.times) <= 16 and b.times[-1] == 999.0
    assert b.times[0] < 100.0  # the oldest points are thinned, not dropped wholesale
    assert list(b.times) == sorted(b.times) and len(b.rows[0]) == 2
    assert len(pickle.dumps(b)) < 2048


@pytest.mark.parametrize("life", [6.0, 10.0, 16.0, 24.0])
def test_a_unit_wearing_up_to_twice_as_fast_or_slow_gets_its_remaining_life(life: float) -> None:
    # the history wore over 10-15 h; the twin over 6-24 h: rate from 0.4 to 2.5 times
    lib = [course(*linear_course(s), s) for s in (10.0, 12.0, 15.0)]
    match = CourseMatch([c for c in lib if c is not None])
    t, x = linear_course(life, 121)
    half = 0.6 * life  # half of the degradation
    keep = t <= half
    r = match.estimate(t[keep], x[keep])
    assert abs(r.hours - (life - half)) <= 0.1 * (life - half), r
    assert r.low_hours <= r.hours <= r.high_hours


def test_a_second_index_tells_apart_modes_whose_first_index_runs_alike() -> None:
    # mode a fails when the first index reaches 1, mode b when it reaches 0.5: a b unit near
    # its end runs like an a unit at its middle, stretched; a second index (rising only in
    # mode b) says which it is
    rng = np.random.default_rng(7)

    def unit(mode: str, life: float) -> tuple[np.ndarray, np.ndarray]:
        t = np.linspace(0.0, life, 121)
        s = np.clip((t - 0.2 * life) / (0.8 * life), 0.0, 1.0)
        x = np.c_[s if mode == "a" else 0.5 * s, s * (mode == "b")]
        return t, x + rng.normal(0.0, 0.01, x.shape)

    units = [(m, life) for m in "ab" for life in (10.0, 11.0, 12.0)]
    both = [(*unit(m, life), life) for m, life in units]
    vector = CourseMatch([c for c in (course(t, x, f) for t, x, f in both) if c is not None])
    first = CourseMatch([c for c in (course(t, x[:, :1], f) for t, x, f in both) if c])
    t, x = unit("b", 11.0)
    keep = t <= 0.2 * 11.0 + 0.8 * 0.8 * 11.0  # 80 % of the degradation
    truth = 11.0 - float(t[keep][-1])
    got = vector.estimate(t[keep], x[keep]).hours
    assert abs(got - truth) <= 0.1 * truth, (got, truth)
    alone = first.estimate(t[keep], x[keep, :1]).hours
    assert abs(alone - truth) > 0.5 * truth, (alone, truth)


def test_calibration_gives_each_stage_the_quantiles_of_its_errors() -> None:
    rng = np.random.default_rng(3)
    stage = rng.uniform(0.0, 1.0, 3000)
    spread = np.where(stage < 0.5, 0.4, 0.1)  # early estimates err more
    cal = Calibration.learn(stage, rng.normal(0.0, 1.0, 3000) * spread, 0.9, stages=2)
    assert cal.edges == pytest.approx((0.5,), abs=0.05)
    assert cal.high[0] == pytest.approx(1.645 * 0.4, rel=0.15)
    assert cal.high[1] == pytest.approx(1.645 * 0.1, rel=0.15)
    # fresh errors of each stage fall inside about 90 % of the time
    for s, sd in ((0.2, 0.4), (0.8, 0.1)):
        truth = 10.0 * np.exp(rng.normal(0.0, sd, 2000))
        r = cal.apply(RulEstimate("x", 0.5, 10.0, 9.0, 11.0), s)
        inside = float(np.mean((truth >= r.low_hours) & (truth <= r.high_hours)))
        assert 0.85 <= inside <= 0.95, (s, inside)
    inf = RulEstimate("x", 1.0, math.inf, math.inf, math.inf)
    assert cal.apply(inf, 0.5) == inf
    few = Calibration.learn([0.1, 0.2], [0.0, 0.1], 0.9)
    assert few.edges == () and len(few.low) == 1
