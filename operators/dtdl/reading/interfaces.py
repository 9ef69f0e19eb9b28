"""Interfaces: their ``extends``, reusable ``schemas`` and ``contents``, top-level or inline.

Each Interface opens its own :class:`~.elements.Scope` (contexts, reusable schemas) and
restores the outer one when done, so an inline Interface does not see its parent's schemas.
"""

from __future__ import annotations

from typing import Any

from twinflow.operators.dtdl.dtmi import is_dtmi
from twinflow.operators.dtdl.model import Content, Interface, Schema
from twinflow.operators.dtdl.reading import limits
from twinflow.operators.dtdl.reading.contents import ContentReader
from twinflow.operators.dtdl.reading.elements import Scope
from twinflow.operators.dtdl.reading.language import V2_MAX_CONTENTS, V2_MAX_EXTENDS
from twinflow.operators.dtdl.reading.place import At
from twinflow.operators.dtdl.reading.vocabulary import as_list, count_elements, given_name

_INTERFACE = frozenset({"@context", "contents", "extends", "schemas"})


class InterfaceReader(ContentReader):
    """The first pass: every Interface read, by ``@id``, and the references between them."""

    def __init__(self, *, allow_undefined_extensions: bool = False) -> None:
        super().__init__(allow_undefined_extensions=allow_undefined_extensions)
        self.interfaces: dict[str, Interface] = {}
        self.counts: dict[str, int] = {}  # Interface @id -> elements under its own contents
        self.versions: dict[str, int] = {}  # Interface @id -> its DTDL version

    def interface(self, raw: dict[str, Any], at: At) -> str | None:
        """Parse one Interface (top-level or inline); return its @id when it has a valid one."""
        own_id = raw.get("@id")
        # until its @id is known to be valid, an Interface's own problems are placed by the
        # @id as written when it at least looks like a DTMI
        early = at.at_id(own_id) if is_dtmi(own_id) else at
        outer = self.scope
        active = self.act(raw)
        self.scope = Scope(
            active,
            owner=own_id if is_dtmi(own_id) else None,
            defs=dict(self.partitions.get(id(raw), {})),
        )
        try:
            return self._interface(raw, at, early)
        finally:
            self.scope = outer

    def _interface(self, raw: dict[str, Any], at: At, early: At) -> str | None:
        kind, _ = self.types(raw, at, ("Interface",))
        info = self.common(raw, early, interface=True)
        dtmi: str | None = info.pop("id", None)
        if dtmi is not None:
            at = at.at_id(dtmi)
        self.keys(raw, at, "Interface", _INTERFACE, ("@id",) if "@id" not in raw else ())
        self.unit(raw, at, None, None)
        extends = self.extends(raw, at)
        order = self.schema_definitions(raw, at)
        raw_contents = self.members(raw, "contents", at) or []
        contents = self.contents(raw_contents)
        schemas = self.defined_schemas(order)
        count = count_elements([c for c, _ in raw_contents])
        if self.scope.active.version == 2:
            for key, n, most in (
                ("contents", len(raw_contents), V2_MAX_CONTENTS),
                ("extends", len(as_list(raw.get("extends", []))), V2_MAX_EXTENDS),
            ):
                if n > most:
                    self.add(
                        at.key(key), "count-limit", f"DTDL v2 allows {most} {key}; this one has {n}"
                    )
        elif count > limits.MAX_CONTENTS:
            self.add(
                at.key("contents"),
                "contents-limit",
                f"{count} elements under contents; DTDL v3 allows {limits.MAX_CONTENTS} per "
                "Interface",
            )
        if dtmi is None or kind is None:
            return None
        self.counts[dtmi] = count
        self.versions[dtmi] = self.scope.active.version
        if dtmi not in self.interfaces:
            self.interfaces[dtmi] = Interface(
                id=dtmi,
                contents=tuple(contents),
                extends=tuple(extends),
                schemas=tuple(schemas),
                contexts=self.scope.active.contexts,
                file=at.file,
                **info,
            )
        return dtmi

    def extends(self, raw: dict[str, Any], at: At) -> list[str]:
        """The Interfaces this one extends: DTMIs or inline Interfaces."""
        parents: list[str] = []
        for i, item in enumerate(as_list(raw.get("extends", []))):
            e_at = at.key("extends")
            if isinstance(raw["extends"], list):
                e_at = e_at.index(i)
            parent = self.linked_interface(item, e_at, "extends")
            if parent is not None:
                parents.append(parent)
        return parents

    def schema_definitions(self, raw: dict[str, Any], at: At) -> list[str]:
        """Register the reusable complex schemas (``schemas``); their @ids in order."""
        order: list[str] = []
        items = self.members(raw, "schemas", at) or []
        for s, s_at in self.objects(items, "each entry of schemas is a complex schema object"):
            if "@id" not in s:
                self.add(
                    s_at,
                    "property-missing",
                    "a schema in an Interface's 'schemas' needs an @id to be referred to; add one",
                )
            elif isinstance(s["@id"], str) and s["@id"] not in order:
                self.scope.defs.setdefault(s["@id"], (s, s_at))
                order.append(s["@id"])
            elif isinstance(s["@id"], str):
                self.add(
                    s_at.key("@id"),
                    "id-duplicate",
                    f"@id {s['@id']!r} names two schemas of this Interface; rename one",
                )
            else:
                self.check_dtmi(s["@id"], s_at.key("@id"))
        return order

    def contents(self, items: list[tuple[Any, At]]) -> list[Content]:
        """The valid contents; names are checked to be unique among all of them."""
        contents: list[Content] = []
        names: list[tuple[At, str | None]] = []
        read = list(self.objects(items, "each entry of contents is an object"))
        for c, c_at in read:
            name = given_name(c)
            element = self.content(c, c_at)
            if element is not None and element.id is not None:
                c_at = c_at.at_id(element.id)
            names.append((c_at, name))
            if element is not None:
                contents.append(element)
        self.unique_names(names, "contents of this Interface")
        self.unique_indexes(read, "contents of this Interface")
        return contents

    def defined_schemas(self, order: list[str]) -> list[Schema]:
        """Parse the reusable schemas not yet used by the contents, and check their depth."""
        schemas: list[Schema] = []
        for sid in order:
            _, s_at = self.scope.defs[sid]
            s = self.reference(sid, s_at)
            self.depth(s, s_at)
            if s is not None:
                schemas.append(s)
        return schemas
