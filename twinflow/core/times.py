"""Time helpers every layer shares: epoch seconds and aware UTC datetimes, ISO text, durations.

Convention: scalar timestamps are timezone-aware UTC ``datetime``; time arrays inside frames
are ``float64`` seconds since the Unix epoch (UTC).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from twinflow.core.errors import ConfigError


def utc(ts: float) -> datetime:
    """Epoch seconds to an aware UTC datetime.

    >>> utc(0).isoformat()
    '1970-01-01T00:00:00+00:00'
    """
    return datetime.fromtimestamp(ts, tz=UTC)


def epoch(dt: datetime) -> float:
    """Aware datetime to epoch seconds; a naive datetime is refused (it has no zone)."""
    if dt.tzinfo is None:
        raise ValueError(f"timestamp {dt!r} has no timezone; twinflow needs aware UTC times")
    return dt.timestamp()


def iso(dt: datetime | None) -> str | None:
    """ISO-8601 in UTC with a trailing ``Z``, or ``None``."""
    if dt is None:
        return None
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


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


__all__ = ["epoch", "iso", "parse_duration", "utc"]
