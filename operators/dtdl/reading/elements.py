"""What every DTDL element carries: ``@type``, ``@id``, display texts, a name, a unit.

:class:`ElementReader` is the bottom layer of the first-pass reader: it checks these
pieces for any element kind and holds what they need (the ``@id`` registry and the
current Interface's :class:`Scope`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from twinflow.operators.dtdl import quantities
from twinflow.operators.dtdl.dtmi import (
    RESERVED_PREFIXES,
    dtmi_problem,
    is_dtmi,
    length_limit,
    parse_dtmi,
)
from twinflow.operators.dtdl.model import PrimitiveSchema, Schema
from twinflow.operators.dtdl.reading import limits
from twinflow.operators.dtdl.reading.contexts import check_nested_context
from twinflow.operators.dtdl.reading.place import At, Report
from twinflow.operators.dtdl.reading.vocabulary import (
    CLASS_IRIS,
    CLASSES,
    COMMON,
    LANGUAGE_TAG,
    NAME,
    NUMERIC,
    as_list,
)


@dataclass(slots=True)
class Scope:
    """What the elements of one Interface see: its contexts and its reusable schemas.

    ``defs`` holds the raw ``schemas`` entries by ``@id``; ``done`` the ones parsed so far
    and ``busy`` the ones being parsed (to catch a schema that contains itself).
    """

    contexts: tuple[str, ...]
    defs: dict[str, tuple[Any, At]] = field(default_factory=dict)
    done: dict[str, Schema | None] = field(default_factory=dict)
    busy: set[str] = field(default_factory=set)

    @property
    def quantitative(self) -> bool:
        """True when the QuantitativeTypes extension (semantic types, units) is in force."""
        return quantities.CONTEXT in self.contexts


class ElementReader(Report):
    """Checks the pieces shared by every element, reporting each broken rule."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: dict[str, str] = {}  # @id -> where it was first defined
        self.scope = Scope(())

    def types(
        self,
        raw: dict[str, Any],
        at: At,
        expected: Iterable[str],
        *,
        default: str | None = None,
        semantic: bool = False,
    ) -> tuple[str | None, str | None]:
        """The element's class and semantic type, from ``@type``."""
        kinds = tuple(expected)
        if "@type" not in raw:
            if default is not None:
                return default, None
            self.add(
                at,
                "type-missing",
                f'no @type; add "@type": {" or ".join(repr(e) for e in kinds)}',
            )
            return None, None
        values = as_list(raw["@type"])
        if not values or not all(isinstance(v, str) for v in values):
            self.add(at.key("@type"), "property-type", "@type must be a string or list of strings")
            return None, None
        values = [CLASS_IRIS.get(v, v) for v in values]
        classes = list(dict.fromkeys(v for v in values if v in CLASSES))
        if len(classes) != 1 or classes[0] not in kinds:
            self.add(
                at.key("@type"),
                "type-invalid",
                f"@type {raw['@type']!r} is not allowed here; it must name exactly one of "
                + ", ".join(kinds),
            )
            return None, None
        return classes[0], self._cotypes(values, at.key("@type"), classes[0], semantic)

    def _cotypes(self, values: list[str], at: At, kind: str, semantic: bool) -> str | None:
        """The semantic type among ``@type``'s co-types, reporting those that do not fit."""
        sem: str | None = None
        for v in values:
            if v in CLASSES:
                continue
            if v in quantities.SEMANTIC_TYPES:
                if not semantic:
                    self.refuse_cotype(at, v, kind)
                elif not self.scope.quantitative:
                    self.add(
                        at,
                        "semantic-type-context",
                        f"semantic type {v!r} needs the QuantitativeTypes extension: add "
                        f"{quantities.CONTEXT!r} to the Interface's @context",
                    )
                elif sem is not None:
                    self.add(
                        at,
                        "type-cotype",
                        f"at most one semantic type per element; found {sem!r} and {v!r}",
                    )
                else:
                    sem = v
            elif not is_dtmi(v):
                self.add(
                    at,
                    "type-unknown",
                    f"unknown @type {v!r}; use a DTDL class, a semantic type of the "
                    "QuantitativeTypes extension, or a DTMI",
                )
        return sem

    def refuse_cotype(self, at: At, sem: str, kind: str) -> None:
        """Report a semantic type on an element kind that cannot carry one (``at``: @type)."""
        self.add(at, "type-cotype", f"semantic type {sem!r} cannot co-type a {kind}; remove it")

    def keys(
        self,
        raw: dict[str, Any],
        at: At,
        kind: str,
        allowed: Iterable[str],
        required: tuple[str, ...] = (),
    ) -> None:
        """Report properties a ``kind`` does not have and required ones that are missing.

        ``required`` is ordered so that missing ones are reported in a stable order.
        """
        known = COMMON | set(allowed) | {"unit", "@context"}
        if "@context" in raw and kind != "Interface":
            check_nested_context(self, raw["@context"], at.key("@context"))
        for key in raw:
            if key not in known:
                self.add(
                    at,
                    "property-unknown",
                    f"{key!r} is not a property of a {kind}; remove it or fix its spelling "
                    f"(allowed: {', '.join(sorted(known - {'unit'}))})",
                )
        for key in required:
            if key not in raw:
                self.add(at, "property-missing", f"a {kind} needs {key!r}; add it")

    def common(self, raw: dict[str, Any], at: At, *, interface: bool = False) -> dict[str, Any]:
        """Check ``@id``, displayName, description and comment; return them as keywords."""
        out: dict[str, Any] = {}
        if "@id" in raw and self.defines_id(raw["@id"], at, interface=interface):
            out["id"] = raw["@id"]
        for key, limit, name in (
            ("displayName", limits.MAX_DISPLAY_NAME, "display_name"),
            ("description", limits.MAX_DESCRIPTION, "description"),
        ):
            if key in raw:
                out[name] = self.localizable(raw[key], at.key(key), limit)
        if "comment" in raw:
            comment = raw["comment"]
            if not isinstance(comment, str):
                self.add(at.key("comment"), "property-type", "comment must be a string")
            elif len(comment) > limits.MAX_COMMENT:
                self.add(
                    at.key("comment"),
                    "string-length",
                    f"comment is {len(comment)} characters; shorten it to {limits.MAX_COMMENT}",
                )
            else:
                out["comment"] = comment
        return out

    def identified(self, raw: dict[str, Any], at: At) -> tuple[dict[str, Any], At]:
        """:meth:`common`, and the place re-anchored on the element's own ``@id`` if valid."""
        info = self.common(raw, at)
        return info, at.at_id(info["id"]) if "id" in info else at

    def defines_id(self, dtmi: Any, at: At, *, interface: bool) -> bool:
        """Check an element's own ``@id`` and register it; False when it cannot be used."""
        if not self.check_dtmi(dtmi, at.key("@id"), interface=interface, defining=True):
            return False
        if dtmi in self.ids:
            self.add(
                at.key("@id"),
                "id-duplicate",
                f"@id {dtmi!r} is already defined at {self.ids[dtmi]}; give each "
                "element its own @id",
            )
        else:
            self.ids[dtmi] = f"{at.file}: {at.label}"
        return True

    def localizable(self, value: Any, at: At, limit: int) -> Mapping[str, str]:
        """A display text: a string (English) or a map from language tag to string."""
        texts = {"en": value} if isinstance(value, str) else value
        if not isinstance(texts, dict) or not all(isinstance(v, str) for v in texts.values()):
            self.add(
                at,
                "property-type",
                'must be a string or a map from language tag to string, e.g. {"en": "Pump"}',
            )
            return {}
        for tag, text in texts.items():
            if not LANGUAGE_TAG.fullmatch(tag):
                self.add(at, "language-tag", f"{tag!r} is not a language tag; use e.g. 'en'")
            if len(text) > limit:
                self.add(
                    at,
                    "string-length",
                    f"text of {len(text)} characters is longer than {limit}; shorten it",
                )
        return dict(texts)

    def check_dtmi(
        self, value: Any, at: At, *, interface: bool = False, defining: bool = False
    ) -> bool:
        """True when ``value`` is a DTMI a model may use (``defining``: as its own ``@id``)."""
        if not isinstance(value, str):
            self.add(at, "property-type", f"{value!r} must be a DTMI string")
            return False
        problem = dtmi_problem(value)
        if problem is not None:
            self.add(at, "dtmi-syntax", problem)
            return False
        limit = length_limit(interface=interface)
        if len(value) > limit:
            kind = "an Interface @id" if interface else "a DTMI in a model"
            self.add(
                at,
                "dtmi-length",
                f"{kind} is limited to {limit} characters, this one has {len(value)}; "
                "shorten its path",
            )
            return False
        if parse_dtmi(value).is_system:
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

    def name(self, raw: dict[str, Any], at: At) -> str | None:
        """The element's ``name`` when present and valid."""
        if "name" not in raw:
            return None
        name = raw["name"]
        if not isinstance(name, str) or not NAME.fullmatch(name):
            self.add(
                at.key("name"),
                "name-syntax",
                f"name {name!r} must contain only letters, digits and underscores, start "
                "with a letter and end with a letter or digit",
            )
            return None
        if len(name) > limits.MAX_NAME:
            self.add(
                at.key("name"),
                "name-length",
                f"name is {len(name)} characters; shorten it to {limits.MAX_NAME}",
            )
            return None
        return name

    def unique_names(self, items: Iterable[tuple[At, str | None]], what: str) -> None:
        """Report each name used a second time among ``what``."""
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

    def members(self, raw: dict[str, Any], key: str, at: At) -> list[tuple[Any, At]] | None:
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

    def objects(
        self, items: Iterable[tuple[Any, At]], message: str
    ) -> Iterator[tuple[dict[str, Any], At]]:
        """The items that are objects; each other one is reported with ``message``."""
        for value, at in items:
            if isinstance(value, dict):
                yield value, at
            else:
                self.add(at, "property-type", message)

    def flag(self, raw: dict[str, Any], key: str, at: At) -> bool:
        """A true/false property (``writable``), false when absent."""
        value = raw.get(key, False)
        if not isinstance(value, bool):
            self.add(at.key(key), "property-type", f"{key} must be true or false")
            return False
        return value

    def unit(
        self, raw: dict[str, Any], at: At, sem: str | None, schema: Schema | None
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
        return str(unit)
