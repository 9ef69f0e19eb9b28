"""Sampling-rate-aware rules of the SPC sample model on synthetic data with known answers: the
warm-up's least span for slowly sampled machines (and 1 Hz unchanged), the observed sampling
period, and the long-episode rule (a level that holds is learned, a developing fault never)."""

from __future__ import annotations

import numpy as np
import pytest

from twinflow.models.spc import SpcDetector
from twinflow.models.spc_long import LongEpisode
from twinflow.models.spc_warmup import Warmup, sampling_period

NAMES = ("a", "b", "c")
WEEK = 7 * 86400.0


def rows(n: int, seed: int = 0) -> np.ndarray:
    """Three correlated signals (one latent factor plus noise)."""
    rng = np.random.default_rng(seed)
    f = rng.standard_normal((n, 1))
    out: np.ndarray = np.hstack([f, 0.5 * f, -f]) + 0.3 * rng.standard_normal((n, 3))
    return out


def detector(**kw: float) -> SpcDetector:
    args: dict[str, float] = dict(warmup=300, quantile=0.99, smooth=30, margin=1.5, hold=60)
    args.update(kw)
    return SpcDetector(NAMES, **args)  # type: ignore[arg-type]


def feed(det: SpcDetector, data: np.ndarray, period: float, start: int = 0) -> np.ndarray:
    """Score ``data`` in frames of 60 rows, one row every ``period`` seconds from ``start``."""
    out = []
    for i in range(0, len(data), 60):
        chunk = data[i : i + 60]
        times = (start + i + np.arange(len(chunk))) * period
        out.append(det.update(times, chunk))
    return np.concatenate(out)


def first_scored(scores: np.ndarray) -> int:
    return int(np.flatnonzero(np.isfinite(scores))[0])


@pytest.mark.parametrize(
    ("period", "warm_after"),
    [(1.0, 300), (300.0, 2017), (3600.0, 300)],  # 1 Hz; 5 min: a week; hourly: 300 > a week
)
def test_the_warmup_covers_a_week_once_samples_are_a_minute_apart(
    period: float, warm_after: int
) -> None:
    det = detector(warmup_slow_s=WEEK)
    scores = feed(det, rows(3000), period)
    assert first_scored(scores) == warm_after
    assert det.slow == (period >= 60.0)


def test_without_the_slow_span_a_slow_warmup_is_counted_in_samples() -> None:
    det = detector(warmup_slow_s=0.0)
    assert first_scored(feed(det, rows(1000), 300.0)) == 300


def test_the_sampling_period_is_the_median_gap_whatever_the_batching() -> None:
    times = np.arange(200) * 300.0
    times[50:] += 3 * 3600.0  # a three-hour gap in the recording
    one, many = Warmup(300, slow_seconds=WEEK), Warmup(300, slow_seconds=WEEK)
    one.needed(times)
    for i in range(0, 200, 7):
        many.needed(times[i : i + 7])
    assert one.period == many.period == 300.0
    assert len(one.gaps) == len(many.gaps) == 64
    assert sampling_period(np.array([0.0, 0.0])) != sampling_period(np.array([0.0, 0.0]))  # NaN


def shifted(n_warm: int, n_after: int, shift: np.ndarray, seed: int = 1) -> np.ndarray:
    data = rows(n_warm + n_after, seed)
    data[n_warm:] += shift
    return data


def test_a_level_that_holds_for_a_week_becomes_normal_and_the_scores_fall() -> None:
    """Hourly samples: after warm-up the machine settles 2.5 units higher on every signal
    and stays there. The long-episode rule needs max(300 rows, a week / 1 h) = 300 rows, so
    normal moves once, between 300 and 400 rows into the episode, and the scores fall."""
    det = detector(long_s=WEEK)
    data = shifted(400, 900, np.array([2.5, 2.5, 2.5]))
    scores = feed(det, data, 3600.0)
    assert det.long_rows == 300
    episode = scores[400:]
    assert np.mean(episode[:300] > 1.0) > 0.95  # anomalous until the rule moves normal
    assert det.relearned == 1
    assert np.mean(episode[500:] > 1.0) < 0.05  # the new level is normal now


def test_without_the_rule_such_a_twin_stays_anomalous() -> None:
    det = detector(long_s=0.0)
    scores = feed(det, shifted(400, 900, np.array([2.5, 2.5, 2.5])), 3600.0)
    assert det.long_rows == 0 and det.relearned == 0
    assert np.mean(scores[900:] > 1.0) > 0.95


def test_a_developing_fault_is_never_taken_for_normal() -> None:
    """A drift that keeps growing: its later half always scores higher than the earlier."""
    ramp = np.linspace(2.0, 12.0, 1500)[:, None] * np.ones(3)
    data = rows(1900, 2)
    data[400:] += ramp
    det = detector(long_s=WEEK)
    scores = feed(det, data, 3600.0)
    assert det.relearned == 0
    assert np.mean(scores[400:] > 1.0) > 0.95


def test_at_one_hertz_the_rule_waits_a_week_of_samples() -> None:
    det = detector(long_s=WEEK)
    scores = feed(det, shifted(400, 3000, np.array([2.5, 2.5, 2.5])), 1.0)
    assert det.long_rows == int(WEEK)  # a week at 1 Hz: nothing in a 50-minute recording
    assert det.relearned == 0 and np.mean(scores[500:] > 1.0) > 0.95


def test_the_long_episode_state_is_small_and_resets_when_the_episode_ends() -> None:
    rule = LongEpisode(rows=8, width=3)
    for _ in range(5):
        assert rule.step(2.0, np.ones(3), True) is None
    assert rule.n == 5 and len(rule.scores) == 2
    assert rule.step(0.5, np.ones(3), False) is None
    assert rule.n == 0 and rule.scores == []
    assert LongEpisode(rows=0, width=3).step(5.0, np.ones(3), True) is None
