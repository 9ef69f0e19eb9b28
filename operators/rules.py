"""Alarm rules as data, and the alarm lifecycle of one twin.

A :class:`Rule` watches one feature of each window (raw, or derived by
:class:`~twinflow.operators.health.DerivedFeatures`). Its condition must hold for ``duration_s`` of
event time (from the start of the first window where it held to the end of the current one)
before an alarm is raised, and the clear condition (``clear_threshold``, hysteresis) for
``clear_duration_s`` before it clears. A window whose feature is missing or NaN changes
nothing. There is at most one open alarm per (twin, rule).

Default rules (thresholds ``T`` / clear levels ``C``; "10 min" means two 5-min windows;
``S`` is every measured signal of the type, setpoints excluded):

=======  =============================================  ===============  =======  =================
type     feature (comparison)                           T / C            raise    diagnosis
=======  =============================================  ===============  =======  =================
motor    ``winding_temp.mean`` (above)                  110 / 100 °C     10 min   overheating, crit
motor    ``winding_temp.residual`` (above)              9 / 4 °C         10 min   overheating
motor    ``winding_temp.residual`` (below)              -9 / -4 °C       10 min   sensor_fault
motor    ``vibration.bpfo_ratio`` (above)               3e-3 / 1e-3      10 min   bearing
motor    ``current_a.residual`` (above, below)          ±10 / ±5 A       10 min   sensor_fault
motor    ``speed_rpm.residual`` (above, below)          ±3 / ±1.5 rpm    10 min   sensor_fault
turbine  ``generator_temp.mean`` (above)                115 / 105 °C     10 min   overheating, crit
turbine  ``generator_temp.residual`` (above)            8 / 4 °C         10 min   overheating
turbine  ``generator_temp.residual`` (below)            -10 / -5 °C      10 min   sensor_fault
turbine  ``power_residual_pct.mean`` (below)            -3 / -1.5 %      10 min   underperformance
turbine  ``power_residual_pct.mean`` (above)            5 / 2 %          10 min   sensor_fault
turbine  ``gearbox_temp.residual`` (above, below)       ±12 / ±5 °C      10 min   sensor_fault
turbine  ``rotor_rpm.residual`` (above, below)          ±2 / ±0.8 rpm    10 min   sensor_fault
turbine  ``pitch_deg.residual`` (above, below)          ±4 / ±1.5 °      10 min   sensor_fault
turbine  ``vibration_rms.residual`` (above, below)      ±2 / ±0.8 mm/s   10 min   sensor_fault
pump     ``efficiency_residual.with_head_loss`` (below) -0.015 / -0.008  10 min   impeller_wear
pump     ``efficiency_residual.without_head_loss``      ±0.02 / ±0.008   10 min   sensor_fault
pump     ``head_residual_pct`` (above)                  3 / 1 %          10 min   sensor_fault
pump     ``flow_m3h.setpoint_error`` (above, below)     ±8 / ±3 m3/h     10 min   sensor_fault
pump     ``motor_current_a.residual`` (above, below)    ±12 / ±5 A       10 min   sensor_fault
pump     ``motor_voltage_v.residual`` (above, below)    ±25 / ±12 V      10 min   sensor_fault
pump     ``suction_bar.residual`` (above, below)        ±0.1 / ±0.04     10 min   sensor_fault
all      ``S.flat`` (above): stuck                      0.5 / 0.5        10 min   sensor_fault
all      ``S.missing`` (above): dropout                 0.2 / 0.02       at once  sensor_fault
all      ``S.spike_pct`` (above): spikes                15 / 1 % range   at once  sensor_fault
all      ``anomaly.run`` (above): anomalous windows     2.5 / 0.5        at once  from evidence
=======  =============================================  ===============  =======  =================

Clearing takes 10-15 min, 30 min for intermittent symptoms (spikes, dropouts, anomalies) and
for slow faults (underperformance, impeller wear, bearing).

How the levels were chosen: each is a few times the largest value its feature took on
healthy twins of the simulator (5 seeds x 24 twins x 6 h; e.g. learned temperature
residuals stay within -6..+5 °C, the rpm residual within ±1.2, turbine power residual
within -1.6..+2.4 %, pump efficiency residual within ±0.002, BPFO/shaft ratio below 6e-4),
and well under what a developing fault or a drifting sensor (15 % of its range after 1 h)
produces. Absolute temperature limits are backstops above the hottest healthy case (a
turbine generator at full load on a warm day reaches ~103 °C).

The anomaly rule raises only with evidence: when some other rule's feature is past its clear
level toward its threshold (proximity > 0), the alarm takes that rule's diagnosis and the
evidence lists the closest ones; an anomaly nothing explains (e.g. an operating point never
seen in warm-up) stays pending rather than paging someone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from twinflow.core.errors import ConfigError
from twinflow.core.records import Alert, AlertState, Severity, WindowFeatures
from twinflow.core.times import epoch, utc
from twinflow.operators.catalog import CATALOG, TwinType
from twinflow.operators.health import DERIVED_RANGES, SETPOINTS, DerivedFeatures

_COMPARISONS = ("above", "below")


@dataclass(frozen=True, slots=True)
class Rule:
    """One alarm rule. ``explain=True`` takes the diagnosis from the other rules' evidence;
    ``context`` names further features copied into the evidence (e.g. the load, which a
    command policy may scale a derate by)."""

    name: str
    feature: str
    comparison: str
    threshold: float
    duration_s: float
    clear_threshold: float
    clear_duration_s: float
    severity: Severity = Severity.WARNING
    diagnosis: str | None = None
    description: str = ""
    explain: bool = False
    context: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.comparison not in _COMPARISONS:
            raise ConfigError(
                f"rule {self.name!r}: comparison must be 'above' or 'below', "
                f"got {self.comparison!r}"
            )
        above = self.comparison == "above"
        if (
            (self.clear_threshold > self.threshold)
            if above
            else (self.clear_threshold < self.threshold)
        ):
            raise ConfigError(
                f"rule {self.name!r}: clear_threshold {self.clear_threshold:g} must be on the "
                f"healthy side of threshold {self.threshold:g} ({self.comparison})"
            )
        if self.duration_s < 0 or self.clear_duration_s < 0:
            raise ConfigError(f"rule {self.name!r}: durations must be >= 0")

    def breached(self, value: float) -> bool:
        return value > self.threshold if self.comparison == "above" else value < self.threshold

    def cleared(self, value: float) -> bool:
        if self.comparison == "above":
            return value < self.clear_threshold
        return value > self.clear_threshold

    def proximity(self, value: float) -> float:
        """0 at the clear level, 1 at the threshold (how far the value went toward raising)."""
        band = self.threshold - self.clear_threshold
        if band == 0.0:
            return 1.0 if self.breached(value) else 0.0
        return (value - self.clear_threshold) / band


def _both(
    name: str, feature: str, high: float, clear: float, description: str
) -> tuple[Rule, Rule]:
    """A symmetric pair of sensor rules (a reading too high, a reading too low)."""
    return (
        Rule(f"{name}_high", feature, "above", high, 600.0, clear, 900.0,
             diagnosis="sensor_fault", description=f"{description} reads high"),
        Rule(f"{name}_low", feature, "below", -high, 600.0, -clear, 900.0,
             diagnosis="sensor_fault", description=f"{description} reads low"),
    )  # fmt: skip


def _sensor_rules(kind: TwinType) -> tuple[Rule, ...]:
    rules: list[Rule] = []
    measured = [s for s in kind.signals if s.name not in SETPOINTS]
    spiky = [s.name for s in measured if not s.waveform]  # bearing impacts are spiky
    if kind.name == "wind_turbine":
        spiky += [k for k in DERIVED_RANGES if k.startswith("power_residual")]
    for s in measured:
        rules.append(
            Rule(f"{s.name}_stuck", f"{s.name}.flat", "above", 0.5, 600.0, 0.5, 600.0,
                 diagnosis="sensor_fault", description=f"{s.name} is frozen (stuck sensor)")
        )  # fmt: skip
        rules.append(
            Rule(f"{s.name}_dropout", f"{s.name}.missing", "above", 0.2, 0.0, 0.02, 1800.0,
                 diagnosis="sensor_fault", description=f"{s.name} readings are missing")
        )  # fmt: skip
    for name in spiky:
        rules.append(
            Rule(f"{name}_spikes", f"{name}.spike_pct", "above", 15.0, 0.0, 1.0, 1800.0,
                 diagnosis="sensor_fault", description=f"{name} shows spikes")
        )  # fmt: skip
    return tuple(rules)


def _drift_rules(limits: Mapping[str, tuple[float, float]]) -> tuple[Rule, ...]:
    """Residual rules (reads high / reads low) from ``{signal: (threshold, clear)}``."""
    rules: list[Rule] = []
    for signal, (high, clear) in limits.items():
        rules.extend(
            _both(f"{signal}_drift", f"{signal}.residual", high, clear,
                  f"{signal} vs its learned relation")
        )  # fmt: skip
    return tuple(rules)


#: Residual limits (threshold, clear) of the sensor-drift rules, in the signal's unit: a few
#: times the healthy spread of the residual, well under a drift of 15 % of the range.
DRIFT_LIMITS: Mapping[str, Mapping[str, tuple[float, float]]] = {
    "motor": {"current_a": (10.0, 5.0), "speed_rpm": (3.0, 1.5)},
    "wind_turbine": {
        "gearbox_temp": (12.0, 5.0),
        "rotor_rpm": (2.0, 0.8),
        "pitch_deg": (4.0, 1.5),
        "vibration_rms": (2.0, 0.8),
    },
    "pump": {
        "motor_current_a": (12.0, 5.0),
        "motor_voltage_v": (25.0, 12.0),
        "suction_bar": (0.1, 0.04),
    },
}


_ANOMALY = Rule(
    "anomaly", "anomaly.run", "above", 2.5, 0.0, 0.5, 1800.0, explain=True,
    description="anomalous windows in a row",
)  # fmt: skip

_MOTOR = CATALOG["motor"]
_TURBINE = CATALOG["wind_turbine"]
_PUMP = CATALOG["pump"]

#: The default rules of each twin type (see the module table).
DEFAULT_RULES: Mapping[str, tuple[Rule, ...]] = {
    "motor": (
        Rule("winding_overtemp", "winding_temp.mean", "above", 110.0, 600.0, 100.0, 600.0,
             Severity.CRITICAL, "overheating", "winding temperature above its limit",
             context=("load_pct.mean",)),
        Rule("winding_excess", "winding_temp.residual", "above", 9.0, 600.0, 4.0, 900.0,
             Severity.WARNING, "overheating", "winding hotter than usual at this load",
             context=("load_pct.mean",)),
        Rule("winding_cool", "winding_temp.residual", "below", -9.0, 600.0, -4.0, 900.0,
             Severity.WARNING, "sensor_fault", "winding cooler than its load implies"),
        Rule("bearing_defect", "vibration.bpfo_ratio", "above", 3e-3, 600.0, 1e-3, 1800.0,
             Severity.WARNING, "bearing", "outer-race defect tone (BPFO) in the vibration"),
        *_drift_rules(DRIFT_LIMITS["motor"]),
        *_sensor_rules(_MOTOR),
        _ANOMALY,
    ),
    "wind_turbine": (
        Rule("generator_overtemp", "generator_temp.mean", "above", 115.0, 600.0, 105.0, 600.0,
             Severity.CRITICAL, "overheating", "generator temperature above its limit",
             context=("power_kw.mean",)),
        Rule("generator_excess", "generator_temp.residual", "above", 8.0, 600.0, 4.0, 900.0,
             Severity.WARNING, "overheating", "generator hotter than usual at this output",
             context=("power_kw.mean",)),
        Rule("generator_cool", "generator_temp.residual", "below", -10.0, 600.0, -5.0, 900.0,
             Severity.WARNING, "sensor_fault", "generator cooler than its output implies"),
        Rule("underperformance", "power_residual_pct.mean", "below", -3.0, 600.0, -1.5, 1800.0,
             Severity.WARNING, "underperformance", "output below the power curve"),
        Rule("power_overreading", "power_residual_pct.mean", "above", 5.0, 600.0, 2.0, 900.0,
             Severity.WARNING, "sensor_fault", "output above what the wind allows"),
        *_drift_rules(DRIFT_LIMITS["wind_turbine"]),
        *_sensor_rules(_TURBINE),
        _ANOMALY,
    ),
    "pump": (
        Rule("impeller_wear", "efficiency_residual.with_head_loss", "below", -0.015, 600.0,
             -0.008, 1800.0, Severity.WARNING, "impeller_wear",
             "efficiency and head below the pump curve"),
        *_both("efficiency_mismatch", "efficiency_residual.without_head_loss", 0.02, 0.008,
               "efficiency (head normal: current, voltage or flow reading)"),
        Rule("head_overreading", "head_residual_pct", "above", 3.0, 600.0, 1.0, 900.0,
             Severity.WARNING, "sensor_fault", "pressure rise above the pump curve"),
        *_both("flow_setpoint", "flow_m3h.setpoint_error", 8.0, 3.0, "flow vs its setpoint"),
        *_drift_rules(DRIFT_LIMITS["pump"]),
        *_sensor_rules(_PUMP),
        _ANOMALY,
    ),
}  # fmt: skip


class AlarmTracker:
    """The alarms of one twin: evaluate each window, emit raise/clear transitions.

    ``rules=None`` uses :data:`DEFAULT_RULES` for the type (looked up, not copied, so the
    pickled state stays small). Windows must come in event-time order; a window that does
    not end after the last one (a replay or a re-emitted window) is ignored.
    """

    def __init__(self, twin_id: str, twin_type: str, rules: tuple[Rule, ...] | None = None) -> None:
        self.twin_id = twin_id
        self.twin_type = twin_type
        self.rules = rules
        self.derived = DerivedFeatures(twin_type)
        #: rule name -> [pending_since, raised_at, clear_since, diagnosis] (epoch s or None)
        self.state: dict[str, list[Any]] = {}
        self.anomaly_run = 0
        #: How far toward a rule's threshold (0 = clear level, 1 = threshold) a feature must be
        #: to explain an anomaly.
        self.min_proximity = 0.7
        self.last_end: float | None = None
        self.ignored = 0

    @property
    def active_rules(self) -> tuple[Rule, ...]:
        return DEFAULT_RULES.get(self.twin_type, ()) if self.rules is None else self.rules

    @property
    def open_alarms(self) -> dict[str, str]:
        """Open alarms: rule name -> alert id."""
        return {
            name: Alert.make_id(self.twin_id, name, utc(s[1]))
            for name, s in self.state.items()
            if s[1] is not None
        }

    def _frozen(self) -> frozenset[str]:
        """Signals whose reference curve must not learn: a rule on them is pending or open."""
        out = set()
        for rule in self.active_rules:
            s = self.state.get(rule.name)
            if s and (s[0] is not None or s[1] is not None) and rule.feature.endswith(".residual"):
                out.add(rule.feature.removesuffix(".residual"))
        return frozenset(out)

    def features(self, w: WindowFeatures) -> dict[str, float]:
        """The window's features plus the derived ones the rules judge (updates state)."""
        values = dict(w.features)
        values.update(self.derived.update(w, frozen=self._frozen()))
        self.anomaly_run = self.anomaly_run + 1 if w.is_anomalous else 0
        values["anomaly.run"] = float(self.anomaly_run)
        if w.anomaly_score is not None and w.anomaly_threshold:
            values["anomaly.ratio"] = w.anomaly_score / w.anomaly_threshold
        return values

    def evaluate(self, w: WindowFeatures) -> list[Alert]:
        """Raise or clear alarms on one window; returns the transitions (time = window end)."""
        start, end = epoch(w.start), epoch(w.end)
        if self.last_end is not None and end <= self.last_end:
            self.ignored += 1
            return []
        self.last_end = end
        values = self.features(w)
        alerts: list[Alert] = []
        for rule in self.active_rules:
            v = values.get(rule.feature)
            if v is None or not math.isfinite(v):
                continue
            pending, raised, clearing, diagnosis = self.state.get(rule.name) or [None] * 4
            if raised is None:
                pending = (pending if pending is not None else start) if rule.breached(v) else None
                if pending is not None and end - pending >= rule.duration_s:
                    alert = self._raise(rule, v, values, w, end)
                    if alert is not None:
                        alerts.append(alert)
                        pending, raised, diagnosis = None, end, alert.diagnosis
            else:
                clearing = (
                    (clearing if clearing is not None else start) if rule.cleared(v) else None
                )
                if clearing is not None and end - clearing >= rule.clear_duration_s:
                    evidence = {rule.feature: v, "clear_threshold": rule.clear_threshold}
                    alerts.append(
                        self._alert(rule, AlertState.CLEARED, raised, w, v, diagnosis, evidence)
                    )
                    raised = clearing = diagnosis = None
            if pending is None and raised is None and clearing is None:
                self.state.pop(rule.name, None)
            else:
                self.state[rule.name] = [pending, raised, clearing, diagnosis]
        return alerts

    def _raise(
        self, rule: Rule, v: float, values: Mapping[str, float], w: WindowFeatures, end: float
    ) -> Alert | None:
        evidence = {rule.feature: v, "threshold": rule.threshold}
        for key in rule.context:
            if key in values and math.isfinite(values[key]):
                evidence[key] = values[key]
        diagnosis = rule.diagnosis
        if rule.explain:
            diagnosis, explained = self.explain(values)
            if diagnosis is None:
                return None
            evidence = {rule.feature: v, **explained}
        return self._alert(rule, AlertState.RAISED, end, w, v, diagnosis, evidence)

    def explain(
        self, values: Mapping[str, float], top: int = 3
    ) -> tuple[str | None, dict[str, float]]:
        """Diagnosis of the rule whose feature went furthest toward its threshold (past its
        clear level), and the closest features as evidence; ``(None, {})`` if none did."""
        ranked: list[tuple[float, Rule, float]] = []
        for rule in self.active_rules:
            v = values.get(rule.feature)
            if rule.explain or rule.diagnosis is None or v is None or not math.isfinite(v):
                continue
            p = rule.proximity(v)
            if p >= self.min_proximity:
                ranked.append((p, rule, v))
        if not ranked:
            return None, {}
        ranked.sort(key=lambda r: -r[0])
        evidence = {r.feature: v for _, r, v in ranked[:top]}
        if "anomaly.ratio" in values:
            evidence["anomaly.ratio"] = values["anomaly.ratio"]
        return ranked[0][1].diagnosis, evidence

    def _alert(
        self,
        rule: Rule,
        state: AlertState,
        raised_at: float,
        w: WindowFeatures,
        v: float,
        diagnosis: str | None,
        evidence: Mapping[str, float],
    ) -> Alert:
        raised_dt = utc(raised_at)
        verb = "raised" if state is AlertState.RAISED else "cleared"
        message = (
            f"{self.twin_id}: {rule.description or rule.name} ({rule.feature} = {v:.4g}, "
            f"{rule.comparison} {rule.threshold:g}) - {verb}"
        )
        return Alert(
            alert_id=Alert.make_id(self.twin_id, rule.name, raised_dt),
            twin_id=self.twin_id,
            twin_type=self.twin_type,
            rule=rule.name,
            state=state,
            severity=rule.severity,
            time=w.end,
            raised_at=raised_dt,
            message=message,
            diagnosis=diagnosis,
            evidence=dict(evidence),
        )
