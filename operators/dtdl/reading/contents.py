"""An Interface's contents: Telemetry, Property, Command, Relationship and Component.

A Component (like ``extends``) names another Interface by DTMI or holds one inline; those
links are collected as :class:`Ref` for the second pass, which resolves them across files.
"""

from __future__ import annotations

from typing import Any

from twinflow.operators.dtdl.model import (
    ArraySchema,
    Command,
    CommandPayload,
    Component,
    Content,
    MapSchema,
    ObjectSchema,
    PrimitiveSchema,
    Property,
    Relationship,
    Schema,
    Telemetry,
)
from twinflow.operators.dtdl.reading.language import V2_MAX_CONTENTS, V2_MAX_MULTIPLICITY
from twinflow.operators.dtdl.reading.place import At, Ref
from twinflow.operators.dtdl.reading.schemas import NAME_SCHEMA, SchemaReader
from twinflow.operators.dtdl.reading.vocabulary import (
    CONTENT_CLASSES,
    GEOSPATIAL,
    given_name,
    is_int32,
)

_RELATIONSHIP = frozenset(
    {"name", "target", "minMultiplicity", "maxMultiplicity", "properties", "writable"}
)
_PAYLOADS = (("request", "CommandRequest"), ("response", "CommandResponse"))
_COMMAND_TYPES = frozenset(
    f"{prefix}{t}{suffix}"
    for t in ("asynchronous", "synchronous")
    for prefix, suffix in (("", ""), ("dtmi:dtdl:instance:CommandType:", ";3"))
)


class ContentReader(SchemaReader):
    """Reads the elements of ``contents``; Interfaces themselves come from the layer above."""

    def __init__(self, *, allow_undefined_extensions: bool = False) -> None:
        super().__init__(allow_undefined_extensions=allow_undefined_extensions)
        self.refs: list[Ref] = []
        self.inline: set[str] = set()  # Interfaces defined inline (their context is checked)

    def interface(self, raw: dict[str, Any], at: At) -> str | None:
        """Parse an inline Interface (a Component's schema, an ``extends`` entry).

        The grammar is recursive: :class:`~.interfaces.InterfaceReader`, the layer above,
        implements this.
        """
        raise NotImplementedError

    def linked_interface(self, value: Any, at: At, kind: str) -> str | None:
        """An Interface named by DTMI or written inline, remembered as a :class:`Ref`."""
        if isinstance(value, dict):
            target = self.interface(value, at)
            if target is not None:
                self.inline.add(target)
        elif self.check_dtmi(value, at):
            target = value
        else:
            target = None
        if target is not None:
            self.refs.append(Ref(at, kind, target))
        return target

    def content(self, raw: dict[str, Any], at: At) -> Content | None:
        """One entry of ``contents``, by its ``@type``."""
        kind, sem = self.types(raw, at, CONTENT_CLASSES, semantic=True)
        if kind is None:
            return None
        if sem is not None and kind not in ("Telemetry", "Property"):
            self.refuse_cotype(at.key("@type"), sem, kind)
            sem = None
        info, at = self.identified(raw, at)
        if kind in ("Telemetry", "Property"):
            return self.value_element(raw, at, kind, sem, info)
        if kind == "Command":
            return self.command(raw, at, info)
        if kind == "Relationship":
            return self.relationship(raw, at, info)
        return self.component(raw, at, info)

    def value_element(
        self, raw: dict[str, Any], at: At, kind: str, sem: str | None, info: dict[str, Any]
    ) -> Telemetry | Property | None:
        extra = frozenset({"writable"} if kind == "Property" else ())
        name, schema, unit = self.named_value(raw, at, kind, sem, extra=extra)
        writable = self.flag(raw, "writable", at)
        if kind == "Property" and schema is not None and self.act(raw).version == 2:
            bad = _v2_property_problem(schema)
            if bad is not None:
                self.add(at.key("schema"), "schema-v2-property", bad)
                return None
        if name is None or schema is None:
            return None
        if kind == "Telemetry":
            return Telemetry(name=name, schema=schema, semantic_type=sem, unit=unit, **info)
        return Property(
            name=name, schema=schema, writable=writable, semantic_type=sem, unit=unit, **info
        )

    def command(self, raw: dict[str, Any], at: At, info: dict[str, Any]) -> Command | None:
        self.keys(raw, at, "Command", {"name", "request", "response", "commandType"}, ("name",))
        self.unit(raw, at, None, None)
        name = self.name(raw, at)
        version = self.act(raw).version
        if "commandType" in raw and raw["commandType"] not in {
            c.replace(";3", f";{version}") for c in _COMMAND_TYPES
        }:
            self.add(
                at.key("commandType"),
                "command-type",
                f"commandType (deprecated) is 'synchronous' or 'asynchronous', not "
                f"{raw['commandType']!r}",
            )
        payloads: dict[str, CommandPayload | None] = {}
        for key, kind in _PAYLOADS:
            kind = "CommandPayload" if version == 2 else kind
            if key not in raw:
                payloads[key] = None
                continue
            items = list(self.objects([(raw[key], at.key(key))], f"{key} must be a {kind} object"))
            if items:
                payload = self.payload(items[0][0], at.key(key), kind)
                if payload is not None:
                    payloads[key] = payload
        # a payload that is given but broken leaves its key out: the Command is broken
        if name is None or len(payloads) != len(_PAYLOADS):
            return None
        request, response = payloads["request"], payloads["response"]
        return Command(name=name, request=request, response=response, **info)

    def payload(self, raw: dict[str, Any], at: At, kind: str) -> CommandPayload | None:
        """A Command's request or response."""
        sem, info = self.part(raw, at, kind, semantic=True)
        name, schema, unit = self.named_value(raw, at, kind, sem)
        if name is None or schema is None:
            return None
        return CommandPayload(name=name, schema=schema, semantic_type=sem, unit=unit, **info)

    def relationship(
        self, raw: dict[str, Any], at: At, info: dict[str, Any]
    ) -> Relationship | None:
        self.keys(raw, at, "Relationship", _RELATIONSHIP, ("name",))
        self.unit(raw, at, None, None)
        name = self.name(raw, at)
        target = raw.get("target")
        if "target" in raw and not self.check_dtmi(target, at.key("target")):
            target = None
        high = self.multiplicity(raw, at)
        props = self.relationship_properties(raw, at)
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

    def multiplicity(self, raw: dict[str, Any], at: At) -> int | None:
        """Check min and max multiplicity; return the max when valid (``None``: unbounded)."""
        low, high = raw.get("minMultiplicity", 0), raw.get("maxMultiplicity")
        if not is_int32(low) or low != 0:
            self.add(
                at.key("minMultiplicity"),
                "multiplicity",
                f"minMultiplicity must be 0, not {low!r}; remove it or set it to 0",
            )
        most = V2_MAX_MULTIPLICITY if self.act(raw).version == 2 else 2**31 - 1
        if "maxMultiplicity" in raw and (not is_int32(high) or not 1 <= high <= most):
            self.add(
                at.key("maxMultiplicity"),
                "multiplicity",
                f"maxMultiplicity must be a whole number from 1 to {most}, not {high!r}",
            )
            return None
        return None if high is None else int(high)

    def relationship_properties(self, raw: dict[str, Any], at: At) -> list[Property]:
        props: list[Property] = []
        names: list[tuple[At, str | None]] = []
        items = self.members(raw, "properties", at) or []
        if self.act(raw).version == 2 and len(items) > V2_MAX_CONTENTS:
            self.add(
                at.key("properties"),
                "count-limit",
                f"DTDL v2 allows {V2_MAX_CONTENTS} properties; this one has {len(items)}",
            )
        for p, p_at in self.objects(items, "each Relationship property is an object"):
            kind, sem = self.types(p, p_at, ("Property",), semantic=True)
            if kind is None:
                continue
            p_info, p_at = self.identified(p, p_at)
            names.append((p_at, given_name(p)))
            prop = self.value_element(p, p_at, "Property", sem, p_info)
            if isinstance(prop, Property):
                props.append(prop)
        self.unique_names(names, "properties of this Relationship")
        return props

    def component(self, raw: dict[str, Any], at: At, info: dict[str, Any]) -> Component | None:
        self.keys(raw, at, "Component", NAME_SCHEMA, NAME_SCHEMA)
        self.unit(raw, at, None, None)
        name = self.name(raw, at)
        schema = raw.get("schema")
        target = (
            None if schema is None else self.linked_interface(schema, at.key("schema"), "component")
        )
        if name is None or target is None:
            return None
        return Component(name=name, schema=target, **info)


def _v2_property_problem(schema: Schema) -> str | None:
    """Why a DTDL v2 Property may not have ``schema`` (no Array, no geospatial, at any depth)."""
    if isinstance(schema, ArraySchema):
        return "a DTDL v2 Property may not have an Array schema (at any depth); DTDL v3 allows it"
    if isinstance(schema, PrimitiveSchema) and schema.name in GEOSPATIAL:
        return f"a DTDL v2 Property may not have the geospatial schema {schema.name!r}"
    if isinstance(schema, MapSchema):
        return _v2_property_problem(schema.value_schema)
    if isinstance(schema, ObjectSchema):
        return next(filter(None, (_v2_property_problem(f.schema) for f in schema.fields)), None)
    return None
