"""Bounded JSON for command requests: size, nesting, number and time limits before any use.

A request comes from outside the flow, so nothing in it may raise out of a step: the text is
at most :data:`MAX_BYTES`, nested at most :data:`MAX_DEPTH` deep (checked by a scan before
:func:`json.loads`, whose recursion a deep document would exhaust), integers have at most
:data:`MAX_DIGITS` digits (a 5,000-digit one trips Python's int limit, a 400-digit one
overflows ``float``), floats are finite and times lie within :data:`EARLIEST` and
:data:`LATEST` (UTC) so arithmetic on them cannot leave ``datetime``'s range. Every breach is
a :class:`~twinflow.core.errors.DecodeError` or :class:`~twinflow.core.errors.ValidationError`
with the reason.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from twinflow.core.errors import DecodeError, ValidationError

#: Largest request accepted (bytes); a command request is a few hundred.
MAX_BYTES = 65_536
#: Deepest nesting of arrays and objects; a request needs 2 (``params``, ``desired``).
MAX_DEPTH = 16
#: Most digits of a JSON integer (a double holds 15-17 significant digits).
MAX_DIGITS = 30
#: The range a request's times (``expires_at``, the Kafka timestamp) must lie in.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
#: Longest text shown from a request in a reason.
SHOWN = 80


def show(value: Any) -> str:
    """``repr(value)`` cut to :data:`SHOWN` characters (a reason quotes, never copies).

    >>> show("x" * 100)[-14:]
    'xxxxx... (102)'
    """
    text = repr(value) if not isinstance(value, dict | list) else _short_repr(value)
    return text if len(text) <= SHOWN else f"{text[:SHOWN]}... ({len(text)})"


def _short_repr(value: dict[str, Any] | list[Any]) -> str:
    try:
        return json.dumps(value)[: SHOWN + 1]
    except (ValueError, RecursionError):
        return type(value).__name__


def nesting(text: str) -> int:
    """The deepest nesting of ``[`` and ``{`` outside strings.

    >>> nesting('{"a": [1, {"b": "[[["}]}')
    3
    """
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_DIGITS:
        raise DecodeError(
            f"command request has an integer of {digits} digits (at most {MAX_DIGITS})"
        )
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise DecodeError(f"command request has a number out of range: {text[:SHOWN]}")
    return value


def _constant(text: str) -> float:
    raise DecodeError(f"command request has {text}, which is not a JSON number")


def load_request(payload: bytes) -> dict[str, Any]:
    """The request's JSON object, within the bounds above.

    >>> load_request(b'{"a": 1}')
    {'a': 1}
    >>> load_request(b"[" * 10_000)
    Traceback (most recent call last):
    ...
    twinflow.core.errors.DecodeError: command request is nested 10000 deep (at most 16)
    """
    if len(payload) > MAX_BYTES:
        raise DecodeError(f"command request of {len(payload)} bytes exceeds {MAX_BYTES} bytes")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DecodeError(f"command request is not UTF-8: byte {e.start} ({e.reason})") from None
    depth = nesting(text)
    if depth > MAX_DEPTH:
        raise DecodeError(f"command request is nested {depth} deep (at most {MAX_DEPTH})")
    try:
        doc = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except json.JSONDecodeError as e:
        raise DecodeError(f"command request is not JSON: {e.msg} at column {e.colno}") from None
    except (RecursionError, ValueError, OverflowError) as e:  # a last guard
        raise DecodeError(f"command request is not usable JSON: {type(e).__name__}") from None
    if not isinstance(doc, dict):
        raise DecodeError(f"command request must be a JSON object, got {type(doc).__name__}")
    return doc


def bounded_time(raw: Any, what: str) -> datetime:
    """An ISO-8601 time with a zone, as UTC within [:data:`EARLIEST`, :data:`LATEST`).

    >>> bounded_time("2026-01-01T01:00:00+01:00", "expires_at").isoformat()
    '2026-01-01T00:00:00+00:00'
    >>> bounded_time("9999-12-31T23:59:59-23:59", "expires_at")
    Traceback (most recent call last):
    ...
    twinflow.core.errors.ValidationError: expires_at '9999-12-31T23:59:59-23:59' lies outside ...
    """
    if not isinstance(raw, str):
        raise ValidationError(f"field {what!r} must be an ISO-8601 string, got {show(raw)}")
    if len(raw) > 64:
        raise ValidationError(f"{what} {show(raw)} is not ISO-8601")
    try:
        dt = datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationError(f"{what} {show(raw)} is not ISO-8601") from None
    if dt.tzinfo is None:
        raise ValidationError(f"{what} {raw!r} has no zone; add 'Z' or an offset such as '+00:00'")
    try:
        at = dt.astimezone(UTC)
    except (OverflowError, ValueError):
        at = None
    if at is None or not EARLIEST <= at < LATEST:
        raise ValidationError(
            f"{what} {raw!r} lies outside {EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d} (UTC)"
        )
    return at


def bounded_epoch_ms(ms: int) -> datetime | None:
    """A Kafka timestamp (ms) as UTC, or ``None`` when outside the range above.

    >>> bounded_epoch_ms(0).isoformat(), bounded_epoch_ms(10**15)
    ('1970-01-01T00:00:00+00:00', None)
    """
    if not EARLIEST.timestamp() * 1000 <= ms < LATEST.timestamp() * 1000:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


__all__ = [
    "EARLIEST",
    "LATEST",
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_DIGITS",
    "bounded_epoch_ms",
    "bounded_time",
    "load_request",
    "nesting",
    "show",
]
