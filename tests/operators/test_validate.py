"""Frame validation: whole-frame rejects, out-of-range blanking and decode dead letters."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinflow.connectors.simulator.types import MOTOR, PUMP
from twinflow.core.errors import DecodeError
from twinflow.core.records import DeadLetter, RawMessage, TelemetryFrame, WaveformFrame
from twinflow.core.times import utc
from twinflow.operators.catalog import CATALOG
from twinflow.operators.validate import Validator, dead_letter_for

NOW = 1_700_000_000.0
TIMES = np.array([NOW - 2, NOW - 1, NOW])


def pump_frame(**signals: object) -> TelemetryFrame:
    data = signals or {
        "flow_m3h": np.array([250.0, 251.0, np.nan]),
        "suction_bar": np.array([1.0, 1.1, 1.2]),
    }
    return TelemetryFrame("P1", "pump", TIMES, data, source="mqtt")  # type: ignore[arg-type]


def wave(**changes: object) -> WaveformFrame:
    fields: dict[str, object] = dict(
        twin_id="M1",
        twin_type="motor",
        signal="vibration",
        start=NOW - 1.0,
        sample_rate=8192.0,
        samples=np.sin(np.arange(4096) / 10.0),
        source="opcua",
    )
    fields.update(changes)
    return WaveformFrame(**fields)  # type: ignore[arg-type]


def claimed_times(frame: object) -> set[object]:
    """The times a frame's data claims (a dead letter about it carries one of them)."""
    if isinstance(frame, WaveformFrame) and isinstance(frame.start, float):
        return {utc(frame.start)} if np.isfinite(frame.start) else set()
    times = getattr(frame, "times", None)
    if not isinstance(times, np.ndarray) or times.dtype.kind not in "fiu":
        return set()
    return {utc(float(t)) for t in times.ravel() if np.isfinite(t) and abs(t) < 1e11}


def rejected(frame: object, validator: Validator | None = None) -> DeadLetter:
    out, dead = (validator or Validator()).validate(frame, NOW)  # type: ignore[arg-type]
    assert out is None
    assert len(dead) == 1
    letter = dead[0]
    assert letter.stage == "validate"
    assert letter.time in claimed_times(frame) | {utc(NOW)}
    json.dumps(letter.to_json())  # serialisable, payload a short JSON excerpt
    json.loads(letter.payload)
    return letter


def test_valid_frame_passes_unchanged() -> None:
    frame = pump_frame()
    out, dead = Validator().validate(frame, NOW)
    assert out is frame
    assert dead == []


def test_equal_times_and_nan_are_allowed() -> None:
    frame = TelemetryFrame(
        "P1", "pump", np.array([NOW, NOW]), {"flow_m3h": np.array([np.nan, np.nan])}
    )
    assert Validator().validate(frame, NOW) == (frame, [])


def test_integer_arrays_become_float() -> None:
    frame = TelemetryFrame("P1", "pump", np.array([int(NOW)]), {"flow_m3h": np.array([3])})
    out, dead = Validator().validate(frame, NOW)
    assert dead == [] and out is not None and out is not frame
    assert out.times.dtype == np.float64
    assert out.signals["flow_m3h"].dtype == np.float64  # type: ignore[union-attr]


def test_out_of_range_values_become_nan_with_dead_letter() -> None:
    flow = np.array([250.0, 9999.0, np.inf])
    suction = np.array([1.0, -np.inf, 1.2])
    frame = pump_frame(flow_m3h=flow, suction_bar=suction)
    out, dead = Validator().validate(frame, NOW)
    assert out is not None and out is not frame
    assert isinstance(out, TelemetryFrame)
    np.testing.assert_array_equal(out.signals["flow_m3h"], [250.0, np.nan, np.nan])
    np.testing.assert_array_equal(out.signals["suction_bar"], [1.0, np.nan, 1.2])
    assert flow.tolist() == [250.0, 9999.0, np.inf]  # the input is not modified
    assert [d.readings for d in dead] == [2, 1]
    first = dead[0]
    assert (first.stage, first.twin_id, first.source, first.time) == (
        "validate",
        "P1",
        "mqtt",
        utc(NOW - 1),  # the first offending reading's time: a replay gives the same letter
    )
    assert Validator().validate(frame, NOW + 60)[1] == dead
    assert "'P1'" in first.reason and "'flow_m3h'" in first.reason
    assert "2 reading(s)" in first.reason and "[0, 600] m3/h" in first.reason
    excerpt = json.loads(first.payload)
    assert excerpt["readings"] == [
        ["2023-11-14T22:13:19Z", 9999.0],
        ["2023-11-14T22:13:20Z", "inf"],
    ]
    assert excerpt["range"] == [0.0, 600.0]


def test_untouched_signals_are_not_copied() -> None:
    frame = pump_frame(flow_m3h=np.array([1.0, 2.0, 700.0]), suction_bar=np.array([1.0, 1, 1]))
    out, _ = Validator().validate(frame, NOW)
    assert out is not None and isinstance(out, TelemetryFrame)
    assert out.signals["suction_bar"] is frame.signals["suction_bar"]


def test_dead_letter_excerpt_is_short() -> None:
    frame = TelemetryFrame(
        "P1", "pump", np.linspace(NOW - 100, NOW, 5000), {"flow_m3h": np.full(5000, 1e9)}
    )
    _, dead = Validator().validate(frame, NOW)
    assert dead[0].readings == 5000
    excerpt = json.loads(dead[0].payload)
    assert len(excerpt["readings"]) == 10 and excerpt["more"] == 4990
    assert len(dead[0].payload) < DeadLetter.MAX_PAYLOAD


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (
            TelemetryFrame("P1", "boiler", TIMES, {"x": TIMES}),
            "twin 'P1': unknown twin type 'boiler'; known types: motor, pump, wind_turbine",
        ),
        (
            pump_frame(flow_m3h=TIMES, head_m=TIMES),
            "unknown signal.*'head_m'.*known signals: flow_m3h, suction_bar",
        ),
        (
            TelemetryFrame("M1", "motor", TIMES, {"vibration": np.zeros(3)}),
            "'vibration' are waveforms; send them as waveform frames",
        ),
        (
            TelemetryFrame("P1", "pump", np.array([NOW, NOW - 1, NOW]), {"flow_m3h": TIMES}),
            r"times must be non-decreasing but times\[1\]",
        ),
        (
            TelemetryFrame("P1", "pump", np.array([NOW - 8 * 86400]), {"flow_m3h": np.ones(1)}),
            "more than 604800 s behind the reference clock",
        ),
        (pump_frame(flow_m3h=np.ones(2)), "signal 'flow_m3h' has 2 values but the frame has 3"),
        (pump_frame(flow_m3h=np.ones((3, 1))), r"must be 1-D, got shape \(3, 1\)"),
        (pump_frame(flow_m3h=np.array(["1", "2", "3"])), "must hold numbers, got dtype <U1"),
        (pump_frame(flow_m3h=np.array([True, False, True])), "must hold numbers, got dtype bool"),
        (
            TelemetryFrame("P1", "pump", np.array([]), {"flow_m3h": np.array([])}),
            "empty frame \\(no timestamps\\)",
        ),
        (TelemetryFrame("P1", "pump", TIMES, {}), "empty frame \\(no signals\\)"),
        (wave(signal="current_a"), "'current_a' is a scalar signal, not a waveform"),
        (wave(signal="noise"), "unknown signal 'noise'.*known signals: winding_temp"),
        (wave(sample_rate=0.0), "sample_rate 0.0; it must be a positive"),
        (wave(sample_rate=-8192.0), "sample_rate -8192.0"),
        (wave(sample_rate=math.nan), "sample_rate nan"),
        (wave(sample_rate=math.inf), "sample_rate inf"),
        (wave(sample_rate="fast"), "sample_rate 'fast'"),
        (wave(samples=np.array([])), "empty waveform 'vibration'"),
        (wave(start=math.nan), "waveform start nan is not a finite time"),
        (wave(start=NOW + 299.9), "ahead of the reference clock"),
        (wave(twin_type="pump"), "unknown signal 'vibration' for twin type 'pump'"),
        ("not a frame", "expected a telemetry or waveform frame"),
        (TelemetryFrame("", "pump", TIMES, {"flow_m3h": TIMES}), "has twin_id ''; need a name"),
        (
            TelemetryFrame("P1", "pump", np.array([np.nan, np.inf]), {"flow_m3h": np.ones(2)}),
            r"times\[0\] is nan, not a finite time",
        ),
        (
            TelemetryFrame("P1", "pump", np.array([NOW + 301]), {"flow_m3h": np.ones(1)}),
            "more than 300 s ahead of the reference clock",
        ),
    ],
)
def test_whole_frame_rejects(frame: object, match: str) -> None:
    letter = rejected(frame)
    assert letter.reason == letter.reason.strip()
    assert re.search(match, letter.reason), letter.reason
    if isinstance(frame, TelemetryFrame | WaveformFrame):
        assert letter.twin_id == frame.twin_id
        assert letter.source == frame.source
        assert letter.readings == frame.readings


def test_registered_twins() -> None:
    v = Validator(twins={"P1": "pump", "M1": "motor"})
    assert v.validate(pump_frame(), NOW)[0] is not None
    assert (
        "'P2' is not registered"
        in rejected(TelemetryFrame("P2", "pump", TIMES, {"flow_m3h": TIMES}), v).reason
    )
    reason = rejected(TelemetryFrame("M1", "pump", TIMES, {"flow_m3h": TIMES}), v).reason
    assert "registered as type 'motor' but the frame says 'pump'" in reason
    assert "registered as type 'pump'" in rejected(wave(twin_id="P1"), v).reason


def test_time_limits_are_configurable() -> None:
    v = Validator(max_future_s=10.0, max_past_s=60.0)
    ok = TelemetryFrame("P1", "pump", np.array([NOW - 60, NOW + 10]), {"flow_m3h": np.ones(2)})
    assert v.validate(ok, NOW)[0] is ok
    assert (
        "ahead"
        in rejected(
            TelemetryFrame("P1", "pump", np.array([NOW + 10.5]), {"flow_m3h": np.ones(1)}), v
        ).reason
    )


def test_waveform_passes_and_out_of_range_samples_blanked() -> None:
    frame = wave()
    assert Validator().validate(frame, NOW) == (frame, [])
    samples = np.zeros(4096)
    samples[[5, 100]] = [80.0, -np.inf]
    out, dead = Validator().validate(wave(samples=samples), NOW)
    assert isinstance(out, WaveformFrame)
    assert np.isnan(out.samples[[5, 100]]).all() and np.isnan(out.samples).sum() == 2
    assert samples[5] == 80.0
    (letter,) = dead
    assert (
        letter.readings == 2 and "'vibration'" in letter.reason and "[-50, 50] g" in letter.reason
    )
    pairs = json.loads(letter.payload)["readings"]
    assert pairs[0] == ["2023-11-14T22:13:19.000610Z", 80.0]


def test_catalog_can_be_replaced() -> None:
    v = Validator(catalog={"pump": PUMP})
    assert "unknown twin type 'motor'; known types: pump" in rejected(wave(), v).reason
    assert Validator(catalog=CATALOG).catalog is CATALOG


@given(st.lists(st.one_of(st.floats(), st.just(math.nan)), min_size=1, max_size=50))
def test_exactly_the_out_of_range_values_are_blanked(values: list[float]) -> None:
    spec = MOTOR.signal("load_pct")
    data = np.array(values)
    times = np.linspace(NOW - 10, NOW, data.size)
    frame = TelemetryFrame("M1", "motor", times, {"load_pct": data})
    out, dead = Validator().validate(frame, NOW)
    assert isinstance(out, TelemetryFrame)
    bad = (data < spec.low) | (data > spec.high)
    expected = np.where(bad, np.nan, data)
    np.testing.assert_array_equal(out.signals["load_pct"], expected)
    assert sum(d.readings for d in dead) == int(bad.sum())
    assert len(dead) == int(bad.any())
    assert (out is frame) == (not bad.any())


def test_dead_letter_for_decode_errors() -> None:
    body = b'{"twin_id": "P7", "twin_type": "pump", "x": "\xff' + b"a" * 500
    msg = RawMessage("mqtt:plant/p7", body, NOW)
    letter = dead_letter_for(msg, DecodeError("payload is not UTF-8: byte 40"))
    assert letter.stage == "decode"
    assert letter.reason == "payload is not UTF-8: byte 40"
    assert (letter.source, letter.twin_id, letter.time, letter.readings) == (
        "mqtt:plant/p7",
        "P7",
        utc(NOW),
        0,
    )
    assert letter.payload.startswith('{"twin_id": "P7"') and "\ufffd" in letter.payload
    assert len(letter.payload) == 200


def test_dead_letter_for_other_errors_and_stages() -> None:
    msg = RawMessage("kafka", b"\x00\x01", NOW)
    letter = dead_letter_for(msg, KeyError("boom"), stage="map")
    assert letter.stage == "map" and letter.reason == "KeyError: 'boom'"
    assert letter.twin_id is None


@pytest.mark.parametrize(
    "body", [b'{"twin_id": 5}', b'{"twin_id": ""}', b'{"twin_id"', b'"twin_id": "x']
)
def test_twin_sniffing_gives_up_quietly(body: bytes) -> None:
    letter = dead_letter_for(RawMessage("m", body, NOW), DecodeError("bad"))
    assert letter.twin_id in (None, "x")


def test_a_rejected_frame_gives_the_same_dead_letter_whenever_it_is_validated() -> None:
    frame = pump_frame(flow_m3h=np.ones(3), boost=np.ones(3))
    first = rejected(frame)
    later = Validator().validate(frame, NOW + 3600)[1]
    assert later == [first] and first.time == utc(TIMES[0])


@pytest.mark.parametrize(
    ("times", "kept", "match"),
    [
        ([NOW, np.nan, NOW], [NOW, NOW], "is not a finite time"),
        ([NOW - 1, NOW, np.inf], [NOW - 1, NOW], "is not a finite time"),
        ([NOW, NOW + 301], [NOW], "more than 300 s ahead of the reference clock"),
        ([NOW - 8 * 86400, NOW], [NOW], "more than 604800 s behind the reference clock"),
    ],
)
def test_bad_time_rows_are_dropped_alone(times: list[float], kept: list[float], match: str) -> None:
    """Issue 11: a row with a bad time is dead-lettered alone; the frame's other rows go on
    (these frames were rejected whole before)."""
    n = len(times)
    frame = TelemetryFrame(
        "P1",
        "pump",
        np.array(times),
        {"flow_m3h": np.arange(n, dtype=float), "suction_bar": np.ones(n)},
        source="mqtt:plant/p1",
    )
    out, dead = Validator().validate(frame, NOW)
    assert isinstance(out, TelemetryFrame)
    assert out.times.tolist() == kept
    assert out.signals["flow_m3h"].size == len(kept)
    assert len(dead) == 1 and re.search(match, dead[0].reason), dead[0].reason
    assert dead[0].readings == 2 * (n - len(kept))
    assert dead[0].source == "mqtt:plant/p1" and dead[0].twin_id == "P1"
    json.loads(dead[0].payload)
    assert Validator().validate(frame, NOW)[1] == dead  # a replay yields the same letter
