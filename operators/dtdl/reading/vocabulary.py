"""The words of DTDL v3 this parser knows: classes, standard schemas, name syntax.

Also the small helpers that read JSON-LD's loose spellings (a lone value for a list, a
standard schema written as its IRI).
"""

from __future__ import annotations

import re
from typing import Any, TypeGuard

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
    **{f"dtmi:dtdl:instance:Schema:{p};{v}": p for p in PRIMITIVES for v in (2, 3)},
    **{f"dtmi:standard:schema:geospatial:{g};{v}": g for g in GEOSPATIAL for v in (2, 3)},
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
        "CommandPayload",
    ]
)
#: A class may also be written as its IRI, e.g. "dtmi:dtdl:class:Telemetry;3" (";2" in v2).
CLASS_IRIS = {f"dtmi:dtdl:class:{c};{v}": c for c in CLASSES for v in (2, 3)}
#: The members DTDL itself defines (reserved: never a co-type).
PROPERTY_NAMES = frozenset(
    [
        "commandType",
        "comment",
        "contents",
        "description",
        "displayName",
        "elementSchema",
        "enumValue",
        "enumValues",
        "extends",
        "fields",
        "mapKey",
        "mapValue",
        "maxMultiplicity",
        "minMultiplicity",
        "name",
        "properties",
        "request",
        "response",
        "schema",
        "schemas",
        "target",
        "valueSchema",
        "writable",
    ]
)
CONTENT_CLASSES = ("Telemetry", "Property", "Command", "Relationship", "Component")
COMPLEX = ("Array", "Enum", "Map", "Object")
#: Properties every element may have.
COMMON = frozenset({"@type", "@id", "comment", "description", "displayName"})
NAME = re.compile(r"[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?")
#: A language tag as DTDL allows it: "en", "en-US", "zh-Hant-TW", "es-419".
LANGUAGE_TAG = re.compile(r"[a-z]{2,4}(?:-[A-Z][a-z]{3})?(?:-(?:[A-Z]{2}|[0-9]{3}))?")


def is_int(value: object) -> bool:
    """A JSON whole number (``true`` and ``false`` are not numbers here)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_int32(value: object) -> TypeGuard[int]:
    """A whole number DTDL calls an integer: one that fits in 4 bytes."""
    return isinstance(value, int) and not isinstance(value, bool) and -(2**31) <= value < 2**31


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
