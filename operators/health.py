"""Health indicators per twin type, the derived features they need, and RUL tracking.

:class:`DerivedFeatures` turns a window's features into the indicators that rules and RUL
judge, keeping a little per-twin state. Derived keys (``<s>`` is a signal):

==========================  =============================================================
key                         meaning
==========================  =============================================================
``vibration.bpfo_ratio``    ``fault_bpfo / fault_shaft``: outer-race tone power relative to
                            the shaft tone (self-normalising; ~2e-4 when healthy, ~9 at
                            failure in the simulator)
``<s>.residual``            ``<s>.mean`` minus its learned healthy value at the current
                            operating point (a ``ReferenceCurve`` of the
                            signal against its driver's mean); a signal that lags its driver
                            (temperatures) is first projected to the level it is heading for,
                            ``mean + time_constant * slope``; see :data:`PAIRS`
``<s>.flat``                1.0 when the signal did not move at all in the window although
                            it moved in >= 90 % of the (>= 3) windows before, else 0.0
``<s>.spike_pct``           largest excursion from the window mean, in % of the signal's
                            range, when it is >= 12 window standard deviations (else 0.0)
``head_residual_pct``       pump: measured pressure rise vs the new pump's head curve, %
``efficiency_residual.``    pump: ``efficiency_residual.mean`` split by whether the head
``with_head_loss`` /        also fell (< -0.5 %): impeller wear lowers both, an electrical
``without_head_loss``       sensor error (current, voltage) only the efficiency
``flow_m3h.setpoint_error`` pump: ``flow_m3h.mean - flow_setpoint_m3h.mean``
==========================  =============================================================

:class:`HealthTracker` follows the indicators of :data:`INDICATORS` with one
:class:`~twinflow.models.rul.RulEstimator` each and reports the worst (shortest life). Every fault
the simulator injects grows its excess over the healthy level about exponentially, so the
estimators fit ``log(excess)``; failure levels are the excess a fully developed fault shows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from twinflow.core.records import RulEstimate, WindowFeatures
from twinflow.core.times import epoch
from twinflow.models.anomaly import ReferenceCurve
from twinflow.models.physics import differential_pressure_bar, pump_head_m
from twinflow.models.rul import RulEstimator
from twinflow.operators.catalog import CATALOG, TwinType
from twinflow.operators.rulebook import generic_of

#: Smallest excursion/std ratio that counts as a spike. Gaussian noise over 300 readings
#: rarely exceeds 4 and one outlier among n readings reaches up to sqrt(n) (17 for 300);
#: a short real transient (a gust across a turbine's cut-in, ~2-3 s) reaches ~10.
SPIKE_CREST = 12.0
#: Fewest readings in a window for the flat and spike indicators.
MIN_READINGS = 10


@dataclass(frozen=True, slots=True)
class Pair:
    """A signal judged against its learned healthy relation to a driver.

    ``driver`` ``None`` means a level with no driver (one bin). ``lag_s`` is the signal's
    first-order time constant behind its driver (the signal is then judged by the level it
    is heading for, ``mean + lag * slope``); ``gate`` is how far a value may sit from
    the curve and still be learned as healthy (about half the alarm threshold).
    """

    signal: str
    driver: str | None
    low: float = 0.0
    high: float = 1.0
    bins: int = 1
    lag_s: float = 0.0
    gate: float = math.inf
    reach: int = 1
    span: int = 2


#: Reference relations per twin type (thermal time constants from the machines' physics).
PAIRS: Mapping[str, tuple[Pair, ...]] = {
    "motor": (
        Pair("winding_temp", "load_pct", 0.0, 130.0, 26, lag_s=600.0, gate=4.0, reach=3, span=26),
        Pair("current_a", "load_pct", 0.0, 130.0, 26, gate=5.0, reach=4, span=26),
        Pair("speed_rpm", "load_pct", 0.0, 130.0, 26, gate=1.5, reach=4, span=26),
    ),
    "wind_turbine": (
        Pair(
            "generator_temp", "power_kw", 0.0, 2000.0, 20, lag_s=900.0, gate=4.0, reach=4, span=20
        ),
        Pair("gearbox_temp", "power_kw", 0.0, 2000.0, 20, lag_s=1500.0, gate=8.0, reach=4, span=20),
        Pair("rotor_rpm", "wind_speed", 0.0, 25.0, 25, gate=1.0),
        Pair("pitch_deg", "wind_speed", 0.0, 25.0, 25, gate=2.0),
        Pair("vibration_rms", "wind_speed", 0.0, 25.0, 25, gate=1.0),
    ),
    "pump": (
        Pair("motor_current_a", "flow_m3h", 0.0, 600.0, 30, gate=3.0),
        Pair("motor_voltage_v", None, gate=12.0),
        Pair("suction_bar", None, gate=0.05),
    ),
}


def _get(f: Mapping[str, float], key: str) -> float:
    v = f.get(key)
    return float(v) if v is not None and math.isfinite(v) else math.nan


class DerivedFeatures:
    """Computes the derived keys of the module table for one twin (small, picklable state).

    ``pairs=None`` uses :data:`PAIRS` for the type; ``signals`` limits the stateless
    sensor indicators (flat, spikes) to those signals (``None``: every measured signal).
    """

    def __init__(
        self,
        twin_type: str,
        pairs: tuple[Pair, ...] | None = None,
        signals: tuple[str, ...] | None = None,
    ) -> None:
        self.twin_type = twin_type
        self.pairs = pairs
        self.signals = signals
        self.curves: dict[str, ReferenceCurve] = {}
        #: signal -> [windows it moved in, windows seen]
        self.moved: dict[str, list[int]] = {}

    @property
    def active_pairs(self) -> tuple[Pair, ...]:
        return PAIRS.get(self.twin_type, ()) if self.pairs is None else self.pairs

    def _sensor_signals(self, kind: TwinType | None) -> list[tuple[str, float, float]]:
        """Signals judged for flat and spikes: the measured ones and ``generic.spikes_on``."""
        if self.signals == () or kind is None:
            return []
        g = generic_of(kind)
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
    ) -> dict[str, float]:
        """Derived features of window ``w``.

        Curves of ``frozen`` signals learn nothing at operating points they have not seen, and
        no curve learns from a window the anomaly detector flagged.
        """
        f = w.features
        out: dict[str, float] = {}
        for pair in self.active_pairs:
            out[f"{pair.signal}.residual"] = self._residual(
                pair, f, pair.signal in frozen, learn=not w.is_anomalous
            )
        if self.twin_type == "motor":
            shaft = _get(f, "vibration.fault_shaft")
            bpfo = _get(f, "vibration.fault_bpfo")
            out["vibration.bpfo_ratio"] = bpfo / shaft if shaft > 0.0 else math.nan
        elif self.twin_type == "pump":
            out.update(_pump_features(f))
        kind = kind if kind is not None else CATALOG.get(self.twin_type)
        for name, low, high in self._sensor_signals(kind):
            out.update(self._sensor(name, high - low, f, w.counts.get(name, 0)))
        return out

    def _residual(self, pair: Pair, f: Mapping[str, float], frozen: bool, learn: bool) -> float:
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
        self, name: str, span: float, f: Mapping[str, float], count: int
    ) -> dict[str, float]:
        std = _get(f, f"{name}.std")
        if math.isnan(std) or count < MIN_READINGS:  # too few readings to judge
            return {}
        out: dict[str, float] = {}
        mean, lo, hi = _get(f, f"{name}.mean"), _get(f, f"{name}.min"), _get(f, f"{name}.max")
        extent = max(hi - mean, mean - lo)
        if std > 0.0 and extent >= SPIKE_CREST * std:
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


def _pump_features(f: Mapping[str, float]) -> dict[str, float]:
    flow = _get(f, "flow_m3h.mean")
    dp = _get(f, "discharge_bar.mean") - _get(f, "suction_bar.mean")
    expected = float(differential_pressure_bar(pump_head_m(flow))) if flow == flow else math.nan
    head = 100.0 * (dp / expected - 1.0) if expected > 0.0 else math.nan
    eff = _get(f, "efficiency_residual.mean")
    worn = head < -0.5
    out = {
        "head_residual_pct": head,
        "efficiency_residual.with_head_loss": eff if worn else (0.0 if head == head else math.nan),
        "efficiency_residual.without_head_loss": (
            math.nan if head != head else (0.0 if worn else eff)
        ),
        "flow_m3h.setpoint_error": flow - _get(f, "flow_setpoint_m3h.mean"),
    }
    return out


@dataclass(frozen=True, slots=True)
class Indicator:
    """A health indicator: ``sign * features[key]`` rises from ``baseline`` to ``failure``."""

    name: str
    key: str
    failure: float
    sign: float = 1.0
    baseline: float | None = 0.0
    floor: float | None = None
    fit: str = "exponential"
    history: int = 24


#: Indicators per twin type (failure = excess of a fully developed fault in the simulator,
#: slightly below it so the estimate errs early).
INDICATORS: Mapping[str, tuple[Indicator, ...]] = {
    "motor": (
        Indicator("bearing", "vibration.bpfo_ratio", failure=8.0, floor=1e-3),
        Indicator("overheating", "winding_temp.residual", failure=50.0, floor=2.0),
    ),
    "wind_turbine": (
        Indicator("underperformance", "power_residual_pct.mean", 18.0, sign=-1.0, floor=1.0),
        Indicator("overheating", "generator_temp.residual", failure=40.0, floor=3.0),
    ),
    "pump": (Indicator("impeller_wear", "efficiency_residual.mean", 0.18, sign=-1.0, floor=0.01),),
}


class HealthTracker:
    """Remaining useful life of one twin: the worst of its indicators' estimates."""

    def __init__(self, twin_id: str, twin_type: str, min_points: int = 6) -> None:
        self.twin_id = twin_id
        self.twin_type = twin_type
        self.min_points = min_points
        indicators = INDICATORS.get(twin_type, ())
        needed = {i.key.removesuffix(".residual") for i in indicators}
        pairs = tuple(p for p in PAIRS.get(twin_type, ()) if p.signal in needed)
        self.derived = DerivedFeatures(twin_type, pairs=pairs, signals=())
        self.estimators = {
            i.name: RulEstimator(
                failure_level=i.failure,
                history=i.history,
                min_points=min_points,
                fit=i.fit,
                baseline=i.baseline,
                floor=i.floor,
                name=i.name,
            )
            for i in indicators
        }

    def update(self, w: WindowFeatures, kind: TwinType | None = None) -> RulEstimate | None:
        """Feed one window; the worst current estimate (``None`` before any indicator)."""
        values = {**w.features, **self.derived.update(w, kind=kind)}
        t_hours = epoch(w.end) / 3600.0
        worst: RulEstimate | None = None
        for ind in INDICATORS.get(self.twin_type, ()):
            est = self.estimators[ind.name]
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
