"""Remaining useful life by matching a twin's whole course of a (vector) index to histories.

A :class:`Course` is one history unit's index from its first window to its failure, binned
to at most a few dozen points, each point a vector (one value per index: the learned index
and, when the history names several failure modes, one index per mode). :class:`CourseMatch`
slides the twin's kept points (its whole course, older points thinned: :class:`Buffer`)
along each course's age axis and stretches them by rates from 0.4 to 2.5 (units of one type
wear at different rates), each point weighted by the time it stands for. The best alignment
per course gives that unit's remaining life there; the nearest third of the units (at least
3) vote, weighted by ``exp(-(d - d_best) / (2 d_best))``, and the estimate is their weighted
median. Matching the whole course, not only its newest points, fixes the rate from the
time the twin took to get where it is; matching a vector tells failure modes apart whose
one index runs alike.

:class:`Calibration` gives the interval: the quantiles of ``log(truth / estimate)`` over
leave-one-out estimates on the history, by stage of the degradation (the learned index's
value), so it is as wide as the estimate's error was there, not a fixed multiple.

>>> import numpy as np
>>> t = np.arange(0.0, 11.0)
>>> lib = [course(t * s, np.c_[t / 10.0], 10.0 * s) for s in (0.8, 1.0, 1.25)]
>>> r = CourseMatch(lib).estimate(t[:6], np.c_[t[:6] / 10.0])
>>> round(r.hours, 1)
5.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from twinflow.core.records import RulEstimate
from twinflow.models.similarity import bin_medians, weighted_quantiles

#: Rate factors tried first (then refined between the best one's neighbours).
RATES = tuple(float(r) for r in np.geomspace(0.4, 2.5, 13))
#: Steps of a course's lookup grid (:meth:`Course.grid`).
GRID = 257
#: Twin points the first, coarse search uses at most (then every point).
COARSE = 16
#: Values: a sequence of numbers or a numpy array.
Values = Sequence[float] | np.ndarray
#: Rows: one index vector per point (a sequence of sequences or a 2-D array).
Rows = Sequence[Sequence[float]] | np.ndarray


@dataclass(frozen=True)
class Course:
    """One unit's run to failure: ``ages`` (hours since its first point, rising), the index
    vector at each (``values``) and its ``life`` (hours from its first point to failure)."""

    ages: tuple[float, ...]
    values: tuple[tuple[float, ...], ...]
    life: float
    _arrays: list[np.ndarray] = field(default_factory=list, compare=False, repr=False)

    def grid(self) -> np.ndarray:
        """The values (indexes x :data:`GRID` steps) at equal steps from age 0 to the life
        (interpolated, held at the ends), so matching looks them up without a search."""
        if not self._arrays:
            ages, values = np.asarray(self.ages), np.asarray(self.values, dtype=float)
            at = np.linspace(0.0, self.life, GRID)
            self._arrays.append(np.vstack([np.interp(at, ages, v) for v in values.T]))
        return self._arrays[0]

    def to_json(self) -> dict[str, object]:
        return {"ages": list(self.ages), "values": [list(v) for v in self.values],
                "life": self.life}  # fmt: skip


def course(times: Values, rows: np.ndarray, failure: float, points: int = 48) -> Course | None:
    """A unit's course from its index rows (one column per index) at ``times`` (hours) up to
    ``failure``: the medians of ``points`` equal time bins (the binning of
    :func:`~twinflow.models.similarity.bin_medians`, shared with the trajectories);
    ``None`` with fewer than 4 complete rows before the failure."""
    t = np.asarray(times, dtype=float)
    x = np.atleast_2d(np.asarray(rows, dtype=float).reshape(t.size, -1))
    keep = np.isfinite(t) & np.isfinite(x).all(axis=1) & (t <= failure)
    t, x = t[keep], x[keep]
    if t.size < 4:
        return None
    order = np.argsort(t)
    first = float(t[order][0])
    ages, values = bin_medians(t[order] - first, x[order], points)
    return Course(tuple(ages), tuple(values), round(float(failure - first), 4))


class Buffer:
    """A twin's kept points: at most ``capacity``; when full, every second point of the older
    half goes, so the points span the whole course at a coarser step (bounded state)."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self.times: tuple[float, ...] = ()
        self.rows: tuple[tuple[float, ...], ...] = ()

    def push(self, t: float, row: Sequence[float]) -> None:
        self.times = (*self.times, t)
        self.rows = (*self.rows, tuple(round(float(v), 6) for v in row))
        if len(self.times) > self.capacity:
            half = len(self.times) // 2
            self.times = self.times[:half][::2] + self.times[half:]
            self.rows = self.rows[:half][::2] + self.rows[half:]


class CourseMatch:
    """RUL of one twin from the courses of a history (see the module): ``coverage`` (the raw
    interval's probability, the neighbours' weighted quantiles), ``rates`` (stretches tried
    first), ``neighbours`` (units that vote; ``None``: a third of the library, at least 3),
    ``min_points`` (points before any estimate: 2 by default, since the history's vote
    gives a loose but finite life from the first points, where an infinite one misleads
    more), ``name`` (the indicator in the estimates),
    ``recency`` (``None``: each point weighs the time it stands for; else that times
    ``exp(-age / (recency * span))``, the newest points weighing more)."""

    def __init__(
        self,
        library: Sequence[Course],
        coverage: float = 0.9,
        rates: Sequence[float] = RATES,
        neighbours: int | None = None,
        min_points: int = 2,
        name: str = "learned_index",
        recency: float | None = None,
    ) -> None:
        if not library:
            raise ValueError("CourseMatch needs at least one course")
        if not 0.0 < coverage < 1.0 or not rates or min(rates) <= 0.0 or min_points < 2:
            raise ValueError("CourseMatch needs 0 < coverage < 1, rates > 0, min_points >= 2")
        self.library = tuple(library)
        self.coverage = coverage
        self.rates = np.asarray(sorted(rates), dtype=float)
        self.neighbours = neighbours or max(3, len(self.library) // 3)
        self.min_points = min_points
        self.name = name
        self.recency = recency

    def _misfit(self, ends: np.ndarray, rates: np.ndarray, back: np.ndarray, x: np.ndarray,
                w: np.ndarray, c: Course) -> np.ndarray:  # fmt: skip
        """Weighted mean squared difference per (rate, end age): the course's grid is
        interpolated at the twin's points aligned that way (held at its ends)."""
        grid = c.grid()  # indexes x steps
        at = ends[None, :, None] + rates[:, None, None] * back[None, None, :]
        pos = np.clip(at, 0.0, c.life) * ((grid.shape[1] - 1) / max(c.life, 1e-12))
        lo = np.minimum(pos.astype(np.intp), grid.shape[1] - 2)
        frac = pos - lo
        total = np.zeros(at.shape)
        for j in range(grid.shape[0]):
            v = np.take(grid[j], lo)
            v += (np.take(grid[j], lo + 1) - v) * frac
            v -= x[:, j]
            total += v * v
        out: np.ndarray = (total * w).sum(axis=-1)
        return out

    def matches(self, times: Values, rows: Rows) -> np.ndarray:
        """Per course ``[misfit, remaining hours, rate]`` of its best alignment."""
        t = np.asarray(times, dtype=float)
        x = np.asarray(rows, dtype=float).reshape(t.size, -1)
        back = t - t[-1]
        if t.size > 1:  # each point weighs the time it stands for
            gaps = np.diff(t)
            w = np.r_[gaps[0], gaps] + np.r_[gaps, gaps[-1]]
        else:
            w = np.ones(1)
        if self.recency is not None and t.size > 1:
            w = w * np.exp(back / (self.recency * (t[-1] - t[0])))
        w = w / w.sum()
        # the coarse search on at most COARSE points (the newest always), each weighing the
        # points it stands for; then every point
        few = np.unique(np.linspace(0, t.size - 1, min(COARSE, t.size)).round().astype(int))
        cut = np.searchsorted(few, np.arange(t.size), side="left").clip(0, few.size - 1)
        w_few = np.bincount(cut, weights=w, minlength=few.size)
        rates, out = self.rates, np.full((len(self.library), 3), np.nan)
        for k, c in enumerate(self.library):
            if len(c.values[0]) != x.shape[1]:
                continue
            ends = np.append(np.asarray(c.ages), c.life)
            misfit = self._misfit(ends, rates, back[few], x[few], w_few, c)
            i, j = (int(v) for v in np.unravel_index(int(np.argmin(misfit)), misfit.shape))
            fine_r = np.geomspace(rates[max(i - 1, 0)], rates[min(i + 1, rates.size - 1)], 7)
            fine_e = np.linspace(ends[max(j - 1, 0)], ends[min(j + 1, ends.size - 1)], 9)
            misfit = self._misfit(fine_e, fine_r, back, x, w, c)
            i, j = (int(v) for v in np.unravel_index(int(np.argmin(misfit)), misfit.shape))
            remaining = max(c.life - float(fine_e[j]), 0.0) / float(fine_r[i])
            out[k] = (float(misfit[i, j]), remaining, float(fine_r[i]))
        return out

    def estimate(self, times: Values, rows: Rows, health: float = 1.0) -> RulEstimate:
        """The estimate from the twin's kept points (``rows``: one column per index)."""
        inf = math.inf
        x = np.asarray(rows, dtype=float)
        if len(times) < self.min_points or not np.isfinite(x).all():
            return RulEstimate(self.name, health, inf, inf, inf)
        m = self.matches(times, x)
        m = m[np.isfinite(m[:, 0])]
        if not m.size:
            return RulEstimate(self.name, health, inf, inf, inf)
        m = m[np.argsort(m[:, 0], kind="stable")[: self.neighbours]]
        best = max(float(m[0, 0]), 1e-9)
        weight = np.exp(-(m[:, 0] - best) / (2.0 * best))
        tail = (1.0 - self.coverage) / 2.0
        low, mid, high = weighted_quantiles(m[:, 1], weight, (tail, 0.5, 1.0 - tail))
        return RulEstimate(self.name, health, mid, low, high)

    def __repr__(self) -> str:
        return f"CourseMatch(units={len(self.library)}, neighbours={self.neighbours})"


@dataclass(frozen=True)
class Calibration:
    """Interval from leave-one-out errors: per stage (the learned index below each of
    ``edges``, the last stage above them) the ``low`` and ``high`` quantiles of
    ``log(truth / estimate)``; :meth:`apply` sets ``estimate * exp(q)`` as the interval."""

    edges: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]

    @classmethod
    def learn(cls, stage: Values, ratio: Values, coverage: float, stages: int = 3) -> Calibration:
        """From the stages (index values) and ``log(truth / estimate)`` of LOO estimates:
        ``stages`` groups of equal count (fewer with under 20 estimates per group)."""
        s, r = np.asarray(stage, dtype=float), np.asarray(ratio, dtype=float)
        ok = np.isfinite(s) & np.isfinite(r)
        s, r = s[ok], r[ok]
        if not r.size:
            return cls((), (-math.inf,), (math.inf,))
        n = max(1, min(stages, r.size // 20))
        edges = tuple(float(e) for e in np.quantile(s, np.linspace(0, 1, n + 1)[1:-1]))
        group = np.searchsorted(edges, s, side="right")
        tail = (1.0 - coverage) / 2.0
        low = tuple(float(np.quantile(r[group == g], tail)) for g in range(n))
        high = tuple(float(np.quantile(r[group == g], 1.0 - tail)) for g in range(n))
        return cls(tuple(round(e, 4) for e in edges), tuple(round(v, 4) for v in low),
                   tuple(round(v, 4) for v in high))  # fmt: skip

    def apply(self, r: RulEstimate, stage: float) -> RulEstimate:
        if not math.isfinite(r.hours):
            return r
        g = int(np.searchsorted(self.edges, stage, side="right")) if math.isfinite(stage) else 0
        low, high = r.hours * math.exp(self.low[g]), r.hours * math.exp(self.high[g])
        return RulEstimate(r.indicator, r.health, r.hours, min(low, r.hours), max(high, r.hours))

    def to_json(self) -> dict[str, object]:
        return {"edges": list(self.edges), "low": list(self.low), "high": list(self.high)}


__all__ = ["RATES", "Buffer", "Calibration", "Course", "CourseMatch", "Rows", "course"]
