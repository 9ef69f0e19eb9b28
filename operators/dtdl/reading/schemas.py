"""Schemas: primitives, the complex ones (Array, Enum, Map, Object) and reusable ``schemas``.

A schema written as a DTMI refers to an entry of the current Interface's ``schemas``; those
are parsed on first use, once, and a schema that contains itself is reported.
"""

from __future__ import annotations

from typing import Any

from twinflow.operators.dtdl import quantities
from twinflow.operators.dtdl.dtmi import is_dtmi
from twinflow.operators.dtdl.model import (
    ArraySchema,
    EnumSchema,
    EnumValue,
    Field,
    MapSchema,
    ObjectSchema,
    PrimitiveSchema,
    Schema,
)
from twinflow.operators.dtdl.reading import limits
from twinflow.operators.dtdl.reading.elements import ElementReader
from twinflow.operators.dtdl.reading.language import V2_ENUM_VALUES, V2_OBJECT_FIELDS
from twinflow.operators.dtdl.reading.place import At
from twinflow.operators.dtdl.reading.vocabulary import (
    COMPLEX,
    GEOSPATIAL,
    LATER_PRIMITIVES,
    PRIMITIVES,
    is_int32,
    standard_term,
)

#: What every element holding a value requires: a name and a schema (in reporting order).
NAME_SCHEMA = ("name", "schema")


def schema_depth(schema: Schema) -> int:
    """How many ``schema``/``elementSchema`` members lie on the longest path down from here.

    A primitive or an Enum is 0 (neither has such a member), an Array of double 1, an Object
    whose field is an Array of Enums 2.
    """
    if isinstance(schema, ArraySchema):
        return 1 + schema_depth(schema.element_schema)
    if isinstance(schema, MapSchema):
        return 1 + schema_depth(schema.value_schema)
    if isinstance(schema, ObjectSchema):
        return max((1 + schema_depth(f.schema) for f in schema.fields), default=0)
    return 0


class SchemaReader(ElementReader):
    """Reads schemas, and the named values (fields, payloads...) that carry one."""

    def schema(self, value: Any, at: At) -> Schema | None:
        """A schema written as a term, an IRI, the @id of a complex schema or an object."""
        version = self.scope.active.version
        if (
            isinstance(value, str)
            and value.startswith("dtmi:")
            and value.endswith(f";{5 - version}")
        ):
            term = standard_term(value)  # the other version's IRI of a standard schema
            if term != value:
                self.add(at, "schema-unknown", f"{value!r} is DTDL v{5 - version}'s; use {term!r}")
                return None
        value = standard_term(value)
        if isinstance(value, str):
            if value in PRIMITIVES or value in GEOSPATIAL:
                return PrimitiveSchema(name=value)
            unit_type = quantities.term(value, "enum")
            if self.scope.active.quantitative and unit_type in quantities.UNIT_TYPES:
                return _unit_type(unit_type)
            if value in LATER_PRIMITIVES:
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

    def reference(self, dtmi: str, at: At) -> Schema | None:
        """The reusable schema ``dtmi`` of the current Interface, parsed on first use."""
        scope = self.scope
        if dtmi in scope.done:
            return scope.done[dtmi]
        if dtmi in scope.busy:
            self.add(
                at,
                "schema-cycle",
                f"schema {dtmi!r} contains itself; a schema must not refer back to itself",
            )
            return None
        if dtmi not in scope.defs:
            self.add(
                at,
                "schema-unresolved",
                f"no schema {dtmi!r} in this Interface; define it in its 'schemas' (schemas "
                "are not shared through 'extends' or Components)",
            )
            return None
        scope.busy.add(dtmi)
        raw, def_at = scope.defs[dtmi]
        result = self._complex(raw, def_at) if isinstance(raw, dict) else None
        scope.busy.discard(dtmi)
        scope.done[dtmi] = result
        return result

    def depth(self, schema: Schema | None, at: At) -> None:
        """Report complex schemas nested deeper than DTDL v3 allows."""
        if schema is not None and schema_depth(schema) > limits.MAX_SCHEMA_DEPTH:
            self.add(
                at,
                "schema-depth",
                f"complex schemas are nested {schema_depth(schema)} levels deep; DTDL v3 "
                f"allows {limits.MAX_SCHEMA_DEPTH}: flatten the schema",
            )

    def named_value(
        self,
        raw: dict[str, Any],
        at: At,
        kind: str,
        sem: str | None,
        *,
        extra: frozenset[str] = frozenset(),
        depth: bool = True,
    ) -> tuple[str | None, Schema | None, str | None]:
        """Name, schema and unit of an element holding a value (``extra``: more properties).

        ``depth`` checks the nesting limit here; a schema inside a schema is checked as part
        of the outer one.
        """
        self.keys(raw, at, kind, {*NAME_SCHEMA, *extra}, NAME_SCHEMA)
        name = self.name(raw, at)
        schema = self.schema(raw["schema"], at.key("schema")) if "schema" in raw else None
        if depth:
            self.depth(schema, at.key("schema"))
        return name, schema, self.unit(raw, at, sem, schema)

    def part(
        self, raw: dict[str, Any], at: At, kind: str, *, semantic: bool = False
    ) -> tuple[str | None, dict[str, Any]]:
        """The semantic type and common properties of a part whose ``@type`` may be left out."""
        _, sem = self.types(raw, at, (kind,), default=kind, semantic=semantic)
        return sem, self.common(raw, at)

    # ---- complex schemas ----------------------------------------------------------------

    def complex(self, raw: dict[str, Any], at: At) -> Schema | None:
        """An Array, Enum, Map or Object written as an object (each one parsed once)."""
        sid = raw.get("@id")
        if isinstance(sid, str) and self.scope.defs.get(sid, (None,))[0] is raw:
            return self.reference(sid, at)
        return self._complex(raw, at)

    def _complex(self, raw: dict[str, Any], at: At) -> Schema | None:
        kind, _ = self.types(raw, at, COMPLEX)
        info, at = self.identified(raw, at)
        if kind == "Array":
            return self.array_schema(raw, at, info)
        if kind == "Enum":
            return self.enum_schema(raw, at, info)
        if kind == "Map":
            return self.map_schema(raw, at, info)
        if kind == "Object":
            return self.object_schema(raw, at, info)
        return None

    def array_schema(self, raw: dict[str, Any], at: At, info: dict[str, Any]) -> Schema | None:
        self.keys(raw, at, "Array", {"elementSchema"}, ("elementSchema",))
        self.unit(raw, at, None, None)
        if "elementSchema" not in raw:
            return None
        element = self.schema(raw["elementSchema"], at.key("elementSchema"))
        return None if element is None else ArraySchema(element_schema=element, **info)

    def object_schema(self, raw: dict[str, Any], at: At, info: dict[str, Any]) -> Schema | None:
        self.keys(raw, at, "Object", {"fields"})
        self.unit(raw, at, None, None)
        fields = self.members(raw, "fields", at)
        if fields is None:
            return None
        self.count_v2(raw, at, "fields", len(fields), V2_OBJECT_FIELDS)
        parsed: list[Field] = []
        names: list[tuple[At, str | None]] = []
        read = list(self.objects(fields, "each field is an object"))
        self.unique_indexes(read, "fields of this Object")
        for f, f_at in read:
            sem, f_info = self.part(f, f_at, "Field", semantic=True)
            name, schema, unit = self.named_value(f, f_at, "Field", sem, depth=False)
            names.append((f_at, name))
            if name is not None and schema is not None:
                parsed.append(
                    Field(name=name, schema=schema, semantic_type=sem, unit=unit, **f_info)
                )
        self.unique_names(names, "fields of this Object")
        # an Object with a broken field is broken: every field must have made it
        if len(parsed) != len(fields):
            return None
        return ObjectSchema(fields=tuple(parsed), **info)

    def enum_schema(self, raw: dict[str, Any], at: At, info: dict[str, Any]) -> Schema | None:
        self.keys(raw, at, "Enum", {"valueSchema", "enumValues"}, ("valueSchema",))
        self.unit(raw, at, None, None)
        value_schema = standard_term(raw.get("valueSchema"))
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
        self.count_v2(raw, at, "enumValues", len(values), V2_ENUM_VALUES)
        parsed: list[EnumValue] = []
        names: list[tuple[At, str | None]] = []
        seen: set[int | str] = set()
        read = list(self.objects(values, "each enum value is an object"))
        self.unique_indexes(read, "values of this Enum")
        for v, v_at in read:
            _, v_info = self.part(v, v_at, "EnumValue")
            self.keys(v, v_at, "EnumValue", {"name", "enumValue"}, ("name", "enumValue"))
            self.unit(v, v_at, None, None)
            name = self.name(v, v_at)
            names.append((v_at, name))
            if "enumValue" not in v or not self.enum_value(v, v_at, value_schema, seen):
                continue
            if name is not None:
                parsed.append(EnumValue(name=name, value=v["enumValue"], **v_info))
        self.unique_names(names, "values of this Enum")
        if value_schema is None:
            return None
        return EnumSchema(value_schema=value_schema, values=tuple(parsed), **info)

    def enum_value(
        self, raw: dict[str, Any], at: At, value_schema: str | None, seen: set[int | str]
    ) -> bool:
        """Check one ``enumValue`` against the Enum's type and the values ``seen`` before it."""
        value = raw["enumValue"]
        typed_ok = (value_schema == "integer" and is_int32(value)) or (
            value_schema == "string" and isinstance(value, str)
        )
        if value_schema is not None and not typed_ok:
            self.add(
                at.key("enumValue"),
                "enum-value-type",
                f"enumValue {value!r} is not of the Enum's valueSchema {value_schema!r}",
            )
            return False
        if not (is_int32(value) or isinstance(value, str)):
            return False
        if value in seen:
            self.add(
                at.key("enumValue"),
                "enum-value-duplicate",
                f"enumValue {value!r} is used twice in this Enum; make each value unique",
            )
        seen.add(value)
        return True

    def map_schema(self, raw: dict[str, Any], at: At, info: dict[str, Any]) -> Schema | None:
        self.keys(raw, at, "Map", {"mapKey", "mapValue"}, ("mapKey", "mapValue"))
        self.unit(raw, at, None, None)
        key, value = raw.get("mapKey"), raw.get("mapValue")
        key_name: str | None = None
        value_name: str | None = None
        value_schema: Schema | None = None
        sem: str | None = None
        unit: str | None = None
        if isinstance(key, dict):
            key_name = self.map_key(key, at.key("mapKey"))
        elif key is not None:
            self.add(at.key("mapKey"), "property-type", "mapKey must be an object")
        if isinstance(value, dict):
            v_at = at.key("mapValue")
            sem, _ = self.part(value, v_at, "MapValue", semantic=True)
            value_name, value_schema, unit = self.named_value(
                value, v_at, "MapValue", sem, depth=False
            )
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

    def map_key(self, raw: dict[str, Any], at: At) -> str | None:
        """A Map's key: a name, and a schema that can only be ``string``."""
        self.part(raw, at, "MapKey")
        self.keys(raw, at, "MapKey", NAME_SCHEMA, NAME_SCHEMA)
        self.unit(raw, at, None, None)
        name = self.name(raw, at)
        if "schema" in raw and standard_term(raw["schema"]) != "string":
            self.add(
                at.key("schema"),
                "map-key-schema",
                f"a Map's key schema must be 'string', not {raw['schema']!r}",
            )
        return name

    def count_v2(
        self, raw: dict[str, Any], at: At, key: str, count: int, bounds: tuple[int, int]
    ) -> None:
        """DTDL v2 bounds the number of an Enum's values and of an Object's fields."""
        low, high = bounds
        if self.act(raw).version == 2 and not low <= count <= high:
            self.add(
                at.key(key),
                "count-limit",
                f"DTDL v2 requires {low} to {high} {key}; this one has {count}",
            )


def _unit_type(name: str) -> EnumSchema:
    """A QuantitativeTypes unit type used as a schema: an Enum of its unit names."""
    units = sorted(quantities.UNIT_TYPES[name])
    return EnumSchema(
        id=None, value_schema="string", values=tuple(EnumValue(name=u, value=u) for u in units)
    )
