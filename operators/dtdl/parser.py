"""Parse DTDL v3 model files into a :class:`ModelSet`, reporting every broken rule at once.

Each problem names the file, the element (its ``@id``, or the nearest ``@id`` followed by a
JSON path such as ``contents[3].schema``) and a stable rule code. Parsing runs in two passes:
the first reads each file on its own, the second resolves what crosses files (``extends``,
Component schemas) and checks inheritance (cycles, depth, clashing names).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twinflow.core.errors import ConfigError
from twinflow.operators.dtdl import quantities
from twinflow.operators.dtdl.dtmi import (
    MAX_INTERFACE_LENGTH,
    MAX_USER_LENGTH,
    RESERVED_PREFIXES,
    dtmi_problem,
    is_dtmi,
)
from twinflow.operators.dtdl.errors import DtdlError, Problem
from twinflow.operators.dtdl.model import (
    ArraySchema,
    Command,
    CommandPayload,
    Component,
    Content,
    EnumSchema,
    EnumValue,
    Field,
    Interface,
    MapSchema,
    ModelSet,
    ObjectSchema,
    PrimitiveSchema,
    Property,
    Relationship,
    Schema,
    Telemetry,
)

DTDL_CONTEXT = "dtmi:dtdl:context;3"
#: Extension contexts this parser understands (their terms are checked, not ignored).
KNOWN_EXTENSIONS = frozenset({quantities.CONTEXT})

#: Limits stated by the DTDL v3 language reference.
MAX_NAME = 512
MAX_DISPLAY_NAME = 64
MAX_DESCRIPTION = 512
MAX_COMMENT = 512
MAX_EXTENDS_DEPTH = 10
MAX_EXTENDS_COUNT = 1024
MAX_CONTENTS = 100_000
MAX_SCHEMA_DEPTH = 5
MAX_INTERFACE_BYTES = 1 << 20

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
_LATER_PRIMITIVES = frozenset(
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
_CLASSES = frozenset(
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
_CLASS_IRIS = {f"dtmi:dtdl:class:{c};3": c for c in _CLASSES}
_CONTENT_CLASSES = ("Telemetry", "Property", "Command", "Relationship", "Component")
_COMPLEX = ("Array", "Enum", "Map", "Object")
_COMMON = frozenset({"@type", "@id", "comment", "description", "displayName"})
_NAME = re.compile(r"[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?")
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")


@dataclass(frozen=True, slots=True)
class _At:
    """Where an element is: its file, the nearest ``@id`` (or item index) and a JSON path."""

    file: str
    anchor: str
    path: str = ""

    @property
    def label(self) -> str:
        return f"{self.anchor} {self.path}" if self.path else self.anchor

    def key(self, name: str) -> _At:
        return _At(self.file, self.anchor, f"{self.path}.{name}" if self.path else name)

    def index(self, i: int) -> _At:
        return _At(self.file, self.anchor, f"{self.path}[{i}]")

    def at_id(self, dtmi: str) -> _At:
        return _At(self.file, dtmi)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _standard_term(value: Any) -> Any:
    """The term of a standard schema written as its IRI; any other value unchanged."""
    return STANDARD_SCHEMA_IRIS.get(value, value) if isinstance(value, str) else value


def schema_depth(schema: Schema) -> int:
    """How many complex schemas are nested here (a primitive is 0, an Array of double 1)."""
    if isinstance(schema, ArraySchema):
        return 1 + schema_depth(schema.element_schema)
    if isinstance(schema, MapSchema):
        return 1 + schema_depth(schema.value_schema)
    if isinstance(schema, ObjectSchema):
        return 1 + max((schema_depth(f.schema) for f in schema.fields), default=0)
    if isinstance(schema, EnumSchema):
        return 1
    return 0


def _count_elements(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + sum(_count_elements(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count_elements(v) for v in value)
    return 0


class _Parser:
    """Collects problems while reading documents; see :func:`parse_files`."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.interfaces: dict[str, Interface] = {}
        self.ids: dict[str, str] = {}  # @id -> where it was first defined
        self.refs: list[tuple[_At, str, str]] = []  # (where, "extends"|"component", target)
        self.counts: dict[str, int] = {}  # Interface @id -> elements under its own contents
        self.quantitative = False
        self.defs: dict[str, tuple[Any, _At]] = {}
        self.def_done: dict[str, Schema | None] = {}
        self.def_busy: set[str] = set()

    def add(self, at: _At, rule: str, message: str) -> None:
        self.problems.append(Problem(at.file, at.label, rule, message))

    # ---- documents -----------------------------------------------------------------------

    def document(self, file: str, text: str) -> None:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            self.add(
                _At(file, "(file)"),
                "json-syntax",
                f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}; "
                "fix the JSON syntax",
            )
            return
        items = doc if isinstance(doc, list) else [doc]
        for i, item in enumerate(items):
            at = _At(file, f"[{i}]" if isinstance(doc, list) else "(root)")
            if not isinstance(item, dict):
                self.add(
                    at,
                    "document-shape",
                    "a model file holds one Interface (a JSON object) or a JSON array of "
                    "Interfaces; replace this value with an Interface object",
                )
                continue
            if len(text) > MAX_INTERFACE_BYTES and (
                len(json.dumps(item, separators=(",", ":")).encode()) > MAX_INTERFACE_BYTES
            ):
                self.add(
                    at,
                    "interface-size",
                    f"an Interface's text is limited to {MAX_INTERFACE_BYTES} bytes; split it "
                    "into several Interfaces joined by 'extends' or Components",
                )
            self.interface(item, at, None)

    def contexts(self, raw: dict[str, Any], at: _At, inherited: tuple[str, ...] | None):
        if "@context" not in raw:
            if inherited is None:
                self.add(
                    at,
                    "context-missing",
                    f'no @context; add "@context": "{DTDL_CONTEXT}"',
                )
                return (DTDL_CONTEXT,)
            return inherited
        values = _as_list(raw["@context"])
        if not values or not all(isinstance(v, str) for v in values):
            self.add(
                at.key("@context"), "property-type", "@context must be a DTMI or a list of them"
            )
            return (DTDL_CONTEXT,)
        if values[0] != DTDL_CONTEXT:
            self.add(
                at.key("@context"),
                "context-version",
                f"the first @context must be {DTDL_CONTEXT!r} (this parser reads DTDL v3), "
                f"got {values[0]!r}",
            )
        for extra in values[1:]:
            if extra not in KNOWN_EXTENSIONS:
                self.add(
                    at.key("@context"),
                    "context-extension",
                    f"unsupported language extension {extra!r}; supported: "
                    + ", ".join(sorted(KNOWN_EXTENSIONS)),
                )
        return tuple(values)

    def nested_context(self, value: Any, at: _At) -> None:
        """Check an ``@context`` inside an Interface: DTDL v3 or a supported extension only.

        An empty list is allowed (it adds nothing). Extensions named here are checked but do
        not switch on their terms for the element: name them on the Interface instead.
        """
        values = _as_list(value)
        if not all(isinstance(v, str) for v in values):
            self.add(at, "property-type", "@context must be a DTMI or a list of them")
            return
        for v in values:
            if v == DTDL_CONTEXT or v in KNOWN_EXTENSIONS:
                continue
            if v.startswith("dtmi:dtdl:context;"):
                self.add(
                    at,
                    "context-version",
                    f"{v!r} inside a DTDL v3 Interface: this parser reads DTDL v3 only; "
                    f"remove it or use {DTDL_CONTEXT!r}",
                )
            else:
                self.add(
                    at,
                    "context-extension",
                    f"unsupported language extension {v!r}; supported: "
                    + ", ".join(sorted(KNOWN_EXTENSIONS)),
                )

    # ---- pieces shared by every element -------------------------------------------------

    def types(
        self,
        raw: dict[str, Any],
        at: _At,
        expected: Iterable[str],
        *,
        default: str | None = None,
        semantic: bool = False,
    ) -> tuple[str | None, str | None]:
        """The element's class and semantic type, from ``@type``."""
        expected = tuple(expected)
        if "@type" not in raw:
            if default is not None:
                return default, None
            self.add(
                at,
                "type-missing",
                f'no @type; add "@type": {" or ".join(repr(e) for e in expected)}',
            )
            return None, None
        values = _as_list(raw["@type"])
        if not values or not all(isinstance(v, str) for v in values):
            self.add(at.key("@type"), "property-type", "@type must be a string or list of strings")
            return None, None
        values = [_CLASS_IRIS.get(v, v) for v in values]
        classes = list(dict.fromkeys(v for v in values if v in _CLASSES))
        if len(classes) != 1 or classes[0] not in expected:
            self.add(
                at.key("@type"),
                "type-invalid",
                f"@type {raw['@type']!r} is not allowed here; it must name exactly one of "
                + ", ".join(expected),
            )
            return None, None
        sem = None
        for v in values:
            if v in _CLASSES:
                continue
            if v in quantities.SEMANTIC_TYPES:
                if not semantic:
                    self.add(
                        at.key("@type"),
                        "type-cotype",
                        f"semantic type {v!r} cannot co-type a {classes[0]}; remove it",
                    )
                elif not self.quantitative:
                    self.add(
                        at.key("@type"),
                        "semantic-type-context",
                        f"semantic type {v!r} needs the QuantitativeTypes extension: add "
                        f"{quantities.CONTEXT!r} to the Interface's @context",
                    )
                elif sem is not None:
                    self.add(
                        at.key("@type"),
                        "type-cotype",
                        f"at most one semantic type per element; found {sem!r} and {v!r}",
                    )
                else:
                    sem = v
            elif not is_dtmi(v):
                self.add(
                    at.key("@type"),
                    "type-unknown",
                    f"unknown @type {v!r}; use a DTDL class, a semantic type of the "
                    "QuantitativeTypes extension, or a DTMI",
                )
        return classes[0], sem

    def keys(
        self, raw: dict[str, Any], at: _At, kind: str, allowed: Iterable[str], required=()
    ) -> None:
        allowed = _COMMON | set(allowed) | {"unit", "@context"}
        if "@context" in raw and kind != "Interface":
            self.nested_context(raw["@context"], at.key("@context"))
        for key in raw:
            if key not in allowed:
                self.add(
                    at,
                    "property-unknown",
                    f"{key!r} is not a property of a {kind}; remove it or fix its spelling "
                    f"(allowed: {', '.join(sorted(allowed - {'unit'}))})",
                )
        for key in required:
            if key not in raw:
                self.add(at, "property-missing", f"a {kind} needs {key!r}; add it")

    def common(self, raw: dict[str, Any], at: _At, *, interface: bool = False) -> dict[str, Any]:
        """Check ``@id``, displayName, description and comment; return them as keywords."""
        out: dict[str, Any] = {}
        if "@id" in raw:
            dtmi = raw["@id"]
            if self.check_dtmi(dtmi, at.key("@id"), interface=interface, defining=True):
                where = f"{at.file}: {at.label}"
                if dtmi in self.ids:
                    self.add(
                        at.key("@id"),
                        "id-duplicate",
                        f"@id {dtmi!r} is already defined at {self.ids[dtmi]}; give each "
                        "element its own @id",
                    )
                else:
                    self.ids[dtmi] = where
                out["id"] = dtmi
        for key, limit, name in (
            ("displayName", MAX_DISPLAY_NAME, "display_name"),
            ("description", MAX_DESCRIPTION, "description"),
        ):
            if key in raw:
                out[name] = self.localizable(raw[key], at.key(key), limit)
        if "comment" in raw:
            comment = raw["comment"]
            if not isinstance(comment, str):
                self.add(at.key("comment"), "property-type", "comment must be a string")
            elif len(comment) > MAX_COMMENT:
                self.add(
                    at.key("comment"),
                    "string-length",
                    f"comment is {len(comment)} characters; shorten it to {MAX_COMMENT}",
                )
            else:
                out["comment"] = comment
        return out

    def localizable(self, value: Any, at: _At, limit: int) -> Mapping[str, str]:
        texts = {"en": value} if isinstance(value, str) else value
        if not isinstance(texts, dict) or not all(isinstance(v, str) for v in texts.values()):
            self.add(
                at,
                "property-type",
                'must be a string or a map from language tag to string, e.g. {"en": "Pump"}',
            )
            return {}
        for tag, text in texts.items():
            if not _LANGUAGE_TAG.fullmatch(tag):
                self.add(at, "language-tag", f"{tag!r} is not a language tag; use e.g. 'en'")
            if len(text) > limit:
                self.add(
                    at,
                    "string-length",
                    f"text of {len(text)} characters is longer than {limit}; shorten it",
                )
        return dict(texts)

    def check_dtmi(
        self, value: Any, at: _At, *, interface: bool = False, defining: bool = False
    ) -> bool:
        if not isinstance(value, str):
            self.add(at, "property-type", f"{value!r} must be a DTMI string")
            return False
        problem = dtmi_problem(value)
        if problem is not None:
            self.add(at, "dtmi-syntax", problem)
            return False
        limit = MAX_INTERFACE_LENGTH if interface else MAX_USER_LENGTH
        if len(value) > limit:
            kind = "an Interface @id" if interface else "a DTMI in a model"
            self.add(
                at,
                "dtmi-length",
                f"{kind} is limited to {limit} characters, this one has {len(value)}; "
                "shorten its path",
            )
            return False
        if any(seg.startswith("_") for seg in value[5:].split(";")[0].split(":")):
            self.add(
                at,
                "dtmi-system",
                f"{value!r} is a system DTMI (a segment starts with '_'); models may only "
                "use user DTMIs",
            )
            return False
        if defining and value.startswith(RESERVED_PREFIXES):
            self.add(
                at,
                "dtmi-reserved",
                f"{value!r} uses a prefix reserved by DTDL ({', '.join(RESERVED_PREFIXES)}); "
                "choose your own, e.g. your reversed domain name",
            )
            return False
        return True

    def name(self, raw: dict[str, Any], at: _At) -> str | None:
        if "name" not in raw:
            return None
        name = raw["name"]
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            self.add(
                at.key("name"),
                "name-syntax",
                f"name {name!r} must contain only letters, digits and underscores, start "
                "with a letter and end with a letter or digit",
            )
            return None
        if len(name) > MAX_NAME:
            self.add(
                at.key("name"),
                "name-length",
                f"name is {len(name)} characters; shorten it to {MAX_NAME}",
            )
            return None
        return name

    def unique_names(self, items: Iterable[tuple[_At, str | None]], what: str) -> None:
        seen: set[str] = set()
        for at, name in items:
            if name is None:
                continue
            if name in seen:
                self.add(
                    at.key("name"),
                    "name-duplicate",
                    f"name {name!r} is used twice among the {what}; rename one",
                )
            seen.add(name)

    def members(self, raw: dict[str, Any], key: str, at: _At) -> list[tuple[Any, _At]] | None:
        """The items of a set-valued property (``contents``, ``fields``...), each with its place.

        DTDL follows JSON-LD, where a set of one may be written as the lone object itself:
        ``"fields": {...}`` means ``"fields": [{...}]``. ``None`` when the value is neither.
        """
        value = raw.get(key, [])
        if isinstance(value, dict):
            return [(value, at.key(key))]
        if isinstance(value, list):
            return [(v, at.key(key).index(i)) for i, v in enumerate(value)]
        self.add(
            at.key(key),
            "property-type",
            f"{key} must be a list of objects (or a single object), not {type(value).__name__}",
        )
        return None

    def flag(self, raw: dict[str, Any], key: str, at: _At) -> bool:
        value = raw.get(key, False)
        if not isinstance(value, bool):
            self.add(at.key(key), "property-type", f"{key} must be true or false")
            return False
        return value

    def unit(
        self, raw: dict[str, Any], at: _At, sem: str | None, schema: Schema | None
    ) -> str | None:
        """Check the ``unit`` against the semantic type and the schema against numbers."""
        if sem is None:
            if "unit" in raw:
                self.add(
                    at.key("unit"),
                    "unit-without-semantic-type",
                    "a unit needs a semantic type: add one to @type, e.g. "
                    '["Telemetry", "Temperature"], or remove the unit',
                )
            return None
        if schema is not None and not (
            isinstance(schema, PrimitiveSchema) and schema.name in NUMERIC
        ):
            self.add(
                at.key("schema"),
                "semantic-type-schema",
                f"an element with semantic type {sem!r} must have a numeric schema "
                f"({', '.join(sorted(NUMERIC))})",
            )
        if "unit" not in raw:
            return None
        unit = raw["unit"]
        allowed = quantities.units_for(sem)
        if unit not in allowed:
            self.add(
                at.key("unit"),
                "unit-mismatch",
                f"{unit!r} is not a unit of {sem}; use one of: {', '.join(sorted(allowed))}",
            )
            return None
        return unit

    # ---- schemas --------------------------------------------------------------------------

    def schema(self, value: Any, at: _At) -> Schema | None:
        value = _standard_term(value)
        if isinstance(value, str):
            if value in PRIMITIVES or value in GEOSPATIAL:
                return PrimitiveSchema(name=value)
            if value in _LATER_PRIMITIVES:
                self.add(
                    at,
                    "schema-unknown",
                    f"{value!r} is a primitive schema of a later DTDL version, not of v3; "
                    "use one of " + ", ".join(sorted(PRIMITIVES)),
                )
                return None
            if is_dtmi(value):
                return self.reference(value, at)
            self.add(
                at,
                "schema-unknown",
                f"unknown schema {value!r}; use a primitive ({', '.join(sorted(PRIMITIVES))}), "
                "a geospatial schema, a complex schema object, or the @id of one defined in "
                "this Interface's 'schemas'",
            )
            return None
        if isinstance(value, dict):
            return self.complex(value, at)
        self.add(at, "property-type", "a schema is a string or a complex schema object")
        return None

    def reference(self, dtmi: str, at: _At) -> Schema | None:
        if dtmi in self.def_done:
            return self.def_done[dtmi]
        if dtmi in self.def_busy:
            self.add(
                at,
                "schema-cycle",
                f"schema {dtmi!r} contains itself; a schema must not refer back to itself",
            )
            return None
        if dtmi not in self.defs:
            self.add(
                at,
                "schema-unresolved",
                f"no schema {dtmi!r} in this Interface's 'schemas'; define it there (schemas "
                "are not shared through 'extends' or Components)",
            )
            return None
        self.def_busy.add(dtmi)
        raw, def_at = self.defs[dtmi]
        result = self.complex(raw, def_at)
        self.def_busy.discard(dtmi)
        self.def_done[dtmi] = result
        return result

    def depth(self, schema: Schema | None, at: _At) -> None:
        if schema is not None and schema_depth(schema) > MAX_SCHEMA_DEPTH:
            self.add(
                at,
                "schema-depth",
                f"complex schemas are nested {schema_depth(schema)} levels deep; DTDL v3 "
                f"allows {MAX_SCHEMA_DEPTH}: flatten the schema",
            )

    def complex(self, raw: dict[str, Any], at: _At) -> Schema | None:
        kind, _ = self.types(raw, at, _COMPLEX)
        info = self.common(raw, at)
        if "id" in info:
            at = at.at_id(info["id"])
        if kind == "Array":
            self.keys(raw, at, kind, {"elementSchema"}, {"elementSchema"})
            self.unit(raw, at, None, None)
            if "elementSchema" not in raw:
                return None
            element = self.schema(raw["elementSchema"], at.key("elementSchema"))
            return None if element is None else ArraySchema(element_schema=element, **info)
        if kind == "Enum":
            return self.enum(raw, at, info)
        if kind == "Map":
            return self.map(raw, at, info)
        if kind == "Object":
            self.keys(raw, at, kind, {"fields"})
            self.unit(raw, at, None, None)
            fields = self.members(raw, "fields", at)
            if fields is None:
                return None
            parsed: list[Field] = []
            names: list[tuple[_At, str | None]] = []
            ok = True
            for f, f_at in fields:
                if not isinstance(f, dict):
                    self.add(f_at, "property-type", "each field is an object")
                    ok = False
                    continue
                _, sem = self.types(f, f_at, ("Field",), default="Field", semantic=True)
                f_info = self.common(f, f_at)
                self.keys(f, f_at, "Field", {"name", "schema"}, {"name", "schema"})
                name = self.name(f, f_at)
                names.append((f_at, name))
                schema = self.schema(f["schema"], f_at.key("schema")) if "schema" in f else None
                unit = self.unit(f, f_at, sem, schema)
                if name is None or schema is None:
                    ok = False
                    continue
                parsed.append(
                    Field(name=name, schema=schema, semantic_type=sem, unit=unit, **f_info)
                )
            self.unique_names(names, "fields of this Object")
            return ObjectSchema(fields=tuple(parsed), **info) if ok else None
        return None

    def enum(self, raw: dict[str, Any], at: _At, info: dict[str, Any]) -> Schema | None:
        self.keys(raw, at, "Enum", {"valueSchema", "enumValues"}, {"valueSchema"})
        self.unit(raw, at, None, None)
        value_schema = _standard_term(raw.get("valueSchema"))
        if "valueSchema" in raw and value_schema not in ("integer", "string"):
            self.add(
                at.key("valueSchema"),
                "enum-value-schema",
                f"an Enum's valueSchema must be 'integer' or 'string', not {value_schema!r}",
            )
            value_schema = None
        values = self.members(raw, "enumValues", at)
        if values is None:
            return None
        parsed: list[EnumValue] = []
        names: list[tuple[_At, str | None]] = []
        seen_values: set[int | str] = set()
        for v, v_at in values:
            if not isinstance(v, dict):
                self.add(v_at, "property-type", "each enum value is an object")
                continue
            self.types(v, v_at, ("EnumValue",), default="EnumValue")
            v_info = self.common(v, v_at)
            self.keys(v, v_at, "EnumValue", {"name", "enumValue"}, {"name", "enumValue"})
            self.unit(v, v_at, None, None)
            name = self.name(v, v_at)
            names.append((v_at, name))
            if "enumValue" not in v:
                continue
            value = v["enumValue"]
            typed_ok = (value_schema == "integer" and _is_int(value)) or (
                value_schema == "string" and isinstance(value, str)
            )
            if value_schema is not None and not typed_ok:
                self.add(
                    v_at.key("enumValue"),
                    "enum-value-type",
                    f"enumValue {value!r} is not of the Enum's valueSchema {value_schema!r}",
                )
                continue
            if not (_is_int(value) or isinstance(value, str)):
                continue
            if value in seen_values:
                self.add(
                    v_at.key("enumValue"),
                    "enum-value-duplicate",
                    f"enumValue {value!r} is used twice in this Enum; make each value unique",
                )
            seen_values.add(value)
            if name is not None:
                parsed.append(EnumValue(name=name, value=value, **v_info))
        self.unique_names(names, "values of this Enum")
        if value_schema is None:
            return None
        return EnumSchema(value_schema=value_schema, values=tuple(parsed), **info)

    def map(self, raw: dict[str, Any], at: _At, info: dict[str, Any]) -> Schema | None:
        self.keys(raw, at, "Map", {"mapKey", "mapValue"}, {"mapKey", "mapValue"})
        self.unit(raw, at, None, None)
        key, value = raw.get("mapKey"), raw.get("mapValue")
        key_name = value_name = None
        value_schema = sem = unit = None
        if isinstance(key, dict):
            k_at = at.key("mapKey")
            self.types(key, k_at, ("MapKey",), default="MapKey")
            self.common(key, k_at)
            self.keys(key, k_at, "MapKey", {"name", "schema"}, {"name", "schema"})
            self.unit(key, k_at, None, None)
            key_name = self.name(key, k_at)
            if "schema" in key and _standard_term(key["schema"]) != "string":
                self.add(
                    k_at.key("schema"),
                    "map-key-schema",
                    f"a Map's key schema must be 'string', not {key['schema']!r}",
                )
        elif key is not None:
            self.add(at.key("mapKey"), "property-type", "mapKey must be an object")
        if isinstance(value, dict):
            v_at = at.key("mapValue")
            _, sem = self.types(value, v_at, ("MapValue",), default="MapValue", semantic=True)
            self.common(value, v_at)
            self.keys(value, v_at, "MapValue", {"name", "schema"}, {"name", "schema"})
            value_name = self.name(value, v_at)
            if "schema" in value:
                value_schema = self.schema(value["schema"], v_at.key("schema"))
            unit = self.unit(value, v_at, sem, value_schema)
        elif value is not None:
            self.add(at.key("mapValue"), "property-type", "mapValue must be an object")
        if key_name is None or value_name is None or value_schema is None:
            return None
        return MapSchema(
            key_name=key_name,
            value_name=value_name,
            value_schema=value_schema,
            semantic_type=sem,
            unit=unit,
            **info,
        )

    # ---- contents -------------------------------------------------------------------------

    def content(self, raw: dict[str, Any], at: _At) -> Content | None:
        kind, sem = self.types(raw, at, _CONTENT_CLASSES, semantic=True)
        if kind is None:
            return None
        if sem is not None and kind not in ("Telemetry", "Property"):
            self.add(
                at.key("@type"),
                "type-cotype",
                f"semantic type {sem!r} cannot co-type a {kind}; remove it",
            )
            sem = None
        info = self.common(raw, at)
        if "id" in info:
            at = at.at_id(info["id"])
        if kind in ("Telemetry", "Property"):
            return self.value_element(raw, at, kind, sem, info)
        if kind == "Command":
            return self.command(raw, at, info)
        if kind == "Relationship":
            return self.relationship(raw, at, info)
        return self.component(raw, at, info)

    def value_element(
        self, raw: dict[str, Any], at: _At, kind: str, sem: str | None, info: dict[str, Any]
    ) -> Telemetry | Property | None:
        extra = {"writable"} if kind == "Property" else set()
        self.keys(raw, at, kind, {"name", "schema"} | extra, {"name", "schema"})
        name = self.name(raw, at)
        schema = self.schema(raw["schema"], at.key("schema")) if "schema" in raw else None
        self.depth(schema, at.key("schema"))
        unit = self.unit(raw, at, sem, schema)
        writable = self.flag(raw, "writable", at)
        if name is None or schema is None:
            return None
        if kind == "Telemetry":
            return Telemetry(name=name, schema=schema, semantic_type=sem, unit=unit, **info)
        return Property(
            name=name, schema=schema, writable=writable, semantic_type=sem, unit=unit, **info
        )

    def command(self, raw: dict[str, Any], at: _At, info: dict[str, Any]) -> Command | None:
        self.keys(raw, at, "Command", {"name", "request", "response"}, {"name"})
        self.unit(raw, at, None, None)
        name = self.name(raw, at)
        payloads: dict[str, CommandPayload | None] = {}
        for key, kind in (("request", "CommandRequest"), ("response", "CommandResponse")):
            if key not in raw:
                payloads[key] = None
                continue
            p, p_at = raw[key], at.key(key)
            if not isinstance(p, dict):
                self.add(p_at, "property-type", f"{key} must be a {kind} object")
                continue
            _, sem = self.types(p, p_at, (kind,), default=kind, semantic=True)
            p_info = self.common(p, p_at)
            self.keys(p, p_at, kind, {"name", "schema"}, {"name", "schema"})
            p_name = self.name(p, p_at)
            schema = self.schema(p["schema"], p_at.key("schema")) if "schema" in p else None
            self.depth(schema, p_at.key("schema"))
            unit = self.unit(p, p_at, sem, schema)
            if p_name is not None and schema is not None:
                payloads[key] = CommandPayload(
                    name=p_name, schema=schema, semantic_type=sem, unit=unit, **p_info
                )
        if name is None or len(payloads) != 2:
            return None
        request, response = payloads["request"], payloads["response"]
        return Command(name=name, request=request, response=response, **info)

    def relationship(
        self, raw: dict[str, Any], at: _At, info: dict[str, Any]
    ) -> Relationship | None:
        allowed = {"name", "target", "minMultiplicity", "maxMultiplicity", "properties", "writable"}
        self.keys(raw, at, "Relationship", allowed, {"name"})
        self.unit(raw, at, None, None)
        name = self.name(raw, at)
        target = raw.get("target")
        if target is not None and not self.check_dtmi(target, at.key("target")):
            target = None
        low, high = raw.get("minMultiplicity", 0), raw.get("maxMultiplicity")
        if not _is_int(low) or low != 0:
            self.add(
                at.key("minMultiplicity"),
                "multiplicity",
                f"minMultiplicity must be 0 in DTDL v3, not {low!r}; remove it or set it to 0",
            )
        if high is not None and (not _is_int(high) or high < 1):
            self.add(
                at.key("maxMultiplicity"),
                "multiplicity",
                f"maxMultiplicity must be a whole number of at least 1, not {high!r}",
            )
            high = None
        props: list[Property] = []
        names: list[tuple[_At, str | None]] = []
        for p, p_at in self.members(raw, "properties", at) or []:
            if not isinstance(p, dict):
                self.add(p_at, "property-type", "each Relationship property is an object")
                continue
            kind, sem = self.types(p, p_at, ("Property",), semantic=True)
            if kind is None:
                continue
            p_info = self.common(p, p_at)
            if "id" in p_info:
                p_at = p_at.at_id(p_info["id"])
            names.append((p_at, p.get("name") if isinstance(p.get("name"), str) else None))
            prop = self.value_element(p, p_at, "Property", sem, p_info)
            if isinstance(prop, Property):
                props.append(prop)
        self.unique_names(names, "properties of this Relationship")
        writable = self.flag(raw, "writable", at)
        if name is None:
            return None
        return Relationship(
            name=name,
            target=target,
            min_multiplicity=0,
            max_multiplicity=high,
            properties=tuple(props),
            writable=writable,
            **info,
        )

    def component(self, raw: dict[str, Any], at: _At, info: dict[str, Any]) -> Component | None:
        self.keys(raw, at, "Component", {"name", "schema"}, {"name", "schema"})
        self.unit(raw, at, None, None)
        name = self.name(raw, at)
        schema = raw.get("schema")
        target: str | None = None
        if isinstance(schema, dict):
            target = self.interface(schema, at.key("schema"), self.current_contexts)
        elif schema is not None and self.check_dtmi(schema, at.key("schema")):
            target = schema
        elif schema is not None:
            return None
        if target is not None:
            self.refs.append((at.key("schema"), "component", target))
        if name is None or target is None:
            return None
        return Component(name=name, schema=target, **info)

    # ---- interfaces -----------------------------------------------------------------------

    current_contexts: tuple[str, ...] = ()

    def interface(
        self, raw: dict[str, Any], at: _At, inherited: tuple[str, ...] | None
    ) -> str | None:
        """Parse one Interface (top-level or inline); return its @id when it has a valid one."""
        saved = (self.quantitative, self.defs, self.def_done, self.def_busy, self.current_contexts)
        own_id = raw.get("@id")
        contexts = self.contexts(raw, at.at_id(own_id) if is_dtmi(own_id) else at, inherited)
        self.current_contexts = contexts
        self.quantitative = quantities.CONTEXT in contexts
        self.defs, self.def_done, self.def_busy = {}, {}, set()
        try:
            return self._interface(raw, at, contexts)
        finally:
            (
                self.quantitative,
                self.defs,
                self.def_done,
                self.def_busy,
                self.current_contexts,
            ) = saved

    def _interface(self, raw: dict[str, Any], at: _At, contexts: tuple[str, ...]) -> str | None:
        kind, _ = self.types(raw, at, ("Interface",))
        early = at.at_id(raw["@id"]) if is_dtmi(raw.get("@id")) else at
        info = self.common(raw, early, interface=True)
        dtmi = info.pop("id", None)
        if dtmi is not None:
            at = at.at_id(dtmi)
        self.keys(
            raw,
            at,
            "Interface",
            {"@context", "contents", "extends", "schemas"},
            {"@id"} if "@id" not in raw else (),
        )
        self.unit(raw, at, None, None)
        # extends: DTMIs or inline Interfaces
        extends: list[str] = []
        for i, item in enumerate(_as_list(raw.get("extends", []))):
            e_at = (
                at.key("extends").index(i)
                if isinstance(raw["extends"], list)
                else at.key("extends")
            )
            if isinstance(item, dict):
                parent = self.interface(item, e_at, contexts)
            elif self.check_dtmi(item, e_at):
                parent = item
            else:
                parent = None
            if parent is not None:
                extends.append(parent)
                self.refs.append((e_at, "extends", parent))
        # schemas: reusable complex schemas, each with an @id
        order: list[str] = []
        for s, s_at in self.members(raw, "schemas", at) or []:
            if not isinstance(s, dict):
                self.add(s_at, "property-type", "each entry of schemas is a complex schema object")
            elif "@id" not in s:
                self.add(
                    s_at,
                    "property-missing",
                    "a schema in an Interface's 'schemas' needs an @id to be referred to; add one",
                )
            elif isinstance(s["@id"], str) and s["@id"] not in self.defs:
                self.defs[s["@id"]] = (s, s_at)
                order.append(s["@id"])
            elif isinstance(s["@id"], str):
                self.add(
                    s_at.key("@id"),
                    "id-duplicate",
                    f"@id {s['@id']!r} names two schemas of this Interface; rename one",
                )
            else:
                self.check_dtmi(s["@id"], s_at.key("@id"))
        # contents
        raw_contents = self.members(raw, "contents", at) or []
        contents: list[Content] = []
        names: list[tuple[_At, str | None]] = []
        for c, c_at in raw_contents:
            if not isinstance(c, dict):
                self.add(c_at, "property-type", "each entry of contents is an object")
                continue
            name = c.get("name") if isinstance(c.get("name"), str) else None
            element = self.content(c, c_at)
            if element is not None and element.id is not None:
                c_at = c_at.at_id(element.id)
            names.append((c_at, name))
            if element is not None:
                contents.append(element)
        self.unique_names(names, "contents of this Interface")
        schemas: list[Schema] = []
        for sid in order:
            _, s_at = self.defs[sid]
            s = self.reference(sid, s_at)
            self.depth(s, s_at)
            if s is not None:
                schemas.append(s)
        count = _count_elements([c for c, _ in raw_contents])
        if count > MAX_CONTENTS:
            self.add(
                at.key("contents"),
                "contents-limit",
                f"{count} elements under contents; DTDL v3 allows {MAX_CONTENTS} per Interface",
            )
        if dtmi is None or kind is None:
            return None
        self.counts[dtmi] = count
        if dtmi not in self.interfaces:
            self.interfaces[dtmi] = Interface(
                id=dtmi,
                contents=tuple(contents),
                extends=tuple(extends),
                schemas=tuple(schemas),
                contexts=contexts,
                file=at.file,
                **info,
            )
        return dtmi

    # ---- what crosses files ---------------------------------------------------------------

    def resolve(self) -> None:
        at_of = {i.id: _At(i.file, i.id) for i in self.interfaces.values()}
        for at, kind, target in self.refs:
            if target not in self.interfaces:
                self.add(
                    at,
                    f"{kind}-unresolved",
                    f"no Interface {target!r} in the files given; add the file that defines it",
                )
        depth_memo: dict[str, int] = {}
        cyclic: set[str] = set()

        def depth(dtmi: str, trail: tuple[str, ...]) -> int:
            if dtmi in trail:
                cyclic.update(trail[trail.index(dtmi) :])
                return 0
            if dtmi in depth_memo:
                return depth_memo[dtmi]
            parents = [p for p in self.interfaces[dtmi].extends if p in self.interfaces]
            d = 1 + max((depth(p, (*trail, dtmi)) for p in parents), default=-1)
            depth_memo[dtmi] = d
            return d

        for dtmi in self.interfaces:
            depth(dtmi, ())
        for dtmi, iface in self.interfaces.items():
            at = at_of[dtmi]
            if dtmi in cyclic:
                self.add(
                    at.key("extends"),
                    "extends-cycle",
                    "this Interface extends itself through its 'extends' chain; break the cycle",
                )
                continue
            if depth_memo[dtmi] > MAX_EXTENDS_DEPTH:
                self.add(
                    at.key("extends"),
                    "extends-depth",
                    f"'extends' is {depth_memo[dtmi]} levels deep; DTDL v3 allows "
                    f"{MAX_EXTENDS_DEPTH}",
                )
                continue
            ancestors = self.ancestors(dtmi)
            if len(ancestors) - 1 > MAX_EXTENDS_COUNT:
                self.add(
                    at.key("extends"),
                    "extends-count",
                    f"{len(ancestors) - 1} Interfaces in the 'extends' hierarchy; DTDL v3 "
                    f"allows {MAX_EXTENDS_COUNT}",
                )
            origin: dict[str, str] = {}
            for a in ancestors:
                for c in self.interfaces[a].contents:
                    if c.name in origin and origin[c.name] != a:
                        self.add(
                            at.key("contents"),
                            "extends-conflict",
                            f"name {c.name!r} comes from both {origin[c.name]!r} and {a!r}; "
                            "names must be unique across inherited contents: rename one",
                        )
                    origin.setdefault(c.name, a)
            total = sum(self.counts.get(a, 0) for a in ancestors)
            if iface.extends and total > MAX_CONTENTS:
                self.add(
                    at.key("contents"),
                    "contents-limit",
                    f"{total} elements under contents including inherited ones; DTDL v3 "
                    f"allows {MAX_CONTENTS}",
                )
            for i, c in enumerate(iface.contents):
                if not isinstance(c, Component) or c.schema not in self.interfaces:
                    continue
                if c.schema in cyclic:
                    continue
                nested = [
                    n.name
                    for a in self.ancestors(c.schema)
                    for n in self.interfaces[a].contents
                    if isinstance(n, Component)
                ]
                if nested or c.schema in ancestors:
                    self.add(
                        at.key("contents").index(i).key("schema"),
                        "component-nested",
                        f"Component {c.name!r} uses {c.schema!r}, which itself holds "
                        f"Components ({', '.join(nested) or 'itself'}); DTDL v3 does not allow "
                        "a Component inside a Component",
                    )

    def ancestors(self, dtmi: str) -> list[str]:
        seen: list[str] = []
        todo = [dtmi]
        while todo:
            current = todo.pop(0)
            if current in seen or current not in self.interfaces:
                continue
            seen.append(current)
            todo.extend(self.interfaces[current].extends)
        return seen


def find_model_files(paths: Iterable[str | Path]) -> list[Path]:
    """The ``*.json`` files named or found (recursively) under the folders named.

    Raises :class:`ConfigError` for a path that does not exist.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*.json") if f.is_file()))
        elif p.is_file():
            files.append(p)
        else:
            raise ConfigError(
                f"no such file or folder: {str(p)!r}; pass DTDL model files or folders"
            )
    return files


def _parse(paths: Iterable[str | Path]) -> tuple[ModelSet, list[Problem]]:
    parser = _Parser()
    for f in find_model_files(paths):
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            parser.add(_At(str(f), "(file)"), "file-read", f"cannot read the file: {exc}")
            continue
        parser.document(str(f), text)
    parser.resolve()
    return ModelSet(dict(parser.interfaces)), parser.problems


def parse_files(paths: Iterable[str | Path]) -> ModelSet:
    """Parse DTDL v3 files and folders together; raise :class:`DtdlError` listing all problems.

    References (``extends``, Component schemas) resolve across every file given.
    """
    models, problems = _parse(paths)
    if problems:
        raise DtdlError(problems)
    return models


def check_paths(paths: Iterable[str | Path]) -> list[Problem]:
    """Every problem in the DTDL files and folders given (an empty list when all are valid)."""
    return _parse(paths)[1]


def parse_text(text: str, file: str = "<text>") -> ModelSet:
    """Parse one document held in a string (handy in tests and examples).

    >>> m = parse_text('{"@context": "dtmi:dtdl:context;3", "@id": "dtmi:ex:A;1", '
    ...     '"@type": "Interface", "contents": [{"@type": "Telemetry", "name": "t", '
    ...     '"schema": "double"}]}')
    >>> m.telemetry("dtmi:ex:A;1", "t").schema.name
    'double'
    """
    parser = _Parser()
    parser.document(file, text)
    parser.resolve()
    if parser.problems:
        raise DtdlError(parser.problems)
    return ModelSet(dict(parser.interfaces))
