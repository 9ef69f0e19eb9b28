"""``@type``: an element's class and its co-types (semantic types, extension adjunct types).

The rules differ by version. In DTDL v3 every co-type must be defined by an extension in
force (a semantic type of QuantitativeTypes, an adjunct type such as ``Historized``); an
undefined term or DTMI is an error unless undefined extensions are allowed, which makes the
element *informally co-typed* (it may then carry members nobody defined). In DTDL v2 the
semantic types are built in, and an undefined term (or a string with ':' that is not a
DTMI) is allowed and makes the element informally co-typed; an undefined DTMI is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twinflow.operators.dtdl import extensions, quantities, semantics_v2
from twinflow.operators.dtdl.dtmi import dtmi_problem
from twinflow.operators.dtdl.model import PrimitiveSchema, Schema
from twinflow.operators.dtdl.reading.contexts import DEFAULT, Active
from twinflow.operators.dtdl.reading.language import CLASSES_BY_VERSION, reserved_terms
from twinflow.operators.dtdl.reading.notation import NotationReader
from twinflow.operators.dtdl.reading.place import At
from twinflow.operators.dtdl.reading.vocabulary import NUMERIC, as_list


@dataclass(frozen=True, slots=True)
class Typing:
    """What ``@type`` said beyond the class: adjunct types, and informal co-typing."""

    adjuncts: dict[str, extensions.Adjunct]
    informal: bool


_PLAIN = Typing({}, False)


class TypeReader(NotationReader):
    """Reads ``@type`` and the members co-types bring (``unit``, adjunct members)."""

    def __init__(self, *, allow_undefined_extensions: bool = False) -> None:
        super().__init__(allow_undefined_extensions=allow_undefined_extensions)
        self.typing: dict[int, Typing] = {}  # id(element) -> its co-types
        self.active_default = DEFAULT

    def act(self, raw: dict[str, Any]) -> Active:
        return self.active_of(raw, self.active_default)

    def types(
        self,
        raw: dict[str, Any],
        at: At,
        expected: tuple[str, ...] | list[str],
        *,
        default: str | None = None,
        semantic: bool = False,
    ) -> tuple[str | None, str | None]:
        """The element's class and semantic type, from ``@type``."""
        act = self.act(raw)
        kinds = tuple(k for k in expected if k in CLASSES_BY_VERSION[act.version])
        if "@type" not in raw:
            if default is not None:
                return default, None
            self.add(
                at, "type-missing", f'no @type; add "@type": {" or ".join(repr(e) for e in kinds)}'
            )
            return None, None
        values = as_list(raw["@type"])
        if not values or not all(isinstance(v, str) for v in values):
            self.add(at.key("@type"), "property-type", "@type must be a string or list of strings")
            return None, None
        suffix = f";{act.version}"
        values = [
            v[len("dtmi:dtdl:class:") : -len(suffix)]
            if v.startswith("dtmi:dtdl:class:") and v.endswith(suffix)
            else v
            for v in values
        ]
        classes = list(dict.fromkeys(v for v in values if v in CLASSES_BY_VERSION[act.version]))
        if len(classes) != 1 or classes[0] not in kinds:
            self.add(
                at.key("@type"),
                "type-invalid",
                f"@type {raw['@type']!r} is not allowed here; it must name exactly one of "
                + ", ".join(kinds),
            )
            return None, None
        kind = classes[0]
        sem = self._cotypes(raw, values, at.key("@type"), kind, semantic, act)
        return kind, sem

    def _cotypes(
        self, raw: dict[str, Any], values: list[str], at: At, kind: str, semantic: bool, act: Active
    ) -> str | None:
        """The semantic type among the co-types; adjuncts and informality are recorded."""
        sem: str | None = None
        adjuncts: dict[str, extensions.Adjunct] = {}
        informal = False
        defined = extensions.adjuncts_in(act.contexts)
        iris = extensions.iri_terms(act.contexts) if defined else {}
        for v in values:
            v = iris.get(v, v)
            if v == kind:
                continue
            found = self._semantic(v, act)
            if found is not None:
                if not semantic or (act.version == 2 and kind not in ("Telemetry", "Property")):
                    self.refuse_cotype(at, v, kind)
                elif sem is not None and found != sem:  # the same one twice is only redundant
                    self.add(
                        at, "type-cotype", f"at most one semantic type; found {sem!r} and {v!r}"
                    )
                else:
                    sem = found
            elif v in defined:
                if kind not in defined[v].classes:
                    self.refuse_cotype(at, v, kind)
                else:
                    adjuncts[v] = defined[v]
            elif v in quantities.SEMANTIC_TYPES and act.version == 3:
                self.add(
                    at,
                    "semantic-type-context",
                    f"semantic type {v!r} needs the QuantitativeTypes extension: add "
                    f"{quantities.CONTEXT!r} to the Interface's @context",
                )
            elif self._informal(v, act):
                informal = True
            else:
                self.add(at, "type-unknown", self._unknown(v, act))
                informal = True  # its members cannot be judged either: one problem is enough
        if "Override" in adjuncts and "ValueAnnotation" not in adjuncts:
            self.add(at, "type-cotype", "Override co-types a Property that is also ValueAnnotation")
        if adjuncts or informal:
            self.typing[id(raw)] = Typing(adjuncts, informal)
        return sem

    @staticmethod
    def _semantic(value: str, act: Active) -> str | None:
        if act.version == 2:
            return semantics_v2.semantic_term(value)
        value = quantities.term(value, "class")
        return value if act.quantitative and value in quantities.SEMANTIC_TYPES else None

    def _informal(self, value: str, act: Active) -> bool:
        """True when ``value`` may stand as an undefined co-type here.

        An undefined extension in force may define any valid term or DTMI (v3 and v2); v2
        also lets any term DTDL does not reserve, or a string with ':', stand on its own.
        """
        if value.startswith("dtmi:"):
            return act.undefined and dtmi_problem(value) is None
        if ":" in value:
            return act.version == 2
        if value in reserved_terms(act.version):
            return act.undefined
        return act.version == 2 or act.undefined

    @staticmethod
    def _unknown(value: str, act: Active) -> str:
        if value.startswith("dtmi:") and dtmi_problem(value) is not None:
            return f"co-type {dtmi_problem(value)}"
        if value in reserved_terms(act.version):
            return f"{value!r} is a DTDL word that cannot co-type this element; remove it"
        if ":" in value and not value.startswith("dtmi:"):
            return f"co-type {value!r} contains ':' but is not a DTMI"
        where = "no extension in force defines it" if act.version == 3 else "it is undefined"
        return (
            f"unknown co-type {value!r}: {where}; add the extension's context to @context "
            "or remove it"
        )

    def refuse_cotype(self, at: At, cotype: str, kind: str) -> None:
        """Report a co-type on an element kind that cannot carry it (``at``: @type)."""
        self.add(at, "type-cotype", f"{cotype!r} cannot co-type a {kind}; remove it")

    def extra_members(self, raw: dict[str, Any]) -> tuple[set[str], bool]:
        """Members the element's adjunct types add, and whether it is informally co-typed."""
        typing = self.typing.get(id(raw), _PLAIN)
        names = {m for a in typing.adjuncts.values() for m in (*a.required, *a.optional)}
        return names, typing.informal

    def unit(
        self, raw: dict[str, Any], at: At, sem: str | None, schema: Schema | None
    ) -> str | None:
        """Check the ``unit`` against the semantic type and the schema against numbers."""
        v2 = self.act(raw).version == 2
        if sem is None:
            if "unit" in raw and not self.extra_members(raw)[1]:
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
            if v2:
                self.add(
                    at, "property-missing", f"a DTDL v2 element co-typed {sem!r} needs a 'unit'"
                )
            return None
        unit = raw["unit"]
        if not isinstance(unit, str):
            self.add(at.key("unit"), "property-type", f"unit must be a unit name, not {unit!r}")
            return None
        allowed = semantics_v2.UNITS[sem] if v2 else quantities.units_for(sem)
        unit = semantics_v2.unit_term(unit) if v2 else quantities.term(unit, "unit")
        if unit not in allowed:
            self.add(
                at.key("unit"),
                "unit-mismatch",
                f"{unit!r} is not a unit of {sem}; use one of: {', '.join(sorted(allowed))}",
            )
            return None
        return str(unit)
