"""JSON-LD's other spellings of DTDL, rewritten in place to the one spelling the readers read.

DTDL is JSON-LD, so one model can be written several ways. Before an Interface is read, this
pass walks its elements and, for each one:

* works out its *active context* (language version and extensions; :mod:`.contexts`);
* renames members written as IRIs (``dtmi:dtdl:property:schema;3``) to their terms;
* unwraps a one-element array where the member holds one value (``"name": ["x"]``); an
  empty array where the member is optional means the member is absent;
* unwraps JSON-LD value objects (``{"@value": "x", "@type": "xsd:string"}``);
* turns a localizable string given as an array (strings and ``@value``/``@language``
  objects) into a language map;
* indexes the elements that carry an ``@id`` by Interface (a *partition*), so an element
  may be referenced by its ``@id`` elsewhere in the same Interface.

Problems are reported with the rule broken; the readers above see one canonical form.
"""

from __future__ import annotations

import re
from typing import Any

from twinflow.operators.dtdl import extensions, quantities
from twinflow.operators.dtdl.dtmi import is_dtmi
from twinflow.operators.dtdl.reading.contexts import Active, read_context
from twinflow.operators.dtdl.reading.language import PROPERTY_TERMS_BY_VERSION
from twinflow.operators.dtdl.reading.place import At, Report
from twinflow.operators.dtdl.reading.vocabulary import LANGUAGE_TAG, is_int

#: Members whose values are (or refer to) DTDL elements: the walk follows these.
ELEMENT_MEMBERS = frozenset(
    [
        "contents",
        "extends",
        "schemas",
        "fields",
        "enumValues",
        "properties",
        "request",
        "response",
        "mapKey",
        "mapValue",
        "schema",
        "elementSchema",
    ]
)
#: Members holding exactly one value, and those holding at most one.
EXACTLY_ONE = frozenset(
    ["name", "schema", "elementSchema", "mapKey", "mapValue", "valueSchema", "enumValue"]
)
AT_MOST_ONE = frozenset(
    [
        "comment",
        "writable",
        "maxMultiplicity",
        "minMultiplicity",
        "request",
        "response",
        "target",
        "commandType",
        "unit",
        "annotates",
        "overrides",
        "payloadFormat",
        "commandTopic",
        "telemetryTopic",
        "ttl",
        "index",
    ]
)
#: Literal members and the XSD type a value object must declare for them.
LITERALS = {
    "name": "string",
    "comment": "string",
    "writable": "boolean",
    "maxMultiplicity": "integer",
    "minMultiplicity": "integer",
    "enumValue": "any",
    "annotates": "string",
    "commandTopic": "string",
    "telemetryTopic": "string",
    "index": "integer",
}
LOCALIZABLE = frozenset({"displayName", "description"})
#: Where a DTDL v3 element may hold a DTDL v2 one (an Interface, content or schema).
_V2_WITHIN_V3 = frozenset({"contents", "extends", "properties", "schema", "elementSchema"})
_XSD = re.compile(r"(?:xsd:|http://www\.w3\.org/2001/XMLSchema#)(string|integer|boolean)")
_INTERFACE_TYPES = frozenset(
    {"Interface", "dtmi:dtdl:class:Interface;2", "dtmi:dtdl:class:Interface;3"}
)


def is_interface(raw: dict[str, Any]) -> bool:
    """True when ``raw`` says it is an Interface (it then starts its own partition)."""
    kinds = raw.get("@type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    return any(isinstance(k, str) and k in _INTERFACE_TYPES for k in kinds)


class NotationReader(Report):
    """The pass that rewrites notation; the side tables it fills serve the readers above."""

    def __init__(self, *, allow_undefined_extensions: bool = False) -> None:
        super().__init__()
        self.allow_undefined = allow_undefined_extensions
        self.active: dict[int, Active] = {}  # id(element) -> its active context
        self.partitions: dict[int, dict[str, tuple[dict[str, Any], At]]] = {}
        self.broken: set[tuple[int, str]] = set()  # (id(element), member) already reported
        # the tables are keyed by id(), so the documents are kept alive while reading
        self.documents: list[dict[str, Any]] = []

    def active_of(self, raw: dict[str, Any], default: Active) -> Active:
        return self.active.get(id(raw), default)

    def normalize(self, raw: dict[str, Any], at: At, inherited: Active | None) -> None:
        """Rewrite one top-level (or inline) element tree; see the module docstring."""
        self.documents.append(raw)
        self._element(raw, at, inherited, None, "")

    def _element(
        self,
        raw: dict[str, Any],
        at: At,
        inherited: Active | None,
        partition: dict[str, tuple[dict[str, Any], At]] | None,
        member: str,
    ) -> None:
        if id(raw) in self.active:  # reached twice (an element referenced by @id)
            return
        own = raw.get("@id")
        if isinstance(own, str) and is_dtmi(own):
            at = at.at_id(own)
        act = read_context(self, raw, at, inherited, self.allow_undefined)
        if (
            inherited is not None
            and act.version != inherited.version
            and (act.version == 3 or member not in _V2_WITHIN_V3)
        ):
            self.add(
                at.key("@context"),
                "context-version",
                f"a DTDL v{act.version} element cannot stand in a DTDL v{inherited.version} "
                f"element's {member!r} (a v3 model may hold v2 contents, schemas, extends and "
                "Component Interfaces, not the reverse)",
            )
        self.active[id(raw)] = act
        if partition is None or is_interface(raw):
            partition = {}
            self.partitions[id(raw)] = partition
        elif isinstance(own, str):
            partition.setdefault(own, (raw, at))
        if any(k.startswith("dtmi:dtdl:extension:") for k in raw):
            self._rename_extension_members(raw, at, act)
        self._rename(raw, at, act.version)
        for key in list(raw):
            if key in LOCALIZABLE:
                raw[key] = self._localizable(raw[key], at.key(key))
            elif key in EXACTLY_ONE or key in AT_MOST_ONE:
                self._single(raw, key, at)
        for key in ELEMENT_MEMBERS.intersection(raw):
            value = raw[key]
            if isinstance(value, dict):
                self._element(value, at.key(key), act, partition, key)
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, dict):
                        self._element(item, at.key(key).index(i), act, partition, key)

    def _rename(self, raw: dict[str, Any], at: At, version: int) -> None:
        """Members written as ``dtmi:dtdl:property:<term>;<version>`` become ``<term>``."""
        if not any(k.startswith("dtmi:dtdl:property:") for k in raw):
            return
        terms = PROPERTY_TERMS_BY_VERSION[version]
        renamed: dict[str, Any] = {}
        for key, value in raw.items():
            term = key
            m = re.fullmatch(r"dtmi:dtdl:property:(\w+);(\d+)", key)
            if m and m.group(1) in terms and int(m.group(2)) == version:
                term = m.group(1)
                if term in raw or term in renamed:
                    self.add(
                        at.key(key),
                        "property-repeated",
                        f"{term!r} is written both as a term and as its IRI {key!r}; keep one",
                    )
                    continue
            renamed[term] = value
        raw.clear()
        raw.update(renamed)

    def _rename_extension_members(self, raw: dict[str, Any], at: At, act: Active) -> None:
        """Members an extension in force adds, written as their IRIs, become their terms."""
        iris = extensions.iri_terms(act.contexts)
        if act.quantitative:
            iris[quantities.UNIT_IRI] = "unit"
        renamed: dict[str, Any] = {}
        for key, value in raw.items():
            term = iris.get(key, key)
            if term != key and (term in raw or term in renamed):
                self.add(
                    at.key(key),
                    "property-repeated",
                    f"{term!r} is written both as a term and as its IRI {key!r}; keep one",
                )
                continue
            renamed[term] = value
        raw.clear()
        raw.update(renamed)

    def _single(self, raw: dict[str, Any], key: str, at: At) -> None:
        """Unwrap a one-element array and a value object; drop an empty optional member."""
        value = raw[key]
        if isinstance(value, list):
            if len(value) == 1:
                value = value[0]
            elif not value and key in AT_MOST_ONE:
                del raw[key]
                return
            else:
                how = "exactly one value" if key in EXACTLY_ONE else "at most one value"
                self.add(
                    at.key(key),
                    "property-type",
                    f"{key} takes {how}; an array of {len(value)} is not allowed here",
                )
                self._drop(raw, key)
                return
        if value is None:
            self.add(
                at.key(key), "property-type", f"{key} may not be null; give a value or leave it out"
            )
            self._drop(raw, key)
            return
        kind = LITERALS.get(key)
        if kind is not None and isinstance(value, dict):
            problem = _value_object_problem(value, kind)
            if problem is not None:
                self.add(at.key(key), "value-object", problem)
                self._drop(raw, key)
                return
            value = value["@value"]
        raw[key] = value

    def _drop(self, raw: dict[str, Any], key: str) -> None:
        del raw[key]
        self.broken.add((id(raw), key))

    def _localizable(self, value: Any, at: At) -> Any:
        """A localizable string given as an array becomes a language map."""
        if not isinstance(value, list):
            return value
        texts: dict[str, Any] = {}
        defaults = 0
        for i, item in enumerate(value):
            if isinstance(item, str):
                lang, text = None, item
            elif isinstance(item, dict):
                problem = _tagged_value_problem(item)
                if problem is not None:
                    self.add(at.index(i), *problem)
                    continue
                lang, text = item.get("@language"), item["@value"]
            else:
                self.add(
                    at.index(i),
                    "localizable-string",
                    'each item is a string or {"@value": "...", "@language": "..."}',
                )
                continue
            if lang is not None and lang in texts and lang != "en":
                self.add(at.index(i), "localizable-string", f"language {lang!r} is given twice")
            defaults += lang is None or lang == "en"
            texts[lang or "en"] = text
        if defaults > 1:
            self.add(
                at,
                "localizable-string",
                "more than one text in the default language (a plain string, one without "
                "@language, or 'en'); give each language once",
            )
        return texts


def _value_object_problem(value: dict[str, Any], kind: str) -> str | None:
    """Why ``value`` is not a JSON-LD value object of ``kind`` (``None`` when it is one)."""
    if any(not k.startswith("@") for k in value) or set(value) - {"@value", "@type"}:
        return 'a value object holds only "@value" and "@type"'
    if "@value" not in value:
        return 'a value object needs "@value"'
    v = value["@value"]
    found = (
        "boolean"
        if isinstance(v, bool)
        else "integer"
        if is_int(v)
        else ("string" if isinstance(v, str) else None)
    )
    if found is None or (kind != "any" and found != kind):
        return f'"@value" must be a {kind if kind != "any" else "string or integer"}, not {v!r}'
    if "@type" in value:
        m = _XSD.fullmatch(value["@type"]) if isinstance(value["@type"], str) else None
        if m is None or m.group(1) != found:
            return (
                f'"@type" of a {found} value object must be "xsd:{found}", not {value["@type"]!r}'
            )
    return None


def _tagged_value_problem(item: dict[str, Any]) -> tuple[str, str] | None:
    """The rule and reason ``item`` breaks as a language-tagged value (``None``: it is one)."""
    if any(not k.startswith("@") for k in item) or set(item) - {"@value", "@language"}:
        return "localizable-string", 'an item holds only "@value" and "@language"'
    if not isinstance(item.get("@value"), str):
        return "localizable-string", 'an item needs a string "@value"'
    lang = item.get("@language")
    if lang is not None and not (isinstance(lang, str) and LANGUAGE_TAG.fullmatch(lang)):
        return "language-tag", f"{lang!r} is not a language tag; use e.g. 'en' or 'en-US'"
    return None
