"""Roll-ups along containment: twins in alarm by severity and the worst health per asset."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinflow.core.records import (
    Alert,
    AlertState,
    AssetRollup,
    RulEstimate,
    Severity,
    WindowFeatures,
)
from twinflow.operators.registry import RegistryEntry, TwinRegistry
from twinflow.operators.rollups import RollupOperator, RollupState

E = RegistryEntry.make
T0 = datetime(2024, 5, 1, tzinfo=UTC)
SCHEMA = Path(__file__).resolve().parents[2] / "operators" / "schemas" / "asset_rollup.v1.json"
TWINS = ("pump-002", "motor-003", "wt-001", "wt-004")


def plant() -> TwinRegistry:
    """site1 > skid-1 > {pump-002 > motor-003}, wt-001, wt-004; an empty area."""
    return TwinRegistry(
        [
            E("site1", "site"),
            E("skid-1", "pump_skid", part_of="site1"),
            E("pump-002", "pump", protocol="opcua", part_of="skid-1"),
            E("motor-003", "motor", protocol="modbus", component_of="pump-002"),
            E("wt-001", "wind_turbine", protocol="mqtt", part_of="site1"),
            E("wt-004", "wind_turbine", protocol="mqtt", part_of="site1"),
            E("area-9", "area", part_of="site1"),
        ]
    )


def alert(
    twin: str,
    alert_id: str,
    state: AlertState = AlertState.RAISED,
    severity: Severity = Severity.WARNING,
    minute: int = 0,
) -> Alert:
    t = T0 + timedelta(minutes=minute)
    return Alert(alert_id, twin, "x", "rule", state, severity, t, T0, "msg")


def window(twin: str, health: float | None, minute: int = 5) -> WindowFeatures:
    end = T0 + timedelta(minutes=minute)
    rul = None if health is None else RulEstimate("wear", health, 100.0, 50.0, 200.0)
    return WindowFeatures(twin, "x", end - timedelta(minutes=5), end, {}, rul=rul)


def run(op: RollupOperator, items: list, state: RollupState | None = None):  # type: ignore[no-untyped-def]
    """Feed items; the state and the latest roll-up of each asset."""
    latest: dict[str, AssetRollup] = {}
    for item in items:
        state, out = op(state, item)
        latest.update({r.asset_id: r for r in out})
    return state, latest


def test_the_first_fact_emits_a_baseline_of_every_asset() -> None:
    op = RollupOperator(plant())
    _, out = op(None, window("wt-001", None))
    assert [(r.asset_id, r.asset_type, r.twins_total) for r in out] == [
        ("site1", "site", 4),
        ("skid-1", "pump_skid", 2),
        ("pump-002", "pump", 2),  # a twin with a component rolls up too
        ("area-9", "area", 0),
    ]
    assert all(r.twins_in_alarm == 0 and r.worst_health is None for r in out)


def test_alarms_count_twins_by_their_worst_open_severity() -> None:
    op = RollupOperator(plant())
    state, out = op(None, alert("motor-003", "a1", severity=Severity.INFO))
    assert {r.asset_id: r.twins_in_alarm for r in out} == {
        "site1": 1,
        "skid-1": 1,
        "pump-002": 1,
        "area-9": 0,
    }
    # a second, more severe alarm of the same twin: still one twin, now critical
    state, out = op(state, alert("motor-003", "a2", severity=Severity.CRITICAL, minute=1))
    assert [r.asset_id for r in out] == ["pump-002", "skid-1", "site1"]
    assert all(r.twins_in_alarm == 1 for r in out)
    assert out[-1].in_alarm_by_severity == {"info": 0, "warning": 0, "critical": 1}
    assert out[-1].time == T0 + timedelta(minutes=1)
    # another twin outside the skid: only the site changes
    state, out = op(state, alert("wt-001", "b1", minute=2))
    assert [(r.asset_id, r.twins_in_alarm) for r in out] == [("site1", 2)]
    assert out[0].in_alarm_by_severity == {"info": 0, "warning": 1, "critical": 1}
    # clearing the critical alarm: the motor is back to info
    state, out = op(state, alert("motor-003", "a2", AlertState.CLEARED, minute=3))
    assert out[-1].in_alarm_by_severity == {"info": 1, "warning": 1, "critical": 0}
    state, out = op(state, alert("motor-003", "a1", AlertState.CLEARED, minute=4))
    assert [(r.asset_id, r.twins_in_alarm) for r in out] == [
        ("pump-002", 0),
        ("skid-1", 0),
        ("site1", 1),
    ]


def test_only_changes_are_emitted() -> None:
    op = RollupOperator(plant())
    state, _ = op(None, alert("wt-001", "a1"))
    assert op(state, alert("wt-001", "a1"))[1] == []  # a repeated raise
    assert op(state, alert("wt-004", "zz", AlertState.CLEARED))[1] == []  # clear of nothing
    assert op(state, window("wt-001", None))[1] == []  # no health estimate yet
    state, out = op(state, window("wt-001", 0.8))
    assert [(r.asset_id, r.worst_health) for r in out] == [("site1", 0.8)]
    assert op(state, window("wt-001", 0.803))[1] == []  # below the resolution


def test_a_raise_after_its_own_clear_stays_cleared() -> None:
    op = RollupOperator(plant())
    _, latest = run(
        op, [alert("wt-001", "a1", AlertState.CLEARED, minute=9), alert("wt-001", "a1")]
    )
    assert latest["site1"].twins_in_alarm == 0


def test_worst_health_follows_the_worst_part() -> None:
    op = RollupOperator(plant())
    state, latest = run(op, [window("pump-002", 0.9), window("motor-003", 0.4)])
    assert (latest["skid-1"].worst_health, latest["skid-1"].worst_twin) == (0.4, "motor-003")
    state, out = op(state, window("wt-001", 0.4))  # a tie goes to the smaller id
    assert [(r.asset_id, r.worst_twin) for r in out] == []
    state, out = op(state, window("motor-003", 0.95))  # the worst part recovers
    assert {r.asset_id: (r.worst_health, r.worst_twin) for r in out} == {
        "pump-002": (0.9, "pump-002"),
        "skid-1": (0.9, "pump-002"),
        "site1": (0.4, "wt-001"),
    }
    state, out = op(state, window("wt-004", 1.7))  # health is clipped to [0, 1]
    assert out == [] and state is not None and state.health["wt-004"] == 1.0


def test_unknown_twins_and_items_are_ignored_or_refused() -> None:
    op = RollupOperator(plant())
    assert op(None, alert("ghost-1", "a1")) == (None, [])
    assert op.key("skid-1") is None and op.key("motor-003") == "site1"
    with pytest.raises(TypeError, match="Alert or WindowFeatures"):
        op(None, "not a fact")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="resolution"):
        RollupOperator(plant(), resolution=0.0)


def test_state_is_bounded_and_picklable() -> None:
    op = RollupOperator(plant(), max_cleared=8)
    state = None
    for i in range(500):
        for twin in TWINS:
            state, _ = op(state, alert(twin, f"{twin}-{i}", minute=i))
            state, _ = op(state, alert(twin, f"{twin}-{i}", AlertState.CLEARED, minute=i))
            state, _ = op(state, window(twin, (i % 50) / 50, minute=i))
    assert state is not None
    assert state.open == {} and all(len(d) == 8 for d in state.cleared.values())
    assert len(state.health) == 4 and len(state.counts) <= 4 and len(state.emitted) == 4
    again = pickle.loads(pickle.dumps(state))
    assert op(again, alert("wt-001", "new"))[1][0].twins_in_alarm == 1


def test_to_json_matches_the_schema() -> None:
    op = RollupOperator(plant())
    _, latest = run(
        op, [alert("motor-003", "a1", severity=Severity.CRITICAL), window("wt-001", 0.25)]
    )
    schema = json.loads(SCHEMA.read_text())
    for r in latest.values():
        doc = r.to_json()
        jsonschema.validate(doc, schema)
        assert json.loads(json.dumps(doc)) == doc
    site = latest["site1"].to_json()
    assert site["schema"] == "twinflow.asset_rollup" and site["version"] == 1
    assert site["in_alarm_by_severity"] == {"info": 0, "warning": 0, "critical": 1}
    assert (site["worst_health"], site["worst_twin"], site["time"]) == (
        0.25,
        "wt-001",
        "2024-05-01T00:05:00Z",
    )
    bad = dict(site, twins_in_alarm=-1)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


# Each alarm: (twin index, severity, cleared?). Its events arrive in any order.
ALARMS = st.lists(
    st.tuples(st.integers(0, len(TWINS) - 1), st.sampled_from(list(Severity)), st.booleans()),
    min_size=1,
    max_size=12,
)


@given(ALARMS, st.randoms(use_true_random=False))
def test_in_alarm_counts_do_not_depend_on_event_order(alarms, rnd) -> None:  # type: ignore[no-untyped-def]
    events = []
    for i, (twin, severity, cleared) in enumerate(alarms):
        events.append(alert(TWINS[twin], f"a{i}", severity=severity))
        if cleared:
            events.append(alert(TWINS[twin], f"a{i}", AlertState.CLEARED, severity=severity))
    rnd.shuffle(events)
    _, latest = run(RollupOperator(plant()), events)

    open_by_twin: dict[str, list[Severity]] = {}
    for twin, severity, cleared in alarms:
        if not cleared:
            open_by_twin.setdefault(TWINS[twin], []).append(severity)
    rank = list(Severity)
    worst = [max(s, key=rank.index) for s in open_by_twin.values()]
    site = latest["site1"]
    assert site.twins_in_alarm == len(open_by_twin)
    assert site.in_alarm_by_severity == {s.value: worst.count(s) for s in Severity}
    skid = {"pump-002", "motor-003"}
    assert latest["skid-1"].twins_in_alarm == len(skid & set(open_by_twin))
