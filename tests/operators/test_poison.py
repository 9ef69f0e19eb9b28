"""Issue 11: any byte sequence on a telemetry path becomes a frame or a dead letter.

Every decode and validate entry point of the telemetry paths (the wire-format decoder, the
MQTT payload and batch decoders, the validator, ``check_item`` and the Kafka telemetry
mapping) is fed the poison messages the issue measured, as explicit examples, and then
whatever hypothesis makes of bytes, JSON documents and frames. None may raise.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from twinflow.connectors.bindings import MqttBinding
from twinflow.connectors.kafka.telemetry import raw_messages
from twinflow.connectors.mqtt.frames import MessageDecoder
from twinflow.connectors.mqtt.payloads import PayloadDecoder, PayloadError
from twinflow.core.errors import DecodeError
from twinflow.core.records import DeadLetter, RawMessage, TelemetryFrame, WaveformFrame
from twinflow.core.times import iso, utc
from twinflow.operators.decode import decode
from twinflow.operators.pipeline import check_item
from twinflow.operators.validate import Validator

NOW = datetime(2026, 1, 1).timestamp()
AFTER_9999_MS = 400_000_000_000_000  # a Kafka timestamp in the year 14645

#: The issue's poison telemetry (and a few of the same families).
HUGE_INT = b"1" * 5000
POISON: dict[str, bytes] = {
    "int_5000_digits_value": b'{"twin_id": "P1", "twin_type": "pump", "time": 1, "values": '
    b'{"flow_m3h": ' + HUGE_INT + b"}}",
    "int_5000_digits_time": b'{"twin_id": "P1", "twin_type": "pump", "time": '
    + HUGE_INT
    + b', "values": {"flow_m3h": 1}}',
    "int_400_digits_in_iso_times": b'{"twin_id": "P1", "twin_type": "pump", "times": '
    b'["2026-01-01T00:00:00Z", ' + b"9" * 400 + b'], "signals": {"flow_m3h": [1, 2]}}',
    "int_400_digits_value": b'{"twin_id": "P1", "twin_type": "pump", "time": 1, "values": '
    b'{"flow_m3h": ' + b"9" * 400 + b"}}",
    "nested_10000": b'{"twin_id": "P1", "x": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
    "time_after_9999": b'{"twin_id": "P1", "twin_type": "pump", '
    b'"time": "9999-12-31T23:59:59-23:59", "values": {"flow_m3h": 1}}',
    "time_before_year_1": b'{"twin_id": "P1", "twin_type": "pump", '
    b'"time": "0001-01-01T00:00:00+23:59", "values": {"flow_m3h": 1}}',
    "epoch_1e300": b'{"twin_id": "P1", "twin_type": "pump", "time": 1e300, '
    b'"values": {"flow_m3h": 1}}',
    "float_overflow": b'{"twin_id": "P1", "twin_type": "pump", "time": 1e999, '
    b'"values": {"flow_m3h": -1e999}}',
    "undecodable": b"\xff\xfe\x00 not telemetry",
}

MQTT_POISON: dict[str, bytes] = {
    "int_5000_digits": b'{"ts": 1767225600, "flow_m3h": ' + HUGE_INT + b"}",
    "int_400_digits": b'{"ts": 1767225600, "flow_m3h": ' + b"9" * 400 + b"}",
    "time_400_digits": b'{"ts": ' + b"9" * 400 + b', "flow_m3h": 1}',
    "batch_time_400_digits": b'{"ts": [1767225600, ' + b"9" * 400 + b'], "flow_m3h": [1, 2]}',
    "batch_value_400_digits": b'{"ts": [1767225600, 1], "flow_m3h": [1, ' + b"9" * 400 + b"]}",
    "time_after_9999": b'{"ts": "9999-12-31T23:59:59-23:59", "flow_m3h": 1}',
    "time_before_year_1": b'{"ts": "0001-01-01T00:00:00+23:59", "flow_m3h": 1}',
    "nested_10000": b'{"ts": 1, "flow_m3h": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
}

VALIDATOR = Validator(twins={"P1": "pump"})
BINDING = MqttBinding("P1", "pump", "plant/p1/telemetry", "c", "r")


def _total(out: list[Any]) -> None:
    """Frames or dead letters only, each dead letter with a reason and serialisable."""
    for item in out:
        assert isinstance(item, TelemetryFrame | WaveformFrame | DeadLetter), item
        if isinstance(item, DeadLetter):
            assert item.reason
            json.dumps(item.to_json())


# -- the cases, one by one ------------------------------------------------------


@pytest.mark.parametrize("name", sorted(POISON))
def test_poison_payload_becomes_a_dead_letter(name: str) -> None:
    for received in (NOW, AFTER_9999_MS / 1000, -1e15, float("nan"), float("inf")):
        out = check_item(RawMessage("kafka:t", POISON[name], received), VALIDATOR, NOW)
        _total(out)
        assert [type(x) for x in out] == [DeadLetter], (name, out)


@pytest.mark.parametrize("name", sorted(POISON))
def test_decode_raises_only_decode_errors(name: str) -> None:
    with contextlib.suppress(DecodeError):
        decode(RawMessage("kafka:t", POISON[name], NOW))


@pytest.mark.parametrize("name", sorted(MQTT_POISON))
def test_mqtt_poison_becomes_a_dead_letter_alone(name: str) -> None:
    good = b'{"ts": %d, "flow_m3h": 5}' % int(NOW)
    msgs = [("plant/p1/telemetry", good), ("plant/p1/telemetry", MQTT_POISON[name])]
    out = MessageDecoder([BINDING]).decode(msgs, now=NOW)
    _total(out)
    frames = [x for x in out if isinstance(x, TelemetryFrame)]
    checked = [y for f in frames for y in check_item(f, VALIDATOR, NOW)]
    _total(checked)
    kept = [y for y in checked if isinstance(y, TelemetryFrame)]
    assert len(kept) == 1 and kept[0].times.tolist() == [NOW], (name, out, checked)
    assert kept[0].signals["flow_m3h"].tolist() == [5.0]


class _KafkaMessage:
    """The few methods of a confluent-kafka ``Message`` that the telemetry mapping calls."""

    def __init__(self, value: bytes | None, timestamp_ms: int) -> None:
        self._value, self._ts = value, timestamp_ms

    def value(self) -> bytes | None:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return (1, self._ts)  # TIMESTAMP_CREATE_TIME

    def topic(self) -> str:
        return "plant.telemetry"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 7

    def key(self) -> bytes | None:
        return None


@pytest.mark.parametrize("value", [b"\xff not json", None, POISON["int_5000_digits_value"]])
def test_kafka_message_time_after_9999(value: bytes | None) -> None:
    """An undecodable payload (or a tombstone) whose Kafka timestamp lies after year 9999."""
    items = raw_messages([_KafkaMessage(value, AFTER_9999_MS)], received=NOW)  # type: ignore[list-item]
    out = [y for x in items for y in check_item(x, VALIDATOR, NOW)]
    _total(out)
    assert [type(x) for x in out] == [DeadLetter]
    assert out[0].time.year == 9999  # clamped to the horizon, the same on every replay


def test_times_helpers_never_raise() -> None:
    for t in (1e300, -1e300, float("inf"), float("-inf"), float("nan"), 10**400, -(10**400)):
        dt = utc(t)  # type: ignore[arg-type]
        assert iso(dt)
    assert iso(datetime.fromisoformat("9999-12-31T23:59:59-23:59")) == "9999-12-31T23:59:59.999999Z"
    assert iso(datetime.fromisoformat("0001-01-01T00:00:00+23:59")) == "0001-01-01T00:00:00Z"


# -- fuzz --------------------------------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**500), max_value=10**500),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.sampled_from(
        ["2026-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00+23:59"]
    ),
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)
_keys = st.sampled_from(["twin_id", "twin_type", "time", "times", "values", "signals", "units"])
_docs = st.dictionaries(_keys, _json, max_size=7).map(
    lambda d: {"twin_id": "P1", "twin_type": "pump", **d}
)
_ints = st.integers(min_value=-(10**5000), max_value=10**5000)


def _dumps(doc: Any) -> bytes:
    try:
        return json.dumps(doc).encode()
    except ValueError:  # an integer of more digits than str() allows
        return b"{}"


_payloads = st.one_of(
    st.binary(max_size=300),
    _docs.map(_dumps),
    st.sampled_from(sorted(POISON.values())),
)
_received = st.one_of(st.floats(), st.sampled_from([NOW, AFTER_9999_MS / 1000]))


@given(payload=_payloads, received=_received)
@example(payload=POISON["int_5000_digits_value"], received=NOW)
@example(payload=POISON["undecodable"], received=AFTER_9999_MS / 1000)
@example(payload=POISON["nested_10000"], received=NOW)
@example(payload=POISON["time_after_9999"], received=NOW)
@example(payload=POISON["time_before_year_1"], received=NOW)
@example(payload=POISON["int_400_digits_in_iso_times"], received=float("nan"))
def test_fuzz_wire_format(payload: bytes, received: float) -> None:
    with contextlib.suppress(DecodeError):
        decode(RawMessage("kafka:t", payload, received))
    _total(check_item(RawMessage("kafka:t", payload, received), VALIDATOR, NOW))


_mqtt_docs = st.dictionaries(
    st.sampled_from(["ts", "flow_m3h", "suction_bar", "head"]), _json, max_size=4
)


@given(payloads=st.lists(st.one_of(st.binary(max_size=200), _mqtt_docs.map(_dumps)), max_size=4))
@example(payloads=sorted(MQTT_POISON.values()))
def test_fuzz_mqtt(payloads: list[bytes]) -> None:
    for p in payloads:
        with contextlib.suppress(PayloadError):
            PayloadDecoder(BINDING).decode(p)
    out = MessageDecoder([BINDING]).decode([("plant/p1/telemetry", p) for p in payloads], NOW)
    _total(out)
    for item in out:
        _total(check_item(item, VALIDATOR, NOW))


_float_arrays = st.lists(st.floats() | _ints, min_size=0, max_size=6)


@given(
    times=_float_arrays,
    values=_float_arrays,
    twin=st.sampled_from(["P1", "", "X"]),
    kind=st.sampled_from(["pump", "motor", "nope"]),
    units=st.none() | st.dictionaries(st.text(max_size=8), st.text(max_size=8) | st.integers()),
)
@example(
    times=[NOW, float("nan"), 1e300], values=[1.0, 2.0, 3.0], twin="P1", kind="pump", units=None
)
@example(times=[10**400], values=[1.0], twin="P1", kind="pump", units=None)
def test_fuzz_frames(
    times: list[Any], values: list[Any], twin: str, kind: str, units: dict[str, Any] | None
) -> None:
    def arr(xs: list[Any]) -> Any:
        try:
            return np.array(xs, dtype=np.float64)
        except OverflowError:
            return xs  # a list with a huge integer, as a buggy connector might send

    extra = {"units": units} if units is not None else {}
    frame = TelemetryFrame(twin, kind, arr(times), {"flow_m3h": arr(values)}, **extra)  # type: ignore[arg-type]
    _total(check_item(frame, VALIDATOR, NOW))
    wave = WaveformFrame(
        twin, "motor", "vibration", times[0] if times else NOW, 8192.0, arr(values)
    )
    _total(check_item(wave, VALIDATOR, NOW))
