"""Telemetry wire format b1: round trips, the same frames as JSON v1, and every refusal worded."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinflow.connectors.simulator.wire import encode_frame
from twinflow.core.errors import DecodeError
from twinflow.core.records import DeadLetter, RawMessage, TelemetryFrame, WaveformFrame
from twinflow.operators.decode import decode
from twinflow.operators.pipeline import check_item
from twinflow.operators.validate import Validator
from twinflow.operators.wire_binary import MAGIC, decode_binary, encode_binary

T0 = 1_767_225_600.0

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
value = st.one_of(finite, st.just(float("nan")))
names = st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=6, unique=True)


def message(payload: bytes) -> RawMessage:
    return RawMessage("kafka:t", payload, 0.0)


def pump_frame(n: int = 5) -> TelemetryFrame:
    times = T0 + np.arange(n, dtype=np.float64)
    flow = np.full(n, 250.0)
    suction = np.ones(n)
    suction[-1] = np.nan
    return TelemetryFrame("P1", "pump", times, {"flow_m3h": flow, "suction_bar": suction})


@settings(max_examples=200, deadline=None)
@given(data=st.data(), n=st.integers(1, 40), signal_names=names)
def test_any_telemetry_frame_round_trips_bit_for_bit(
    data: st.DataObject, n: int, signal_names: list[str]
) -> None:
    times = np.array(data.draw(st.lists(finite, min_size=n, max_size=n)), dtype=np.float64)
    signals = {
        s: np.array(data.draw(st.lists(value, min_size=n, max_size=n)), dtype=np.float64)
        for s in signal_names
    }
    frame = TelemetryFrame("T-1", "pump", times, signals)
    out = decode(message(encode_binary(frame)))
    assert isinstance(out, TelemetryFrame)
    assert (out.twin_id, out.twin_type, out.source) == ("T-1", "pump", "kafka:t")
    assert out.times.tobytes() == times.tobytes()
    assert list(out.signals) == signal_names
    for s in signal_names:
        assert out.signals[s].tobytes() == signals[s].tobytes()


def test_binary_and_json_give_the_same_frame() -> None:
    frame = pump_frame()
    a = decode(message(encode_binary(frame)))
    b = decode(message(encode_frame(frame)))
    assert isinstance(a, TelemetryFrame) and isinstance(b, TelemetryFrame)
    assert a.times.tolist() == b.times.tolist()
    assert {k: v.tobytes() for k, v in a.signals.items()} == {
        k: v.tobytes() for k, v in b.signals.items()
    }
    assert a.units == b.units == {}


def test_units_and_waveforms_cross() -> None:
    units = TelemetryFrame(
        "P1", "pump", np.array([T0]), {"flow_m3h": np.array([1.0])}, units={"flow_m3h": "m3/h"}
    )
    assert decode(message(encode_binary(units))).units == {"flow_m3h": "m3/h"}
    wave = WaveformFrame("M1", "motor", "vibration", T0, 2560.0, np.sin(np.arange(512.0)))
    out = decode(message(encode_binary(wave)))
    assert isinstance(out, WaveformFrame)
    assert (out.signal, out.start, out.sample_rate) == ("vibration", T0, 2560.0)
    assert out.samples.tobytes() == wave.samples.tobytes()


def test_columns_start_on_an_eight_byte_boundary() -> None:
    payload = encode_binary(pump_frame(3))
    (size,) = struct.unpack_from("<I", payload, 4)
    start = 8 + size + (-(8 + size) % 8)
    assert start % 8 == 0 and len(payload) == start + 3 * 3 * 8


def header(head: dict[str, object], body: bytes = b"", pad: bool = True) -> bytes:
    raw = orjson.dumps(head)
    fill = b"\0" * (-(8 + len(raw)) % 8) if pad else b""
    return MAGIC + struct.pack("<I", len(raw)) + raw + fill + body


GOOD = {"kind": "telemetry", "twin_id": "P1", "twin_type": "pump", "n": 2, "signals": ["a"]}
COLUMNS = np.array([T0, T0 + 1, 1.0, 2.0]).tobytes()

BAD: list[tuple[bytes, str]] = [
    (MAGIC, "must start with b'TWB1' and a length"),
    (MAGIC + struct.pack("<I", 10**6) + b"{}", "does not fit"),
    (MAGIC + struct.pack("<I", 3) + b"{{{", "header is not JSON"),
    (MAGIC + struct.pack("<I", 2) + b"[]", "header must be a JSON object"),
    (header({**GOOD, "twin_id": ""}, COLUMNS), "field 'twin_id' must be a non-empty string"),
    (header({**GOOD, "kind": "spectrum"}, COLUMNS), "field 'kind' must be 'telemetry'"),
    (header({**GOOD, "n": 0}, COLUMNS), "field 'n' must be a positive integer"),
    (header({**GOOD, "n": 2.0}, COLUMNS), "field 'n' must be a positive integer"),
    (header({**GOOD, "signals": []}, COLUMNS), "non-empty array of signal names"),
    (header({**GOOD, "signals": ["a", "a"]}, COLUMNS), "names a signal twice"),
    (header({**GOOD, "signals": ["a", 3]}, COLUMNS), "must be a non-empty string"),
    (header(GOOD, COLUMNS[:-8]), "header announces 2 column(s) of 2 float64 values"),
    (header(GOOD, COLUMNS + b"\0" * 8), "header announces 2 column(s)"),
    (header(GOOD, COLUMNS, pad=False), "header announces"),
    (header(GOOD, np.array([T0, np.inf, 1.0, 2.0]).tobytes()), "a time is NaN or infinite"),
    (header(GOOD, np.array([T0, np.nan, 1.0, 2.0]).tobytes()), "a time is NaN or infinite"),
    (header(GOOD, np.array([T0, T0 + 1, 1.0, -np.inf]).tobytes()), "holds an infinite value"),
    (header({**GOOD, "units": {"b": "m"}}, COLUMNS), "'units' names signal 'b'"),
    (header({**GOOD, "units": {"a": ""}}, COLUMNS), "unit of signal 'a'"),
    (
        header(
            {
                "kind": "waveform",
                "twin_id": "M",
                "twin_type": "motor",
                "signal": "v",
                "start": T0,
                "sample_rate": 0,
                "n": 1,
            },
            b"\0" * 8,
        ),
        "field 'sample_rate' must be positive",
    ),
    (
        header(
            {
                "kind": "waveform",
                "twin_id": "M",
                "twin_type": "motor",
                "signal": "v",
                "start": "now",
                "sample_rate": 10,
                "n": 1,
            },
            b"\0" * 8,
        ),
        "field 'start' must be a finite number",
    ),
]


@pytest.mark.parametrize(("payload", "reason"), BAD)
def test_malformed_messages_are_refused_with_the_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=None) as err:
        decode(message(payload))
    assert reason in str(err.value), str(err.value)


def test_the_size_limit_is_the_json_formats() -> None:
    big = encode_binary(pump_frame(50_000))
    with pytest.raises(DecodeError, match="exceeds the 1048576-byte limit"):
        decode(message(big))
    assert decode_binary(message(big), max_bytes=len(big)).readings == 100_000


def test_the_pipeline_validates_binary_frames_and_dead_letters_bad_ones() -> None:
    validator = Validator(twins={"P1": "pump", "M1": "motor"})
    now = T0 + 60
    wave = WaveformFrame("M1", "motor", "vibration", T0, 2560.0, np.zeros(256))
    items = [
        message(encode_binary(pump_frame())),
        message(encode_binary(wave)),
        message(header(GOOD, COLUMNS[:-8])),
        message(encode_binary(TelemetryFrame("P9", "pump", np.array([T0]), {"x": np.ones(1)}))),
    ]
    out = [x for item in items for x in check_item(item, validator, now)]
    frames = [x for x in out if not isinstance(x, DeadLetter)]
    dead = [x for x in out if isinstance(x, DeadLetter)]
    assert [type(f).__name__ for f in frames] == ["TelemetryFrame", "WaveformFrame"]
    assert [d.stage for d in dead] == ["decode", "validate"]
    assert "header announces" in dead[0].reason
    assert dead[0].source == "kafka:t"


@settings(max_examples=300, deadline=None)
@given(
    head=st.dictionaries(
        st.sampled_from(
            [
                "kind",
                "twin_id",
                "twin_type",
                "n",
                "signals",
                "units",
                "signal",
                "start",
                "sample_rate",
            ]
        ),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(-3, 5),
            st.floats(),
            st.text(max_size=4),
            st.lists(st.text(max_size=3), max_size=3),
            st.sampled_from(["telemetry", "waveform"]),
            st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
        ),
    ),
    body=st.binary(max_size=96),
    pad=st.booleans(),
)
def test_any_header_and_body_decode_or_are_refused_never_crash(
    head: dict[str, object], body: bytes, pad: bool
) -> None:
    try:
        frame = decode(message(header(head, body, pad)))
    except DecodeError:
        return
    assert frame.readings >= 1


@settings(max_examples=300, deadline=None)
@given(tail=st.binary(max_size=200))
def test_any_bytes_after_the_magic_are_refused_never_crash(tail: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(message(MAGIC + tail))
