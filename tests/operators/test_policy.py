"""Command policy: reactions as data, rate limits, validation, deterministic ids."""

from __future__ import annotations

import itertools
import pickle
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinflow.core.errors import ValidationError
from twinflow.core.records import Alert, AlertState, Command, Severity
from twinflow.core.times import utc
from twinflow.operators.policy import CommandPolicy, Reaction, check_params

T0 = 1_767_225_600.0


def alert(t=0.0, twin="m-1", kind="motor", diagnosis="overheating", state=AlertState.RAISED,
          evidence=None) -> Alert:  # fmt: skip
    when = utc(T0 + t)
    return Alert(
        alert_id=Alert.make_id(twin, "rule", when),
        twin_id=twin,
        twin_type=kind,
        rule="rule",
        state=state,
        severity=Severity.WARNING,
        time=when,
        raised_at=when,
        message="m",
        diagnosis=diagnosis,
        evidence=evidence or {},
    )


def test_derate_on_raised_motor_overheating():
    a = alert()
    (cmd,) = CommandPolicy(ttl_s=600.0).decide(a)
    assert (cmd.name, dict(cmd.params), cmd.reason) == ("derate", {"fraction": 0.7}, a.alert_id)
    assert cmd.command_id == Command.make_id("m-1", "derate", a.time)
    assert cmd.issued_at == a.time and cmd.expires_at == a.time + timedelta(seconds=600)
    assert cmd.to_json()["params"] == {"fraction": 0.7}


def test_turbine_derate_is_relative_to_its_output():
    p = CommandPolicy(derate_fraction=0.5)
    (cmd,) = p.decide(alert(twin="wt-1", kind="wind_turbine", evidence={"power_kw.mean": 800.0}))
    assert cmd.params["fraction"] == pytest.approx(0.2)  # 0.5 * 800 / 2000, inside [0.2, 1]
    (low,) = CommandPolicy().decide(
        alert(twin="wt-2", kind="wind_turbine", evidence={"power_kw.mean": 100.0})
    )
    assert low.params["fraction"] == 0.2  # clamped to the actuator's range
    (plain,) = CommandPolicy().decide(alert(twin="wt-3", kind="wind_turbine"))
    assert plain.params["fraction"] == 0.7


@pytest.mark.parametrize(
    "a",
    [
        alert(state=AlertState.CLEARED),
        alert(diagnosis="bearing"),
        alert(diagnosis=None),
        alert(twin="p-1", kind="pump"),
    ],
)
def test_no_command(a):
    assert CommandPolicy().decide(a) == []


def test_rate_limited_per_twin_in_event_time():
    p = CommandPolicy(min_interval_s=1800.0)
    assert len(p.decide(alert(0.0))) == 1
    assert p.decide(alert(1799.0)) == []
    assert len(p.decide(alert(100.0, twin="m-2"))) == 1  # another twin is not limited
    assert len(p.decide(alert(1800.0))) == 1
    assert (p.issued, p.suppressed) == (3, 1)


@given(st.lists(st.floats(0.0, 86_400.0), max_size=40))
def test_never_two_commands_within_the_interval(times):
    p = CommandPolicy(min_interval_s=1800.0)
    issued = [t for t in sorted(times) if p.decide(alert(t))]
    assert all(b - a >= 1800.0 for a, b in itertools.pairwise(issued))


def test_replay_gives_the_same_commands():
    alerts = [alert(t) for t in (0.0, 600.0, 4000.0)]
    first, second = CommandPolicy(), CommandPolicy()
    first = [c for a in alerts for c in first.decide(a)]
    second = [c for a in alerts for c in second.decide(a)]
    assert first == second and len(first) == 2


def test_invalid_configuration_fails_at_start_up():
    with pytest.raises(ValidationError, match="outside"):
        CommandPolicy(derate_fraction=1.5)
    with pytest.raises(ValidationError, match="no command"):
        CommandPolicy(reactions=(Reaction("bearing", ("pump",), "set_load", {"percent": 50}),))
    with pytest.raises(ValidationError):
        CommandPolicy(ttl_s=0)


def test_check_params():
    check_params("m-1", "motor", "set_load", {"percent": 50.0})
    with pytest.raises(ValidationError, match="unknown"):
        check_params("m-1", "motor", "set_load", {"percent": 50.0, "speed": 1.0})
    with pytest.raises(ValidationError, match="missing"):
        check_params("m-1", "motor", "derate", {})
    with pytest.raises(ValidationError, match="'m-1'"):
        check_params("m-1", "motor", "derate", {"fraction": float("nan")})


def test_custom_reactions_as_data():
    p = CommandPolicy(reactions=(Reaction("bearing", ("motor",), "derate", {"fraction": 0.5}),))
    (cmd,) = p.decide(alert(diagnosis="bearing"))
    assert dict(cmd.params) == {"fraction": 0.5}
    assert p.decide(alert(5000.0, diagnosis="overheating")) == []


def test_state_is_small_and_picklable():
    p = CommandPolicy()
    for k in range(500):
        p.decide(alert(k * 600.0))
    clone = pickle.loads(pickle.dumps(p))
    a = alert(500 * 600.0 + 1.0)
    assert clone.decide(a) == p.decide(a)
    assert p.reactions is None and len(pickle.dumps(p)) < 400


def test_a_second_derate_goes_further_than_the_first():
    policy = CommandPolicy(min_interval_s=1800.0, derate_fraction=0.7)
    (first,) = policy.decide(alert(t=0.0))
    (second,) = policy.decide(alert(t=3600.0))
    assert first.params["fraction"] == pytest.approx(0.7)
    assert second.params["fraction"] == pytest.approx(0.49)
    fractions = [policy.decide(alert(t=3600.0 * k))[0].params["fraction"] for k in range(2, 8)]
    assert min(fractions) == pytest.approx(0.2), "never below the actuator's lowest fraction"


def test_commands_resting_on_a_suspect_sensor_are_held_back():
    from twinflow.core.records import CommandStatus

    policy = CommandPolicy()
    stuck = alert(t=0.0, diagnosis="sensor_fault", evidence={"winding_temp.flat": 1.0})
    assert policy.decide(stuck) == []
    hot = alert(t=600.0, evidence={"winding_temp.residual": 20.0, "threshold": 9.0})
    (held,) = policy.decide(hot)
    assert held.status is CommandStatus.REJECTED
    assert "winding_temp" in held.detail and stuck.alert_id in held.detail
    # Evidence from another signal is not affected.
    (other,) = policy.decide(alert(t=900.0, evidence={"current_a.mean": 300.0}))
    assert other.status is CommandStatus.ISSUED


def test_a_cleared_sensor_alarm_stays_suspect_for_the_quarantine():
    from twinflow.core.records import CommandStatus

    policy = CommandPolicy(quarantine_s=3600.0)
    raised = alert(t=0.0, diagnosis="sensor_fault", evidence={"winding_temp.spike_pct": 40.0})
    policy.decide(raised)
    cleared = Alert(
        **{
            **{f: getattr(raised, f) for f in raised.__slots__},
            "state": AlertState.CLEARED,
            "time": utc(T0 + 600.0),
        }
    )
    policy.decide(cleared)
    evidence = {"winding_temp.residual": 20.0}
    assert policy.decide(alert(t=1200.0, evidence=evidence))[0].status is CommandStatus.REJECTED
    assert policy.decide(alert(t=4300.0, evidence=evidence))[0].status is CommandStatus.ISSUED
