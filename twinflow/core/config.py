"""One way to define and check configuration: declarative fields, read from files or objects.

A :class:`Field` (kinds in :mod:`twinflow.core.fields`) names a setting, its type, default,
bounds and a one-line description. The same definitions serve three purposes, so they cannot
drift apart:

- :class:`Section` reads a mapping from a YAML file and checks each value against its field
  (unknown keys, wrong types and out-of-range values are errors naming the file and field);
- :func:`check_fields` checks a dataclass built in code (e.g. ``FlowConfig(window_s=-1)``);
- a :class:`Schema` (a section's fields with its dotted path) feeds the generated reference.

Errors use two shapes: a value of the wrong kind reads ``path = value: expected a number``; a
value of the right kind but out of range reads ``path must be > 0, got -5``.

>>> s = Section({"qos": 5}, "services.mqtt", Path("plant.yaml"))
>>> s.get(Whole("qos", "Delivery guarantee.", 1, low=0, high=2))
Traceback (most recent call last):
...
twinflow.core.errors.ConfigError: plant.yaml: services.mqtt.qos must be an integer in [0, 2], got 5
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from twinflow.core.errors import ConfigError
from twinflow.core.fields import (
    Choice,
    Duration,
    Field,
    Flag,
    Invalid,
    Names,
    Number,
    OptionalText,
    Part,
    Settings,
    Text,
    Whole,
)
from twinflow.core.redact import HIDDEN, redact

T = TypeVar("T")


# -- schemas and sections ------------------------------------------------------------------


def shown(key: str, value: object) -> str:
    """``value`` as an error message shows it: a secret field hidden, URLs redacted.

    >>> shown("password", 1234), shown("url", "mqtt://u:pw@h")
    ("'***'", "'mqtt://u:***@h'")
    """
    if any(word in key.lower() for word in ("password", "secret", "token")):
        return repr(HIDDEN)
    return redact(repr(value))


@dataclass(frozen=True)
class Schema:
    """The fields of one section, its dotted path in the file and what it is for."""

    path: str
    doc: str
    fields: tuple[Field[Any], ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(f.key for f in self.fields)

    def __getitem__(self, key: str) -> Field[Any]:
        for f in self.fields:
            if f.key == key:
                return f
        raise KeyError(key)


class Section:
    """A mapping from a file with its dotted path, so every error names the file and field."""

    def __init__(self, data: object, where: str, file: Path) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{file}: {where} must be a mapping, got {type(data).__name__}")
        self.data: dict[Any, Any] = dict(data)
        self.where = where
        self.file = file

    def path(self, key: str) -> str:
        """The dotted path of ``key`` in the file."""
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, expected: str) -> ConfigError:
        """The error for a value of the wrong kind."""
        return ConfigError(
            f"{self.file}: {self.path(key)} = {shown(key, self.data.get(key))}: expected {expected}"
        )

    def error(self, key: str, message: str) -> ConfigError:
        """An error about ``key`` in the section's own words."""
        return ConfigError(f"{self.file}: {self.path(key)}{message}")

    def check_keys(self, allowed: Iterable[str] | Schema) -> None:
        """Refuse a key that is not allowed, suggesting the nearest allowed one."""
        names = [str(a) for a in (allowed.keys if isinstance(allowed, Schema) else allowed)]
        for key in self.data:
            if key not in names:
                near = difflib.get_close_matches(str(key), names, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                raise ConfigError(
                    f"{self.file}: unknown field {self.path(str(key))!r}{hint} "
                    f"(allowed: {', '.join(sorted(names))})"
                )

    def section(self, key: str) -> Section:
        """The nested mapping under ``key`` (empty when absent)."""
        return Section(self.data.get(key), self.path(key), self.file)

    def get(self, field: Field[T], default: T | None = None) -> T:
        """The value of ``field``, checked; ``default`` overrides the field's own when given."""
        raw = self.data.get(field.key)
        if field.absent(raw) and not (raw is None and field.key in self.data and _nullable(field)):
            if field.required:
                raise ConfigError(
                    f"{self.file}: {self.path(field.key)} is required ({field.needs()})"
                )
            return field.default if default is None else default
        try:
            return field.parse(raw)
        except Invalid as bad:
            if bad.wrong_kind:
                raise self.fail(field.key, bad.expected) from None
            raise ConfigError(
                f"{self.file}: {self.path(field.key)} must be {bad.expected}, got "
                f"{shown(field.key, raw)}"
            ) from None
        except ConfigError as exc:  # e.g. a duration's own message
            raise ConfigError(f"{self.file}: {self.path(field.key)}{exc}") from None


def _nullable(field: Field[Any]) -> bool:
    """Fields whose explicit ``null`` means "not used" rather than "the default"."""
    return isinstance(field, OptionalText)


# -- dataclasses built in code -------------------------------------------------------------


def setting(spec: Field[T]) -> T:
    """A dataclass field whose default, description and check come from ``spec``.

    Use as ``window_s: float = setting(Number("window_s", "...", 300.0, above=0))``;
    :func:`fields_of` and :func:`check_fields` read it back.
    """
    return dataclasses.field(default=spec.default, metadata={"setting": spec})


def fields_of(cls: type[Any]) -> tuple[Field[Any], ...]:
    """The :func:`setting` fields of a dataclass, in declaration order."""
    out: list[Field[Any]] = []
    for f in dataclasses.fields(cls):
        spec = f.metadata.get("setting")
        if spec is None:
            continue
        if spec.key != f.name:
            raise TypeError(f"{cls.__name__}.{f.name}: its setting is named {spec.key!r}")
        out.append(spec)
    return tuple(out)


def check_value(spec: Field[T], value: object, owner: str) -> T:
    """``value`` checked against ``spec``, for objects built in code; errors read
    ``<owner><key> must be <what>, got <value>`` (``owner`` e.g. ``"PlantConfig."``)."""
    try:
        return spec.parse(value)
    except Invalid as bad:
        raise ConfigError(
            f"{owner}{spec.key} must be {bad.expected}, got {shown(spec.key, value)}"
        ) from None


def check_fields(obj: object, owner: str) -> None:
    """Check every :func:`setting` field of a dataclass instance with :func:`check_value`."""
    for spec in fields_of(type(obj)):
        check_value(spec, getattr(obj, spec.key), owner)


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
    "Schema",
    "Section",
    "Settings",
    "Text",
    "Whole",
    "check_fields",
    "check_value",
    "fields_of",
    "setting",
]
