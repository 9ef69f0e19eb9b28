"""The parsed form of DTDL v3 models: frozen dataclasses, one per element kind.

References between Interfaces (``extends``, a Component's ``schema``, a Relationship's
``target``) are kept as DTMIs and resolved through a :class:`ModelSet`, so the elements stay
small, comparable and picklable (plain dicts, no mapping proxies). Localizable strings
are maps from language tag to text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from twinflow.core.errors import ValidationError


@dataclass(frozen=True, slots=True, kw_only=True)
class Element:
    """What every DTDL element may carry: an ``@id``, display texts and a comment."""

    id: str | None = None
    display_name: Mapping[str, str] = field(default_factory=dict)
    description: Mapping[str, str] = field(default_factory=dict)
    comment: str | None = None


# ---- schemas ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PrimitiveSchema(Element):
    """A primitive (``double``, ``dateTime``...) or geospatial (``point``...) schema."""

    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EnumValue(Element):
    name: str
    value: int | str


@dataclass(frozen=True, slots=True, kw_only=True)
class EnumSchema(Element):
    value_schema: str  # "integer" or "string"
    values: tuple[EnumValue, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class NamedValue(Element):
    """A named value of one schema, which may carry a semantic type and its unit.

    The common base of :class:`Field`, :class:`Telemetry` and :class:`CommandPayload`;
    :class:`Property` spells its fields out to keep ``writable`` in its place (field order
    is what ``repr`` shows and what pickles hold).
    """

    name: str
    schema: Schema
    semantic_type: str | None = None
    unit: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Field(NamedValue):
    """A field of an Object; may carry a semantic type and unit."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectSchema(Element):
    fields: tuple[Field, ...] = ()

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class MapSchema(Element):
    """Keys are strings; ``key_name``/``value_name`` are metadata only."""

    key_name: str
    value_name: str
    value_schema: Schema
    semantic_type: str | None = None
    unit: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ArraySchema(Element):
    element_schema: Schema


Schema = PrimitiveSchema | EnumSchema | ObjectSchema | MapSchema | ArraySchema

# ---- contents --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Telemetry(NamedValue):
    """A value the twin reports over time."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Property(Element):
    name: str
    schema: Schema
    writable: bool = False
    semantic_type: str | None = None
    unit: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandPayload(NamedValue):
    """A Command's request or response: a named value of one schema."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Command(Element):
    name: str
    request: CommandPayload | None = None
    response: CommandPayload | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Relationship(Element):
    """A link to other twins; ``target`` is an Interface DTMI or ``None`` for any twin."""

    name: str
    target: str | None = None
    min_multiplicity: int = 0
    max_multiplicity: int | None = None
    properties: tuple[Property, ...] = ()
    writable: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Component(Element):
    """Another Interface included by value; ``schema`` is that Interface's DTMI."""

    name: str
    schema: str


Content = Telemetry | Property | Command | Relationship | Component


@dataclass(frozen=True, slots=True, kw_only=True)
class Interface(Element):
    """One Interface as written: its own contents; inherited ones come from :class:`ModelSet`."""

    id: str  # required here
    contents: tuple[Content, ...] = ()
    extends: tuple[str, ...] = ()
    schemas: tuple[Schema, ...] = ()
    contexts: tuple[str, ...] = ()
    file: str = ""


_C = TypeVar("_C", Telemetry, Property, Command)


@dataclass(frozen=True, slots=True)
class ModelSet:
    """Valid Interfaces by ``@id``, with inheritance resolved on lookup."""

    interfaces: Mapping[str, Interface] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.interfaces)

    def __iter__(self) -> Iterator[Interface]:
        return iter(self.interfaces.values())

    def __contains__(self, dtmi: object) -> bool:
        return dtmi in self.interfaces

    def interface(self, dtmi: str) -> Interface:
        try:
            return self.interfaces[dtmi]
        except KeyError:
            known = ", ".join(sorted(self.interfaces)) or "none"
            raise ValidationError(
                f"no DTDL Interface {dtmi!r} in the models; known: {known}"
            ) from None

    def ancestors(self, dtmi: str) -> tuple[str, ...]:
        """The Interface and every Interface it extends, nearest first, each once."""
        return tuple(walk_extends(dtmi, lambda d: self.interface(d).extends))

    def contents(self, dtmi: str) -> tuple[Content, ...]:
        """All contents of an Interface, its own first, then inherited ones."""
        return tuple(c for i in self.ancestors(dtmi) for c in self.interface(i).contents)

    def _find(self, dtmi: str, name: str, kind: type[_C]) -> _C:
        found = [c for c in self.contents(dtmi) if isinstance(c, kind)]
        for c in found:
            if c.name == name:
                return c
        known = ", ".join(c.name for c in found) or "none"
        raise ValidationError(f"Interface {dtmi!r} has no {kind.__name__} {name!r}; known: {known}")

    def telemetry(self, dtmi: str, name: str) -> Telemetry:
        return self._find(dtmi, name, Telemetry)

    def property(self, dtmi: str, name: str) -> Property:
        return self._find(dtmi, name, Property)

    def command(self, dtmi: str, name: str) -> Command:
        return self._find(dtmi, name, Command)


def walk_extends(dtmi: str, parents: Callable[[str], Iterable[str] | None]) -> list[str]:
    """``dtmi`` and every Interface it extends, breadth first (nearest first), each once.

    ``parents`` gives an Interface's ``extends``, or ``None`` to leave an unknown one out.
    """
    seen: list[str] = []
    todo = [dtmi]
    while todo:
        current = todo.pop(0)
        if current in seen:
            continue
        found = parents(current)
        if found is None:
            continue
        seen.append(current)
        todo.extend(found)
    return seen
