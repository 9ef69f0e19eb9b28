"""Wire format v1 decoding: both shapes, time forms, and every rejected payload."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinflow.core.errors import DecodeError
from twinflow.core.records import RawMessage, TelemetryFrame
from twinflow.operators.decode import decode

T0 = 1_700_000_000.0


def raw(doc: object, source: str = "mqtt") -> RawMessage:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return RawMessage(source=source, payload=body, received=T0)


def batch(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "twin_id": "P1",
        "twin_type": "pump",
        "times": [T0, T0 + 1, T0 + 2],
        "signals": {"flow_m3h": [250.0, None, 251], "suction_bar": [1.0, 1.1, 1.2]},
    }
    doc.update(changes)
    return doc


def test_batch_form() -> None:
    frame = decode(raw(batch(), source="opcua"))
    assert isinstance(frame, TelemetryFrame)
    assert (frame.twin_id, frame.twin_type, frame.source) == ("P1", "pump", "opcua")
    assert frame.times.dtype == np.float64
    assert frame.times.tolist() == [T0, T0 + 1, T0 + 2]
    flow = frame.signals["flow_m3h"]
    assert flow.dtype == np.float64
    assert flow[0] == 250.0 and math.isnan(flow[1]) and flow[2] == 251.0
    assert frame.readings == 6


def test_single_reading_form() -> None:
    doc = {
        "twin_id": "M1",
        "twin_type": "motor",
        "time": T0,
        "values": {"current_a": 12, "speed_rpm": None},
    }
    frame = decode(raw(doc))
    assert frame.times.tolist() == [T0]
    assert frame.signals["current_a"].tolist() == [12.0]
    assert math.isnan(frame.signals["speed_rpm"][0])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-11-14T22:13:20Z", T0),
        ("2023-11-14T22:13:20.250+00:00", T0 + 0.25),
        ("2023-11-15T00:13:20+02:00", T0),
        ("2023-11-14T17:13:20-05:00", T0),
    ],
)
def test_iso_times_with_zone(text: str, expected: float) -> None:
    frame = decode(raw(batch(times=[text], signals={"flow_m3h": [1.0]})))
    assert frame.times.tolist() == [expected]


def test_mixed_number_and_iso_times() -> None:
    dt = datetime.fromtimestamp(T0 + 1, tz=timezone(timedelta(hours=1)))
    frame = decode(raw(batch(times=[T0, dt.isoformat(), int(T0) + 2])))
    assert frame.times.tolist() == [T0, T0 + 1, T0 + 2]


def test_unknown_keys_ignored_and_bom_accepted() -> None:
    body = b"\xef\xbb\xbf" + json.dumps(batch(firmware="1.2", seq=7)).encode()
    assert decode(raw(body)).twin_id == "P1"


def _deep(n: int) -> bytes:
    return b'{"twin_id": ' + b"[" * n + b"]" * n + b"}"


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"twin_id": "P1",', "not JSON"),
        (b"", "not JSON"),
        (b"[1, 2, 3]", "is an array, expected a JSON object"),
        (b'"hello"', "is a string"),
        (b"42", "is a number"),
        (b"null", "is null"),
        (_deep(100_000), "nested too deeply|not JSON"),
        (
            json.dumps(
                batch(times=[T0, T0, T0], signals={"flow_m3h": [1.0, float("nan"), 2.0]})
            ).encode(),
            "non-standard JSON constant NaN",
        ),
    ],
)
def test_unreadable_payloads(payload: bytes, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        decode(raw(payload))


def test_oversized_payload() -> None:
    body = json.dumps(batch()).encode()
    with pytest.raises(DecodeError, match=rf"payload of {len(body)} bytes exceeds the 100-byte"):
        decode(raw(body), max_bytes=100)
    assert decode(raw(body), max_bytes=len(body)).twin_id == "P1"


def _without(key: str) -> dict[str, object]:
    doc = batch()
    del doc[key]
    return doc


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        (_without("twin_id"), "missing field 'twin_id'"),
        (_without("twin_type"), "twin 'P1': missing field 'twin_type'"),
        (_without("signals"), "twin 'P1': missing field 'signals'"),
        (_without("times"), "twin 'P1': missing field 'times'"),
        (batch(twin_id=7), "field 'twin_id' must be a non-empty string, got a number"),
        (batch(twin_id=""), "field 'twin_id' must be a non-empty string, got an empty string"),
        (batch(twin_type=["pump"]), "field 'twin_type' must be a non-empty string, got an arr"),
        (batch(times="2023-11-14T22:13:20Z"), "field 'times' must be an array, got a string"),
        (batch(signals=[1, 2]), "field 'signals' must be an object, got an array"),
        (batch(signals={"flow_m3h": 1.0}), "signal 'flow_m3h' must be a list .* got a number"),
        (batch(signals={"flow_m3h": [1.0, 2.0]}), "'flow_m3h' has 2 values but 'times' has 3"),
        (
            batch(signals={"flow_m3h": [1.0, "2.0", 3.0]}),
            r"signal 'flow_m3h' value \[1\] is a string \('2.0'\); expected a number or null",
        ),
        (
            batch(signals={"flow_m3h": [1.0, 2.0, True]}),
            r"signal 'flow_m3h' value \[2\] is a bool \(true\)",
        ),
        (batch(signals={"flow_m3h": [1.0, [2.0], 3.0]}), r"value \[1\] is an array"),
        (batch(signals={"flow_m3h": [1.0, 2.0, 10**400]}), "integer too large"),
        (batch(times=[T0, None, T0 + 2]), r"'times'\[1\] is null; expected epoch seconds"),
        (batch(times=[T0, False, T0 + 2]), r"'times'\[1\] is a bool \(false\)"),
        (
            batch(times=[T0, "2023-11-14T22:13:21", T0 + 2]),
            "time '2023-11-14T22:13:21' has no zone; add 'Z' or an offset",
        ),
        (batch(times=[T0, "2023-11-14", T0 + 2]), "time '2023-11-14' has no zone"),
        (batch(times=[T0, "yesterday", T0 + 2]), "time 'yesterday' is not ISO-8601"),
        (batch(times=[], signals={}), "empty frame: 'times' has no timestamps"),
        (batch(signals={}), "empty frame: 'signals' has no signals"),
        ({"twin_id": "P1", "twin_type": "pump"}, "neither 'times' and 'signals' nor 'time'"),
        ({"twin_id": "P1", "twin_type": "pump", "values": {"x": 1}}, "missing field 'time'"),
        ({"twin_id": "P1", "twin_type": "pump", "time": T0}, "missing field 'values'"),
        (
            {"twin_id": "P1", "twin_type": "pump", "time": T0, "values": {}},
            "empty frame: 'values' has no signals",
        ),
        (
            {"twin_id": "P1", "twin_type": "pump", "time": T0, "values": {"x": "1"}},
            r"signal 'x' value \[0\] is a string",
        ),
        (
            {"twin_id": "P1", "twin_type": "pump", "time": True, "values": {"x": 1}},
            r"'time' is a bool",
        ),
        (
            {
                "twin_id": "P1",
                "twin_type": "pump",
                "time": "2023-11-14T22:13:20",
                "values": {"x": 1},
            },
            "has no zone",
        ),
    ],
)
def test_bad_fields(doc: dict[str, object], match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        decode(raw(doc))


finite = st.floats(-1e6, 1e6, allow_nan=False)


@given(
    st.integers(1, 40).flatmap(
        lambda n: st.tuples(
            st.lists(st.floats(0, 4e9, allow_nan=False), min_size=n, max_size=n),
            st.dictionaries(
                st.text(min_size=1, max_size=12),
                st.lists(
                    st.one_of(st.none(), finite, st.integers(-(10**6), 10**6)),
                    min_size=n,
                    max_size=n,
                ),
                min_size=1,
                max_size=6,
            ),
        )
    ),
    st.booleans(),
)
def test_round_trip(frame: tuple[list[float], dict[str, list[float | None]]], iso: bool) -> None:
    times, signals = frame
    wire_times: list[object] = list(times)
    if iso:
        wire_times = [datetime.fromtimestamp(t, tz=UTC).isoformat() for t in times]
    doc = {"twin_id": "T", "twin_type": "pump", "times": wire_times, "signals": signals}
    out = decode(raw(doc))
    expected_times = [datetime.fromisoformat(t).timestamp() for t in wire_times] if iso else times
    assert out.times.tolist() == expected_times
    assert set(out.signals) == set(signals)
    for name, values in signals.items():
        expected = np.array([math.nan if v is None else float(v) for v in values])
        np.testing.assert_array_equal(out.signals[name], expected)


# -- the fast parser agrees with the standard one ---------------------------------------

_JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
_JSON = st.recursive(
    _JSON_LEAVES,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4)
    ),
    max_leaves=20,
)
_ODD = [
    b"\xef\xbb\xbf{}",  # a byte-order mark
    b'{"a": 1e400}',
    b'{"a": NaN}',
    b'{"a": "\\ud800"}',
    b'{"a": 1}\x00',
    b'{"a": 1, "a": 2}',
    b'{"a": 123456789012345678901234567890}',
    b"\xff{}",
    b"[1, 2]",
]


def _same_number(value: object) -> object:
    """orjson reads an integer beyond 64 bits as the nearest double, which is what every
    reading becomes anyway; the standard parser keeps it exact."""
    if isinstance(value, dict):
        return {k: _same_number(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_same_number(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return float(value)
    return value


def _outcome(load: object, payload: bytes) -> object:
    try:
        return ("ok", repr(_same_number(load(payload))))  # type: ignore[operator]
    except DecodeError as exc:
        return ("error", str(exc))


@given(_JSON)
def test_the_fast_parser_accepts_and_refuses_exactly_what_the_standard_one_does(
    doc: object,
) -> None:
    from twinflow.operators.decode import MAX_BYTES, _load, _load_standard

    for payload in (json.dumps(doc).encode(), json.dumps({"x": doc}).encode(), *_ODD):
        fast = _outcome(lambda p: _load(p, MAX_BYTES), payload)
        assert fast == _outcome(_load_standard, payload), payload
