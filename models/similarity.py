"""Remaining useful life by similarity to run-to-failure trajectories from history.

A :class:`Trajectory` is one unit's health index from its first window to its failure,
resampled to at most a few dozen points (:func:`trajectory`). :class:`SimilarityRul` matches
a twin's recent index (since its degradation onset) against each trajectory of such a
library: the twin's newest point is slid along the trajectory's age axis and its time is
stretched by a few rate factors (units wear at different rates), and the alignment with the
smallest mean squared difference gives that unit's remaining life at the match. The units'
lives are weighted by how well they matched (``exp(-(d - d_best) / (2 d_best / sharpness))``,
so the scale is the best match's own misfit and no level is tuned to a machine); the
estimate is their weighted median and the interval their weighted quantiles. Values are
compared on a log scale (``log``): an anomaly score grows by orders of magnitude.

This needs a history and nothing else: no failure level, no trend shape. It costs
``units x rates x points x recent`` operations per window, and the library lives with the
twin type, not in the twin's state.

>>> lib = [trajectory([0.0, 1, 2, 3, 4, 5], [1.0, 2, 4, 8, 16, 32], 5.0, log=True)]
>>> est = SimilarityRul(lib, log=True, rates=(1.0,), min_points=3)
>>> r = est.estimate([10.0, 11.0, 12.0], [2.0, 4.0, 8.0])
>>> round(r.hours, 2)
2.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from twinflow.core.records import RulEstimate

#: Rate factors tried by default: a unit may wear up to 1.6 times faster or slower.
RATES = (0.625, 0.75, 0.875, 1.0, 1.15, 1.33, 1.6)
#: Values: a sequence of numbers or a numpy array.
Values = Sequence[float] | np.ndarray
#: Smallest index the log scale takes (an index at or below it is that).
FLOOR = 1e-3


@dataclass(frozen=True, slots=True)
class Trajectory:
    """One unit's run to failure: ``ages`` (hours since its first point, rising), the
    health index at them (``values``, already on the library's scale) and its ``life``
    (hours from its first point to the failure)."""

    ages: tuple[float, ...]
    values: tuple[float, ...]
    life: float

    def to_json(self) -> dict[str, object]:
        return {"ages": list(self.ages), "values": list(self.values), "life": self.life}


def _scale(values: np.ndarray, log: bool) -> np.ndarray:
    out: np.ndarray = np.log(np.maximum(values, FLOOR)) if log else values
    return out


def bin_medians(
    times: np.ndarray, rows: np.ndarray, points: int
) -> tuple[list[float], list[tuple[float, ...]]]:
    """The medians of ``points`` equal time bins from 0 to the last of ``times`` (sorted,
    starting at 0; ``rows``: one row per time, one column per value): per non-empty bin its
    median time and median row, rounded to 4 decimals. Shared by the trajectories here and
    the courses of :mod:`twinflow.models.rul_match`, so both bin a unit alike.

    >>> bin_medians(np.array([0.0, 1, 2, 3]), np.array([[1.0], [3.0], [5.0], [7.0]]), 2)
    ([0.5, 2.5], [(2.0,), (6.0,)])
    """
    edges = np.linspace(0.0, float(times[-1]), points + 1)
    slot = np.clip(np.searchsorted(edges, times, side="right") - 1, 0, points - 1)
    cuts = np.flatnonzero(np.diff(slot)) + 1  # times are sorted: each bin is one slice
    ages: list[float] = []
    values: list[tuple[float, ...]] = []
    for a, b in zip(np.r_[0, cuts], np.r_[cuts, times.size], strict=True):
        ages.append(round(float(np.median(times[a:b])), 4))
        values.append(tuple(round(float(v), 4) for v in np.median(rows[a:b], axis=0)))
    return ages, values


def trajectory(
    times: Values,
    index: Values,
    failure: float,
    log: bool = False,
    points: int = 48,
) -> Trajectory | None:
    """A unit's trajectory from its index at ``times`` (hours) up to ``failure`` (hours):
    the medians of ``points`` equal time bins (:func:`bin_medians`: noise averaged, size
    bounded); ``None`` with fewer than 4 finite values before the failure."""
    t = np.asarray(times, dtype=float)
    h = np.asarray(index, dtype=float)
    keep = np.isfinite(t) & np.isfinite(h) & (t <= failure)
    t, h = t[keep], _scale(h[keep], log)
    if t.size < 4:
        return None
    order = np.argsort(t)
    first = float(t[order][0])
    ages, values = bin_medians(t[order] - first, h[order][:, None], points)
    return Trajectory(tuple(ages), tuple(v[0] for v in values), round(float(failure - first), 4))


class SimilarityRul:
    """RUL of one twin from the run-to-failure trajectories of a history (see the module).

    ``library`` (trajectories on the scale ``log`` says), ``coverage`` (interval
    probability), ``rates`` (time stretches tried), ``sharpness`` (how fast a worse match
    loses weight), ``recent`` (points matched at most: the newest), ``min_points`` (points
    before any estimate), ``name`` (the indicator's name in the estimates), ``neighbours``
    (``None``: every unit and rate votes; ``k``: only the ``k`` units that matched best,
    each at its best rate, so many poorly matching units cannot outvote a few good ones).
    """

    def __init__(
        self,
        library: Sequence[Trajectory],
        coverage: float = 0.9,
        log: bool = True,
        rates: Sequence[float] = RATES,
        sharpness: float = 1.0,
        recent: int = 16,
        min_points: int = 6,
        name: str = "anomaly_score",
        neighbours: int | None = None,
    ) -> None:
        if not library:
            raise ValueError("SimilarityRul needs at least one trajectory")
        if not 0.0 < coverage < 1.0:
            raise ValueError(f"SimilarityRul coverage must be in (0, 1), got {coverage!r}")
        if not rates or min(rates) <= 0.0 or sharpness <= 0.0 or min_points < 2:
            raise ValueError("SimilarityRul needs rates > 0, sharpness > 0, min_points >= 2")
        if neighbours is not None and neighbours < 1:
            raise ValueError(f"SimilarityRul neighbours must be >= 1, got {neighbours!r}")
        self.library = tuple(library)
        self.coverage = coverage
        self.log = log
        self.rates = np.asarray(rates, dtype=float)
        self.sharpness = sharpness
        self.recent = recent
        self.min_points = min_points
        self.name = name
        self.neighbours = neighbours

    def matches(self, times: Values, index: Values) -> np.ndarray:
        """Per library unit and rate: ``[misfit, remaining hours]`` of the best alignment
        (shape ``(units, rates, 2)``; NaN without finite points)."""
        t = np.asarray(times, dtype=float)[-self.recent :]
        v = _scale(np.asarray(index, dtype=float)[-self.recent :], self.log)
        ok = np.isfinite(t) & np.isfinite(v)
        t, v = t[ok], v[ok]
        out = np.full((len(self.library), self.rates.size, 2), np.nan)
        if t.size == 0:
            return out
        back = t - t[-1]  # <= 0: hours before the newest point
        rows = np.arange(self.rates.size)
        for k, unit in enumerate(self.library):
            ages = np.asarray(unit.ages)
            values = np.asarray(unit.values)
            # candidate ages of the newest point: the trajectory's points and its end, then
            # a finer grid between the neighbours of the best one, per rate
            ends = np.broadcast_to(np.append(ages, unit.life), (self.rates.size, ages.size + 1))
            best = np.argmin(self._misfit(ends, ages, values, back, v), axis=1)
            low = ends[rows, np.maximum(best - 1, 0)]
            high = ends[rows, np.minimum(best + 1, ages.size)]
            fine = low[:, None] + (high - low)[:, None] * np.linspace(0.0, 1.0, 9)[None, :]
            misfit = self._misfit(fine, ages, values, back, v)
            best = np.argmin(misfit, axis=1)
            out[k, :, 0] = misfit[rows, best]
            out[k, :, 1] = np.maximum(unit.life - fine[rows, best], 0.0) / self.rates
        return out

    def _misfit(
        self,
        ends: np.ndarray,
        ages: np.ndarray,
        values: np.ndarray,
        back: np.ndarray,
        v: np.ndarray,
    ) -> np.ndarray:
        """Mean squared difference per (rate, candidate end age) of ``ends``."""
        at = ends[:, :, None] + self.rates[:, None, None] * back[None, None, :]
        fitted = np.interp(at, ages, values)  # before the first point: its value
        out: np.ndarray = ((v - fitted) ** 2).mean(axis=2)
        return out

    def estimate(self, times: Values, index: Values, health: float = 1.0) -> RulEstimate:
        """The estimate from the twin's points (hours, index); ``health`` is passed through.
        Infinite with fewer than ``min_points`` finite points."""
        inf = math.inf
        if sum(1 for x in index if math.isfinite(x)) < self.min_points:
            return RulEstimate(self.name, health, inf, inf, inf)
        m = self.matches(times, index)
        if self.neighbours is not None:
            m = _nearest(m, self.neighbours)
        misfit, life = m[..., 0].ravel(), m[..., 1].ravel()
        ok = np.isfinite(misfit) & np.isfinite(life)
        if not ok.any():
            return RulEstimate(self.name, health, inf, inf, inf)
        misfit, life = misfit[ok], life[ok]
        best = float(misfit.min())
        scale = max(best, 1e-6) * 2.0 / self.sharpness
        weight = np.exp(-(misfit - best) / scale)
        tail = (1.0 - self.coverage) / 2.0
        low, mid, high = weighted_quantiles(life, weight, (tail, 0.5, 1.0 - tail))
        return RulEstimate(self.name, health, mid, low, high)

    def __repr__(self) -> str:
        return f"SimilarityRul({self.name!r}, units={len(self.library)}, log={self.log})"


def _nearest(m: np.ndarray, k: int) -> np.ndarray:
    """Of ``matches``' output, each unit's best rate only, and only the ``k`` units that
    matched best (shape ``(k, 1, 2)``; units without a finite match go last)."""
    misfit = np.where(np.isfinite(m[..., 0]), m[..., 0], np.inf)
    rate = np.argmin(misfit, axis=1)
    best = m[np.arange(m.shape[0]), rate]  # (units, 2)
    order = np.argsort(np.where(np.isfinite(best[:, 0]), best[:, 0], np.inf), kind="stable")
    out: np.ndarray = best[order[:k], None, :]
    return out


def weighted_quantiles(
    values: np.ndarray, weights: np.ndarray, qs: Sequence[float]
) -> tuple[float, ...]:
    """Quantiles of ``values`` under ``weights`` (the value where the cumulative weight,
    at each value's midpoint, reaches ``q``; interpolated between values). Shared with
    :mod:`twinflow.models.rul_match`."""
    order = np.argsort(values)
    v, w = values[order], weights[order]
    cum = (np.cumsum(w) - 0.5 * w) / w.sum()
    return tuple(float(np.interp(q, cum, v)) for q in qs)


__all__ = [
    "RATES",
    "SimilarityRul",
    "Trajectory",
    "bin_medians",
    "trajectory",
    "weighted_quantiles",
]
