"""Telemetry wire format b1: a binary frame with a JSON header and float64 columns.

The JSON wire format v1 (:mod:`twinflow.operators.decode`) spends most of its decoding time
turning text into floats. Format b1 carries the same frame with the numbers as raw
little-endian float64 columns, so decoding is one small JSON parse and a copy per column,
and it can carry a waveform chunk, which v1 cannot. A message is::

    b"TWB1"                      4 bytes, the magic (no JSON text can start with it)
    header length H              unsigned 32-bit little-endian
    header                       H bytes of UTF-8 JSON (an object, below)
    padding                      zero bytes up to a multiple of 8 from the message's start
    columns                      float64 little-endian, each of ``n`` values, back to back

A telemetry header is ``{"kind": "telemetry", "twin_id", "twin_type", "n", "signals":
[names], "units": {name: unit}}`` (``units`` optional, as in v1) and its columns are the
times (epoch seconds, UTC) then each signal in the header's order. A waveform header is
``{"kind": "waveform", "twin_id", "twin_type", "signal", "start", "sample_rate", "n"}`` and
its one column is the samples. NaN is a dropout; an infinite value or time is refused. The
message must end exactly after the last column. Anything else raises
:class:`~twinflow.core.errors.DecodeError` with the reason, and becomes a dead letter.

>>> import numpy as np
>>> f = TelemetryFrame("m-1", "motor", np.array([1.0, 2.0]), {"load_pct": np.array([80.0, np.nan])})
>>> g = decode_binary(RawMessage("kafka", encode_binary(f), 0.0))
>>> g.twin_id, g.times.tolist(), g.signals["load_pct"].tolist(), g.source
('m-1', [1.0, 2.0], [80.0, nan], 'kafka')
"""

from __future__ import annotations

import struct
from typing import Any, NoReturn

import numpy as np
import orjson

from twinflow.core.errors import DecodeError
from twinflow.core.records import RawMessage, TelemetryFrame, WaveformFrame

#: The first four bytes of every b1 message.
MAGIC = b"TWB1"
#: Largest header accepted, in bytes (names and units of a few hundred signals).
MAX_HEADER_BYTES = 65_536
#: Most signals one telemetry message may carry.
MAX_SIGNALS = 1_000

_LEN = struct.Struct("<I")
_F64 = np.dtype("<f8")


def is_binary(payload: bytes) -> bool:
    """Whether a payload claims to be format b1 (starts with the magic)."""
    return payload[:4] == MAGIC


def encode_binary(frame: TelemetryFrame | WaveformFrame) -> bytes:
    """A telemetry or waveform frame as one b1 message."""
    head: dict[str, Any]
    if isinstance(frame, WaveformFrame):
        head = {
            "kind": "waveform",
            "twin_id": frame.twin_id,
            "twin_type": frame.twin_type,
            "signal": frame.signal,
            "start": frame.start,
            "sample_rate": frame.sample_rate,
            "n": len(frame.samples),
        }
        columns = [frame.samples]
    else:
        head = {
            "kind": "telemetry",
            "twin_id": frame.twin_id,
            "twin_type": frame.twin_type,
            "n": len(frame.times),
            "signals": list(frame.signals),
        }
        if frame.units:
            head["units"] = dict(frame.units)
        columns = [frame.times, *frame.signals.values()]
    header = orjson.dumps(head)
    start = 8 + len(header)
    pad = b"\0" * (-start % 8)
    body = b"".join(np.ascontiguousarray(c, dtype=_F64).tobytes() for c in columns)
    return b"".join((MAGIC, _LEN.pack(len(header)), header, pad, body))


def decode_binary(msg: RawMessage, max_bytes: int = 1_048_576) -> TelemetryFrame | WaveformFrame:
    """Decode one b1 message into a frame whose ``source`` is the message's source."""
    payload = msg.payload if type(msg.payload) is bytes else bytes(msg.payload)
    if len(payload) > max_bytes:
        raise DecodeError(
            f"payload of {len(payload)} bytes exceeds the {max_bytes}-byte limit; "
            "send smaller frames or raise max_bytes"
        )
    head, offset = _header(payload)
    twin_id = _text(head, "twin_id", None)
    twin_type = _text(head, "twin_type", twin_id)
    kind = head.get("kind")
    n = _count(head, twin_id)
    if kind == "telemetry":
        names = _names(head, twin_id)
        cols = _columns(payload, offset, n, 1 + len(names), twin_id)
        times = cols[0]
        if not np.isfinite(times).all():
            _fail(twin_id, "a time is NaN or infinite; times must be finite epoch seconds")
        values = cols[1:]
        if np.isinf(values).any():
            name = names[int(np.isinf(values).any(axis=1).argmax())]
            _fail(twin_id, f"signal {name!r} holds an infinite value; send NaN for none")
        signals = dict(zip(names, values, strict=True))
        units = _units(head, signals, twin_id) if "units" in head else None
        if units:
            return TelemetryFrame(
                twin_id, twin_type, times, signals, source=msg.source, units=units
            )
        return TelemetryFrame(twin_id, twin_type, times, signals, source=msg.source)
    if kind == "waveform":
        signal = _text(head, "signal", twin_id)
        start = _number(head, "start", twin_id)
        rate = _number(head, "sample_rate", twin_id)
        if rate <= 0:
            _fail(twin_id, f"field 'sample_rate' must be positive, got {rate}")
        samples = _columns(payload, offset, n, 1, twin_id)[0]
        if np.isinf(samples).any():
            _fail(twin_id, f"waveform {signal!r} holds an infinite sample; send NaN for none")
        return WaveformFrame(twin_id, twin_type, signal, start, rate, samples, source=msg.source)
    _fail(twin_id, f"field 'kind' must be 'telemetry' or 'waveform', got {kind!r}")


def _header(payload: bytes) -> tuple[dict[str, Any], int]:
    """The header object and the offset of the first column."""
    if len(payload) < 8 or not is_binary(payload):
        raise DecodeError("payload is not a b1 message: it must start with b'TWB1' and a length")
    (size,) = _LEN.unpack_from(payload, 4)
    if size > MAX_HEADER_BYTES or 8 + size > len(payload):
        raise DecodeError(
            f"b1 header of {size} bytes does not fit: the message has {len(payload)} bytes "
            f"and a header may have at most {MAX_HEADER_BYTES}"
        )
    try:
        head = orjson.loads(payload[8 : 8 + size])
    except orjson.JSONDecodeError as e:
        raise DecodeError(f"b1 header is not JSON: {str(e)[:120]}") from None
    if not isinstance(head, dict):
        raise DecodeError("b1 header must be a JSON object")
    end = 8 + size
    return head, end + (-end % 8)


def _count(head: dict[str, Any], twin_id: str) -> int:
    n = head.get("n")
    if type(n) is not int or n < 1:
        _fail(twin_id, f"field 'n' must be a positive integer, got {n!r}")
    return n


def _names(head: dict[str, Any], twin_id: str) -> list[str]:
    names = head.get("signals")
    if not isinstance(names, list) or not names:
        _fail(twin_id, "field 'signals' must be a non-empty array of signal names")
    if len(names) > MAX_SIGNALS:
        _fail(twin_id, f"{len(names)} signals in one message; at most {MAX_SIGNALS}")
    if set(map(type, names)) != {str} or "" in names:
        _fail(twin_id, "every name in 'signals' must be a non-empty string")
    if len(set(names)) != len(names):
        _fail(twin_id, "'signals' names a signal twice")
    return names


def _columns(payload: bytes, offset: int, n: int, count: int, twin_id: str) -> np.ndarray:
    """``count`` float64 columns of ``n`` values from ``offset`` (one writable row each); the
    message must end there."""
    want = offset + 8 * n * count
    if len(payload) != want:
        _fail(
            twin_id,
            f"message has {len(payload)} bytes; its header announces {count} column(s) of "
            f"{n} float64 values, {want} bytes in all",
        )
    flat = np.frombuffer(payload, dtype=_F64, count=n * count, offset=offset)
    return flat.reshape(count, n).astype(np.float64)


def _units(head: dict[str, Any], signals: dict[str, np.ndarray], twin_id: str) -> dict[str, str]:
    raw = head.get("units")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        _fail(twin_id, "field 'units' must be an object of signal: unit")
    for name, unit in raw.items():
        if name not in signals:
            _fail(twin_id, f"'units' names signal {name!r}, which the message does not carry")
        if not isinstance(unit, str) or not unit:
            _fail(twin_id, f"unit of signal {name!r} must be a non-empty string")
    return raw


def _number(head: dict[str, Any], name: str, twin_id: str) -> float:
    value = head.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool):
        _fail(twin_id, f"field {name!r} must be a finite number, got {value!r}")
    number = float(value)
    if not np.isfinite(number):
        _fail(twin_id, f"field {name!r} must be a finite number, got {value!r}")
    return number


def _text(head: dict[str, Any], name: str, twin_id: str | None) -> str:
    value = head.get(name)
    if not isinstance(value, str) or not value:
        _fail(twin_id, f"field {name!r} must be a non-empty string, got {value!r}")
    return value


def _fail(twin_id: str | None, reason: str) -> NoReturn:
    prefix = f"twin {twin_id!r}: " if twin_id else ""
    raise DecodeError(prefix + reason)


__all__ = ["MAGIC", "decode_binary", "encode_binary", "is_binary"]
