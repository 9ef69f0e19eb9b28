"""The words of DTDL v3 this parser knows: classes, standard schemas, name syntax.

Also the small helpers that read JSON-LD's loose spellings (a lone value for a list, a
standard schema written as its IRI).
"""

from __future__ import annotations

import re
from typing import Any

PRIMITIVES = frozenset(
    [
        "boolean",
        "date",
        "dateTime",
        "double",
        "duration",
        "float",
        "integer",
        "long",
        "string",
        "time",
    ]
)
GEOSPATIAL = frozenset(
    ["lineString", "multiLineString", "multiPoint", "multiPolygon", "point", "polygon"]
)
NUMERIC = frozenset({"double", "float", "integer", "long"})
#: The reference names each standard schema by a term and by an IRI (a DTMI); both spell it.
STANDARD_SCHEMA_IRIS = {
    **{f"dtmi:dtdl:instance:Schema:{p};3": p for p in PRIMITIVES},
    **{f"dtmi:standard:schema:geospatial:{g};3": g for g in GEOSPATIAL},
}
#: Primitive schemas of later DTDL versions: named in the error so the fix is obvious.
LATER_PRIMITIVES = frozenset(
    [
        "byte",
        "bytes",
        "decimal",
        "short",
        "unsignedByte",
        "unsignedShort",
        "unsignedInteger",
        "unsignedLong",
        "uuid",
        "scaledDecimal",
    ]
)
CLASSES = frozenset(
    [
        "Interface",
        "Telemetry",
        "Property",
        "Command",
        "CommandRequest",
        "CommandResponse",
        "Relationship",
        "Component",
        "Array",
        "Enum",
        "EnumValue",
        "Map",
        "MapKey",
        "MapValue",
        "Object",
        "Field",
    ]
)
#: A class may also be written as its IRI, e.g. "dtmi:dtdl:class:Telemetry;3".
CLASS_IRIS = {f"dtmi:dtdl:class:{c};3": c for c in CLASSES}
CONTENT_CLASSES = ("Telemetry", "Property", "Command", "Relationship", "Component")
COMPLEX = ("Array", "Enum", "Map", "Object")
#: Properties every element may have.
COMMON = frozenset({"@type", "@id", "comment", "description", "displayName"})
NAME = re.compile(r"[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?")
LANGUAGE_TAG = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")


def is_int(value: object) -> bool:
    """A JSON whole number (``true`` and ``false`` are not numbers here)."""
    return isinstance(value, int) and not isinstance(value, bool)


def as_list(value: Any) -> list[Any]:
    """JSON-LD lets a list of one be written as the lone value."""
    return value if isinstance(value, list) else [value]


def given_name(raw: dict[str, Any]) -> str | None:
    """The ``name`` as written when it is a string, valid or not (to spot a name used twice)."""
    name = raw.get("name")
    return name if isinstance(name, str) else None


def standard_term(value: Any) -> Any:
    """The term of a standard schema written as its IRI; any other value unchanged."""
    return STANDARD_SCHEMA_IRIS.get(value, value) if isinstance(value, str) else value


def count_elements(value: Any) -> int:
    """How many JSON objects ``value`` holds, at any depth (the contents limit counts these)."""
    if isinstance(value, dict):
        return 1 + sum(count_elements(v) for v in value.values())
    if isinstance(value, list):
        return sum(count_elements(v) for v in value)
    return 0
