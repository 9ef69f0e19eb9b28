"""A degradation index learned from run-to-failure history ("health index by regression").

An anomaly score weighs every direction away from normal alike, noise included. Machines
that ran to failure show which direction wear takes: :class:`LinearIndex` is a ridge
regression of a unit's features (and their squares, so a sensor whose healthy level is a
curve in an operating setting is corrected for it) to the share of its degradation that has
elapsed (:func:`elapsed`: 0 while healthy, rising linearly to 1 at the failure). Applied to
a twin, it gives an index that rises from about 0 to about 1 at failure whatever the
machine's units, so the failure level is 1 by construction and the history's courses of it
(:mod:`twinflow.models.rul_match`) compare across units. When the history names several
failure modes, one index per mode is learned beside it (:class:`LearnedHealth`).

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
from dataclasses import dataclass, replace

import numpy as np

from twinflow.core.records import RulEstimate
from twinflow.models.rul_match import Buffer, Calibration, Course, CourseMatch, Rows, course

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
    """A twin type's learned indexes, its history's courses of them and its interval
    calibration (:func:`learn_health`); it belongs to the type, not to a twin's state.

    ``index`` is the learned index over every failure (the health is ``1 - index``);
    ``modes`` one index per failure mode the history names (``mode_names``; none with fewer
    than two), each the elapsed share of its mode's degradations and 0 on the others.
    :meth:`estimate` matches a twin's course of the vector ``[index, *modes]``
    (:class:`~twinflow.models.rul_match.CourseMatch`, whole course, ``recent`` points kept,
    older ones fading by ``recency``, rates from ``1 / spread`` to ``spread``) and sets the
    interval from ``calibration``
    (leave-one-out errors on the history).
    """

    index: LinearIndex
    library: tuple[Course, ...]
    modes: tuple[LinearIndex, ...] = ()
    mode_names: tuple[str, ...] = ()
    calibration: Calibration | None = None
    coverage: float = 0.9
    recent: int = 64
    recency: float | None = None
    spread: float = 2.5

    def rows(self, x: np.ndarray) -> np.ndarray:
        """The index vector of each feature row (one column per name of ``index``)."""
        return np.column_stack([i.values(x) for i in (self.index, *self.modes)])

    def row(self, features: Mapping[str, float]) -> tuple[float, ...]:
        """The index vector of one window's features (NaN where a feature is missing)."""
        x = np.asarray([[features.get(n, math.nan) for n in self.index.names]], dtype=float)
        return tuple(float(v) for v in self.rows(x)[0])

    def matcher(self, library: Sequence[Course] | None = None) -> CourseMatch:
        lib = self.library if library is None else tuple(library)
        rates = tuple(float(r) for r in np.geomspace(1.0 / self.spread, self.spread, 13))
        return CourseMatch(lib, self.coverage, rates, name="learned_index", recency=self.recency)

    def estimate(self, times: Values, rows: Rows, raw: bool = False) -> RulEstimate:
        """The RUL from a twin's kept index vectors at ``times`` (hours): the match, its
        interval from ``calibration`` (``raw``: the neighbours' own spread); health is
        ``1 - index`` (clipped to [0, 1]) at the newest point."""
        x = np.asarray(rows, dtype=float).reshape(len(times), -1)
        first = x[:, 0] if x.size else np.zeros(0)
        r = self.matcher().estimate(times, x, health=_health(first))
        if raw or self.calibration is None or not x.size:
            return r
        return self.calibration.apply(r, float(x[-1, 0]))


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


def _fit(units: Sequence[Unit], names: Sequence[str], kinds: Sequence[str]) -> LearnedHealth | None:
    """The indexes and courses learned on ``units`` (no calibration)."""
    targets = [elapsed(t, on, fail) for t, _, on, fail in units]
    index = LinearIndex.fit([(u[1], y) for u, y in zip(units, targets, strict=True)], names)
    mode_names = tuple(sorted(set(kinds))) if len(set(kinds)) > 1 else ()
    modes = tuple(
        LinearIndex.fit(
            [(u[1], y * (k == m)) for u, y, k in zip(units, targets, kinds, strict=True)], names
        )
        for m in mode_names
    )
    learned = LearnedHealth(index, (), modes, mode_names)
    library = [course(t, learned.rows(x), fail) for t, x, _, fail in units]
    kept = tuple(c for c in library if c is not None)
    return replace(learned, library=kept) if kept else None


#: How the twin's older points weigh in the match, tried leave-one-out by
#: :func:`learn_health`: ``None`` each by the time it stands for, else also fading with
#: their age (e-folding a ``recency`` share of the kept span).
RECENCY = (None, 0.5, 0.25)
#: How much faster or slower than a history unit a twin may wear (rates from ``1 / s`` to
#: ``s``), tried leave-one-out beside each recency.
SPREADS = (1.6, 2.5)


def learn_health(
    units: Sequence[Unit],
    names: Sequence[str],
    kinds: Sequence[str] | None = None,
    coverage: float = 0.9,
    checks: int = 12,
    recency: Sequence[float | None] = RECENCY,
    spreads: Sequence[float] = SPREADS,
) -> LearnedHealth | None:
    """The indexes and courses learned on ``units`` (rows after a failure left out; ``kinds``:
    each unit's failure mode, one index per mode when there are several), the weighting of
    older points and the interval calibration, all leave-one-out: each unit is left out in
    turn, everything is learned on the others and the unit's RUL is estimated at ``checks``
    windows between its onset and failure, from the points a twin would keep
    (:class:`~twinflow.models.rul_match.Buffer`), with each ``recency`` and rate spread
    (``spreads``). The pair with the smallest RMSE (hours) is kept, and the interval is the
    ``coverage`` quantiles of its ``log(truth / estimate)`` by stage. Without three units:
    the first of each, and the neighbours' own spread. ``None`` when no unit gives a
    course."""
    kept = []
    for t, x, on, fail in units:
        keep = np.asarray(t) <= fail
        kept.append((np.asarray(t)[keep], np.asarray(x)[keep], on, fail))
    modes = list(kinds) if kinds is not None else [""] * len(kept)
    learned = _fit(kept, names, modes)
    if learned is None:
        return None
    learned = replace(learned, coverage=coverage, recency=recency[0], spread=spreads[0])
    cap = max(c.life for c in learned.library)  # no history unit lived longer
    found: dict[tuple[float | None, float], tuple[list[float], list[float], list[float]]] = {
        (r, s): ([], [], []) for r in recency for s in spreads
    }  # per choice: stages, log ratios, squared errors
    for i, (t, x, on, fail) in enumerate(kept if len(kept) >= 3 else ()):
        loo = _fit(kept[:i] + kept[i + 1 :], names, modes[:i] + modes[i + 1 :])
        if loo is None:
            continue
        loo = replace(loo, coverage=coverage, recent=learned.recent)
        rows = loo.rows(x)
        at = np.flatnonzero((t > on) & (t < fail))
        wanted = (
            set(at[np.linspace(0, at.size - 1, checks).astype(int)].tolist()) if at.size else set()
        )
        buffer = Buffer(learned.recent)
        for j in range(t.size):
            if np.isfinite(rows[j]).all():
                buffer.push(float(t[j]), rows[j])
            if j not in wanted or not buffer.times:
                continue
            truth = fail - float(t[j])
            for (rec, spread), (stage, ratio, sq) in found.items():
                choice = replace(loo, recency=rec, spread=spread)
                r = choice.estimate(buffer.times, buffer.rows, raw=True)
                sq.append((min(r.hours, cap) - truth) ** 2)
                if math.isfinite(r.hours) and r.hours > 0.0:
                    stage.append(float(rows[j, 0]))
                    ratio.append(math.log(truth / r.hours))
    scored = [(float(np.mean(v[2])), k) for k, v in enumerate(found.values()) if v[2]]
    if scored:
        best = list(found)[min(scored)[1]]
        stage, ratio, _ = found[best]
        learned = replace(learned, recency=best[0], spread=best[1])
        if ratio:
            learned = replace(learned, calibration=Calibration.learn(stage, ratio, coverage))
    return learned


__all__ = ["LearnedHealth", "LinearIndex", "Unit", "elapsed", "learn_health", "scaled"]
