"""The kinds of configuration field: how each checks a value and shows itself in the reference.

:mod:`twinflow.core.config` reads them from files (:class:`~twinflow.core.config.Section`) and
checks objects built in code with them.

>>> Whole("qos", "Delivery guarantee.", 1, low=0, high=2).parse(2)
2
>>> Number("window_s", "Window length.", 300.0, above=0).type_text()
'number > 0'
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar, cast

from twinflow.core.times import parse_duration

T = TypeVar("T")


class Invalid(Exception):
    """A value that breaks its field: ``expected`` says what a valid one looks like."""

    def __init__(self, expected: str, *, wrong_kind: bool) -> None:
        super().__init__(expected)
        self.expected = expected
        self.wrong_kind = wrong_kind


def _kind(expected: str) -> Invalid:
    return Invalid(expected, wrong_kind=True)


def _range(expected: str) -> Invalid:
    return Invalid(expected, wrong_kind=False)


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# -- fields --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field(Generic[T]):
    """One setting: its key, description and default; subclasses say how to check a value.

    ``shown`` is the default as the reference prints it when the loader computes it (e.g.
    ``plant/<site>/<id>/telemetry``); ``required`` fields have no default.
    """

    key: str
    doc: str
    default: T
    shown: str | None = dataclasses.field(default=None, kw_only=True)
    required: bool = dataclasses.field(default=False, kw_only=True)

    type_name: ClassVar[str] = "value"

    def parse(self, value: object) -> T:
        """``value`` as this field's type, or :class:`Invalid`."""
        raise NotImplementedError

    def absent(self, value: object) -> bool:
        """Whether ``value`` counts as not given (then the default applies)."""
        return value is None

    def type_text(self) -> str:
        """The type column of the reference."""
        return self.type_name

    def needs(self) -> str:
        """What a required field's error says it needs."""
        return self.type_text()

    def default_text(self) -> str:
        """The default column of the reference."""
        if self.required:
            return "required"
        if self.shown is not None:
            return self.shown
        return "none" if self.default is None else f"`{_show(self.default)}`"


def _show(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{}" if not value else str(dict(value))
    return str(value)


@dataclass(frozen=True)
class Text(Field[str]):
    """A string; an empty string or ``null`` means the default."""

    type_name: ClassVar[str] = "string"

    def parse(self, value: object) -> str:
        if not isinstance(value, str):
            raise _kind("a string")
        return value

    def absent(self, value: object) -> bool:
        return value is None or value == ""

    def needs(self) -> str:
        return "a non-empty string"


@dataclass(frozen=True)
class OptionalText(Field[str | None]):
    """A string that may be left out or set to ``null`` (then it is not used)."""

    default: str | None = None
    type_name: ClassVar[str] = "string or null"

    def parse(self, value: object) -> str | None:
        if value is not None and not isinstance(value, str):
            raise _kind("a string")
        return value


@dataclass(frozen=True)
class Whole(Field[int]):
    """A whole number, optionally within ``[low, high]``; ``integral`` floats (``24.0``) pass
    when ``coerce`` is set."""

    low: int | None = None
    high: int | None = None
    coerce: bool = dataclasses.field(default=False, kw_only=True)
    expect: str | None = dataclasses.field(default=None, kw_only=True)
    type_name: ClassVar[str] = "integer"

    def parse(self, value: object) -> int:
        if self.coerce and isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _kind("a whole number")
        if (self.low is not None and value < self.low) or (
            self.high is not None and value > self.high
        ):
            raise _range(self._bounds())
        return value

    def _bounds(self) -> str:
        if self.expect is not None:
            return self.expect
        if self.high is None:
            return f"an integer >= {self.low}"
        if self.low is None:
            return f"an integer <= {self.high}"
        return f"an integer in [{self.low}, {self.high}]"

    def type_text(self) -> str:
        if self.expect is not None:
            return f"integer ({self.expect})"
        if self.low is None and self.high is None:
            return self.type_name
        return "integer " + self._bounds().removeprefix("an integer ")


@dataclass(frozen=True)
class Number(Field[float]):
    """A finite or infinite real number with optional bounds: ``low <= v``, ``above < v``,
    ``v <= high``; ``below`` (exclusive) likewise."""

    low: float | None = None
    above: float | None = None
    high: float | None = None
    below: float | None = None
    finite: bool = dataclasses.field(default=False, kw_only=True)
    expect: str | None = dataclasses.field(default=None, kw_only=True)
    type_name: ClassVar[str] = "number"

    def parse(self, value: object) -> float:
        if not _is_number(value):
            raise _kind("a number")
        v = float(cast(float, value))
        bad = (
            (self.finite and not math.isfinite(v))
            or (self.low is not None and not v >= self.low)
            or (self.above is not None and not v > self.above)
            or (self.high is not None and not v <= self.high)
            or (self.below is not None and not v < self.below)
            or math.isnan(v)
        )
        if bad:
            raise _range(self._bounds())
        return v

    def _bounds(self) -> str:
        if self.expect is not None:
            return self.expect
        lo = ("[", self.low) if self.low is not None else ("(", self.above)
        hi = ("]", self.high) if self.high is not None else (")", self.below)
        if lo[1] is not None and hi[1] is not None:
            return f"in {lo[0]}{lo[1]:g}, {hi[1]:g}{hi[0]}"
        if lo[1] is not None:
            return f"{'>=' if lo[0] == '[' else '>'} {lo[1]:g}"
        if hi[1] is not None:
            return f"{'<=' if hi[0] == ']' else '<'} {hi[1]:g}"
        return "a finite number"

    def type_text(self) -> str:
        if self.expect is not None:
            return f"number ({self.expect})"
        bounds = self._bounds()
        return self.type_name if bounds == "a finite number" else f"number {bounds}"


@dataclass(frozen=True)
class Flag(Field[bool]):
    """``true`` or ``false``."""

    type_name: ClassVar[str] = "boolean"

    def parse(self, value: object) -> bool:
        if not isinstance(value, bool):
            raise _kind("true or false")
        return value


@dataclass(frozen=True)
class Choice(Field[str]):
    """One of a few strings."""

    choices: tuple[str, ...] = ()

    def parse(self, value: object) -> str:
        if value not in self.choices:
            raise _kind(self.one_of())
        return value

    def one_of(self) -> str:
        c = self.choices
        if len(c) == 1:
            return c[0]
        if len(c) == 2:
            return f"{c[0]} or {c[1]}"
        return f"one of {', '.join(c)}"

    def absent(self, value: object) -> bool:
        return value is None or value == ""

    def needs(self) -> str:
        return "a non-empty string"

    def type_text(self) -> str:
        return " \\| ".join(f"`{c}`" for c in self.choices)


@dataclass(frozen=True)
class Duration(Field[float]):
    """A positive duration: seconds, or text with a unit (``90s``, ``30m``, ``6h``, ``2d``)."""

    type_name: ClassVar[str] = "duration (`90s`, `30m`, `6h`, `2d` or seconds)"

    def parse(self, value: object) -> float:
        if not (_is_number(value) or isinstance(value, str)):
            raise _kind("a duration such as '90s', '30m', '6h' or '2d'")
        return parse_duration(cast(str | float, value), "")  # path added by the caller

    def default_text(self) -> str:
        if self.required or self.shown is not None:
            return super().default_text()
        return f"`{_show(self.default)}` (s)"


@dataclass(frozen=True)
class Names(Field[tuple[str, ...]]):
    """A list of non-empty strings (``what`` names them in errors, e.g. ``topic names``)."""

    default: tuple[str, ...] = ()
    what: str = "names"
    type_name: ClassVar[str] = "list of strings"

    def parse(self, value: object) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
            raise _kind(f"a list of {self.what}")
        return tuple(value)


@dataclass(frozen=True)
class Settings(Field[Mapping[str, str]]):
    """A mapping of string keys to scalar values, passed on as strings."""

    what: str = "settings"
    type_name: ClassVar[str] = "mapping of string to string"

    def parse(self, value: object) -> Mapping[str, str]:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise _kind(f"a mapping of {self.what}")
        return {str(k): str(v) for k, v in value.items()}


@dataclass(frozen=True)
class Part(Field[None]):
    """A nested section or a mapping of sections, documented by its own schema (``see``)."""

    default: None = None
    kind: str = "section"
    see: str = ""

    def parse(self, value: object) -> None:
        return None

    def type_text(self) -> str:
        return f"{self.kind} (see `{self.see}`)" if self.see else self.kind

    def default_text(self) -> str:
        return self.shown if self.shown is not None else "none"


__all__ = [
    "Choice",
    "Duration",
    "Field",
    "Flag",
    "Invalid",
    "Names",
    "Number",
    "OptionalText",
    "Part",
    "Settings",
    "Text",
    "Whole",
]
