"""The simulator's twin types, built from DTDL v3 files plus the profile, equal the old ones."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from twinflow.connectors.simulator.types import BPFO_HZ, MOTOR, PUMP, WIND_TURBINE
from twinflow.core.errors import ConfigError, ValidationError
from twinflow.operators import catalog
from twinflow.operators.catalog import (
    CATALOG,
    PropertySpec,
    build_catalog,
)
from twinflow.operators.dtdl import INTERFACES_DIR, parse_files, validate_payload

# The hand-written catalog as it was before the DTDL files: (name, unit, low, high).
OLD_SIGNALS = {
    "wind_turbine": [
        ("wind_speed", "m/s", 0.0, 60.0),
        ("power_kw", "kW", -100.0, 2600.0),
        ("rotor_rpm", "rpm", 0.0, 30.0),
        ("gearbox_temp", "degC", -40.0, 160.0),
        ("generator_temp", "degC", -40.0, 200.0),
        ("vibration_rms", "mm/s", 0.0, 100.0),
        ("pitch_deg", "deg", -5.0, 95.0),
        ("power_limit_kw", "kW", 0.0, 2000.0),
    ],
    "pump": [
        ("flow_m3h", "m3/h", 0.0, 600.0),
        ("suction_bar", "bar", -1.0, 10.0),
        ("discharge_bar", "bar", 0.0, 40.0),
        ("motor_current_a", "A", 0.0, 500.0),
        ("motor_voltage_v", "V", 0.0, 1000.0),
        ("flow_setpoint_m3h", "m3/h", 0.0, 600.0),
    ],
    "motor": [
        ("winding_temp", "degC", -40.0, 250.0),
        ("current_a", "A", 0.0, 400.0),
        ("speed_rpm", "rpm", 0.0, 1600.0),
        ("load_pct", "%", 0.0, 130.0),
        ("vibration", "g", -50.0, 50.0),
    ],
}
OLD_ACTUATORS = {
    "wind_turbine": [
        ("derate", {"fraction": (0.2, 1.0)}, "limit output to a fraction of rated"),
        ("set_pitch", {"degrees": (-2.0, 90.0)}, "pitch offset added to control"),
    ],
    "pump": [
        ("set_flow", {"m3h": (20.0, 400.0)}, "flow setpoint"),
        ("derate", {"fraction": (0.2, 1.0)}, "scale the flow setpoint"),
    ],
    "motor": [
        ("set_load", {"percent": (10.0, 110.0)}, "load setpoint"),
        ("derate", {"fraction": (0.2, 1.0)}, "limit load to a fraction of rated"),
    ],
}


@pytest.mark.parametrize("name", ["wind_turbine", "pump", "motor"])
def test_built_types_equal_the_hand_written_ones(name: str) -> None:
    t = CATALOG[name]
    assert [(s.name, s.unit, s.low, s.high) for s in t.signals] == OLD_SIGNALS[name]
    assert [(a.name, dict(a.params), a.description) for a in t.actuators] == OLD_ACTUATORS[name]
    assert all(s.rate_hz == 1.0 for s in t.signals if not s.waveform)
    assert t.model_id.startswith("dtmi:twinflow:sim:")


def test_waveform_faults_and_bands_kept() -> None:
    v = MOTOR.signal("vibration")
    assert (v.rate_hz, v.waveform, v.burst_interval_s) == (8192.0, True, 60.0)
    assert MOTOR.fault_frequencies["bpfo"] == pytest.approx(BPFO_HZ)
    assert MOTOR.bands == ((0.0, 50.0), (50.0, 200.0), (200.0, 1000.0), (1000.0, 4096.0))


def test_properties_map_to_commands() -> None:
    p = WIND_TURBINE.property("power_limit")
    assert (p.unit, p.low, p.high, p.command, p.reported_signal) == (
        "kW",
        0.0,
        2000.0,
        "derate",
        "power_limit_kw",
    )
    assert p.command_params(1000.0) == {"fraction": 0.5}
    flow = PUMP.property("flow_setpoint")
    assert (flow.command, flow.param, flow.scale, flow.reported_signal) == (
        "set_flow",
        "m3h",
        1.0,
        "flow_setpoint_m3h",
    )
    load = MOTOR.property("load_setpoint")
    assert (load.unit, load.low, load.high, load.reported_signal) == ("%", 10.0, 110.0, None)
    assert load.check(200.0) and not load.check(50.0)
    with pytest.raises(ValidationError, match=r"has no property 'speed'.*load_setpoint"):
        MOTOR.property("speed")


def test_actuator_check_and_request_schema() -> None:
    a = PUMP.actuator("set_flow")
    assert a.check({"m3h": 100.0}) == []
    assert validate_payload(a.request_schema, {"m3h": 100.0}) == []  # type: ignore[arg-type]
    problems = a.check({"m3h": float("nan"), "x": 1})
    assert any("unknown parameter 'x'" in p for p in problems)
    assert any("finite" in p for p in problems)
    assert a.check({}) == ["missing parameter 'm3h' for set_flow"]
    assert a.check({"m3h": 1000}) == ["m3h=1000 is outside [20, 400]"]
    assert validate_payload(a.request_schema, {"m3h": "x"}) != []  # type: ignore[arg-type]


def test_catalog_refuses_a_dtdl_that_disagrees_with_the_profile(tmp_path: Path) -> None:
    for f in INTERFACES_DIR.glob("*.json"):
        doc = json.loads(f.read_text())
        if doc["@id"] == "dtmi:twinflow:sim:Pump;1":
            doc["contents"] = [c for c in doc["contents"] if c["name"] != "suction_bar"]
            doc["contents"].append({"@type": "Telemetry", "name": "extra", "schema": "double"})
        (tmp_path / f.name).write_text(json.dumps(doc))
    with pytest.raises(ConfigError) as info:
        build_catalog(parse_files([tmp_path]))
    text = str(info.value)
    assert "'pump'" in text and "dtmi:twinflow:sim:Pump;1" in text
    assert "Telemetry 'extra' is in the DTDL but not in the profile" in text
    assert "Telemetry 'suction_bar' is in the profile but not in the DTDL" in text


def test_catalog_refuses_a_profile_for_a_missing_interface() -> None:
    ghost = dataclasses.replace(catalog.bundled_profiles()[0], model_id="dtmi:twinflow:sim:Ghost;1")
    with pytest.raises(ConfigError, match="Ghost"):
        build_catalog(parse_files([INTERFACES_DIR]), (ghost,))


def test_property_spec_defaults() -> None:
    p = PropertySpec("x", "kW", 0.0, 1.0)
    assert (p.writable, p.command, p.scale, p.tolerance) == (True, None, 1.0, 0.0)


def test_types_expose_their_dtdl_relationships() -> None:
    assert PUMP.relationships == (
        catalog.RelationshipSpec("drivenBy", MOTOR.model_id, 1),
        catalog.RelationshipSpec("feeds", None, None),
    )
    assert MOTOR.relationships == (catalog.RelationshipSpec("drives", PUMP.model_id, None),)
    assert WIND_TURBINE.relationships == ()


def test_relationships_are_inherited_from_extended_interfaces(tmp_path: Path) -> None:
    for f in INTERFACES_DIR.glob("*.json"):
        doc = json.loads(f.read_text())
        if doc["@id"] == "dtmi:twinflow:sim:Motor;1":
            doc["extends"] = "dtmi:twinflow:test:Linked;1"
        (tmp_path / f.name).write_text(json.dumps(doc))
    base = {
        "@context": "dtmi:dtdl:context;3",
        "@id": "dtmi:twinflow:test:Linked;1",
        "@type": "Interface",
        "contents": [{"@type": "Relationship", "name": "near", "maxMultiplicity": 2}],
    }
    (tmp_path / "linked.json").write_text(json.dumps(base))
    built = build_catalog(parse_files([tmp_path]))
    assert [r.name for r in built["motor"].relationships] == ["drives", "near"]
    assert built["motor"].relationships[1] == catalog.RelationshipSpec("near", None, 2)
