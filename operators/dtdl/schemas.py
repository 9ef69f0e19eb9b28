"""Check a JSON-like value against a parsed DTDL schema (Command payloads, Telemetry values).

Problems come back as sentences naming the path inside the value (``$.fraction``), so a
rejected command or dead letter says exactly what was wrong. Object fields are all required
here: twinflow sends complete payloads, and a missing parameter is a caller's mistake.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import date, datetime, time
from typing import Any

from twinflow.operators.dtdl.model import (
    ArraySchema,
    EnumSchema,
    MapSchema,
    ObjectSchema,
    PrimitiveSchema,
    Schema,
)

_INT_RANGES = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
_FLOAT_MAX = 3.4028234663852886e38
_DURATION = re.compile(
    r"P(?!$)(?:\d+Y)?(?:\d+M)?(?:\d+W)?(?:\d+D)?(?:T(?=\d)(?:\d+H)?(?:\d+M)?(?:\d+(?:\.\d+)?S)?)?"
)
_GEO_TYPES = {
    "point": "Point",
    "lineString": "LineString",
    "polygon": "Polygon",
    "multiPoint": "MultiPoint",
    "multiLineString": "MultiLineString",
    "multiPolygon": "MultiPolygon",
}


def validate_payload(schema: Schema, value: Any, path: str = "$") -> list[str]:
    """Every way ``value`` breaks ``schema`` (an empty list when it conforms).

    >>> from twinflow.operators.dtdl.model import Field, ObjectSchema, PrimitiveSchema
    >>> s = ObjectSchema(fields=(Field(name="m3h", schema=PrimitiveSchema(name="double")),))
    >>> validate_payload(s, {"m3h": 120.0})
    []
    >>> validate_payload(s, {"m3h": "fast", "x": 1})
    ['$.m3h: expected a finite number (double), got str', '$: unknown field x (known: m3h)']
    """
    for kind, check in _CHECKS:
        if isinstance(schema, kind):
            return check(schema, value, path)
    return [f"{path}: unsupported schema {schema!r}"]


def _enum(schema: EnumSchema, value: Any, path: str) -> list[str]:
    allowed = [v.value for v in schema.values]
    if value in allowed and type(value) is type(allowed[allowed.index(value)]):
        return []
    return [f"{path}: {value!r} is not one of the enum values {allowed}"]


def _object(schema: ObjectSchema, value: Any, path: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path}: expected an object, got {type(value).__name__}"]
    problems: list[str] = []
    known = {f.name: f for f in schema.fields}
    for f in schema.fields:
        if f.name not in value:
            problems.append(f"{path}: missing field {f.name}")
        else:
            problems += validate_payload(f.schema, value[f.name], f"{path}.{f.name}")
    extra = sorted(str(k) for k in value if k not in known)
    if extra:
        problems.append(
            f"{path}: unknown field {', '.join(extra)} (known: {', '.join(known) or 'none'})"
        )
    return problems


def _map(schema: MapSchema, value: Any, path: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path}: expected a map (object), got {type(value).__name__}"]
    problems: list[str] = []
    for k, v in value.items():
        if not isinstance(k, str):
            problems.append(f"{path}: map key {k!r} is not a string")
        problems += validate_payload(schema.value_schema, v, f"{path}[{k!r}]")
    return problems


def _array(schema: ArraySchema, value: Any, path: str) -> list[str]:
    if not isinstance(value, list | tuple):
        return [f"{path}: expected an array, got {type(value).__name__}"]
    problems: list[str] = []
    for i, v in enumerate(value):
        problems += validate_payload(schema.element_schema, v, f"{path}[{i}]")
    return problems


def _primitive(schema: PrimitiveSchema, value: Any, path: str) -> list[str]:
    name = schema.name
    got = type(value).__name__
    if name == "boolean":
        return [] if isinstance(value, bool) else [f"{path}: expected true or false, got {got}"]
    if name in _INT_RANGES:
        low, high = _INT_RANGES[name]
        if isinstance(value, bool) or not isinstance(value, int):
            return [f"{path}: expected a whole number ({name}), got {got}"]
        if not low <= value <= high:
            return [f"{path}: {value} does not fit in a {name}"]
        return []
    if name in ("double", "float"):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            return [f"{path}: expected a finite number ({name}), got {got}"]
        if name == "float" and abs(value) > _FLOAT_MAX:
            return [f"{path}: {value} does not fit in a float"]
        return []
    if name == "string":
        return [] if isinstance(value, str) else [f"{path}: expected a string, got {got}"]
    if name in ("date", "dateTime", "time", "duration"):
        if not isinstance(value, str) or not _temporal_ok(name, value):
            return [f"{path}: expected an ISO 8601 {name} string, got {value!r}"]
        return []
    if name in _GEO_TYPES:
        if (
            not isinstance(value, dict)
            or value.get("type") != _GEO_TYPES[name]
            or not isinstance(value.get("coordinates"), list)
        ):
            return [
                f"{path}: expected a GeoJSON {_GEO_TYPES[name]} "
                "(an object with 'type' and 'coordinates')"
            ]
        return []
    return [f"{path}: unknown primitive schema {name!r}"]


def _temporal_ok(name: str, text: str) -> bool:
    try:
        if name == "date":
            date.fromisoformat(text)
        elif name == "time":
            time.fromisoformat(text.replace("Z", "+00:00"))
        elif name == "dateTime":
            if "T" not in text.upper():
                return False
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            return parsed.tzinfo is not None
        else:
            return _DURATION.fullmatch(text) is not None
    except ValueError:
        return False
    return True


#: One check per schema kind. After the table, a value that is no schema at all still gets a
#: sentence back (behind a chain of ``isinstance`` the type checker calls that unreachable).
_CHECKS: tuple[tuple[type[Any], Callable[[Any, Any, str], list[str]]], ...] = (
    (PrimitiveSchema, _primitive),
    (EnumSchema, _enum),
    (ObjectSchema, _object),
    (MapSchema, _map),
    (ArraySchema, _array),
)
