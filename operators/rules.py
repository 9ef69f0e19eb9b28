"""Alarm rules as data, and the alarm lifecycle of one twin.

A :class:`Rule` watches one feature of each window (raw, or derived by
:class:`~twinflow.operators.health.DerivedFeatures`). Its condition must hold for ``duration_s`` of
event time (from the start of the first window where it held to the end of the current one)
before an alarm is raised, and the clear condition (``clear_threshold``, hysteresis) for
``clear_duration_s`` before it clears. A window whose feature is missing or NaN changes
nothing. There is at most one open alarm per (twin, rule).

A type's rules (:func:`rules_for`) are its profile's ``rules:`` (the grammar is in
:mod:`twinflow.operators.rulebook` and the twin-types guide), then the generic rules every
type gets, tuned by its ``generic:`` section (``S`` is every signal the twin sends, the
``commanded`` ones excluded):

===============================  ===============  =======  ================================
feature (comparison)             T / C            raise    diagnosis
===============================  ===============  =======  ================================
``S.flat`` (above): stuck        0.5 / 0.5        10 min   sensor_fault
``S.missing`` (above): dropout   0.2 / 0.02       at once  sensor_fault (non-optional ``S``)
``S.spike_pct`` (above): spikes  15 / 1 % range   at once  sensor_fault (scalar ``S``)
``S.out_of_range`` (above)       R / R/10         at once  sensor_fault (declared range)
``anomaly.run`` (above)          windows - 0.5    at once  from evidence
===============================  ===============  =======  ================================

``R`` is ``generic.out_of_range`` (default 0.01: 1 % of a window's readings outside the
signal's declared range). Clearing takes 30 min for these intermittent symptoms (10 min for
stuck). In the flow, the stuck, spike and range rules of scalar signals and the profile
rules on a signal's raw value are judged as readings arrive
(:mod:`twinflow.operators.reading_rules`; ``per_reading=True`` leaves them out here).

The anomaly rule raises with evidence: when some other rule's feature is past its clear
level toward its threshold (proximity >= ``explain_proximity``), the alarm takes that rule's
diagnosis and the evidence lists the closest ones. An anomaly nothing explains raises an
alert of its own (no diagnosis; the evidence names the features that drive the score) when
``generic.anomaly_alert`` is on, the default for a type without ``rules:``; otherwise it
stays pending rather than paging someone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from twinflow.core.records import Alert, AlertState, WindowFeatures
from twinflow.core.times import epoch, utc
from twinflow.operators.catalog import CATALOG, SignalSpec, TwinType
from twinflow.operators.health import DerivedFeatures
from twinflow.operators.reading_rules import reading_plan
from twinflow.operators.rulebook import GenericRules, Rule, generic_of, section_of

#: Prefix of the window keys that carry the window model's drivers (signed z-scores, or
#: shares of the score for the T²/SPE model).
DRIVER_PREFIX = "anomaly.z."
#: Prefix of the window keys that carry the raw-sample model's drivers: each signal's mean
#: share (0-1) of the anomalous samples' scores.
SHARE_PREFIX = "anomaly.share."


def drivers_of(values: Mapping[str, float]) -> dict[str, float]:
    """The anomaly drivers a window carries, as evidence keys (``anomaly.share.<signal>``
    kept whole, ``anomaly.z.`` dropped so the feature name reads alone)."""
    out: dict[str, float] = {}
    for k, x in values.items():
        if k.startswith(DRIVER_PREFIX):
            out[k.removeprefix(DRIVER_PREFIX)] = x
        elif k.startswith(SHARE_PREFIX):
            out[k] = x
    return out


def driver_names(drivers: Mapping[str, float]) -> list[str]:
    """The signals or features named by :func:`drivers_of`, without prefixes."""
    return [k.removeprefix(SHARE_PREFIX) for k in drivers]


_NO_GENERIC = GenericRules()


def anomaly_alerts(kind: TwinType) -> bool:
    """Whether an unexplained sustained anomaly raises an alert for this type."""
    g = generic_of(kind)
    if g.anomaly_alert is None:
        return not section_of(kind, "rules", ())
    return g.anomaly_alert


def _generic_rules(kind: TwinType, g: GenericRules) -> tuple[Rule, ...]:
    rules: list[Rule] = []
    measured = [s for s in kind.signals if s.name not in g.commanded]
    spiky = [s.name for s in measured if not s.waveform]  # bearing impacts are spiky
    spiky += list(g.spikes_on)
    for s in measured:
        if "stuck" not in g.disable:
            rules.append(
                Rule(f"{s.name}_stuck", f"{s.name}.flat", "above", 0.5, 600.0, 0.5, 600.0,
                     diagnosis="sensor_fault", description=f"{s.name} is frozen (stuck sensor)")
            )  # fmt: skip
        if "dropout" not in g.disable and not s.optional:
            rules.append(
                Rule(f"{s.name}_dropout", f"{s.name}.missing", "above", 0.2, 0.0, 0.02, 1800.0,
                     diagnosis="sensor_fault", description=f"{s.name} readings are missing")
            )  # fmt: skip
    if "spikes" not in g.disable:
        for name in spiky:
            rules.append(
                Rule(f"{name}_spikes", f"{name}.spike_pct", "above", 15.0, 0.0, 1.0, 1800.0,
                     diagnosis="sensor_fault", description=f"{name} shows spikes")
            )  # fmt: skip
    if "range" not in g.disable:
        rules.extend(_range_rule(s, g.out_of_range) for s in measured)
    if "anomaly" not in g.disable:
        rules.append(
            Rule("anomaly", "anomaly.run", "above", g.anomaly_windows - 0.5, 0.0, 0.5, 1800.0,
                 explain=True, description="anomalous windows in a row")
        )  # fmt: skip
    return tuple(rules)


def _range_rule(s: SignalSpec, share: float) -> Rule:
    """Declared-range violation: more than ``share`` of a window's readings of ``s`` were
    outside ``[low, high]`` (refused by validation); clears below a tenth of it."""
    return Rule(
        f"{s.name}_out_of_range", f"{s.name}.out_of_range", "above", share, 0.0, share / 10,
        1800.0, diagnosis="sensor_fault",
        description=f"{s.name} reads outside its declared range [{s.low:g}, {s.high:g}]",
    )  # fmt: skip


#: Built rule sets by the identity of their type (kept alive here, so ids stay unique).
_BUILT: dict[int, tuple[TwinType, tuple[Rule, ...]]] = {}


def rules_for(kind: TwinType) -> tuple[Rule, ...]:
    """The rules of a (deployed) type: its profile's ``rules:``, then the generic ones."""
    hit = _BUILT.get(id(kind))
    if hit is not None and hit[0] is kind:
        return hit[1]
    specific: tuple[Rule, ...] = section_of(kind, "rules", ())
    rules = (*specific, *_generic_rules(kind, generic_of(kind)))
    _BUILT[id(kind)] = (kind, rules)
    return rules


class _Defaults(Mapping[str, tuple[Rule, ...]]):
    """The rules of each bundled type, by name (built on first use)."""

    def __getitem__(self, name: str) -> tuple[Rule, ...]:
        return rules_for(CATALOG[name])

    def __iter__(self) -> Any:
        return iter(CATALOG)

    def __len__(self) -> int:
        return len(CATALOG)


#: The rules of the bundled types, by type name.
DEFAULT_RULES: Mapping[str, tuple[Rule, ...]] = _Defaults()


class AlarmTracker:
    """The alarms of one twin: evaluate each window, emit raise/clear transitions.

    Only learned state lives here (it is pickled into snapshots): the twin's type comes in
    with every call (``kind``; ``None``: the bundled type of ``twin_type``), and its rules
    are :func:`rules_for` that type unless ``rules`` are given. Windows must come in
    event-time order; a window that does not end after the last one (a replay or a
    re-emitted window) is ignored.
    """

    def __init__(
        self,
        twin_id: str,
        twin_type: str,
        rules: tuple[Rule, ...] | None = None,
        per_reading: bool = False,
    ) -> None:
        self.twin_id = twin_id
        self.twin_type = twin_type
        self.rules = rules
        #: The rules a :class:`~twinflow.operators.reading_rules.ReadingAlarms` judges as
        #: readings arrive are left to it (they still explain anomalies here).
        self.per_reading = per_reading
        self.derived = DerivedFeatures(twin_type)
        #: rule name -> [pending_since, raised_at, clear_since, diagnosis] (epoch s or None)
        self.state: dict[str, list[Any]] = {}
        self.anomaly_run = 0
        self.last_end: float | None = None
        self.ignored = 0

    def kind(self, kind: TwinType | None = None) -> TwinType | None:
        """The twin's type: ``kind`` when given, else the bundled type of its name."""
        return kind if kind is not None else CATALOG.get(self.twin_type)

    def active_rules(self, kind: TwinType | None = None) -> tuple[Rule, ...]:
        if self.rules is not None:
            return self.rules
        k = self.kind(kind)
        return rules_for(k) if k is not None else ()

    @property
    def open_alarms(self) -> dict[str, str]:
        """Open alarms: rule name -> alert id."""
        return {
            name: Alert.make_id(self.twin_id, name, utc(s[1]))
            for name, s in self.state.items()
            if s[1] is not None
        }

    def _frozen(self, rules: tuple[Rule, ...]) -> frozenset[str]:
        """Signals whose reference curve must not learn: a rule on them is pending or open."""
        out = set()
        for rule in rules:
            s = self.state.get(rule.name)
            if s and (s[0] is not None or s[1] is not None) and rule.feature.endswith(".residual"):
                out.add(rule.feature.removesuffix(".residual"))
        return frozenset(out)

    def features(self, w: WindowFeatures, kind: TwinType | None = None) -> dict[str, float]:
        """The window's features plus the derived ones the rules judge (updates state)."""
        values = dict(w.features)
        frozen = self._frozen(self.active_rules(kind))
        values.update(self.derived.update(w, frozen=frozen, kind=self.kind(kind)))
        self.anomaly_run = self.anomaly_run + 1 if w.is_anomalous else 0
        values["anomaly.run"] = float(self.anomaly_run)
        if w.anomaly_score is not None and w.anomaly_threshold:
            values["anomaly.ratio"] = w.anomaly_score / w.anomaly_threshold
        return values

    def evaluate(self, w: WindowFeatures, kind: TwinType | None = None) -> list[Alert]:
        """Raise or clear alarms on one window; returns the transitions (time = window end)."""
        start, end = epoch(w.start), epoch(w.end)
        if self.last_end is not None and end <= self.last_end:
            self.ignored += 1
            return []
        self.last_end = end
        k = self.kind(kind)
        rules = self.active_rules(k)
        values = self.features(w, k)
        skip = reading_plan(k).names if self.per_reading and k is not None else frozenset()
        alerts: list[Alert] = []
        for rule in rules:
            if rule.name in skip:
                continue
            v = values.get(rule.feature)
            if v is None or not math.isfinite(v):
                continue
            pending, raised, clearing, diagnosis = self.state.get(rule.name) or [None] * 4
            if raised is None:
                pending = (pending if pending is not None else start) if rule.breached(v) else None
                if pending is not None and end - pending >= rule.duration_s:
                    alert = self._raise(rule, v, values, w, end, rules, k)
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
        self,
        rule: Rule,
        v: float,
        values: Mapping[str, float],
        w: WindowFeatures,
        end: float,
        rules: tuple[Rule, ...],
        kind: TwinType | None,
    ) -> Alert | None:
        evidence = {rule.feature: v, "threshold": rule.threshold}
        for key in rule.context:
            if key in values and math.isfinite(values[key]):
                evidence[key] = values[key]
        diagnosis = rule.diagnosis
        if rule.explain:
            g = generic_of(kind) if kind is not None else _NO_GENERIC
            diagnosis, explained = self.explain(values, rules, g.explain_proximity)
            if diagnosis is None:
                if kind is None or not anomaly_alerts(kind):
                    return None
                return self._unexplained(rule, end, w, v, values)
            evidence = {rule.feature: v, **explained, **drivers_of(values)}
        return self._alert(rule, AlertState.RAISED, end, w, v, diagnosis, evidence)

    def _unexplained(
        self, rule: Rule, end: float, w: WindowFeatures, v: float, values: Mapping[str, float]
    ) -> Alert:
        """A sustained anomaly no rule explains: no diagnosis, the driving features named."""
        drivers = drivers_of(values)
        evidence = {rule.feature: v, **drivers}
        if "anomaly.ratio" in values:
            evidence["anomaly.ratio"] = values["anomaly.ratio"]
        alert = self._alert(rule, AlertState.RAISED, end, w, v, None, evidence)
        named = ", ".join(dict.fromkeys(driver_names(drivers))) or "no single feature"
        return replace(alert, message=f"{alert.message}; driven by {named}")

    def explain(
        self,
        values: Mapping[str, float],
        rules: tuple[Rule, ...] | None = None,
        min_proximity: float = 0.7,
        top: int = 3,
    ) -> tuple[str | None, dict[str, float]]:
        """Diagnosis of the rule whose feature went furthest toward its threshold (at least
        ``min_proximity`` of the way from its clear level), and the closest features as
        evidence; ``(None, {})`` if none did."""
        ranked: list[tuple[float, Rule, float]] = []
        for rule in self.active_rules() if rules is None else rules:
            v = values.get(rule.feature)
            if rule.explain or rule.diagnosis is None or v is None or not math.isfinite(v):
                continue
            p = rule.proximity(v)
            if p >= min_proximity:
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
