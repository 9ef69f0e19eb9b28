"""A degradation index learned from run-to-failure history ("health index by regression").

An anomaly score weighs every direction away from normal alike, noise included. Machines
that ran to failure show which direction wear takes: :class:`LinearIndex` is a ridge
regression of a unit's features (and their squares, so a sensor whose healthy level is a
curve in an operating setting is corrected for it) to the share of its degradation that has
elapsed (:func:`elapsed`: 0 while healthy, rising linearly to 1 at the failure). Applied to
a twin, it gives an index that rises from about 0 to about 1 at failure whatever the
machine's units, so the failure level is 1 by construction and the trajectories of the
history (:mod:`twinflow.models.similarity`, on a linear scale) compare across units.

Features are standardised on the history, a feature that does not vary there is left out,
and the ridge (``ridge`` times the number of rows, on standardised features) keeps
correlated sensors from cancelling each other with large weights.

>>> import numpy as np
>>> t = np.arange(10.0)
>>> units = [(np.c_[t * 2.0 + 1.0], elapsed(t, 0.0, 9.0))]
>>> index = LinearIndex.fit(units, ("x",), squares=False)
>>> round(index.value({"x": 10.0}), 2)
0.5
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from twinflow.core.records import RulEstimate
from twinflow.models.similarity import SimilarityRul, Trajectory, trajectory

#: Values: a sequence of numbers or a numpy array.
Values = Sequence[float] | np.ndarray


def elapsed(times: Values, onset: float, failure: float) -> np.ndarray:
    """The regression target at ``times``: 0 before ``onset``, then the share of the
    degradation (``onset`` to ``failure``) elapsed, 1 at the failure.

    >>> elapsed([0.0, 2.0, 3.0, 4.0], 2.0, 4.0).tolist()
    [0.0, 0.0, 0.5, 1.0]
    """
    t = np.asarray(times, dtype=float)
    span = max(failure - onset, 1e-12)
    out: np.ndarray = np.clip((t - onset) / span, 0.0, 1.0)
    return out


class LinearIndex:
    """Ridge regression of features (and their squares) to the elapsed degradation.

    ``names`` are the features in the column order of the rows; ``mean`` and ``scale``
    standardise the expanded columns (the squares are of ``x - shift``), ``weights`` and
    ``bias`` map them to the index.
    Build one with :meth:`fit`; :meth:`values` scores rows, :meth:`value` one window's
    features (NaN when a feature it uses is missing).
    """

    def __init__(
        self,
        names: Sequence[str],
        mean: Values,
        scale: Values,
        weights: Values,
        bias: float,
        squares: bool = True,
        shift: Values | None = None,
    ) -> None:
        self.names = tuple(names)
        self.mean = np.asarray(mean, dtype=float)
        self.scale = np.asarray(scale, dtype=float)
        self.weights = np.asarray(weights, dtype=float)
        self.bias = float(bias)
        self.squares = squares
        self.shift = np.zeros(len(self.names)) if shift is None else np.asarray(shift, float)
        width = 2 * len(self.names) if squares else len(self.names)
        if not self.mean.size == self.scale.size == self.weights.size == width:
            raise ValueError(f"LinearIndex needs {width} means, scales and weights")

    @classmethod
    def fit(
        cls,
        units: Sequence[tuple[np.ndarray, np.ndarray]],
        names: Sequence[str],
        ridge: float = 1e-3,
        squares: bool = True,
    ) -> LinearIndex:
        """Fit on ``units``: per unit its rows (one column per name) and their targets
        (:func:`elapsed`). Rows with a missing value are left out."""
        if not units:
            raise ValueError("LinearIndex.fit needs at least one unit")
        x = np.vstack([np.asarray(rows, dtype=float) for rows, _ in units])
        y = np.concatenate([np.asarray(target, dtype=float) for _, target in units])
        if x.shape != (y.size, len(names)):
            raise ValueError(f"LinearIndex.fit: rows of {len(names)} columns, one target each")
        keep = np.isfinite(x).all(axis=1) & np.isfinite(y)
        x, y = x[keep], y[keep]
        if y.size < 2:
            raise ValueError("LinearIndex.fit needs at least two complete rows")
        shift = np.median(x, axis=0)  # squares of centred values: curvature, not magnitude
        raw = np.hstack([x, (x - shift) ** 2]) if squares else x
        mean, scale = raw.mean(axis=0), raw.std(axis=0)
        used = scale > 1e-9 * (np.abs(mean) + 1.0)
        scale = np.where(used, scale, 1.0)
        z = (raw - mean) / scale * used
        yc = y - y.mean()
        gram = z.T @ z + ridge * y.size * np.eye(z.shape[1])
        weights = np.linalg.solve(gram, z.T @ yc) * used
        return cls(names, mean, scale, weights, float(y.mean()), squares, shift)

    def _expand(self, x: np.ndarray) -> np.ndarray:
        return np.hstack([x, (x - self.shift) ** 2]) if self.squares else x

    def values(self, rows: np.ndarray) -> np.ndarray:
        """The index of each row (one column per name; NaN where a value is missing)."""
        x = np.atleast_2d(np.asarray(rows, dtype=float))
        z = (self._expand(x) - self.mean) / self.scale
        out: np.ndarray = np.where(self.weights != 0.0, z, 0.0) @ self.weights + self.bias
        out[~np.isfinite(x).all(axis=1)] = math.nan
        return out

    def value(self, features: Mapping[str, float]) -> float:
        """The index of one window's features (NaN when one of ``names`` is missing)."""
        row = [features.get(n, math.nan) for n in self.names]
        return float(self.values(np.asarray([row], dtype=float))[0])

    def to_json(self) -> dict[str, object]:
        return {
            "names": list(self.names),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "weights": self.weights.tolist(),
            "bias": self.bias,
            "squares": self.squares,
            "shift": self.shift.tolist(),
        }

    def __repr__(self) -> str:
        return f"LinearIndex(features={len(self.names)}, squares={self.squares})"


#: One run-to-failure unit of a history: window end times (hours), their feature rows (one
#: column per name), the degradation onset and the failure (hours).
Unit = tuple[np.ndarray, np.ndarray, float, float]


@dataclass(frozen=True)
class LearnedHealth:
    """A twin type's learned index, its history's trajectories of it (linear scale) and the
    factor its RUL intervals are scaled by (``factor``, learned leave-one-out on the history:
    :func:`learn_health`). It belongs to the type, not to a twin's state.

    :meth:`estimate` matches a twin's newest ``recent`` points against the nearest third
    of the trajectories (at least 3), as ``tests/benchmarks/bench_rul*.py`` measured it.
    """

    index: LinearIndex
    library: tuple[Trajectory, ...]
    factor: float = 1.0
    coverage: float = 0.9
    recent: int = 48

    def similar(self, library: Sequence[Trajectory] | None = None) -> SimilarityRul:
        lib = self.library if library is None else tuple(library)
        return SimilarityRul(
            lib, self.coverage, log=False, recent=self.recent,
            neighbours=max(3, len(lib) // 3), name="learned_index",
        )  # fmt: skip

    def estimate(self, times: Values, values: Values) -> RulEstimate:
        """The RUL from a twin's index at ``times`` (hours), its interval scaled by
        ``factor``; health is ``1 - index`` (clipped to [0, 1]) at the newest point."""
        raw = self.similar().estimate(times, values, health=_health(values))
        return scaled(raw, self.factor)


def _health(values: Values) -> float:
    finite = [float(v) for v in values if math.isfinite(v)]
    return 1.0 - min(max(finite[-1], 0.0), 1.0) if finite else 1.0


def scaled(r: RulEstimate, factor: float) -> RulEstimate:
    """``r`` with each side of its interval ``factor`` times as wide (low stays >= 0)."""
    if factor == 1.0 or not math.isfinite(r.hours):
        return r
    low = max(r.hours - factor * (r.hours - r.low_hours), 0.0)
    high = r.hours + factor * (r.high_hours - r.hours)
    return RulEstimate(r.indicator, r.health, r.hours, low, high)


def needed_factor(r: RulEstimate, truth: float) -> float:
    """The smallest ``factor`` for which :func:`scaled` ``(r)`` holds ``truth``."""
    side = r.hours - r.low_hours if truth < r.hours else r.high_hours - r.hours
    miss = abs(truth - r.hours)
    if miss == 0.0:
        return 0.0
    return miss / side if side > 0.0 else math.inf


def _fit(units: Sequence[Unit], names: Sequence[str]) -> tuple[LinearIndex, list[Trajectory]]:
    index = LinearIndex.fit([(x, elapsed(t, on, fail)) for t, x, on, fail in units], names)
    library = [trajectory(t, index.values(x), fail) for t, x, _, fail in units]
    return index, [tr for tr in library if tr is not None]


def learn_health(
    units: Sequence[Unit],
    names: Sequence[str],
    coverage: float = 0.9,
    checks: int = 8,
    bounds: tuple[float, float] = (0.25, 8.0),
) -> LearnedHealth | None:
    """The index and trajectories learned on ``units`` (rows after a failure left out),
    and the interval factor: each unit is left out in turn, the index and library are
    learned on the others and the unit's RUL is estimated at ``checks`` windows between
    its onset and failure; the factor is the ``coverage`` quantile of the factors each
    estimate needed to hold the truth (within ``bounds``; 1 with fewer than 3 units).
    ``None`` when no unit gives a trajectory."""
    kept = []
    for t, x, on, fail in units:
        keep = np.asarray(t) <= fail
        kept.append((np.asarray(t)[keep], np.asarray(x)[keep], on, fail))
    index, library = _fit(kept, names)
    if not library:
        return None
    learned = LearnedHealth(index, tuple(library), 1.0, coverage)
    need: list[float] = []
    for i, (t, x, on, fail) in enumerate(kept if len(kept) >= 3 else ()):
        loo_index, loo_library = _fit(kept[:i] + kept[i + 1 :], names)
        if not loo_library:
            continue
        similar = learned.similar(loo_library)
        values = loo_index.values(x)
        at = np.flatnonzero((t > on) & (t < fail))
        for j in at[np.linspace(0, at.size - 1, checks).astype(int)] if at.size else ():
            r = similar.estimate(t[: j + 1], values[: j + 1])
            if math.isfinite(r.hours):
                need.append(needed_factor(r, fail - float(t[j])))
    if need:
        factor = float(np.clip(np.quantile(need, coverage), *bounds))
        learned = LearnedHealth(index, tuple(library), round(factor, 4), coverage)
    return learned


__all__ = ["LearnedHealth", "LinearIndex", "Unit", "elapsed", "learn_health", "scaled"]
