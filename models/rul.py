"""Remaining useful life from the trend of one health indicator.

:class:`RulEstimator` keeps the last ``history`` points ``(t_hours, indicator)`` in a ring
buffer, fits their trend by least squares and extrapolates it to ``failure_level``. The
indicator must *rise* toward failure (negate one that falls). Two trend shapes:

- ``"linear"``: ``y = a + b t``;
- ``"exponential"``: ``y - baseline = exp(a + b t)``, i.e. a straight line through
  ``log(y - baseline)``. Wear usually accelerates (a crack or a hot spot feeds itself), so the
  excess over the healthy level grows about exponentially; points whose excess is below
  ``floor`` (noise around a healthy level) are left out of that fit.

The ~90 % interval comes from the fit's standard errors (Student t, ``n - 2`` dof): the
earliest failure pairs the steepest plausible slope with the highest plausible current level,
the latest the flattest slope with the lowest level (``inf`` when a flat or improving trend
is plausible), a deliberately conservative combination. The central estimate is ``inf``
too unless the degrading trend is significant at that level, so noise on a healthy machine
does not produce a finite life. ``health`` maps the current level linearly from ``baseline`` (1) to
``failure_level`` (0).

>>> est = RulEstimator(failure_level=10.0, min_points=4)
>>> for t in range(6):
...     r = est.update(float(t), 1.0 + t)
>>> round(r.hours, 3), round(r.health, 3)
(4.0, 0.533)
"""

from __future__ import annotations

import math
from collections import deque
from functools import lru_cache

import numpy as np

from twinflow.core.records import RulEstimate

_FITS = ("linear", "exponential")


@lru_cache(maxsize=256)
def _t_quantile(dof: int, coverage: float) -> float:
    """Two-sided Student t quantile for a ``coverage`` interval with ``dof`` degrees."""
    from scipy.stats import t

    return float(t.ppf(0.5 + coverage / 2.0, dof))


class RulEstimator:
    """Trend-extrapolating RUL estimator for one rising health indicator.

    Parameters: ``failure_level`` (indicator value at failure), ``history`` (points kept),
    ``min_points`` (points needed for a fit), ``fit`` (``"linear"``/``"exponential"``),
    ``baseline`` (healthy level; ``None`` learns it as the mean of the first ``min_points``
    values), ``floor`` (smallest excess over the baseline an exponential fit uses; ``None``
    means 2 % of the way to failure), ``coverage`` (interval probability), ``name`` (the
    indicator's name in the estimates).
    """

    def __init__(
        self,
        failure_level: float,
        history: int = 48,
        min_points: int = 6,
        fit: str = "linear",
        baseline: float | None = None,
        floor: float | None = None,
        coverage: float = 0.9,
        name: str = "indicator",
    ) -> None:
        if fit not in _FITS:
            raise ValueError(f"RulEstimator fit must be one of {_FITS}, got {fit!r}")
        if min_points < 3 or history < min_points:
            raise ValueError(
                f"RulEstimator needs 3 <= min_points <= history, got {min_points}, {history}"
            )
        if not 0.0 < coverage < 1.0:
            raise ValueError(f"RulEstimator coverage must be in (0, 1), got {coverage!r}")
        self.failure_level = float(failure_level)
        self.history = history
        self.min_points = min_points
        self.fit = fit
        self.baseline = baseline
        self.floor = floor
        self.coverage = coverage
        self.name = name
        self._t: deque[float] = deque(maxlen=history)
        self._y: deque[float] = deque(maxlen=history)
        self._first: list[float] = []  # first values, only until the baseline is learned

    @property
    def points(self) -> int:
        """How many points the buffer holds."""
        return len(self._y)

    @property
    def level(self) -> float:
        """The healthy level health is measured from (NaN until known)."""
        if self.baseline is not None:
            return self.baseline
        if len(self._first) >= self.min_points:
            return sum(self._first) / len(self._first)
        return math.nan

    def update(self, t_hours: float, indicator: float) -> RulEstimate:
        """Add one point (a repeated time replaces the last point; an older one is ignored)
        and return the current estimate. NaN indicators are skipped."""
        if math.isfinite(indicator) and math.isfinite(t_hours):
            if self._t and t_hours == self._t[-1]:
                self._y[-1] = float(indicator)
            elif not self._t or t_hours > self._t[-1]:
                self._t.append(float(t_hours))
                self._y.append(float(indicator))
                if self.baseline is None and len(self._first) < self.min_points:
                    self._first.append(float(indicator))
        return self.estimate()

    def estimate(self) -> RulEstimate:
        """The estimate from the points held now."""
        inf = math.inf
        if not self._y:
            return RulEstimate(self.name, 1.0, inf, inf, inf)
        fitted = self._fit()
        current = self._current(fitted)
        health = self._health(current)
        if current >= self.failure_level:
            return RulEstimate(self.name, 0.0, 0.0, 0.0, 0.0)
        if fitted is None:
            return RulEstimate(self.name, health, inf, inf, inf)
        now_z, target_z, slope, slope_se, level_se, dof = fitted
        q = _t_quantile(dof, self.coverage)
        gap = max(target_z - now_z, 0.0)
        steep, flat = slope + q * slope_se, slope - q * slope_se
        near, far = max(gap - q * level_se, 0.0), gap + q * level_se
        low = near / steep if steep > 0.0 else inf
        high = far / flat if flat > 0.0 else inf
        hours = gap / slope if flat > 0.0 else inf
        return RulEstimate(self.name, health, hours, low, high)

    def _current(self, fitted: tuple[float, ...] | None) -> float:
        """The indicator now: the trend's value at the newest point, else a short mean."""
        if fitted is None:
            return float(np.mean(list(self._y)[-3:]))
        if self.fit == "exponential":
            return self.level + math.exp(fitted[0])
        return fitted[0]

    def _health(self, current: float) -> float:
        level = self.level
        if not math.isfinite(level) or self.failure_level <= level:
            return 1.0
        return float(
            min(1.0, max(0.0, (self.failure_level - current) / (self.failure_level - level)))
        )

    def _fit(self) -> tuple[float, float, float, float, float, int] | None:
        """Least squares on the buffer: (fitted now, target, slope, slope s.e., s.e. of the
        fitted now, dof)."""
        t = np.fromiter(self._t, dtype=np.float64)
        y = np.fromiter(self._y, dtype=np.float64)
        target = self.failure_level
        if self.fit == "exponential":
            level = self.level
            if not math.isfinite(level) or target <= level:
                return None
            floor = self.floor if self.floor is not None else 0.02 * (target - level)
            keep = y - level > floor
            t, y = t[keep], np.log(y[keep] - level)
            target = math.log(target - level)
        n = t.size
        if n < self.min_points:
            return None
        tc = t - t.mean()
        stt = float(tc @ tc)
        if stt <= 0.0:
            return None
        slope = float(tc @ (y - y.mean())) / stt
        resid = y - y.mean() - slope * tc
        dof = n - 2
        sigma2 = float(resid @ resid) / dof
        slope_se = math.sqrt(sigma2 / stt)
        level_se = math.sqrt(sigma2 * (1.0 / n + tc[-1] ** 2 / stt))
        now_z = float(y.mean() + slope * tc[-1])
        return now_z, target, slope, slope_se, level_se, dof

    def __repr__(self) -> str:
        return (
            f"RulEstimator({self.name!r}, failure_level={self.failure_level:g}, "
            f"points={len(self._y)}/{self.history}, fit={self.fit!r})"
        )
