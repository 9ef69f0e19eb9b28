"""Validation by value: the DTDL schemas' ranges, numeric arrays, and blanking readings.

Used by :class:`twinflow.operators.validate.Validator`: :func:`clamp` replaces readings a
signal's schema cannot hold or that lie outside its physical range by NaN, with one dead
letter per kind (:mod:`twinflow.operators.validate_letters` words them).
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, NoReturn

import numpy as np

from twinflow.core.errors import ValidationError
from twinflow.core.records import DeadLetter, Frame
from twinflow.operators.catalog import SignalSpec
from twinflow.operators.validate_letters import blanked

_FLOAT_MAX = 3.4028234663852886e38
_DOUBLE_MAX = float(np.finfo(np.float64).max)
#: Values each DTDL schema can hold (inclusive, as float64).
_SCHEMA_RANGE: dict[str, tuple[float, float]] = {
    "double": (-_DOUBLE_MAX, _DOUBLE_MAX),
    "float": (-_FLOAT_MAX, _FLOAT_MAX),
    "integer": (-(2.0**31), 2.0**31 - 1),
    "long": (-(2.0**63), float(np.nextafter(2.0**63, 0.0))),
    "boolean": (0.0, 1.0),
}
#: Schemas whose values must be whole numbers.
INTEGRAL = frozenset({"integer", "long", "boolean"})
#: What a valid value of each non-double schema is, for dead-letter reasons.
_SCHEMA_NEEDS = {
    "float": "finite numbers that fit a 32-bit float",
    "integer": "whole numbers from -2147483648 to 2147483647",
    "long": "whole numbers that fit a 64-bit integer",
    "boolean": "0 or 1 (false or true)",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Layout:
    """Per signal layout: the limits of each row (as columns, ``(signals, 1)``, to compare
    with a block of readings) and the rows with an integral schema."""

    low: np.ndarray
    high: np.ndarray
    integral: np.ndarray


def limits(spec: SignalSpec) -> tuple[float, float]:
    """The signal's physical range narrowed to what its schema can hold."""
    lo, hi = _SCHEMA_RANGE.get(spec.schema, _SCHEMA_RANGE["double"])
    return max(spec.low, lo), min(spec.high, hi)


def schema_violations(schema: str, values: np.ndarray) -> np.ndarray | None:
    """Mask of finite readings the DTDL ``schema`` cannot hold; ``None`` for ``double``
    (any finite number; infinities are left to the range check)."""
    if schema not in _SCHEMA_NEEDS:
        return None
    lo, hi = _SCHEMA_RANGE[schema]
    finite = np.isfinite(values)
    bad = (values < lo) | (values > hi)
    if schema in INTEGRAL:
        bad |= values != np.trunc(values)
    out_of_range: np.ndarray = finite & bad
    return out_of_range


class LazyTimes:
    """Times of waveform samples, built only for the few indices a dead letter quotes."""

    __slots__ = ("rate", "start")

    def __init__(self, start: float, rate: float) -> None:
        self.start, self.rate = start, rate

    def __getitem__(self, idx: np.ndarray) -> np.ndarray:
        return self.start + idx / self.rate


def numbers_of(array: Any, twin: str, what: str, booleans: bool = False) -> np.ndarray:
    """A 1-D float64 view (or converted copy) of ``array``; refuses non-numeric data
    (``booleans``: also accepts a bool array, as 0/1)."""
    if isinstance(array, np.ndarray) and array.dtype == np.float64 and array.ndim == 1:
        return array
    try:
        arr = np.asarray(array)
    except (TypeError, ValueError) as e:
        raise ValidationError(f"twin {twin!r}: {what} is not an array of numbers ({e})") from None
    if arr.ndim != 1:
        raise ValidationError(f"twin {twin!r}: {what} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind not in ("iufb" if booleans else "iuf"):
        raise ValidationError(f"twin {twin!r}: {what} must hold numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def bad_times(twin: str, times: np.ndarray) -> NoReturn:
    """Raise the reason a time array is unusable: a non-finite time, or one going back."""
    finite = np.isfinite(times)
    if not finite.all():
        i = int(np.argmin(finite))
        raise ValidationError(f"twin {twin!r}: times[{i}] is {times[i]}, not a finite time")
    i = int(np.argmax(times[1:] < times[:-1])) + 1
    raise ValidationError(
        f"twin {twin!r}: times must be non-decreasing but times[{i}] = {times[i]} "
        f"< times[{i - 1}] = {times[i - 1]}; sort the frame at the source"
    )


def real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool | np.bool_)


def clamp(
    frame: Frame,
    name: str,
    spec: SignalSpec,
    times: np.ndarray | LazyTimes,
    values: np.ndarray,
    now: float,
    dead: list[DeadLetter],
    refused: dict[str, np.ndarray],
) -> np.ndarray:
    """``values`` with readings invalid for the schema or out of range set to NaN (a copy
    only if any were), with one dead letter for each of the two kinds found; the mask of
    the readings out of range goes to ``refused[name]``."""
    lo, hi = limits(spec)
    schema_bad = schema_violations(spec.schema, values)
    if schema_bad is None:
        if not (np.fmin.reduce(values) < lo or np.fmax.reduce(values) > hi):
            return values
        bad = range_bad = (values < lo) | (values > hi)
    else:
        range_bad = ((values < lo) | (values > hi)) & ~schema_bad
        bad = schema_bad | range_bad
        if not bad.any():
            return values
        if schema_bad.any():
            needs = _SCHEMA_NEEDS[spec.schema]
            dead.append(
                blanked(
                    frame,
                    name,
                    spec,
                    times,
                    values,
                    schema_bad,
                    f"are not valid DTDL {spec.schema} values (need {needs})",
                    {"schema": spec.schema},
                )
            )
    if range_bad is bad or range_bad.any():
        dead.append(
            blanked(
                frame,
                name,
                spec,
                times,
                values,
                range_bad,
                f"outside its valid range [{lo:g}, {hi:g}] {spec.unit}",
                {"unit": spec.unit, "range": [lo, hi]},
            )
        )
        refused[name] = range_bad
    out = values.copy()
    out[bad] = np.nan
    return out


__all__ = ["INTEGRAL", "Layout", "LazyTimes", "bad_times", "clamp", "limits", "numbers_of", "real"]
