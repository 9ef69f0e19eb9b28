"""Remaining useful life from a degradation trend since its onset, with a bootstrap interval.

:class:`TrendRul` follows a health index that rises from a healthy ``baseline`` toward a
``failure`` level once degradation has begun (:meth:`TrendRul.start` at the onset). It fits
three trend shapes to the excess ``y = h - baseline`` since the onset, by least squares in
the index's own units, with time ``s`` scaled to 0 one step before the onset and 1 now:

- ``linear``: ``y = a + b s``;
- ``power``: ``y = c s^p``, ``p`` in [0.5, 5] (polynomial growth, e.g. a squared distance
  as the anomaly score of a linearly drifting signal);
- ``exponential``: ``y = c exp(q (s - 1))``, ``q`` in [0.2, 10] (wear that feeds itself).

(``p`` and ``q`` are searched on a grid, ``c`` is solved for each.) The best shape gives the
current level; the interval is a residual bootstrap (``samples`` resamples, seeded): each
resample is refitted with every shape, its best one crosses the failure level at some time,
and the ``coverage`` interval of those times, minus now, is the interval of the remaining
life; the central estimate is their median. So the interval carries the uncertainty of the
shape as well as of its parameters. A resample whose trend does not rise never crosses
(``inf``): a flat or improving trend gives an infinite upper bound or estimate. The buffer
holds at most ``capacity`` points: when full, every second point of its older half is
dropped, so the fit still spans the whole degradation at a coarser step.

>>> rul = TrendRul(failure=10.0, baseline=0.0, min_points=4)
>>> rul.start(0.0)
>>> for t in range(8):
...     r = rul.update(float(t), 1.0 + t + 0.01 * (-1) ** t)
>>> round(r.hours, 1), r.low_hours <= r.hours <= r.high_hours
(2.0, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from twinflow.core.records import RulEstimate

FITS = ("linear", "exponential", "power")
INF = math.inf


class TrendRul:
    """Trend-to-threshold RUL of one rising health index, fitted since the onset.

    Parameters: ``failure`` (index at failure), ``baseline`` (healthy index; health is 1
    there and 0 at ``failure``), ``coverage`` (interval probability), ``min_points`` (points
    since the onset before any estimate), ``capacity`` (points kept), ``samples``
    (bootstrap resamples), ``fits`` (shapes tried), ``seed``, ``name``, ``spread`` (how
    uncertain the failure level itself is: the standard deviation of its logarithm, e.g.
    from the levels units of a run-to-failure history failed at; each resample then draws
    its own level, so the interval carries that doubt too).
    """

    def __init__(
        self,
        failure: float,
        baseline: float = 0.0,
        coverage: float = 0.9,
        min_points: int = 6,
        capacity: int = 64,
        samples: int = 200,
        fits: Sequence[str] = FITS,
        seed: int = 0,
        name: str = "health_index",
        spread: float = 0.0,
    ) -> None:
        if not failure > baseline:
            raise ValueError(f"TrendRul failure ({failure}) must be above baseline ({baseline})")
        if not 0.0 < coverage < 1.0:
            raise ValueError(f"TrendRul coverage must be in (0, 1), got {coverage!r}")
        if min_points < 3 or capacity < 2 * min_points:
            raise ValueError(f"TrendRul needs 3 <= min_points <= capacity / 2, got {min_points}")
        bad = [f for f in fits if f not in FITS]
        if bad or not fits:
            raise ValueError(f"TrendRul fits must be among {FITS}, got {list(fits)}")
        if not (math.isfinite(spread) and spread >= 0.0):
            raise ValueError(f"TrendRul spread must be >= 0, got {spread!r}")
        self.failure = float(failure)
        self.baseline = float(baseline)
        self.spread = float(spread)
        self.coverage = coverage
        self.min_points = min_points
        self.capacity = capacity
        self.samples = samples
        self.fits = tuple(fits)
        self.seed = seed
        self.name = name
        self.onset: float | None = None
        self.shape: str | None = None
        self._t: list[float] = []
        self._h: list[float] = []

    def start(self, onset: float) -> None:
        """Degradation began at ``onset``: the fit starts from there (points before it go)."""
        self.onset = onset
        keep = [i for i, t in enumerate(self._t) if t >= onset]
        self._t = [self._t[i] for i in keep]
        self._h = [self._h[i] for i in keep]

    def stop(self) -> None:
        """Degradation is over (a repair): forget the trend."""
        self.onset, self.shape, self._t, self._h = None, None, [], []

    @property
    def points(self) -> tuple[list[float], list[float]]:
        """The times and index values held now (since the onset, when there is one)."""
        return list(self._t), list(self._h)

    def health(self, level: float) -> float:
        """1 at the baseline, 0 at the failure level, clipped to [0, 1]."""
        frac = (self.failure - level) / (self.failure - self.baseline)
        return float(min(1.0, max(0.0, frac))) if math.isfinite(frac) else 1.0

    def update(self, t: float, h: float) -> RulEstimate:
        """Add the index ``h`` at time ``t`` (hours) and return the estimate now."""
        self.add(t, h)
        return self.estimate()

    def add(self, t: float, h: float) -> None:
        """Add the index ``h`` at time ``t`` (hours); NaN and times not after the last go."""
        if math.isfinite(t) and math.isfinite(h) and (not self._t or t > self._t[-1]):
            self._t.append(float(t))
            self._h.append(float(h))
            if len(self._t) > self.capacity:
                half = len(self._t) // 2
                self._t = self._t[:half:2] + self._t[half:]
                self._h = self._h[:half:2] + self._h[half:]

    def estimate(self) -> RulEstimate:
        """The estimate from the points held now (``inf`` before the onset or a fit)."""
        if not self._h:
            return RulEstimate(self.name, 1.0, INF, INF, INF)
        recent = float(np.mean(self._h[-3:]))
        if recent >= self.failure:
            return RulEstimate(self.name, 0.0, 0.0, 0.0, 0.0)
        if self.onset is None or len(self._t) < self.min_points:
            return RulEstimate(self.name, self.health(recent), INF, INF, INF)
        t = np.asarray(self._t)
        y = np.asarray(self._h) - self.baseline
        origin = self._origin()
        span = float(t[-1] - origin)
        s = (t - origin) / span  # 0 one step before the onset, 1 now
        n = s.size
        target = self.failure - self.baseline
        level, self.shape, _ = self._best(s, y[None, :], np.array([target]))
        fitted = level[0]
        resid = (y - fitted) * math.sqrt(n / max(n - 2, 1))
        rng = np.random.default_rng(self.seed + n)
        draws = fitted + resid[rng.integers(0, n, size=(self.samples, n))]
        targets = target * np.exp(rng.normal(0.0, self.spread, self.samples))
        _, _, cross = self._best(s, draws, targets)
        life = np.maximum(cross, 1.0) * span + origin - float(t[-1])
        life = np.where(np.isnan(life), INF, np.maximum(life, 0.0))
        tail = (1.0 - self.coverage) / 2.0
        qs = (tail, 0.5, 1.0 - tail)
        low, mid, high = (float(np.quantile(life, q, method="nearest")) for q in qs)
        return RulEstimate(self.name, self.health(self.baseline + fitted[-1]), mid, low, high)

    def _origin(self) -> float:
        """Time zero of the trend shapes: one typical step before the onset."""
        step = float(np.median(np.diff(self._t))) if len(self._t) > 1 else 1.0
        onset = self.onset if self.onset is not None else self._t[0]
        return min(onset, self._t[0]) - max(step, 1e-9)

    def _best(
        self, s: np.ndarray, y: np.ndarray, target: np.ndarray
    ) -> tuple[np.ndarray, str, np.ndarray]:
        """Fit every shape to each row of ``y`` (excess over the baseline at scaled times
        ``s``); per row the best shape's fitted values, the shape of the first row and the
        scaled time at which each row's best fit reaches that row's ``target`` excess
        (``inf``: never).
        """
        rows = y.shape[0]
        best_sse = np.full(rows, INF)
        best_fit = np.zeros_like(y)
        best_cross = np.full(rows, INF)
        best_shape = np.zeros(rows, dtype=np.int64)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            for k, shape in enumerate(self.fits):
                sse, fit, cross = _SHAPES[shape](s, y, target)
                better = sse < best_sse
                best_sse = np.where(better, sse, best_sse)
                best_fit[better] = fit[better]
                best_cross = np.where(better, cross, best_cross)
                best_shape = np.where(better, k, best_shape)
        return best_fit, self.fits[int(best_shape[0])], best_cross

    def __repr__(self) -> str:
        return (
            f"TrendRul({self.name!r}, failure={self.failure:g}, onset={self.onset}, "
            f"points={len(self._t)}/{self.capacity}, shape={self.shape})"
        )


def _linear(s: np.ndarray, y: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, ...]:
    """``y = a + b s`` per row: squared error, fitted values, crossing of ``target``."""
    sc = s - s.mean()
    b = (y @ sc) / float(sc @ sc)
    a = y.mean(axis=1) - b * s.mean()
    fit = a[:, None] + b[:, None] * s
    cross = np.where(b > 0.0, (target - a) / b, INF)
    return ((y - fit) ** 2).sum(axis=1), fit, cross


def _scaled(
    basis: np.ndarray, inverse: np.ndarray, y: np.ndarray, target: np.ndarray
) -> tuple[np.ndarray, ...]:
    """``y = c g(s)`` per row for each candidate ``g`` (rows of ``basis``, 1 at ``s = 1``),
    the best candidate per row: squared error, fitted values, crossing of ``target``
    (``inverse[j](r)`` solves ``g_j(s) = r``)."""
    gg = (basis**2).sum(axis=1)  # (G,)
    c = (y @ basis.T) / gg  # (rows, G)
    sse = (y**2).sum(axis=1)[:, None] - c**2 * gg  # least squares residual
    sse = np.where(c > 0.0, sse, INF)
    j = np.argmin(sse, axis=1)
    rows = np.arange(y.shape[0])
    cj = c[rows, j]
    fit = cj[:, None] * basis[j]
    cross = np.where(cj > 0.0, _invert(inverse[j], target / cj), INF)
    return sse[rows, j], fit, cross


def _invert(kind: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    """Scaled time where a candidate reaches ``ratio`` times its value at ``s = 1``:
    ``kind > 0`` is a power ``s ** p`` (``p = kind``), ``kind < 0`` an exponential
    ``exp(q (s - 1))`` (``q = -kind``)."""
    log_r = np.log(ratio)
    power = np.exp(log_r / np.abs(kind))
    expo = 1.0 + log_r / np.abs(kind)
    out: np.ndarray = np.where(kind > 0.0, power, expo)
    return out


_POWERS = np.geomspace(0.5, 5.0, 24)
_RATES = np.geomspace(0.2, 10.0, 24)


def _power(s: np.ndarray, y: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, ...]:
    """``y = c s^p`` with ``p`` in [0.5, 5] (polynomial growth from the onset)."""
    return _scaled(s[None, :] ** _POWERS[:, None], _POWERS, y, target)


def _exponential(s: np.ndarray, y: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, ...]:
    """``y = c exp(q (s - 1))`` with ``q`` in [0.2, 10] (growth that feeds itself)."""
    return _scaled(np.exp(_RATES[:, None] * (s[None, :] - 1.0)), -_RATES, y, target)


_SHAPES: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, ...]]] = {
    "linear": _linear,
    "power": _power,
    "exponential": _exponential,
}


def failure_level(values: Sequence[float]) -> float:
    """A failure level learned from run-to-failure history: the median of the index each
    unit reached at its failure (NaN without any finite value).

    >>> failure_level([3.0, 5.0, float("nan"), 4.0])
    4.0
    """
    finite = [v for v in values if math.isfinite(v)]
    return float(np.median(finite)) if finite else math.nan


def failure_spread(values: Sequence[float], least: float = 0.1) -> float:
    """How much the failure levels of a history vary: the standard deviation of their
    logarithms, at least ``least`` (two or three units say little about the spread).

    >>> failure_spread([100.0]), round(failure_spread([50.0, 100.0, 200.0]), 3)
    (0.1, 0.693)
    """
    logs = [math.log(v) for v in values if math.isfinite(v) and v > 0.0]
    return max(float(np.std(logs, ddof=1)) if len(logs) > 1 else 0.0, least)


__all__ = ["FITS", "TrendRul", "failure_level", "failure_spread"]
