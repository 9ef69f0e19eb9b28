"""Telemetry checked against its DTDL model: declared units and schema types.

Each violation leaves a dead letter that names the twin and signal, carries the event time of
the data (never the wall clock) and counts the readings it cost; valid frames pass untouched.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinflow.connectors.simulator.types import MOTOR, PUMP
from twinflow.core.errors import ConfigError, DecodeError
from twinflow.core.records import DeadLetter, RawMessage, TelemetryFrame
from twinflow.core.times import utc
from twinflow.operators.catalog import (
    CATALOG,
    SignalSpec,
    TwinType,
    build_catalog,
)
from twinflow.operators.decode import decode
from twinflow.operators.dtdl import INTERFACES_DIR, parse_files
from twinflow.operators.validate import Validator

NOW = 1_700_000_000.0
TIMES = np.array([NOW - 2, NOW - 1, NOW])

#: A twin type with one signal of each schema a signal may have.
GAUGE = TwinType(
    "gauge",
    (
        SignalSpec("level", "m", 0.0, 100.0, dtdl_unit="metre"),
        SignalSpec("ratio", "", -1e40, 1e40, schema="float"),
        SignalSpec("count", "", -1e12, 1e12, schema="integer"),
        SignalSpec("total", "", -1e30, 1e30, schema="long"),
        SignalSpec("steps", "", 0.0, 10.0, schema="integer"),
        SignalSpec("open", "", 0.0, 1.0, schema="boolean"),
    ),
)
CATALOG_WITH_GAUGE = {**CATALOG, "gauge": GAUGE}


def pump(units: Any = None, **signals: Any) -> TelemetryFrame:
    data = signals or {
        "flow_m3h": np.array([250.0, 251.0, np.nan]),
        "suction_bar": np.array([1.0, 1.1, 1.2]),
    }
    if units is None:
        return TelemetryFrame("P1", "pump", TIMES, data, source="mqtt")
    return TelemetryFrame("P1", "pump", TIMES, data, source="mqtt", units=units)


def gauge(**signals: Any) -> TelemetryFrame:
    return TelemetryFrame("G1", "gauge", TIMES, signals, source="modbus")


def check(letter: DeadLetter, readings: int, time: float) -> dict[str, Any]:
    """Common facts of a validation dead letter; returns its payload."""
    assert letter.stage == "validate"
    assert letter.twin_id in ("P1", "G1", "M1")
    assert letter.readings == readings
    assert letter.time == utc(time)
    json.dumps(letter.to_json())
    payload = json.loads(letter.payload)
    assert isinstance(payload, dict)
    return payload


# ---- the catalog carries schema and DTDL unit ------------------------------------------


def test_signal_specs_carry_dtdl_schema_and_unit() -> None:
    flow = PUMP.signal("flow_m3h")
    assert (flow.schema, flow.dtdl_unit, flow.unit) == ("double", "cubicMetrePerHour", "m3/h")
    assert flow.units == {"cubicMetrePerHour", "m3/h"}
    load = MOTOR.signal("load_pct")  # no DTDL unit: the profile's symbol only
    assert (load.schema, load.dtdl_unit, load.units) == ("double", None, frozenset({"%"}))
    assert all(s.schema == "double" for t in CATALOG.values() for s in t.signals)


def _with_schema(tmp_path: Path, model_id: str, signal: str, schema: str) -> None:
    for f in INTERFACES_DIR.glob("*.json"):
        doc = json.loads(f.read_text())
        if doc["@id"] == model_id:
            for c in doc["contents"]:
                if c["name"] == signal:
                    c["schema"] = schema
        (tmp_path / f.name).write_text(json.dumps(doc))


def test_catalog_takes_numeric_schemas_and_refuses_others(tmp_path: Path) -> None:
    _with_schema(tmp_path, "dtmi:twinflow:sim:Pump;1", "suction_bar", "integer")
    built = build_catalog(parse_files([tmp_path]))
    assert built["pump"].signal("suction_bar").schema == "integer"
    # load_pct has no semantic type, so the DTDL itself allows a string; the catalog does not.
    _with_schema(tmp_path, "dtmi:twinflow:sim:Motor;1", "load_pct", "string")
    with pytest.raises(ConfigError, match="'load_pct': schema must be double, float, integer"):
        build_catalog(parse_files([tmp_path]))
    # A waveform needs floating-point samples.
    _with_schema(tmp_path, "dtmi:twinflow:sim:Motor;1", "load_pct", "double")
    _with_schema(tmp_path, "dtmi:twinflow:sim:Motor;1", "vibration", "long")
    with pytest.raises(ConfigError, match="'vibration': schema must be double or float"):
        build_catalog(parse_files([tmp_path]))


# ---- units ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "units",
    [
        {"flow_m3h": "cubicMetrePerHour", "suction_bar": "bar"},
        {"flow_m3h": "m3/h"},
        {},
        {"discharge_bar": "psi"},  # a signal the frame does not carry: nothing to check
    ],
)
def test_frames_with_matching_units_pass_untouched(units: dict[str, str]) -> None:
    frame = pump(units)
    assert Validator().validate(frame, NOW) == (frame, [])


def test_motor_signal_without_dtdl_unit_takes_the_profile_symbol() -> None:
    frame = TelemetryFrame("M1", "motor", TIMES, {"load_pct": np.ones(3)}, units={"load_pct": "%"})
    assert Validator().validate(frame, NOW) == (frame, [])
    frame = TelemetryFrame(
        "M1", "motor", TIMES, {"load_pct": np.ones(3)}, units={"load_pct": "percent"}
    )
    out, (letter,) = Validator().validate(frame, NOW)
    assert out is None
    assert "the model of 'motor' gives '%'" in letter.reason


def test_a_mismatched_unit_drops_that_signal_only() -> None:
    frame = pump({"flow_m3h": "litrePerMinute", "suction_bar": "bar"})
    out, dead = Validator().validate(frame, NOW)
    assert isinstance(out, TelemetryFrame) and out is not frame
    assert list(out.signals) == ["suction_bar"]
    assert out.signals["suction_bar"] is frame.signals["suction_bar"]
    (letter,) = dead
    payload = check(letter, readings=3, time=TIMES[0])
    assert letter.source == "mqtt"
    assert letter.reason == (
        "twin 'P1': signal 'flow_m3h' is declared in unit 'litrePerMinute' but the model of "
        "'pump' gives 'cubicMetrePerHour' (m3/h); its 3 reading(s) are dropped; convert on "
        "the device or fix the model"
    )
    assert payload == {
        "twin_id": "P1",
        "twin_type": "pump",
        "signal": "flow_m3h",
        "declared_unit": "litrePerMinute",
        "model_unit": "cubicMetrePerHour",
        "unit_symbol": "m3/h",
        "readings": 3,
    }
    # A replay long after gives the identical dead letter (event time, no clock in it).
    assert Validator().validate(frame, NOW + 86_000)[1] == dead


def test_an_unknown_unit_is_a_mismatch() -> None:
    out, (letter,) = Validator().validate(pump({"suction_bar": "furlongPerFortnight"}), NOW)
    assert isinstance(out, TelemetryFrame) and list(out.signals) == ["flow_m3h"]
    check(letter, readings=3, time=TIMES[0])
    assert "declared in unknown unit 'furlongPerFortnight'" in letter.reason
    assert "gives 'bar' (bar)" in letter.reason and "convert on the device" in letter.reason


@pytest.mark.parametrize("declared", [5, None, ["bar"], ""])
def test_a_unit_that_is_not_a_name_is_a_mismatch(declared: object) -> None:
    out, (letter,) = Validator().validate(pump({"suction_bar": declared}), NOW)
    assert isinstance(out, TelemetryFrame) and list(out.signals) == ["flow_m3h"]
    check(letter, readings=3, time=TIMES[0])
    assert "'suction_bar'" in letter.reason and "fix the model" in letter.reason


def test_all_signals_mismatched_leaves_no_frame() -> None:
    frame = pump({"flow_m3h": "litrePerHour", "suction_bar": "pascal"})
    out, dead = Validator().validate(frame, NOW)
    assert out is None
    assert [json.loads(d.payload)["signal"] for d in dead] == ["flow_m3h", "suction_bar"]
    assert sum(d.readings for d in dead) == frame.readings


def test_units_that_are_not_a_mapping_reject_the_frame() -> None:
    frame = pump(["m3/h"])
    out, (letter,) = Validator().validate(frame, NOW)
    assert out is None
    check(letter, readings=6, time=TIMES[0])
    assert "units must map signal names to unit names, got list" in letter.reason


def test_units_are_checked_before_values() -> None:
    # The dropped signal's out-of-range values give no second dead letter.
    frame = pump({"flow_m3h": "gallonPerMinute"}, flow_m3h=np.full(3, 9e9), suction_bar=TIMES * 0)
    out, (letter,) = Validator().validate(frame, NOW)
    assert isinstance(out, TelemetryFrame) and list(out.signals) == ["suction_bar"]
    assert "gallonPerMinute" in letter.reason


_UNIT = st.one_of(
    st.sampled_from(["cubicMetrePerHour", "m3/h", "bar", "kelvin", "%", ""]),
    st.text(max_size=300),
    st.integers(),
    st.floats(),
    st.none(),
    st.lists(st.text(max_size=5), max_size=3),
)
_KEY = st.one_of(st.sampled_from(["flow_m3h", "suction_bar", "discharge_bar"]), st.text())


@given(
    st.one_of(
        st.dictionaries(_KEY, _UNIT, max_size=6),
        st.none(),
        st.integers(),
        st.text(max_size=10),
        st.lists(st.text(max_size=5), max_size=3),
    )
)
def test_validation_never_raises_on_arbitrary_unit_maps(units: Any) -> None:
    frame = pump(units)
    out, dead = Validator().validate(frame, NOW)
    for letter in dead:
        check(letter, readings=letter.readings, time=TIMES[0])
        assert len(letter.payload) <= DeadLetter.MAX_PAYLOAD
        assert len(letter.reason) < 500
    if not isinstance(units, dict):
        if units is None:  # None is "default" here: the frame has no units
            assert (out, dead) == (frame, [])
        else:
            assert out is None and len(dead) == 1
        return
    accepted = {"flow_m3h": {"cubicMetrePerHour", "m3/h"}, "suction_bar": {"bar"}}
    dropped = [
        n
        for n in frame.signals
        if n in units and not (isinstance(units[n], str) and units[n] in accepted[n])
    ]
    assert [json.loads(d.payload)["signal"] for d in dead] == dropped
    assert all(d.readings == 3 for d in dead)
    kept = [n for n in frame.signals if n not in dropped]
    if kept:
        assert isinstance(out, TelemetryFrame) and list(out.signals) == kept
        assert (out is frame) == (not dropped)
    else:
        assert out is None


# ---- schema types ----------------------------------------------------------------------


def test_valid_values_of_every_schema_pass_untouched() -> None:
    frame = gauge(
        level=np.array([1.5, np.nan, 99.0]),
        ratio=np.array([1e38, -3.5, 0.25]),
        count=np.array([-3.0, 0.0, 2.0**31 - 1]),
        total=np.array([2.0**62, np.nan, -(2.0**63)]),
        steps=np.array([0.0, 10.0, 5.0]),
        open=np.array([0.0, 1.0, np.nan]),
    )
    assert Validator(CATALOG_WITH_GAUGE).validate(frame, NOW) == (frame, [])


@pytest.mark.parametrize(
    ("signal", "values", "blanked", "needs"),
    [
        ("count", [1.0, 2.5, -0.5], [1, 2], "DTDL integer values (need whole numbers from"),
        ("count", [1.0, 3e9, 2.0], [1], "DTDL integer values"),
        ("total", [1.0, 1e19, 0.1], [1, 2], "DTDL long values (need whole numbers that fit"),
        ("open", [0.0, 2.0, 0.5], [1, 2], "DTDL boolean values (need 0 or 1 (false or true))"),
        ("open", [-1.0, 1.0, 1.0], [0], "DTDL boolean values"),
        ("ratio", [1e39, 1.0, -1e39], [0, 2], "DTDL float values (need finite numbers that fit"),
    ],
)
def test_values_the_schema_cannot_hold_become_nan(
    signal: str, values: list[float], blanked: list[int], needs: str
) -> None:
    data = np.array(values)
    frame = gauge(level=np.ones(3), **{signal: data})
    out, dead = Validator(CATALOG_WITH_GAUGE).validate(frame, NOW)
    assert isinstance(out, TelemetryFrame)
    expected = data.copy()
    expected[blanked] = np.nan
    np.testing.assert_array_equal(out.signals[signal], expected)
    assert out.signals["level"] is frame.signals["level"]
    assert data.tolist() == values  # the input is not modified
    (letter,) = dead
    payload = check(letter, readings=len(blanked), time=TIMES[blanked[0]])
    assert letter.twin_id == "G1" and letter.source == "modbus"
    assert letter.reason.startswith(f"twin 'G1': {len(blanked)} reading(s) of {signal!r} are")
    assert needs in letter.reason and letter.reason.endswith("replaced by NaN")
    assert payload["schema"] == GAUGE.signal(signal).schema
    assert len(payload["readings"]) == len(blanked)
    assert Validator(CATALOG_WITH_GAUGE).validate(frame, NOW + 3600)[1] == dead


def test_schema_and_range_violations_give_one_letter_each() -> None:
    # steps is an integer within [0, 10]: 2.5 breaks the schema, 12 and inf the range.
    frame = gauge(steps=np.array([2.5, 12.0, np.inf]))
    out, dead = Validator(CATALOG_WITH_GAUGE).validate(frame, NOW)
    assert isinstance(out, TelemetryFrame) and np.isnan(out.signals["steps"]).all()
    schema, out_of_range = dead
    check(schema, readings=1, time=TIMES[0])
    check(out_of_range, readings=2, time=TIMES[1])
    assert "not valid DTDL integer values" in schema.reason
    assert "outside its valid range [0, 10]" in out_of_range.reason


def test_booleans_may_arrive_as_a_bool_array() -> None:
    frame = gauge(open=np.array([True, False, True]))
    out, dead = Validator(CATALOG_WITH_GAUGE).validate(frame, NOW)
    assert dead == [] and isinstance(out, TelemetryFrame)
    assert out.signals["open"].dtype == np.float64
    assert out.signals["open"].tolist() == [1.0, 0.0, 1.0]
    # ...but only for boolean signals: a double refuses them, as before.
    out, (letter,) = Validator(CATALOG_WITH_GAUGE).validate(gauge(level=np.ones(3) > 0), NOW)
    assert out is None and "must hold numbers, got dtype bool" in letter.reason


def test_infinite_limits_still_refuse_infinite_doubles() -> None:
    free = TwinType("free", (SignalSpec("x", "", -math.inf, math.inf),))
    frame = TelemetryFrame("G1", "free", TIMES, {"x": np.array([1e308, np.inf, -np.inf])})
    out, (letter,) = Validator({"free": free}).validate(frame, NOW)
    assert isinstance(out, TelemetryFrame)
    assert out.signals["x"][0] == 1e308 and np.isnan(out.signals["x"][1:]).all()
    check(letter, readings=2, time=TIMES[1])


@given(
    st.lists(
        st.one_of(st.floats(), st.integers(-(2**40), 2**40).map(float)), min_size=1, max_size=40
    )
)
def test_exactly_the_values_an_integer_cannot_hold_are_blanked(values: list[float]) -> None:
    data = np.array(values)
    times = np.linspace(NOW - 10, NOW, data.size)
    frame = TelemetryFrame("G1", "gauge", times, {"count": data})
    out, dead = Validator(CATALOG_WITH_GAUGE).validate(frame, NOW)
    assert isinstance(out, TelemetryFrame)
    finite = np.isfinite(data)
    schema_bad = finite & ((data != np.trunc(data)) | (data < -(2.0**31)) | (data > 2.0**31 - 1))
    range_bad = ~schema_bad & ((data < -1e12) | (data > 1e12))
    bad = schema_bad | range_bad
    np.testing.assert_array_equal(out.signals["count"], np.where(bad, np.nan, data))
    assert [d.readings for d in dead] == [int(m.sum()) for m in (schema_bad, range_bad) if m.any()]
    assert (out is frame) == (not bad.any())


# ---- wire format v1: declared units ----------------------------------------------------


def raw(doc: dict[str, Any]) -> RawMessage:
    return RawMessage("mqtt", json.dumps(doc).encode(), NOW)


def batch(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "twin_id": "P1",
        "twin_type": "pump",
        "times": TIMES.tolist(),
        "signals": {"flow_m3h": [250.0, None, 251], "suction_bar": [1.0, 1.1, 1.2]},
    }
    doc.update(changes)
    return doc


def test_decode_carries_declared_units() -> None:
    units = {"flow_m3h": "cubicMetrePerHour", "suction_bar": "bar"}
    frame = decode(raw(batch(units=units)))
    assert dict(frame.units) == units
    assert Validator().validate(frame, NOW) == (frame, [])
    single = decode(
        raw({"twin_id": "P1", "twin_type": "pump", "time": NOW, "values": {"flow_m3h": 3},
             "units": {"flow_m3h": "m3/h"}})
    )  # fmt: skip
    assert dict(single.units) == {"flow_m3h": "m3/h"}


def test_decode_without_units_declares_none() -> None:
    frame = decode(raw(batch()))
    assert dict(frame.units) == {}
    assert frame.units is TelemetryFrame("x", "y", TIMES, {}).units  # the shared default


def test_decoded_mismatch_reaches_the_dead_letters() -> None:
    frame = decode(raw(batch(units={"flow_m3h": "litrePerSecond"})))
    out, (letter,) = Validator().validate(frame, NOW)
    assert isinstance(out, TelemetryFrame) and list(out.signals) == ["suction_bar"]
    check(letter, readings=3, time=TIMES[0])
    assert "'litrePerSecond'" in letter.reason


@pytest.mark.parametrize(
    ("units", "match"),
    [
        (["m3/h"], "twin 'P1': field 'units' must be an object of signal: unit, got an array"),
        ("m3/h", "field 'units' must be an object"),
        (
            {"flow": "m3/h"},
            "'units' names signal 'flow', which the payload does not carry; its signals: "
            "flow_m3h, suction_bar",
        ),
        ({"flow_m3h": 3}, "unit of signal 'flow_m3h' must be a non-empty string .* a number"),
        ({"flow_m3h": ""}, "unit of signal 'flow_m3h' must be a non-empty string"),
        ({"flow_m3h": None}, "got null"),
    ],
)
def test_decode_refuses_malformed_units(units: object, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        decode(raw(batch(units=units)))
