"""RUL by similarity to run-to-failure trajectories, on synthetic fleets whose failure times
are known: exact matches, faster wear, a held-out fleet, and the flow's ScoreHealth."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from twinflow.models.health_index import ScoreHealth
from twinflow.models.similarity import SimilarityRul, Trajectory, trajectory

STEP = 0.25  # hours between windows


def run(life: float, healthy: float, seed: int, noise: float = 0.05) -> tuple[np.ndarray, ...]:
    """Index of one unit: 0.3 while healthy, then exponential wear to failure at ``life``
    (hours from its first window); log-normal noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, life, STEP)
    wear = np.clip((t - healthy) / (life - healthy), 0.0, 1.0)
    h = 0.3 * np.exp(6.0 * wear**1.5) * np.exp(rng.normal(0.0, noise, t.size))
    return t, h


def fleet(seeds: range) -> list[tuple[float, float, int]]:
    """(life, healthy hours, seed) per unit: lives vary with a log-normal wear rate."""
    out = []
    for s in seeds:
        rng = np.random.default_rng(10_000 + s)
        healthy = float(rng.uniform(4.0, 8.0))
        out.append((healthy + 30.0 * float(rng.lognormal(0.0, 0.3)), healthy, s))
    return out


def library(seeds: range) -> list[Trajectory]:
    lib = []
    for life, healthy, s in fleet(seeds):
        t, h = run(life, healthy, s)
        got = trajectory(t, h, life, log=True)
        assert got is not None
        lib.append(got)
    return lib


def test_a_trajectory_is_bounded_and_keeps_the_life() -> None:
    t, h = run(40.0, 5.0, 1)
    tr = trajectory(t + 100.0, h, 140.0, log=True, points=20)
    assert tr is not None and len(tr.ages) <= 20 and tr.ages[0] >= 0.0
    assert tr.life == pytest.approx(40.0)
    assert tr.values[-1] > tr.values[0] + 3.0  # log scale: the index grew ~ e^6
    assert trajectory([0.0, 1.0, 2.0], [1.0, 2.0, 3.0], 5.0) is None


def test_the_same_unit_is_matched_to_its_own_remaining_life() -> None:
    t, h = run(40.0, 5.0, 1, noise=0.0)
    est = SimilarityRul([trajectory(t, h, 40.0, log=True)], rates=(1.0,))  # type: ignore[list-item]
    now = int(30.0 / STEP)
    r = est.estimate(t[:now] + 50.0, h[:now])  # the time origin does not matter
    assert r.hours == pytest.approx(40.0 - t[now - 1], abs=1.0)
    assert r.low_hours <= r.hours <= r.high_hours


def test_a_unit_that_wears_faster_gets_a_shorter_life() -> None:
    t, h = run(40.0, 5.0, 1, noise=0.0)
    lib = [trajectory(t, h, 40.0, log=True)]
    fast_t = t / 1.33  # the same path 1.33 times faster: fails at 40 / 1.33
    now = int(30.0 / STEP)
    truth = 40.0 / 1.33 - fast_t[now - 1]
    fixed = SimilarityRul(lib, rates=(1.0,)).estimate(fast_t[:now], h[:now])  # type: ignore[arg-type]
    stretched = SimilarityRul(lib).estimate(fast_t[:now], h[:now])  # type: ignore[arg-type]
    assert abs(stretched.hours - truth) < 0.1 * truth
    assert abs(fixed.hours - truth) > abs(stretched.hours - truth)


def half_life_estimates(est: SimilarityRul, seeds: range) -> list[tuple[float, ...]]:
    out = []
    for life, healthy, s in fleet(seeds):
        t, h = run(life, healthy, s)
        now = int((healthy + 0.5 * (life - healthy)) / STEP)
        r = est.estimate(t[:now], h[:now])
        out.append((r.hours, r.low_hours, r.high_hours, life - t[now - 1]))
    return out


def test_held_out_units_are_within_20_percent_at_half_life() -> None:
    est = SimilarityRul(library(range(0, 24)))
    runs = half_life_estimates(est, range(100, 140))
    within = sum(abs(mid - truth) <= 0.2 * truth for mid, _, _, truth in runs) / len(runs)
    covered = sum(low <= truth <= high for _, low, high, truth in runs) / len(runs)
    # the wear law is shared, only its rate varies: matching recovers the rate
    assert within >= 0.8, within
    assert covered >= 0.8, covered
    assert all(low <= mid <= high for mid, low, high, _ in runs)
    # the mean-life baseline on the same units does far worse
    lives = [life for life, _, _ in fleet(range(0, 24))]
    base = []
    for life, healthy, _ in fleet(range(100, 140)):
        age = healthy + 0.5 * (life - healthy)
        base.append(abs(np.mean(lives) - age - (life - age)) <= 0.2 * (life - age))
    assert within > np.mean(base) + 0.2


def test_too_few_points_give_no_finite_life() -> None:
    est = SimilarityRul(library(range(3)))
    assert math.isinf(est.estimate([1.0, 2.0], [0.3, 0.3]).hours)
    with pytest.raises(ValueError):
        SimilarityRul([])


def test_score_health_uses_the_library_and_keeps_it_out_of_its_state() -> None:
    lib = library(range(0, 16))
    life, healthy, s = fleet(range(200, 201))[0]
    t, h = run(life, healthy, s)
    with_lib, without = ScoreHealth(), ScoreHealth()
    ests = []
    for ti, hi in zip(t, h, strict=True):
        e = with_lib.update(float(ti), float(hi), 1.0, library=lib)
        without.update(float(ti), float(hi), 1.0)
        if e is not None and ti > healthy + 0.5 * (life - healthy):
            ests.append((e, life - ti))
    assert ests and all(math.isfinite(e.hours) for e, _ in ests)
    e, truth = ests[0]
    assert e.low_hours <= truth <= e.high_hours
    assert len(pickle.dumps(with_lib)) < len(pickle.dumps(without)) + 64


def test_nearest_neighbours_keep_the_best_units_and_outvote_poor_matches() -> None:
    good = library(range(0, 4))
    # ten units of another law (the index 20 times higher all along) match poorly
    poor = [
        Trajectory(tr.ages, tuple(v + math.log(20.0) for v in tr.values), tr.life * 3.0)
        for tr in library(range(4, 14))
    ]
    life, healthy, s = fleet(range(300, 301))[0]
    t, h = run(life, healthy, s)
    now = int((healthy + 0.5 * (life - healthy)) / STEP)
    truth = life - t[now - 1]
    nearest = SimilarityRul(good + poor, neighbours=3).estimate(t[:now], h[:now])
    assert abs(nearest.hours - truth) <= 0.2 * truth
    assert nearest.low_hours <= nearest.hours <= nearest.high_hours
    with pytest.raises(ValueError):
        SimilarityRul(good, neighbours=0)
