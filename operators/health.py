"""Derived features and RUL tracking of one twin, from its type's ``health:`` section.

:class:`DerivedFeatures` turns a window's features into the indicators that rules and RUL
judge, keeping a little per-twin state. Derived keys (``<s>`` is a signal):

==========================  =============================================================
key                         meaning
==========================  =============================================================
``<s>.residual``            ``<s>.mean`` minus its learned healthy value at the current
                            operating point (a ``ReferenceCurve`` of the signal against its
                            driver's mean, one per ``health.references`` entry); a signal
                            that lags its driver (temperatures) is first projected to the
                            level it is heading for, ``mean + lag * slope``
``health.derived`` keys     the ratio or difference of two window features
``health.models`` outputs   the results of window-level models (import path and params)
``<s>.flat``                1.0 when the signal did not move at all in the window although
                            it moved in >= 90 % of the (>= 3) windows before, else 0.0
``<s>.spike_pct``           largest excursion from the window mean, in % of the signal's
                            range, when it is >= 12 window standard deviations (else 0.0)
==========================  =============================================================

:class:`HealthTracker` follows the type's ``health.indicators`` with one
:class:`~twinflow.models.rul.RulEstimator` each and, for a type that declares none (or gives
``health.index``), the anomaly score's health index with its onset and trend
(:class:`~twinflow.models.health_index.ScoreHealth`); it reports the worst (shortest life).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from twinflow.core.records import RulEstimate, WindowFeatures
from twinflow.core.times import epoch
from twinflow.models.anomaly import ReferenceCurve
from twinflow.models.health_index import ScoreHealth
from twinflow.models.learned_index import LearnedHealth
from twinflow.models.rul import RulEstimator
from twinflow.models.rul_match import Buffer
from twinflow.operators.catalog import CATALOG, TwinType
from twinflow.operators.health_profile import (
    Health,
    Indicator,
    Reference,
    ScoreIndex,
    health_of,
    learned_failure,
    learned_index,
    learned_trajectories,
)
from twinflow.operators.rulebook import GenericRules, generic_of

#: The prefix of the anomaly step's per-feature contributions (``rules.DRIVER_PREFIX``;
#: ``rules`` imports this module, so it is repeated here).
DRIVER_PREFIX = "anomaly.z."


def _get(f: Mapping[str, float], key: str) -> float:
    v = f.get(key)
    return float(v) if v is not None and math.isfinite(v) else math.nan


class DerivedFeatures:
    """Computes the derived keys of the module table for one twin (small, picklable state).

    ``references`` limits the learned references to those signals (``None``: all of the
    type's); ``signals`` limits the stateless sensor indicators (flat, spikes) to those
    signals (``None``: every measured signal).
    """

    def __init__(
        self,
        twin_type: str,
        references: tuple[str, ...] | None = None,
        signals: tuple[str, ...] | None = None,
    ) -> None:
        self.twin_type = twin_type
        self.references = references
        self.signals = signals
        self.curves: dict[str, ReferenceCurve] = {}
        #: signal -> [windows it moved in, windows seen]
        self.moved: dict[str, list[int]] = {}

    def _sensor_signals(self, kind: TwinType, g: GenericRules) -> list[tuple[str, float, float]]:
        """Signals judged for flat and spikes: the measured ones and ``generic.spikes_on``."""
        if self.signals == ():
            return []
        out = [
            (s.name, s.low, s.high)
            for s in kind.signals
            if s.name not in g.commanded and (self.signals is None or s.name in self.signals)
        ]
        for name, (low, high) in g.spikes_on.items():
            if self.signals is None or name in self.signals:
                out.append((name, low, high))
        return out

    def update(
        self,
        w: WindowFeatures,
        frozen: frozenset[str] = frozenset(),
        kind: TwinType | None = None,
        only: frozenset[str] | None = None,
    ) -> dict[str, float]:
        """Derived features of window ``w`` (``only``: learn just these references).

        Curves of ``frozen`` signals learn nothing at operating points they have not seen, and
        no curve learns from a window the anomaly detector flagged.
        """
        f = w.features
        out: dict[str, float] = {}
        kind = kind if kind is not None else CATALOG.get(self.twin_type)
        health = health_of(kind)
        keep = self.references if only is None else only
        for ref in health.references:
            if keep is None or ref.signal in keep:
                out[f"{ref.signal}.residual"] = self._residual(
                    ref, f, ref.signal in frozen, learn=not w.is_anomalous
                )
        if health.derived or health.models:
            out.update(_window_features(health, f))
        if kind is not None:
            g = generic_of(kind)
            for name, low, high in self._sensor_signals(kind, g):
                out.update(self._sensor(name, high - low, f, w.counts.get(name, 0), g))
        return out

    def _residual(
        self, pair: Reference, f: Mapping[str, float], frozen: bool, learn: bool
    ) -> float:
        value = _get(f, f"{pair.signal}.mean")
        if pair.lag_s > 0.0:
            # A first-order lag: the level it is heading for is mean + tau * slope, which
            # is what the driver's current value explains (no lag filter state needed).
            slope = _get(f, f"{pair.signal}.slope")
            value = value + pair.lag_s / 3600.0 * slope if math.isfinite(slope) else math.nan
        driver = 0.0 if pair.driver is None else _get(f, f"{pair.driver}.mean")
        curve = self.curves.get(pair.signal)
        if curve is None:
            low, high = (pair.low, pair.high) if pair.high > pair.low else (-1.0, 1.0)
            curve = self.curves[pair.signal] = ReferenceCurve(
                low, high, bins=pair.bins, gate=pair.gate, reach=pair.reach, span=pair.span
            )
        residual = curve.residual(driver, value)
        if learn:
            curve.learn(driver, value, allow_new=not frozen)
        return residual

    def _sensor(
        self, name: str, span: float, f: Mapping[str, float], count: int, g: GenericRules
    ) -> dict[str, float]:
        """``<name>.spike_pct`` and ``<name>.flat`` (``g``: the type's generic settings)."""
        std = _get(f, f"{name}.std")
        if math.isnan(std) or count < g.min_readings:  # too few readings to judge
            return {}
        out: dict[str, float] = {}
        mean, lo, hi = _get(f, f"{name}.mean"), _get(f, f"{name}.min"), _get(f, f"{name}.max")
        extent = max(hi - mean, mean - lo)
        if std > 0.0 and extent >= g.spike_crest * std:
            out[f"{name}.spike_pct"] = 100.0 * extent / span
        else:
            out[f"{name}.spike_pct"] = 0.0
        still = std <= 1e-9 * span
        moved = self.moved.setdefault(name, [0, 0])
        flat = still and moved[0] >= 3 and moved[0] >= 0.9 * moved[1]
        if not flat:  # a stuck stretch does not dilute the record of a moving signal
            moved[0] += 0 if still else 1
            moved[1] += 1
        out[f"{name}.flat"] = 1.0 if flat else 0.0
        return out


def _window_features(health: Health, f: Mapping[str, float]) -> dict[str, float]:
    """The ``derived`` features and ``models`` outputs of one window, in file order."""
    out: dict[str, float] = {}
    for d in health.derived:
        out[d.key] = d.value(_get(f, d.a), _get(f, d.b))
    for model in health.models:
        out.update(model.apply({**f, **out}))
    return out


def _driver(features: Mapping[str, float]) -> str | None:
    """The signal with the largest contribution to the window's anomaly score (from the
    ``anomaly.z.<signal>.<feature>`` keys the anomaly step adds), if any."""
    best: tuple[float, str] | None = None
    for key, v in features.items():
        if key.startswith(DRIVER_PREFIX) and math.isfinite(v) and (best is None or v > best[0]):
            best = (v, key[len(DRIVER_PREFIX) :].split(".", 1)[0])
    return None if best is None else best[1]


class HealthTracker:
    """Remaining useful life of one twin: the worst of its indicators' estimates.

    The indicators come with the twin's type on every call; an estimator is made for each
    the first time it is seen. The anomaly-score index (``score``) is made on the first
    window when the type uses one; its failure levels are those learned from history
    (:func:`~twinflow.operators.health_profile.learned_failure`, by the signal that drives
    the score), else ``health.index``'s, and with the trajectories of a history
    (:func:`~twinflow.operators.health_profile.learned_trajectories`) its life is by
    similarity to them. A type with a health index learned from history
    (:func:`~twinflow.operators.health_profile.learned_index`) uses it instead of the
    anomaly score: each window's index vector is kept (at most ``recent`` points over the
    whole course, older ones thinned: a few KB) and matched to the history's courses of it.
    """

    #: The learned index's kept points (class default: snapshots from before it load).
    index_points: Buffer | None = None

    def __init__(self, twin_id: str, twin_type: str, min_points: int = 6) -> None:
        self.twin_id = twin_id
        self.twin_type = twin_type
        self.min_points = min_points
        self.derived = DerivedFeatures(twin_type, signals=())
        self.estimators: dict[str, RulEstimator] = {}
        self.score: ScoreHealth | None = None

    def _score(self, index: ScoreIndex, kind: TwinType | None) -> ScoreHealth:
        if self.score is None:
            self.score = ScoreHealth(
                index.failure,
                index.warmup,
                index.drift,
                index.limit,
                index.coverage,
                levels=learned_failure(kind),
            )
        return self.score

    def _estimator(self, i: Indicator) -> RulEstimator:
        est = self.estimators.get(i.name)
        if est is None:
            est = self.estimators[i.name] = RulEstimator(
                failure_level=i.failure,
                history=i.history,
                min_points=self.min_points,
                fit=i.fit,
                baseline=i.baseline,
                floor=i.floor,
                name=i.name,
            )
        return est

    def _learned(self, w: WindowFeatures, t_hours: float, learned: LearnedHealth) -> RulEstimate:
        """Keep the window's learned index vector (when complete; the whole course, older
        points thinned); the estimate from the kept ones."""
        row = learned.row(w.features)
        points = self.index_points
        if points is None or (points.rows and len(points.rows[0]) != len(row)):
            points = self.index_points = Buffer(max(learned.recent, self.min_points))
        if all(math.isfinite(v) for v in row):
            points.push(t_hours, row)
        return learned.estimate(points.times, points.rows)

    def update(self, w: WindowFeatures, kind: TwinType | None = None) -> RulEstimate | None:
        """Feed one window; the worst current estimate (``None`` before any indicator)."""
        kind = kind if kind is not None else CATALOG.get(self.twin_type)
        health = health_of(kind)
        indicators = health.indicators
        index = health.score_index()
        t_hours = epoch(w.end) / 3600.0
        worst: RulEstimate | None = None
        learned = learned_index(kind)
        if learned is not None:
            worst = self._learned(w, t_hours, learned)
        elif index is not None:
            worst = self._score(index, kind).update(
                t_hours,
                w.anomaly_score,
                w.anomaly_threshold,
                driver=_driver(w.features),
                library=learned_trajectories(kind),
            )
        if not indicators:
            return worst
        needed = frozenset(i.key.removesuffix(".residual") for i in indicators)
        values = {**w.features, **self.derived.update(w, kind=kind, only=needed)}
        for ind in indicators:
            est = self._estimator(ind)
            v = values.get(ind.key)
            if v is not None and math.isfinite(v):
                r = est.update(t_hours, ind.sign * v)
            elif est.points:
                r = est.estimate()
            else:
                continue
            if worst is None or (r.hours, r.health) < (worst.hours, worst.health):
                worst = r
        return worst
