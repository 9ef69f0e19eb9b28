"""MQTT topic filters of the bindings, and the routing of a received topic to its twin.

A binding's topic may be concrete (``plant/site1/wt-001/telemetry``), an MQTT filter with
``+``/``#`` wildcards, or a template with placeholders: ``{twin_id}`` and ``{twin_type}``
stand for the binding's own values, any other ``{name}`` (e.g. ``{site}``) for one level
(``+``). Bindings whose templates put ``{twin_id}`` at the same place of the same pattern
share ONE subscription (``plant/+/+/telemetry``), and the twin is read from that topic level.

>>> from twinflow.connectors.bindings import MqttBinding
>>> b = [MqttBinding(t, "pump", "plant/{site}/{twin_id}/telemetry", "c", "r") for t in ("p1", "p2")]
>>> router = TopicRouter(b)
>>> router.filters
('plant/+/+/telemetry',)
>>> router.route("plant/north/p2/telemetry").twin_id
'p2'
>>> router.route("plant/north/p9/telemetry") is None
True
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from twinflow.connectors.bindings import MqttBinding
from twinflow.core.errors import ConfigError

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: Most topics a router remembers the route of (unmapped topics included); then it forgets.
CACHE_LIMIT = 10_000


def expand(template: str, binding: MqttBinding, *, wildcard_twin: bool = False) -> str:
    """The template with the binding's ``{twin_id}``/``{twin_type}`` filled in and any other
    placeholder replaced by ``+`` (``wildcard_twin`` makes ``{twin_id}`` a ``+`` too)."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name == "twin_id":
            return "+" if wildcard_twin else binding.twin_id
        if name == "twin_type":
            return binding.twin_type
        return "+"

    return _PLACEHOLDER.sub(sub, template)


def concrete_topic(template: str, binding: MqttBinding, what: str) -> str:
    """A topic one can publish to: placeholders other than the twin's own are refused."""
    unknown = [n for n in _PLACEHOLDER.findall(template) if n not in ("twin_id", "twin_type")]
    topic = expand(template, binding)
    if unknown or "+" in topic or "#" in topic or not topic:
        raise ConfigError(
            f"twin {binding.twin_id!r}: its MQTT {what} {template!r} must be a concrete topic "
            f"to publish to (only {{twin_id}} and {{twin_type}} may be placeholders)"
        )
    return topic


def check_filter(topic_filter: str, twin_id: str, what: str) -> None:
    """Refuse what no broker accepts as a subscription filter, naming the twin."""
    levels = topic_filter.split("/")
    bad = (
        not topic_filter
        or any(("+" in lv and lv != "+") or ("#" in lv and lv != "#") for lv in levels)
        or "#" in levels[:-1]
        or "{" in topic_filter
        or "}" in topic_filter
    )
    if bad:
        raise ConfigError(
            f"twin {twin_id!r}: MQTT {what} {topic_filter!r} is not a valid topic filter: '+' "
            "and '#' must fill a whole level, '#' only as the last level, and placeholders "
            "look like {twin_id}"
        )


def matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches the MQTT filter (``+`` one level, ``#`` the rest).

    >>> matches("a/+/c", "a/b/c"), matches("a/#", "a"), matches("a/+", "a/b/c")
    (True, True, False)
    """
    f_levels, t_levels = topic_filter.split("/"), topic.split("/")
    for i, lv in enumerate(f_levels):
        if lv == "#":
            return True
        if i >= len(t_levels) or (lv != "+" and lv != t_levels[i]):
            return False
    return len(f_levels) == len(t_levels)


@dataclass(frozen=True, slots=True)
class _Group:
    """Bindings sharing one wildcard pattern; the twin id sits at level ``level``."""

    topic_filter: str
    level: int
    by_twin: dict[str, tuple[MqttBinding, str]]  # twin -> (binding, its own filter)


class TopicRouter:
    """Which binding a topic belongs to, and which filters to subscribe to.

    Precedence: a binding's exact topic, then a shared ``{twin_id}`` pattern, then a binding
    whose own filter has wildcards. A topic that matches the wildcard filters of several
    twins is ambiguous: :meth:`route` returns ``None`` and :meth:`why_unmapped` says so.
    """

    def __init__(self, bindings: Iterable[MqttBinding], attr: str = "telemetry_topic") -> None:
        self.attr = attr
        self._exact: dict[str, MqttBinding] = {}
        self._groups: dict[tuple[str, int], _Group] = {}
        self._wild: list[tuple[str, MqttBinding]] = []
        seen: dict[str, str] = {}
        for b in bindings:
            template = getattr(b, attr)
            own = expand(template, b)
            check_filter(own, b.twin_id, attr)
            if own in seen:
                raise ConfigError(
                    f"twins {seen[own]!r} and {b.twin_id!r} have the same MQTT {attr} "
                    f"{own!r}: give each twin its own topic, e.g. with {{twin_id}} in it"
                )
            seen[own] = b.twin_id
            if "{twin_id}" in template:
                level = _twin_level(template, b, attr)
                shared = expand(template, b, wildcard_twin=True)
                group = self._groups.setdefault((shared, level), _Group(shared, level, {}))
                group.by_twin[b.twin_id] = (b, own)
            elif "+" in own or "#" in own:
                self._wild.append((own, b))
            else:
                self._exact[own] = b
        self._cache: dict[str, MqttBinding | None] = {}

    @property
    def filters(self) -> tuple[str, ...]:
        """The subscription filters, each once: shared patterns, exact topics, own wildcards."""
        out = [g.topic_filter for g in self._groups.values()]
        out += [*self._exact, *(f for f, _ in self._wild)]
        return tuple(dict.fromkeys(out))

    def filters_of(self, twins: Collection[str]) -> tuple[str, ...]:
        """Each named twin's own filter (its concrete topic where it has one), each once: what
        a session that reads only those twins subscribes to."""
        out = [
            b_own[1] for g in self._groups.values() for t, b_own in g.by_twin.items() if t in twins
        ]
        out += [topic for topic, b in self._exact.items() if b.twin_id in twins]
        out += [f for f, b in self._wild if b.twin_id in twins]
        return tuple(dict.fromkeys(out))

    def route(self, topic: str) -> MqttBinding | None:
        """The binding of ``topic``, or ``None`` when no twin's topic matches it."""
        try:
            return self._cache[topic]
        except KeyError:
            pass
        found = self._lookup(topic)
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        self._cache[topic] = found
        return found

    def _lookup(self, topic: str) -> MqttBinding | None:
        exact = self._exact.get(topic)
        if exact is not None:
            return exact
        levels = topic.split("/")
        for g in self._groups.values():
            if matches(g.topic_filter, topic):
                hit = g.by_twin.get(levels[g.level])
                if hit is not None and matches(hit[1], topic):
                    return hit[0]
        wild = [b for f, b in self._wild if matches(f, topic)]
        return wild[0] if len(wild) == 1 else None

    def why_unmapped(self, topic: str) -> str:
        """A dead-letter reason for a topic :meth:`route` found no twin for."""
        wild = [b.twin_id for f, b in self._wild if matches(f, topic)]
        if len(wild) > 1:
            return (
                f"topic {topic!r} matches the {self.attr} filters of several twins "
                f"({', '.join(wild)}); make the filters disjoint"
            )
        levels = topic.split("/")
        for g in self._groups.values():
            if matches(g.topic_filter, topic):
                return (
                    f"topic {topic!r} matches pattern {g.topic_filter!r} but twin "
                    f"{levels[g.level]!r} has no MQTT binding; add it to the deployment's twins"
                )
        return f"topic {topic!r} belongs to no twin's {self.attr}; check the bindings"


def _twin_level(template: str, binding: MqttBinding, attr: str) -> int:
    """The topic level that ``{twin_id}`` fills, alone and once, in ``template``."""
    marked = expand(template.replace("{twin_id}", "\0"), binding).split("/")
    where = [i for i, lv in enumerate(marked) if "\0" in lv]
    if len(where) != 1 or marked[where[0]] != "\0":
        raise ConfigError(
            f"twin {binding.twin_id!r}: {{twin_id}} must fill one whole level of its MQTT "
            f"{attr} {template!r}, e.g. plant/{{site}}/{{twin_id}}/telemetry"
        )
    return where[0]


def bindings_by_twin(bindings: Sequence[MqttBinding]) -> dict[str, MqttBinding]:
    """Index bindings by twin id, refusing a twin bound twice."""
    out: dict[str, MqttBinding] = {}
    for b in bindings:
        if b.twin_id in out:
            raise ConfigError(f"twin {b.twin_id!r} has two MQTT bindings; keep one")
        out[b.twin_id] = b
    return out
