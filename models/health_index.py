"""A scale-free health index from an anomaly score, and the onset of degradation on it.

When a twin type declares no health indicators, its health is judged by how far its windows
are from the twin's own healthy behaviour, as its anomaly detector already measures:
the index of a window is ``score / threshold`` (1.0 at the detector's calibrated threshold,
whatever the detector's units). :class:`OnsetDetector` finds when that index starts to climb
for good: a one-sided CUSUM against the index's own distribution over the first ``warmup``
values, so no level is tuned to a machine.

>>> onset = OnsetDetector(warmup=10)
>>> for t in range(10):
...     _ = onset.update(float(t), 0.5 + 0.01 * (t % 3))
>>> [onset.update(float(t), 0.5 + 0.2 * (t - 9)) for t in range(10, 14)][-1]
10.0
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from twinflow.core.records import RulEstimate
from twinflow.models.degradation import TrendRul
from twinflow.models.similarity import SimilarityRul, Trajectory


def score_index(score: float | None, threshold: float | None) -> float:
    """The health index of one window: ``score / threshold`` (NaN while either is unknown).

    >>> score_index(3.0, 6.0), math.isnan(score_index(3.0, None))
    (0.5, True)
    """
    if score is None or threshold is None:
        return math.nan
    if not (math.isfinite(score) and math.isfinite(threshold)) or threshold <= 0.0:
        return math.nan
    return float(score) / float(threshold)


class OnsetDetector:
    """Degradation onset on a health index: a robust one-sided CUSUM with a learned baseline.

    The first ``warmup`` finite values give the healthy level and spread robustly: their
    median and 1.4826 x their median absolute deviation (floored at ``min_std``, in index
    units, so a perfectly steady warm-up still has a scale), since an anomaly score's healthy
    distribution has a heavy right tail. Afterwards ``s = max(0, s + min(z, clip) - drift)``
    with ``z`` the standardised value: clipping makes one outlying window count as at most
    ``clip`` deviations, so only a sustained rise reaches ``limit``. The onset is then the
    time ``s`` last left zero (the classic CUSUM change-point estimate); it stays until
    ``recover`` consecutive values are back within one deviation of the level (a repair),
    when the search starts again. :meth:`restart` forgets the baseline (the score's scale
    changed).
    """

    def __init__(
        self,
        warmup: int = 24,
        drift: float = 0.5,
        limit: float = 8.0,
        clip: float = 3.0,
        min_std: float = 0.02,
        recover: int = 24,
    ) -> None:
        if warmup < 2:
            raise ValueError(f"OnsetDetector warmup must be >= 2, got {warmup}")
        if not (drift >= 0.0 and limit > 0.0 and clip > drift and min_std > 0.0 and recover >= 1):
            raise ValueError(
                "OnsetDetector needs drift >= 0, limit > 0, clip > drift, min_std > 0, recover >= 1"
            )
        self.warmup = warmup
        self.drift = drift
        self.limit = limit
        self.clip = clip
        self.min_std = min_std
        self.recover = recover
        self.restart()

    def restart(self) -> None:
        """Learn the baseline again from the next ``warmup`` values."""
        self._first: list[float] | None = []
        self.mean = 0.0
        self.std = self.min_std
        self.cusum = 0.0
        self.rise_start: float | None = None
        self.onset: float | None = None
        self._healthy_run = 0

    @property
    def ready(self) -> bool:
        """True once the healthy baseline is learned."""
        return self._first is None

    def update(self, t: float, value: float) -> float | None:
        """Add one value at time ``t``; the onset time (``None`` while healthy)."""
        if not (math.isfinite(value) and math.isfinite(t)):
            return self.onset
        if self._first is not None:
            self._first.append(value)
            if len(self._first) >= self.warmup:
                first = sorted(self._first)
                self.mean = _median(first)
                mad = _median(sorted(abs(v - self.mean) for v in first))
                self.std = max(1.4826 * mad, self.min_std)
                self._first = None
            return None
        z = (value - self.mean) / self.std
        if self.onset is not None:
            self._healthy_run = self._healthy_run + 1 if z <= 1.0 else 0
            if self._healthy_run >= self.recover:
                self.onset, self.cusum, self.rise_start = None, 0.0, None
            return self.onset
        if self.cusum <= 0.0:
            self.rise_start = t
        self.cusum = max(0.0, self.cusum + min(z, self.clip) - self.drift)
        if self.cusum <= 0.0:
            self.rise_start = None
        elif self.cusum > self.limit:
            self.onset = self.rise_start if self.rise_start is not None else t
            self._healthy_run = 0
        return self.onset

    def __repr__(self) -> str:
        return (
            f"OnsetDetector(level={self.mean:.3g}, std={self.std:.3g}, cusum={self.cusum:.3g}, "
            f"onset={self.onset})"
        )


def _median(ordered: list[float]) -> float:
    n = len(ordered)
    return ordered[n // 2] if n % 2 else 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])


class ScoreHealth:
    """Health and remaining life of one twin from its anomaly score.

    Each window's index (:func:`score_index`) feeds an :class:`OnsetDetector`; once its
    baseline is known, a :class:`~twinflow.models.degradation.TrendRul` from that baseline
    to ``failure`` (index units: multiples of the detector's threshold) keeps the points,
    starts its fit at the onset and forgets it at a repair. Health is 1 at the healthy
    level and 0 at ``failure``; the life is infinite until an onset is detected. When the
    detector's threshold moves by more than ``rescale`` (relative; e.g. its warm-up ends or
    it re-calibrates) while no degradation is under way, the index has a new scale, so the
    baseline is learned again.

    ``levels`` are failure levels learned from run-to-failure history by the signal that
    drove the score at failure (``"*"``: over all failures), each with the spread of its
    logarithm: different failure modes move different signals and fail at very different
    index levels. During a degradation the signal that has driven the most windows since
    the onset picks its level, else ``"*"``, else ``failure`` (no spread).

    ``library`` (given on each update, it belongs to the type, not to the twin's state):
    the run-to-failure trajectories of a history. With one, the life during a degradation
    is that of the most similar trajectories (:class:`~twinflow.models.similarity.SimilarityRul`)
    instead of the trend's crossing of a failure level; the health stays the trend's.
    """

    def __init__(
        self,
        failure: float = 3.0,
        warmup: int = 24,
        drift: float = 0.5,
        limit: float = 8.0,
        coverage: float = 0.9,
        rescale: float = 0.1,
        seed: int = 0,
        name: str = "anomaly_score",
        levels: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        if not (math.isfinite(failure) and failure > 0.0):
            raise ValueError(f"ScoreHealth failure must be a positive number, got {failure!r}")
        self.failure = failure
        self.coverage = coverage
        self.rescale = rescale
        self.seed = seed
        self.name = name
        self.onset = OnsetDetector(warmup=warmup, drift=drift, limit=limit)
        self.levels = dict(levels or {})
        self.trend: TrendRul | None = None
        self.threshold: float | None = None
        #: signal -> windows it drove the score in since the onset (bounded by the signals)
        self.votes: dict[str, float] = {}

    def level(self) -> tuple[float, float]:
        """The failure level in use now and its spread (see the class notes)."""
        if self.votes:
            top = max(sorted(self.votes), key=lambda k: self.votes[k])
            if top in self.levels:
                return self.levels[top]
        return self.levels.get("*", (self.failure, 0.0))

    def update(
        self,
        t_hours: float,
        score: float | None,
        threshold: float | None,
        driver: str | None = None,
        library: Sequence[Trajectory] = (),
    ) -> RulEstimate | None:
        """Feed one window's score (and the signal driving it, when known); the estimate
        (``None`` until the baseline is known)."""
        h = score_index(score, threshold)
        if math.isfinite(h) and threshold is not None:
            last = self.threshold
            moved = last is not None and abs(threshold - last) > self.rescale * last
            if moved and self.onset.onset is None:
                self.onset.restart()
                self.trend = None
            self.threshold = threshold
        onset = self.onset.update(t_hours, h)
        if not self.onset.ready:
            return None
        if self.trend is None:
            level = self.level()[0]
            base = min(self.onset.mean, level * 0.99)
            self.trend = TrendRul(level, base, self.coverage, seed=self.seed, name=self.name)
        self.trend.add(t_hours, h)
        if onset is None and self.trend.onset is not None:
            self.trend.stop()
            self.votes = {}
        elif onset is not None and self.trend.onset != onset:
            self.trend.start(onset)
        if onset is not None and driver is not None:
            for k in self.votes:  # recent windows weigh more: a mode shows itself late
                self.votes[k] *= 0.9
            self.votes[driver] = self.votes.get(driver, 0.0) + 1.0
        level, spread = self.level()
        self.trend.failure = max(level, self.trend.baseline * 1.01 + 1e-9)
        self.trend.spread = spread
        trend = self.trend.estimate()
        if not library:
            return trend
        times, values = self.trend.points
        similar = SimilarityRul(library, self.coverage, name=self.name)
        return similar.estimate(times, values, health=trend.health)

    @property
    def onset_time(self) -> float | None:
        """When the current degradation began (hours since the epoch), if any."""
        return self.onset.onset


__all__ = ["OnsetDetector", "ScoreHealth", "score_index"]
