"""What every DTDL element carries: ``@id``, display texts, a comment, a name, its members.

:class:`ElementReader` checks these pieces for any element kind and holds what they need
(the ``@id`` registry and the current Interface's :class:`Scope`). ``@type`` and co-types
come from the layer below (:mod:`.cotypes`), notation from the pass below that.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from twinflow.operators.dtdl import extensions
from twinflow.operators.dtdl.dtmi import (
    RESERVED_PREFIXES,
    dtmi_problem,
    is_dtmi,
    length_limit,
    parse_dtmi,
)
from twinflow.operators.dtdl.model import Schema
from twinflow.operators.dtdl.reading import limits
from twinflow.operators.dtdl.reading.contexts import DEFAULT, Active
from twinflow.operators.dtdl.reading.cotypes import TypeReader
from twinflow.operators.dtdl.reading.language import display_name_limit, name_limit
from twinflow.operators.dtdl.reading.place import At
from twinflow.operators.dtdl.reading.vocabulary import COMMON, LANGUAGE_TAG, NAME, is_int32

_DURATION = re.compile(
    r"P(?!$)(?:\d+Y)?(?:\d+M)?(?:\d+W)?(?:\d+D)?(?:T(?=\d)(?:\d+H)?(?:\d+M)?(?:\d+(?:\.\d+)?S)?)?"
)


@dataclass(slots=True)
class Scope:
    """What the elements of one Interface see: its context and the elements it holds.

    ``defs`` holds the Interface's elements that have an ``@id`` (its partition, which a
    reference by ``@id`` may name); ``done`` the schemas parsed so far and ``busy`` the ones
    being parsed (to catch a schema that contains itself).
    """

    active: Active
    owner: str | None = None
    defs: dict[str, tuple[Any, At]] = field(default_factory=dict)
    done: dict[str, Schema | None] = field(default_factory=dict)
    busy: set[str] = field(default_factory=set)


class ElementReader(TypeReader):
    """Checks the pieces shared by every element, reporting each broken rule."""

    def __init__(self, *, allow_undefined_extensions: bool = False) -> None:
        super().__init__(allow_undefined_extensions=allow_undefined_extensions)
        self.ids: dict[str, tuple[str, int]] = {}  # @id -> where first defined, by whom
        self.scope = Scope(DEFAULT)
        self.annotations: list[tuple[At, str, dict[str, Any]]] = []  # owner, element

    def keys(
        self,
        raw: dict[str, Any],
        at: At,
        kind: str,
        allowed: Iterable[str],
        required: tuple[str, ...] = (),
    ) -> None:
        """Report members a ``kind`` does not have and required ones that are missing.

        ``required`` is ordered so that missing ones are reported in a stable order.
        """
        extra, informal = self.extra_members(raw)
        known = COMMON | set(allowed) | extra | {"unit", "@context"}
        v2 = self.act(raw).version == 2
        for key in raw:
            if key in known or (v2 and key.startswith("@") and key != "@graph"):
                continue
            if informal and not key.startswith("@") and _may_be_informal(key, v2):
                continue
            self.add(
                at,
                "property-unknown",
                f"{key!r} is not a member of a {kind}; remove it or fix its spelling "
                f"(allowed: {', '.join(sorted(known - {'unit'}))})",
            )
        for key in (*required, *sorted(m for a in self._adjuncts(raw) for m in a.required)):
            if key not in raw and (id(raw), key) not in self.broken:
                self.add(at, "property-missing", f"a {kind} needs {key!r}; add it")
        self._adjunct_values(raw, at)

    def _adjuncts(self, raw: dict[str, Any]) -> list[extensions.Adjunct]:
        typing = self.typing.get(id(raw))
        return list(typing.adjuncts.values()) if typing else []

    def _adjunct_values(self, raw: dict[str, Any], at: At) -> None:
        """Check the values of the members extension adjunct types add."""
        typing = self.typing.get(id(raw))
        if typing is None or not typing.adjuncts:
            return
        for key in ("annotates", "overrides", "commandTopic", "telemetryTopic", "ttl"):
            if key in raw and not isinstance(raw[key], str):
                self.add(at.key(key), "property-type", f"{key} must be a string")
        fmt = raw.get("payloadFormat")
        if isinstance(fmt, str) and fmt.startswith(extensions.PAYLOAD_FORMAT_IRI):
            fmt = fmt[len(extensions.PAYLOAD_FORMAT_IRI) :]
        if "payloadFormat" in raw and fmt not in extensions.PAYLOAD_FORMATS:
            self.add(
                at.key("payloadFormat"),
                "extension-value",
                f"payloadFormat {fmt!r} is not one of "
                + ", ".join(sorted(extensions.PAYLOAD_FORMATS)),
            )
        if "ttl" in raw and isinstance(raw["ttl"], str) and not _is_duration(raw["ttl"]):
            self.add(
                at.key("ttl"), "extension-value", f"ttl {raw['ttl']!r} is not an ISO 8601 duration"
            )
        if "index" in raw and not (is_int32(raw["index"]) and raw["index"] >= 1):
            self.add(
                at.key("index"), "extension-value", "index must be a whole number of at least 1"
            )
        if "ValueAnnotation" in typing.adjuncts and self.scope.owner is not None:
            self.annotations.append((at, self.scope.owner, raw))

    def common(self, raw: dict[str, Any], at: At, *, interface: bool = False) -> dict[str, Any]:
        """Check ``@id``, displayName, description and comment; return them as keywords."""
        out: dict[str, Any] = {}
        if "@id" in raw and self.defines_id(raw, at, interface=interface):
            out["id"] = raw["@id"]
        version = self.act(raw).version
        for key, limit, name in (
            ("displayName", display_name_limit(version), "display_name"),
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

    def defines_id(self, raw: dict[str, Any], at: At, *, interface: bool) -> bool:
        """Check an element's own ``@id`` and register it; False when it cannot be used."""
        dtmi = raw["@id"]
        if not self.check_dtmi(dtmi, at.key("@id"), interface=interface, defining=True):
            return False
        first = self.ids.get(dtmi)
        if first is None:
            self.ids[dtmi] = (f"{at.file}: {at.label}", id(raw))
        elif first[1] != id(raw):  # the same element read again through a reference is fine
            self.add(
                at.key("@id"),
                "id-duplicate",
                f"@id {dtmi!r} is already defined at {first[0]}; give each element its own @id",
            )
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
        bad = [tag for tag in texts if not LANGUAGE_TAG.fullmatch(tag)]
        if bad:
            self.add(
                at,
                "language-tag",
                f"not a language tag: {', '.join(map(repr, bad))}; use e.g. 'en' or 'en-US' "
                '(an array holds {"@value", "@language"} items)',
            )
        for text in texts.values():
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
                f"{value!r}: a segment starts with '_' (a system DTMI); models use segments "
                "that start with a letter",
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
        limit = name_limit(self.act(raw).version)
        if len(name) > limit:
            self.add(
                at.key("name"),
                "name-length",
                f"name is {len(name)} characters; shorten it to {limit}",
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

    def unique_indexes(self, items: Iterable[tuple[dict[str, Any], At]], what: str) -> None:
        """The MQTT extension's ``index`` is unique among the ``what`` of one member."""
        seen: set[int] = set()
        for raw, at in items:
            typing = self.typing.get(id(raw))
            index = raw.get("index")
            if typing is None or "Indexed" not in typing.adjuncts or not is_int32(index):
                continue
            if index in seen:
                self.add(
                    at.key("index"),
                    "extension-value",
                    f"index {index} is used twice among the {what}",
                )
            seen.add(index)

    def members(self, raw: dict[str, Any], key: str, at: At) -> list[tuple[Any, At]] | None:
        """The items of a set-valued member (``contents``, ``fields``...), each with its place.

        DTDL follows JSON-LD, where a set of one may be written as the lone value itself:
        ``"fields": {...}`` means ``"fields": [{...}]``. ``None`` when the value is neither.
        """
        value = raw.get(key, [])
        if isinstance(value, (dict, str)):
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
        """The items that are objects, or the @id of one in this Interface; others reported."""
        for value, at in items:
            if isinstance(value, dict):
                yield value, at
            elif is_dtmi(value) and value in self.scope.defs:
                yield self.scope.defs[value][0], at
            elif is_dtmi(value):
                self.add(
                    at,
                    "element-unresolved",
                    f"no element with @id {value!r} in this Interface; an element that is not "
                    "an Interface is referred to by @id only within its own Interface",
                )
            else:
                self.add(at, "property-type", message)

    def flag(self, raw: dict[str, Any], key: str, at: At) -> bool:
        """A true/false member (``writable``), false when absent."""
        value = raw.get(key, False)
        if not isinstance(value, bool):
            self.add(at.key(key), "property-type", f"{key} must be true or false")
            return False
        return value


def _may_be_informal(key: str, v2: bool) -> bool:
    """Whether an informally co-typed element may carry a member of this name."""
    if v2:
        return True
    if key.startswith("dtmi:"):
        return dtmi_problem(key) is None
    return ":" not in key


def _is_duration(text: str) -> bool:
    """An ISO 8601 duration such as ``PT10M`` or ``P1DT2H`` (the MQTT extension's ``ttl``)."""
    return _DURATION.fullmatch(text) is not None
