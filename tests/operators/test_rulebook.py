"""The profile's rule grammar (rules:, generic:, reactions:): every rule kind on a type defined
only by files, the generic rules, the sustained-anomaly alert, and one test per validation
rule, each error naming the file and the field."""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path

import pytest

from tests.operators.compressor import load_compressor as compressor
from tests.operators.compressor import profile_error
from twinflow.core.errors import ValidationError
from twinflow.core.records import Alert, AlertState, Severity, WindowFeatures
from twinflow.core.times import utc
from twinflow.flows.command_steps import PolicyStep
from twinflow.flows.config import FlowConfig
from twinflow.flows.steps import TypeOf
from twinflow.operators.catalog import CATALOG, TwinType
from twinflow.operators.policy import CommandPolicy
from twinflow.operators.rules import DRIVER_PREFIX, AlarmTracker, rules_for

T0 = 1_767_225_600.0
STEP = 300.0

RULES = """\
rules:
  hot:
    {feature: discharge_temp.mean, above: 110, clear: 100, for: 10m, severity: critical,
     diagnosis: overheating, message: discharge too hot, context: [motor_power.mean]}
  heating_fast:
    {feature: discharge_temp.slope, above: 30, clear: 10, for: 0, clear_for: 5m,
     diagnosis: overheating}
  low_pressure:
    {feature: discharge_pressure.mean, below: 4, clear: 5, for: 5m, diagnosis: leak}
  pressure_drift:
    {feature: discharge_pressure.residual, outside: 1, clear: 0.4, diagnosis: sensor_fault}
  odd:
    {feature: anomaly.ratio, above: 3, clear: 1, for: 0, diagnosis: unknown_fault}
  valve_tone:
    {feature: vibration.fault_valve, above: 0.5, clear: 0.1, for: 0, diagnosis: valve}
reactions:
  overheating: {command: set_pressure, params: {bar: 6}}
"""


def win(k: int, features: dict[str, float], **kw: object) -> WindowFeatures:
    return WindowFeatures(
        twin_id="c-1",
        twin_type="compressor",
        start=utc(T0 + k * STEP),
        end=utc(T0 + (k + 1) * STEP),
        features=features,
        **kw,  # type: ignore[arg-type]
    )


def raised(kind: TwinType, series: list[dict[str, float]], **kw: object) -> list[Alert]:
    t = AlarmTracker("c-1", "compressor")
    return [a for k, f in enumerate(series) for a in t.evaluate(win(k, f, **kw), kind)]


def test_threshold_for_duration_with_hysteresis_and_context(tmp_path: Path) -> None:
    kind = compressor(tmp_path, RULES)
    temps = [105, 115, 115, 115, 104, 99, 99, 99]
    alerts = raised(kind, [{"discharge_temp.mean": v, "motor_power.mean": 200.0} for v in temps])
    hot = [a for a in alerts if a.rule == "hot"]
    assert [a.state for a in hot] == [AlertState.RAISED, AlertState.CLEARED]
    assert hot[0].time == utc(T0 + 3 * STEP)  # breached from window 1's start, 10 min later
    assert (hot[0].severity, hot[0].diagnosis) == (Severity.CRITICAL, "overheating")
    assert hot[0].evidence["motor_power.mean"] == 200.0 and "discharge too hot" in hot[0].message


def test_rate_of_change_below_outside_anomaly_and_spectral_features(tmp_path: Path) -> None:
    kind = compressor(tmp_path, RULES)
    names = [r.name for r in rules_for(kind)]
    assert names[:7] == ["hot", "heating_fast", "low_pressure", "pressure_drift_high",
                         "pressure_drift_low", "odd", "valve_tone"]  # fmt: skip
    f = {"discharge_temp.slope": 40.0, "discharge_pressure.mean": 3.0,
         "discharge_pressure.residual": -2.0, "vibration.fault_valve": 0.9}  # fmt: skip
    alerts = raised(kind, [f, f], anomaly_score=10.0, anomaly_threshold=2.0)
    got = {a.rule for a in alerts if a.state is AlertState.RAISED}
    assert {"heating_fast", "low_pressure", "pressure_drift_low", "odd", "valve_tone"} <= got
    assert "pressure_drift_high" not in got


def test_generic_rules_judge_only_mapped_non_optional_signals(tmp_path: Path) -> None:
    kind = compressor(tmp_path)
    names = {r.name for r in rules_for(kind)}
    assert {"discharge_pressure_dropout", "motor_power_stuck", "motor_power_spikes"} <= names
    assert "oil_level_dropout" not in names  # optional
    partial = replace(kind, signals=tuple(s for s in kind.signals if s.name != "motor_power"))
    names = {r.name for r in rules_for(partial)}
    assert "motor_power_dropout" not in names and "discharge_pressure_dropout" in names
    missing = raised(partial, [{"discharge_pressure.missing": 0.5}])
    assert [(a.rule, a.diagnosis) for a in missing] == [
        ("discharge_pressure_dropout", "sensor_fault")
    ]


def test_generic_rules_can_be_switched_off(tmp_path: Path) -> None:
    kind = compressor(tmp_path, "generic: {disable: [stuck, spikes], commanded: [motor_power]}\n")
    names = {r.name for r in rules_for(kind)}
    assert not any(n.endswith(("_stuck", "_spikes")) for n in names)
    assert "motor_power_dropout" not in names and "anomaly" in names


def test_spike_and_stuck_settings_come_from_the_generic_section(tmp_path: Path) -> None:
    """A 9-sigma excursion is no spike at the default crest (12) but is at ``spike_crest: 8``;
    ``min_readings`` decides whether a window of few readings is judged at all."""
    from twinflow.operators.health import DerivedFeatures

    f = {"discharge_temp.mean": 80.0, "discharge_temp.std": 1.0, "discharge_temp.min": 79.0,
         "discharge_temp.max": 89.0}  # fmt: skip
    w = win(1, f, counts={"discharge_temp": 20})
    default = compressor(tmp_path / "a")
    sharp = compressor(tmp_path / "b", "generic: {spike_crest: 8, min_readings: 30}")
    loose = compressor(tmp_path / "c", "generic: {spike_crest: 8}")
    assert DerivedFeatures("compressor").update(w, kind=default)["discharge_temp.spike_pct"] == 0
    assert DerivedFeatures("compressor").update(w, kind=loose)["discharge_temp.spike_pct"] > 0
    assert "discharge_temp.spike_pct" not in DerivedFeatures("compressor").update(w, kind=sharp)


def test_sustained_anomaly_alerts_alone_for_a_type_without_rules(tmp_path: Path) -> None:
    kind = compressor(tmp_path)
    drivers = {DRIVER_PREFIX + "discharge_temp.mean": 9.5, DRIVER_PREFIX + "motor_power.std": -4}
    series = [{"discharge_temp.mean": 80.0, **drivers}] * 3
    (alert,) = raised(kind, series, anomaly_score=10.0, anomaly_threshold=2.0)
    assert (alert.rule, alert.diagnosis) == ("anomaly", None)
    assert alert.evidence["discharge_temp.mean"] == 9.5 and alert.evidence["anomaly.ratio"] == 5
    assert "driven by discharge_temp.mean, motor_power.std" in alert.message


def test_sustained_anomaly_of_a_bundled_type_needs_evidence() -> None:
    t = AlarmTracker("m-1", "motor")
    w = [replace(win(k, {}), twin_type="motor", anomaly_score=9.0, anomaly_threshold=2.0)
         for k in range(6)]  # fmt: skip
    assert [a for x in w for a in t.evaluate(x, CATALOG["motor"])] == []


def test_anomaly_alert_setting_overrides_the_default(tmp_path: Path) -> None:
    kind = compressor(tmp_path, RULES + "generic: {anomaly_alert: true, anomaly_windows: 2}\n")
    alerts = raised(kind, [{}, {}], anomaly_score=2.5, anomaly_threshold=2.0)
    assert [a.rule for a in alerts] == ["anomaly"]


def test_reactions_from_the_profile(tmp_path: Path) -> None:
    kind = compressor(tmp_path, RULES)
    (hot,) = [a for a in raised(kind, [{"discharge_temp.mean": 120.0}] * 3) if a.rule == "hot"]
    p = CommandPolicy()
    (cmd,) = p.decide(hot, kind)
    assert (cmd.name, dict(cmd.params)) == ("set_pressure", {"bar": 6.0})
    assert p.decide(replace(hot, time=utc(T0 + 1500)), kind) == []  # rate-limited (30 min)


def test_a_reaction_with_an_unknown_command_fails_at_start_up(tmp_path: Path) -> None:
    kind = compressor(tmp_path, "reactions: {leak: {command: vent, params: {s: 1}}}\n")
    with pytest.raises(ValidationError, match=r"compressor.yaml: reactions.leak: .*no command"):
        PolicyStep.from_config(FlowConfig(), TypeOf({"c-1": kind}))


def test_parsed_sections_pickle_by_reference(tmp_path: Path) -> None:
    kind = compressor(tmp_path, RULES)
    blob = pickle.dumps(kind)
    assert len(pickle.dumps(kind.sections["rules"])) < 250  # the file and the key
    assert len(pickle.dumps(kind.sections["rules"].value)) > 900
    assert rules_for(pickle.loads(blob)) == rules_for(kind)


BAD = [
    ("rules: {hot: {feature: t.mean, abve: 1, clear: 0, diagnosis: x}}",
     "unknown field 'rules.hot.abve'"),
    ("rules: {hot: {feature: t.mean, clear: 0, diagnosis: x}}",
     "rules.hot.above: give exactly one of above, below or outside, got none"),
    ("rules: {hot: {feature: t.mean, above: 1, below: 0, clear: 0, diagnosis: x}}",
     "rules.hot.above: give exactly one of above, below or outside, got above, below"),
    ("rules: {hot: {feature: t.mean, above: 1, clear: 2, diagnosis: x}}",
     "rules.hot.clear must be at or below above"),
    ("rules: {cold: {feature: t.mean, below: 1, clear: 0, diagnosis: x}}",
     "rules.cold.clear must be at or above below"),
    ("rules: {drift: {feature: t.residual, outside: 1, clear: 2, diagnosis: x}}",
     "rules.drift.clear must be in [0, outside = 1]"),
    ("rules: {drift: {feature: t.residual, outside: -1, clear: 0, diagnosis: x}}",
     "rules.drift.outside must be > 0"),
    ("rules: {hot: {feature: t.mean, above: 1, clear: 0, for: soon, diagnosis: x}}",
     "rules.hot.for"),
    ("rules: {hot: {feature: t.mean, above: 1, clear: 0, clear_for: -5m, diagnosis: x}}",
     "rules.hot.clear_for"),
    ("rules: {hot: {feature: t.mean, above: 1, clear: 0, severity: high, diagnosis: x}}",
     "rules.hot.severity"),
    ("rules: {hot: {feature: t.mean, above: 1, clear: 0}}", "rules.hot.diagnosis is required"),
    ("rules: {hot: {above: 1, clear: 0, diagnosis: x}}", "rules.hot.feature is required"),
    ("rules: {hot: {feature: t.mean, above: 1, diagnosis: x}}", "rules.hot.clear is required"),
    ("rules: {hot: {feature: t.mean, above: one, clear: 0, diagnosis: x}}", "rules.hot.above"),
    ("rules: {hot: {feature: t.mean, above: 1, clear: 0, diagnosis: x, context: t.max}}",
     "rules.hot.context"),
    ("rules: [hot]", "rules must be a mapping"),
    ("generic: {disable: [flat]}", "generic.disable: unknown generic rule 'flat'"),
    ("generic: {spikes_on: {r: [5, 1]}}", "generic.spikes_on.r = [5, 1]: expected [low, high]"),
    ("generic: {anomaly_alert: maybe}", "generic.anomaly_alert"),
    ("generic: {anomaly_windows: 0}", "generic.anomaly_windows must be >= 1"),
    ("generic: {explain: 1}", "unknown field 'generic.explain'"),
    ("generic: {spike_crest: 0}", "generic.spike_crest must be > 0"),
    ("generic: {min_readings: 1}", "generic.min_readings"),
    ("reactions: {leak: {params: {bar: 6}}}", "reactions.leak.command is required"),
    ("reactions: {leak: {command: c, params: {bar: lots}}}",
     "reactions.leak.params.bar = 'lots': expected a number or derate_fraction"),
    ("reactions: {leak: {command: c, params: {bar: 6}, compound: psi}}",
     "reactions.leak.compound: 'psi' is not one of params"),
    ("reactions: {leak: {command: c, scale_full: 0}}", "reactions.leak.scale_full must be > 0"),
    ("reactions: {leak: {command: c, every: 1}}", "unknown field 'reactions.leak.every'"),
]  # fmt: skip


@pytest.mark.parametrize(("extra", "message"), BAD, ids=[m for _, m in BAD])
def test_each_validation_rule_names_file_and_field(
    tmp_path: Path, extra: str, message: str
) -> None:
    text = profile_error(tmp_path, extra)
    assert "compressor.yaml: " in text and message in text, text


def test_the_anomaly_step_names_drivers_in_every_anomalous_window(tmp_path: Path) -> None:
    from twinflow.flows.anomaly_steps import AnomalyStep

    kind = compressor(tmp_path)
    config = FlowConfig(anomaly_warmup=5, anomaly_detector="zscore")
    step = AnomalyStep.from_config(config, TypeOf({"c-1": kind}))
    det = None
    for k in range(8):
        det, _w = step(det, win(k, {"discharge_temp.mean": 80.0 + 0.1 * (k % 2)}))
    det, w = step(det, win(9, {"discharge_temp.mean": 140.0}))
    assert w.is_anomalous and w.features[DRIVER_PREFIX + "discharge_temp.mean"] > 10
    bundled = AnomalyStep.from_config(config)
    det = None
    for k in range(8):
        det, _w = bundled(det, replace(win(k, {"winding_temp.mean": 80.0 + 0.1 * (k % 2)}),
                                       twin_type="motor"))  # fmt: skip
    det, w = bundled(det, replace(win(9, {"winding_temp.mean": 140.0}), twin_type="motor"))
    assert w.is_anomalous and w.features[DRIVER_PREFIX + "winding_temp.mean"] > 10
