"""Twin state: desired and reported properties, their versions, sync and snapshots."""

from __future__ import annotations

import math
import pickle
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinflow.connectors.simulator.types import MOTOR, PUMP, WIND_TURBINE
from twinflow.core.errors import ValidationError
from twinflow.core.records import (
    DesiredChange,
    PropertyState,
    Quality,
    SyncStatus,
    TelemetryFrame,
    TwinState,
)
from twinflow.core.times import utc
from twinflow.flows.steps import new_state_tracker
from twinflow.operators.catalog import PropertySpec
from twinflow.operators.twin_state import TwinStateTracker

T0 = 1_700_000_000.0
AT = utc(T0)
PUMP_SIGNALS = [s.name for s in PUMP.signals]
CONFIG = SimpleNamespace(stale_factor=3.0, state_snapshot_s=300.0)


def frame(times: list[float], twin: str = "P1", **signals: list[float]) -> TelemetryFrame:
    t = np.array(times, dtype=float) + T0
    data = {k: np.array(v, dtype=float) for k, v in signals.items()}
    return TelemetryFrame(twin, "pump", t, data)


def full(t: float, setpoint: float, value: float = 1.0) -> TelemetryFrame:
    """Every pump signal at one time, the setpoint echo at ``setpoint``."""
    signals = {k: [value] for k in PUMP_SIGNALS} | {"flow_setpoint_m3h": [setpoint]}
    return frame([t], **signals)


def setpoint(t: float, value: float, quality: Quality = Quality.GOOD) -> TelemetryFrame:
    f = frame([t], flow_setpoint_m3h=[value])
    return replace(f, quality={"flow_setpoint_m3h": quality})


def change(
    value: object,
    at: float = 0.0,
    request_id: str = "r1",
    prop: str = "flow_setpoint",
    twin: str = "P1",
) -> DesiredChange:
    when = utc(T0 + at)
    return DesiredChange(
        twin,
        "pump",
        prop,
        value,
        when,
        request_id,
        when + timedelta(minutes=5),  # type: ignore[arg-type]
    )


def flow(states: list[TwinState]) -> PropertyState:
    (state,) = states
    return state.properties["flow_setpoint"]


# -- the reported side ---------------------------------------------------------------------


def test_every_declared_property_is_in_the_state_from_the_start() -> None:
    state = TwinStateTracker("P1", PUMP).snapshot_state()
    assert dict(state.properties) == {"flow_setpoint": PropertyState()}
    p = state.properties["flow_setpoint"]
    assert (p.desired, p.reported, p.desired_version, p.reported_version) == (None, None, 0, 0)
    assert p.in_sync  # nothing desired: nothing to be out of sync with
    no_props = TwinStateTracker("X", replace(PUMP, properties=()))
    assert dict(no_props.snapshot_state().properties) == {}


def test_reported_value_comes_from_its_signal_with_event_time() -> None:
    tr = TwinStateTracker("P1", PUMP)
    p = flow(tr.update(full(0, 250.0)))
    assert (p.reported, p.reported_version, p.reported_at) == (250.0, 1, AT)
    tr.update(frame([1, 2, 3], flow_setpoint_m3h=[250.0, 252.0, np.nan]))
    p = tr.property_state("flow_setpoint")
    assert (p.reported, p.reported_at, p.reported_version) == (252.0, utc(T0 + 2), 2)


def test_reported_version_moves_only_beyond_the_tolerance() -> None:
    """Tolerance 0.5 m³/h: a steady or jittering echo keeps its version; the version counts
    moves away from the value that last moved it, so slow drift still counts."""
    tr = TwinStateTracker("P1", PUMP)
    tr.update(full(0, 250.0))
    out = []
    for t, v in enumerate([250.0, 250.3, 249.6, 250.5, 250.0], start=1):
        out += tr.update(setpoint(t, v))
    assert out == []  # same status, no version moved: nothing published
    p = tr.property_state("flow_setpoint")
    assert (p.reported, p.reported_version, p.reported_at) == (250.0, 1, utc(T0 + 5))
    for t, v in enumerate([250.4, 250.8, 251.2], start=6):  # drift: 250.8 is still within
        tr.update(setpoint(t, v))
    assert tr.property_state("flow_setpoint").reported_version == 2  # 251.2 - 250.0 > 0.5
    assert flow(tr.update(setpoint(9, 300.0))).reported_version == 3  # a move is published


def test_older_or_bad_reports_do_not_count() -> None:
    tr = TwinStateTracker("P1", PUMP)
    tr.update(full(10, 250.0))
    tr.update(setpoint(5, 100.0))  # older than the report we have
    tr.update(setpoint(11, 100.0, Quality.BAD))
    tr.update(setpoint(12, 100.0, Quality.STALE))
    tr.update(setpoint(13, math.inf))
    p = tr.property_state("flow_setpoint")
    assert (p.reported, p.reported_version, p.reported_at) == (250.0, 1, utc(T0 + 10))


def test_a_property_without_reported_signal_has_no_report() -> None:
    tr = TwinStateTracker("M1", MOTOR)
    scalars = {s.name: np.ones(1) for s in MOTOR.scalar_signals}
    tr.update(TelemetryFrame("M1", "motor", np.array([T0]), scalars))
    assert tr.property_state("load_setpoint") == PropertyState()
    desired = "M1", "motor", "load_setpoint", 80.0, AT, "m1", AT
    (state,) = tr.update(DesiredChange(*desired))
    p = state.properties["load_setpoint"]
    assert (p.desired, p.desired_version, p.reported, p.in_sync) == (80.0, 1, None, False)


def test_reported_signal_outside_the_deployed_signals_still_reports() -> None:
    """A deployed type limited to some signals still reads the property's own signal."""
    limited = replace(PUMP, signals=tuple(s for s in PUMP.signals if s.name == "flow_m3h"))
    tr = TwinStateTracker("P1", limited)
    (state,) = tr.update(frame([0], flow_m3h=[240.0], flow_setpoint_m3h=[250.0]))
    assert set(state.signals) == {"flow_m3h"}
    assert state.properties["flow_setpoint"].reported == 250.0


# -- the desired side ----------------------------------------------------------------------


def test_valid_change_sets_desired_with_a_new_version_and_publishes() -> None:
    tr = TwinStateTracker("P1", PUMP)
    tr.update(full(0, 250.0))
    p = flow(tr.update(change(300.0, at=1)))
    assert (p.desired, p.desired_version, p.desired_at) == (300.0, 1, utc(T0 + 1))
    assert (p.reported, p.reported_version, p.in_sync) == (250.0, 1, False)
    p = flow(tr.update(change(280, at=2, request_id="r2")))
    assert (p.desired, p.desired_version, p.desired_at) == (280.0, 2, utc(T0 + 2))
    assert isinstance(p.desired, float)


def test_in_sync_follows_the_reported_value_within_tolerance() -> None:
    tr = TwinStateTracker("P1", PUMP)
    tr.update(full(0, 250.0))
    assert not flow(tr.update(change(300.0))).in_sync
    assert tr.update(setpoint(1, 260.0))[0].properties["flow_setpoint"].in_sync is False
    p = flow(tr.update(setpoint(2, 299.5)))  # within 0.5: synced, published
    assert p.in_sync and p.reported_version == 3
    assert tr.update(setpoint(3, 299.8)) == []  # still in sync, same version: nothing new
    assert not flow(tr.update(setpoint(4, 310.0))).in_sync  # drifted away again


def test_turbine_power_limit_round_trip_through_the_command_scale() -> None:
    """1500 kW goes out as fraction 0.75 and comes back as 0.75 × 2000: in sync."""
    tr = TwinStateTracker("T1", WIND_TURBINE)
    limit = WIND_TURBINE.properties[0]
    (fraction,) = limit.command_params(1500.0).values()
    t1 = utc(T0)
    tr.update(DesiredChange("T1", "wind_turbine", "power_limit", 1500.0, t1, "t1", t1))
    reported = TelemetryFrame(
        "T1", "wind_turbine", np.array([T0 + 1]), {"power_limit_kw": np.array([fraction * 2000])}
    )
    assert tr.update(reported)[0].properties["power_limit"].in_sync


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (change(1000.0), "above the property's high limit"),
        (change(5.0), "below its low limit"),
        (change(math.nan), "not a finite number"),
        (change(True), "a bool is not a number"),
        (change("300"), "a string is not a number"),
        (change(300.0, prop="speed"), "not a declared property"),
    ],
)
def test_invalid_change_changes_nothing(bad: DesiredChange, why: str) -> None:
    tr = TwinStateTracker("P1", PUMP)
    tr.update(full(0, 250.0))
    before = tr.snapshot_state()
    assert tr.update(bad) == [], why
    assert tr.snapshot_state() == before, why


def test_read_only_property_refuses_desired_changes() -> None:
    read_only = replace(PUMP, properties=(replace(PUMP.properties[0], writable=False),))
    tr = TwinStateTracker("P1", read_only)
    assert tr.update(change(300.0)) == []
    assert tr.property_state("flow_setpoint").desired_version == 0


def test_redelivered_and_older_requests_change_nothing() -> None:
    tr = TwinStateTracker("P1", PUMP)
    tr.update(change(300.0, at=10, request_id="a"))
    assert tr.update(change(300.0, at=10, request_id="a")) == []  # the same request again
    assert tr.update(change(200.0, at=5, request_id="old")) == []  # older than the desired
    p = tr.property_state("flow_setpoint")
    assert (p.desired, p.desired_version, p.desired_at) == (300.0, 1, utc(T0 + 10))
    assert flow(tr.update(change(200.0, at=10, request_id="b"))).desired_version == 2


def test_desired_change_of_another_twin_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"tracker of twin 'P1'.*desired change.*'P9'"):
        TwinStateTracker("P1", PUMP).update(change(300.0, twin="P9"))


def test_unknown_property_state_names_the_known_ones() -> None:
    with pytest.raises(ValidationError, match=r"no property 'speed'.*flow_setpoint"):
        TwinStateTracker("P1", PUMP).property_state("speed")


def test_tracker_can_start_from_a_desired_change() -> None:
    first = change(300.0)
    tr = new_state_tracker(first, CONFIG)
    assert (tr.twin_id, tr.twin_type.name) == ("P1", "pump")
    (state,) = tr.update(first)
    assert state.status is SyncStatus.INITIALIZING and state.time == utc(0.0)
    assert state.readings == 0 and dict(state.signals) == {}
    assert state.properties["flow_setpoint"].desired == 300.0
    states = tr.update(full(1, 300.2))
    assert [s.status.value for s in states] == ["synchronized"]
    assert states[0].properties["flow_setpoint"].in_sync
    deployed = {"P1": replace(PUMP, signals=PUMP.signals[:1])}
    assert new_state_tracker(first, CONFIG, deployed).twin_type is deployed["P1"]


# -- records, rows and snapshots -----------------------------------------------------------


def test_twin_state_properties_are_read_only_and_pickle() -> None:
    tr = TwinStateTracker("P1", PUMP)
    tr.update(full(0, 250.0))
    (state,) = tr.update(change(300.0, at=1))
    with pytest.raises(TypeError):
        state.properties["flow_setpoint"] = PropertyState()  # type: ignore[index]
    copy = pickle.loads(pickle.dumps(state))
    assert copy == state and copy.properties["flow_setpoint"].desired == 300.0
    with pytest.raises(TypeError):
        copy.properties["x"] = PropertyState()  # type: ignore[index]


def test_to_row_has_flat_property_columns() -> None:
    tr = TwinStateTracker("P1", PUMP)
    tr.update(full(0, 250.0))
    row = tr.update(change(300.0, at=1))[0].to_row()
    assert (row["flow_setpoint__desired"], row["flow_setpoint__reported"]) == (300.0, 250.0)
    assert row["flow_setpoint__in_sync"] is False
    assert row["flow_m3h"] == 1.0 and row["status"] == "synchronized"
    empty = TwinStateTracker("P2", PUMP).snapshot_state().to_row()
    assert math.isnan(empty["flow_setpoint__desired"]) and empty["flow_setpoint__in_sync"]


def test_tracker_with_properties_pickles_and_stays_bounded() -> None:
    tr = TwinStateTracker("P1", PUMP)
    tr.update(full(0, 250.0))
    tr.update(change(300.0, at=1, request_id="r0"))
    size = len(pickle.dumps(tr))
    for k in range(1, 300):  # a new desired value and a new report each round
        tr.update(change(20.0 + k, at=1 + k, request_id=f"r{k}"))
        tr.update(full(1 + k, 20.0 + k))
    blob = pickle.dumps(tr)
    assert len(blob) <= size + 16 and len(blob) < 4096
    copy = pickle.loads(blob)
    assert copy.snapshot_state() == tr.snapshot_state()
    p = copy.property_state("flow_setpoint")
    assert (p.desired_version, p.reported_version, p.in_sync) == (300, 300, True)
    assert flow(copy.update(change(400.0, at=1000, request_id="next"))).desired_version == 301


@given(
    st.lists(st.floats(20.0, 400.0, allow_nan=False), min_size=1, max_size=40),
    st.floats(20.0, 400.0, allow_nan=False),
)
def test_versions_never_go_back_and_sync_matches_the_tolerance(
    reports: list[float], desired: float
) -> None:
    spec: PropertySpec = PUMP.properties[0]
    tr = TwinStateTracker("P1", PUMP)
    tr.update(change(desired))
    last = 0
    anchor = None
    for t, v in enumerate(reports):
        tr.update(setpoint(t, v))
        p = tr.property_state("flow_setpoint")
        assert p.reported == v and p.reported_at == utc(T0 + t)
        moved = anchor is None or abs(v - anchor) > spec.tolerance
        assert p.reported_version == last + moved
        if moved:
            anchor = v
        last = p.reported_version
        assert p.in_sync == (abs(v - desired) <= spec.tolerance + 1e-9 * desired)
        assert p.desired_version == 1


def test_property_state_json_maps_nan_and_missing_to_null() -> None:
    p = PropertyState(math.nan, 1, datetime(2026, 1, 1, tzinfo=UTC), None, 0, None, False)
    assert p.to_json() == {
        "desired": None,
        "desired_version": 1,
        "desired_at": "2026-01-01T00:00:00Z",
        "reported": None,
        "reported_version": 0,
        "reported_at": None,
        "in_sync": False,
    }
