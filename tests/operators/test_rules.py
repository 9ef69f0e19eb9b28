"""Alarm rules and the alarm lifecycle."""

from __future__ import annotations

import math
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinflow.core.errors import ConfigError
from twinflow.core.records import DIAGNOSES, Alert, AlertState, Severity, WindowFeatures
from twinflow.core.times import utc
from twinflow.operators.catalog import CATALOG
from twinflow.operators.rules import DEFAULT_RULES, AlarmTracker, Rule

T0 = 1_767_225_600.0
STEP = 300.0


def win(k: int, features: dict[str, float], twin_type="motor", counts=None, **kw) -> WindowFeatures:
    return WindowFeatures(
        twin_id="m-1",
        twin_type=twin_type,
        start=utc(T0 + k * STEP),
        end=utc(T0 + (k + 1) * STEP),
        features=features,
        counts=counts or {},
        **kw,
    )


HOT = Rule("hot", "temp.mean", "above", 110.0, 600.0, 100.0, 600.0, Severity.CRITICAL,
           "overheating", "too hot")  # fmt: skip


def run(tracker: AlarmTracker, values, key="temp.mean") -> list[tuple[int, Alert]]:
    out = []
    for k, v in enumerate(values):
        out += [(k, a) for a in tracker.evaluate(win(k, {key: v}))]
    return out


def test_raise_after_duration_and_clear_with_hysteresis():
    t = AlarmTracker("m-1", "motor", rules=(HOT,))
    events = run(t, [90, 115, 120, 121, 105, 99, 98, 97, 120])
    assert [(k, a.state) for k, a in events] == [
        (2, AlertState.RAISED),  # held from window 1 start to window 2 end: 10 min
        (6, AlertState.CLEARED),  # 105 is not below 100; 99 and 98 are: 10 min
    ]
    raised, cleared = events[0][1], events[1][1]
    assert raised.alert_id == cleared.alert_id
    assert raised.alert_id == Alert.make_id("m-1", "hot", utc(T0 + 3 * STEP))
    assert raised.time == utc(T0 + 3 * STEP) and cleared.raised_at == raised.raised_at
    assert raised.diagnosis == "overheating" and raised.severity is Severity.CRITICAL
    assert raised.evidence == {"temp.mean": 120, "threshold": 110.0}
    assert "m-1" in raised.message and raised.to_json()["state"] == "raised"
    assert set(t.open_alarms) == set()
    assert "hot" in t.state  # window 8 breaches again: pending


def test_a_single_breach_does_not_raise_and_nan_changes_nothing():
    t = AlarmTracker("m-1", "motor", rules=(HOT,))
    assert run(t, [120, 90, 120, math.nan]) == []
    alerts = t.evaluate(win(4, {"temp.mean": 125.0}))
    assert [a.state for a in alerts] == [AlertState.RAISED]  # pending from window 2
    assert t.evaluate(win(5, {})) == [] and set(t.open_alarms) == {"hot"}


def test_replayed_or_older_window_is_ignored():
    t = AlarmTracker("m-1", "motor", rules=(HOT,))
    run(t, [120, 120])
    assert t.evaluate(win(1, {"temp.mean": 50.0})) == [] and t.ignored == 1
    assert set(t.open_alarms) == {"hot"}


@given(st.lists(st.one_of(st.floats(0, 200), st.just(math.nan)), max_size=80))
def test_lifecycle_alternates_with_one_open_alarm_per_rule(values):
    below = Rule("cold", "temp.mean", "below", 50.0, 0.0, 60.0, 900.0)
    t = AlarmTracker("m-1", "motor", rules=(HOT, below))
    open_ids: dict[str, str] = {}
    for k, v in enumerate(values):
        for a in t.evaluate(win(k, {"temp.mean": v})):
            if a.state is AlertState.RAISED:
                assert a.rule not in open_ids
                open_ids[a.rule] = a.alert_id
            else:
                assert open_ids.pop(a.rule) == a.alert_id
        assert set(t.open_alarms) == set(open_ids)
        assert t.open_alarms == open_ids


def test_invalid_rules():
    with pytest.raises(ConfigError, match="comparison"):
        Rule("r", "f", "over", 1.0, 0, 0.5, 0)
    with pytest.raises(ConfigError, match="healthy side"):
        Rule("r", "f", "above", 1.0, 0, 2.0, 0)
    with pytest.raises(ConfigError, match="healthy side"):
        Rule("r", "f", "below", 1.0, 0, 0.5, 0)
    with pytest.raises(ConfigError, match="durations"):
        Rule("r", "f", "below", 1.0, -1, 1.5, 0)


def test_default_rules_cover_every_type_with_known_diagnoses():
    assert set(DEFAULT_RULES) == set(CATALOG)
    for rules in DEFAULT_RULES.values():
        names = [r.name for r in rules]
        assert len(names) == len(set(names))
        assert all(r.diagnosis in (*DIAGNOSES, None) for r in rules)
        assert any(r.explain for r in rules)


def test_default_motor_overheating_and_bearing():
    t = AlarmTracker("m-1", "motor")
    hot = {"winding_temp.mean": 120.0, "load_pct.mean": 80.0}
    raised = [a for k in range(3) for a in t.evaluate(win(k, hot))]
    assert [(a.rule, a.diagnosis) for a in raised] == [("winding_overtemp", "overheating")]
    assert raised[0].evidence["load_pct.mean"] == 80.0
    bearing = {"vibration.fault_bpfo": 0.01, "vibration.fault_shaft": 0.125}
    t2 = AlarmTracker("m-2", "motor")
    rules = [a.rule for k in range(2) for a in t2.evaluate(win(k, bearing))]
    assert rules == ["bearing_defect"]


def test_default_sensor_rules():
    counts = {"current_a": 300}
    t = AlarmTracker("m-1", "motor")
    moving = {"current_a.std": 0.5, "current_a.mean": 172.0, "current_a.min": 170.5,
              "current_a.max": 173.5, "current_a.missing": 0.0}  # fmt: skip
    for k in range(6):
        assert t.evaluate(win(k, moving, counts=counts)) == []
    stuck = {**moving, "current_a.std": 0.0, "current_a.min": 172.0, "current_a.max": 172.0}
    rules = [a.rule for k in (6, 7) for a in t.evaluate(win(k, stuck, counts=counts))]
    assert rules == ["current_a_stuck"]
    dropout = AlarmTracker("m-2", "motor").evaluate(win(0, {"load_pct.missing": 0.4}))
    assert [(a.rule, a.diagnosis) for a in dropout] == [("load_pct_dropout", "sensor_fault")]
    spike = {**moving, "current_a.std": 5.0, "current_a.max": 300.0}
    assert [
        a.rule for a in AlarmTracker("m-3", "motor").evaluate(win(0, spike, counts=counts))
    ] == ["current_a_spikes"]


def test_default_turbine_and_pump_rules():
    t = AlarmTracker("wt-1", "wind_turbine")
    under = {"power_residual_pct.mean": -6.0}
    got = [a.diagnosis for k in range(2) for a in t.evaluate(win(k, under, "wind_turbine"))]
    assert got == ["underperformance"]
    p = AlarmTracker("p-1", "pump")
    from twinflow.models.curves import quadratic_head_bar

    dp = float(quadratic_head_bar(250.0, 60.0, 250.0, 45.0))  # the pump profile's head curve
    worn = {"flow_m3h.mean": 250.0, "flow_setpoint_m3h.mean": 250.0, "suction_bar.mean": 1.5,
            "discharge_bar.mean": 1.5 + 0.96 * dp, "efficiency_residual.mean": -0.05}  # fmt: skip
    got = [a.diagnosis for k in range(2) for a in p.evaluate(win(k, worn, "pump"))]
    assert got == ["impeller_wear"]


def anomalous(k, features, twin_type="motor"):
    return win(k, features, twin_type, anomaly_score=5.0, anomaly_threshold=2.0)


def test_anomaly_rule_takes_its_diagnosis_from_the_evidence():
    t = AlarmTracker("m-1", "motor")
    warm = {"winding_temp.mean": 108.0}  # past the clear level (100), short of 110
    alerts = [a for k in range(3) for a in t.evaluate(anomalous(k, warm))]
    assert [(a.rule, a.diagnosis) for a in alerts] == [("anomaly", "overheating")]
    assert alerts[0].evidence["winding_temp.mean"] == 108.0
    assert alerts[0].evidence["anomaly.ratio"] == 2.5
    cleared = [a for k in range(3, 10) for a in t.evaluate(win(k, {}))]
    assert [a.state for a in cleared] == [AlertState.CLEARED]
    assert cleared[0].diagnosis == "overheating"


def test_unexplained_anomaly_stays_pending():
    t = AlarmTracker("m-1", "motor")
    assert [a for k in range(6) for a in t.evaluate(anomalous(k, {"speed_rpm.mean": 1490.0}))] == []
    assert t.state["anomaly"][0] is not None and not t.open_alarms


def test_tracker_state_is_small_and_picklable():
    t = AlarmTracker("m-1", "motor")
    for k in range(3000):
        f = {"winding_temp.mean": 90.0 + (k % 7), "winding_temp.slope": 0.1, "load_pct.mean":
             75.0 + (k % 11), "current_a.mean": 170.0, "current_a.std": 0.5}  # fmt: skip
        t.evaluate(win(k, f, counts={"current_a": 300}))
    clone = pickle.loads(pickle.dumps(t))
    w = win(3000, {"winding_temp.mean": 130.0})
    assert clone.evaluate(w) == t.evaluate(w)
    assert t.rules is None and len(pickle.dumps(t)) < 4000


def test_anomaly_drivers_from_both_models_become_evidence() -> None:
    from twinflow.operators.rules import DRIVER_PREFIX, SHARE_PREFIX, driver_names, drivers_of

    values = {
        DRIVER_PREFIX + "discharge_temp.mean": 0.7,
        SHARE_PREFIX + "discharge_temp": 0.8,
        "discharge_temp.mean": 95.0,
    }
    drivers = drivers_of(values)
    assert drivers == {"discharge_temp.mean": 0.7, "anomaly.share.discharge_temp": 0.8}
    assert driver_names(drivers) == ["discharge_temp.mean", "discharge_temp"]
