"""A recording's time column as float64 epoch seconds (UTC), NaN where a value cannot be read.

ISO-8601 text may carry a UTC offset (``Z``, ``+02:00``) or not; values without one are read
in the declared zone (a local time that does not exist or is ambiguous at a DST change is
NaN). A column that mixes the two kinds, or naive values without a declared zone, is an
error naming file, row and column. Numbers are epoch seconds or milliseconds (``unit``);
Parquet date-time columns are used as they are (naive ones in the declared zone).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from twinflow.core.errors import ConfigError

_OFFSET = r"[+-]\d{2}:?\d{2}$"
_DATE = r"^\d{4}-\d{2}-\d{2}"
_AWARE_FORMATS = ("%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%d %H:%M%z")
_NAIVE_FORMATS = ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%d")


class ReplayError(ConfigError):
    """A recording cannot be replayed as configured (names file, row and column)."""


@dataclass
class ZoneKind:
    """Whether a file's time values so far carried a UTC offset, and the first row seen."""

    aware: bool | None = None
    row: int = 0
    text: str = ""


def parse_times(
    column: pl.Series,
    unit: str,
    zone: str | None,
    kind: ZoneKind,
    file: str,
    first_row: int,
) -> np.ndarray:
    """Epoch seconds of ``column`` (rows numbered from ``first_row``); NaN when unreadable."""
    name = column.name
    dtype = column.dtype
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            _need_zone(zone, file, first_row, name)
            column = column.dt.replace_time_zone(zone, ambiguous="null", non_existent="null")
        return _epoch(column.dt.convert_time_zone("UTC"))
    if dtype.is_numeric():
        if unit == "iso":
            raise ReplayError(
                f"{file}: column {name!r} holds numbers; say whether they are epoch seconds "
                "or milliseconds (replay.time.unit: s or ms, --time-unit)"
            )
        return _numbers(column.cast(pl.Float64, strict=False), unit)
    text = column.cast(pl.String, strict=False).str.strip_chars()
    if unit != "iso":
        return _numbers(text.cast(pl.Float64, strict=False), unit)
    text = text.str.replace("T", " ", literal=True).str.replace(r"Z$", "+00:00")
    aware = text.str.contains(_OFFSET).fill_null(False).to_numpy()
    present = text.str.contains(_DATE).fill_null(False).to_numpy()
    _check_kinds(aware, present, text, kind, file, first_row, name)
    out = np.full(len(text), np.nan)
    if aware.any():
        out = np.where(aware, _first_of(text, _AWARE_FORMATS, "UTC"), out)
    naive = present & ~aware
    if naive.any():
        _need_zone(zone, file, first_row + int(np.argmax(naive)), name)
        local = _first_of_naive(text, zone)
        out = np.where(naive, local, out)
    return out


def _check_kinds(
    aware: np.ndarray,
    present: np.ndarray,
    text: pl.Series,
    kind: ZoneKind,
    file: str,
    first_row: int,
    name: str,
) -> None:
    """Refuse a column that mixes values with and without a UTC offset (across batches too)."""
    idx = np.flatnonzero(present)
    if idx.size == 0:
        return
    if kind.aware is None:
        kind.aware = bool(aware[idx[0]])
        kind.row = first_row + int(idx[0])
        kind.text = str(text[int(idx[0])])
    other = idx[aware[idx] != kind.aware]
    if other.size:
        i = int(other[0])
        has, other_has = ("has a", "has none") if aware[i] else ("has no", "has one")
        raise ReplayError(
            f"{file}: row {first_row + i}, column {name!r}: {text[i]!r} {has} UTC offset but "
            f"row {kind.row} ({kind.text!r}) {other_has}; a time column must not mix zones (write "
            "every time with its offset, or none and declare replay.time.zone)"
        )


def _need_zone(zone: str | None, file: str, row: int, name: str) -> None:
    if zone is None:
        raise ReplayError(
            f"{file}: row {row}, column {name!r}: times have no UTC offset and no zone is "
            "declared; set replay.time.zone (--tz), e.g. UTC or Europe/Berlin"
        )


def _first_of(text: pl.Series, formats: tuple[str, ...], zone: str) -> np.ndarray:
    parsed = [text.str.to_datetime(f, strict=False, time_zone=zone) for f in formats]
    return _epoch(pl.select(pl.coalesce(parsed)).to_series())


def _first_of_naive(text: pl.Series, zone: str | None) -> np.ndarray:
    parsed = [text.str.to_datetime(f, strict=False) for f in _NAIVE_FORMATS]
    local = pl.select(pl.coalesce(parsed)).to_series()
    zoned = local.dt.replace_time_zone(zone, ambiguous="null", non_existent="null")
    return _epoch(zoned.dt.convert_time_zone("UTC"))


def _epoch(column: pl.Series) -> np.ndarray:
    """Aware datetimes to epoch seconds; null -> NaN."""
    us = column.dt.epoch("us").cast(pl.Float64)
    return np.asarray(us.fill_null(np.nan).to_numpy(), dtype=np.float64) / 1e6


def _numbers(column: pl.Series, unit: str) -> np.ndarray:
    values = np.asarray(column.fill_null(np.nan).to_numpy(), dtype=np.float64)
    values = np.where(np.isfinite(values), values, np.nan)
    return values / 1000.0 if unit == "ms" else values


__all__ = ["ReplayError", "ZoneKind", "parse_times"]
