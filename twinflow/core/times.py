"""Time helpers every layer shares: epoch seconds and aware UTC datetimes, ISO text, durations.

Convention: scalar timestamps are timezone-aware UTC ``datetime``; time arrays inside frames
are ``float64`` seconds since the Unix epoch (UTC).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from twinflow.core.errors import ConfigError

#: The earliest and latest instants a ``datetime`` holds (year 1 and year 9999, UTC).
FIRST = datetime.min.replace(tzinfo=UTC)
LAST = datetime.max.replace(tzinfo=UTC)
#: Their epoch seconds: the absolute horizon of any time twinflow turns into a datetime.
MIN_EPOCH = FIRST.timestamp()
MAX_EPOCH = LAST.timestamp()


def utc(ts: float) -> datetime:
    """Epoch seconds to an aware UTC datetime; never raises.

    A time outside what a ``datetime`` holds (before year 1, after year 9999, infinite) is
    clamped to the nearest end, and a NaN maps to the epoch, so a dead letter about a
    poison timestamp can still be dated (deterministically, for replays).

    >>> utc(0).isoformat(), utc(1e300).year, utc(-1e300).year, utc(float("nan")).year
    ('1970-01-01T00:00:00+00:00', 9999, 1, 1970)
    """
    try:
        return datetime.fromtimestamp(ts, tz=UTC)
    except (OverflowError, OSError, ValueError, TypeError):
        return _clamped(ts)


def _clamped(ts: object) -> datetime:
    """The nearest end of the ``datetime`` range for a time beyond it; the epoch for NaN
    or a value that is not a number."""
    if isinstance(ts, int):  # too large for a float: only the sign matters
        return LAST if ts > 0 else FIRST
    try:
        t = float(ts)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        t = math.nan
    if math.isnan(t):
        return datetime.fromtimestamp(0.0, tz=UTC)
    if t >= MAX_EPOCH:
        return LAST
    if t <= MIN_EPOCH:
        return FIRST
    return datetime.fromtimestamp(t, tz=UTC)


def epoch(dt: datetime) -> float:
    """Aware datetime to epoch seconds; a naive datetime is refused (it has no zone)."""
    if dt.tzinfo is None:
        raise ValueError(f"timestamp {dt!r} has no timezone; twinflow needs aware UTC times")
    return dt.timestamp()


def iso(dt: datetime | None) -> str | None:
    """ISO-8601 in UTC with a trailing ``Z``, or ``None``; never raises.

    A time whose UTC instant lies outside years 1 to 9999 (``9999-12-31T23:59:59-23:59``)
    is written as the nearest end.

    >>> from datetime import timedelta, timezone
    >>> iso(datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(-timedelta(minutes=1439))))
    '9999-12-31T23:59:59.999999Z'
    """
    if dt is None:
        return None
    try:
        utc_dt = dt.astimezone(UTC)
    except (OverflowError, ValueError):
        utc_dt = LAST if dt.year > 5000 else FIRST
    return utc_dt.isoformat().replace("+00:00", "Z")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str | float | int, what: str = "duration") -> float:
    """Seconds from ``"6h"``, ``"30m"``, ``"90s"``, ``"1.5d"`` or a plain number of seconds.

    >>> parse_duration("6h"), parse_duration("30m"), parse_duration(45)
    (21600.0, 1800.0, 45.0)
    """
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        m = _DURATION.match(text)
        if not m:
            raise ConfigError(
                f"{what}: {text!r} is not a duration; use a number with a unit such as "
                "'90s', '30m', '6h' or '2d'"
            )
        seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    if seconds <= 0:
        raise ConfigError(f"{what}: must be positive, got {text!r}")
    return seconds


__all__ = ["FIRST", "LAST", "MAX_EPOCH", "MIN_EPOCH", "epoch", "iso", "parse_duration", "utc"]
