"""The twin registry: which twins and assets exist, what they are and how they relate.

An entry is a telemetry-reporting twin (it has a ``protocol``) or an asset that reports
nothing itself (a site, an area, a line, a skid). Entries form a containment tree: each has
at most one parent, named by a ``partOf`` relationship (an asset in a larger one, a skid on a
site) or an ``isComponentOf`` one (a drive that is a component of a skid). Free named
relationships (``drivenBy``, ``feeds``...) connect any two entries and may form any graph.

Containment is twinflow's own; a free relationship of an entry with a DTDL model (a twin of
a catalogue type) must be declared by that model: a Relationship of that name, targets whose
model is the Relationship's ``target`` (when it names one), no more than ``maxMultiplicity``
targets. Entries without a DTDL model (assets: sites, lines, skids) keep their free
relationships unchecked, as does an asset whose ``model_id`` the registry does not know.

:class:`TwinRegistry` checks all entries at once (unknown targets, duplicate ids, more than
one parent, containment cycles, relationships the models do not declare) and raises one
:class:`RegistryError` that lists every problem with the file, the entry, the field and
what to do, then answers queries in O(1) or O(answer).

>>> from twinflow.operators.twin_type import RelationshipSpec
>>> FAN, DRIVE = "dtmi:example:Fan;1", "dtmi:example:Drive;1"
>>> models = {FAN: [RelationshipSpec("drivenBy", DRIVE, 1)], DRIVE: []}
>>> reg = TwinRegistry([
...     RegistryEntry.make("site1", "site"),
...     RegistryEntry.make("skid-1", "skid", part_of="site1"),
...     RegistryEntry.make("fan-002", "fan", protocol="opcua", part_of="skid-1",
...                        model_id=FAN, relationships={"drivenBy": ["drive-003"]}),
...     RegistryEntry.make("drive-003", "drive", protocol="modbus", component_of="skid-1",
...                        model_id=DRIVE),
... ], models=models)
>>> reg.children("skid-1"), reg.site_of("drive-003"), reg.related("fan-002", "drivenBy")
(('fan-002', 'drive-003'), 'site1', ('drive-003',))
>>> reg.ancestors("fan-002"), reg.twins_under("site1")
(('skid-1', 'site1'), ('fan-002', 'drive-003'))
>>> TwinRegistry([
...     RegistryEntry.make("d1", "drive", protocol="modbus", model_id=DRIVE,
...                        relationships={"drivenBy": ["d2"]}),
...     RegistryEntry.make("d2", "drive", protocol="modbus"),
... ], source="plant.yaml", models=models)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
twinflow.operators.registry.RegistryError: plant.yaml: d1.relationships.drivenBy: ...
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from twinflow.core.errors import ConfigError, TwinflowError
from twinflow.operators.catalog import CATALOG, RelationshipSpec

#: Containment relationship names (DTDL-style): the target is the entry's single parent.
PART_OF = "partOf"
COMPONENT_OF = "isComponentOf"
CONTAINMENT = (PART_OF, COMPONENT_OF)
#: Type of the entries that are sites (the roots :meth:`TwinRegistry.site_of` looks for).
SITE = "site"
#: Fields in error messages, as a deployment file spells them.
_FIELD = {PART_OF: "part_of", COMPONENT_OF: "component_of"}
_NAME = re.compile(r"^[A-Za-z](?:[A-Za-z0-9_]{0,62}[A-Za-z0-9])?$")
_DTMI = re.compile(
    r"^dtmi:[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?(?::[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?)*"
    r"(?:;[1-9][0-9]{0,8}(?:\.[1-9][0-9]{0,5})?)?$"
)


class RegistryError(ConfigError):
    """The registry's entries are inconsistent (the message lists every problem)."""


class UnknownTwinError(TwinflowError, KeyError):
    """A query named an id the registry does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    """One twin or asset. ``protocol`` ``None`` means an asset that reports no telemetry.

    ``relationships`` maps a relationship name to its target ids; the containment names
    (:data:`CONTAINMENT`) name the parent. ``where`` says where the entry was declared (e.g.
    ``twins[2]``) for error messages; it takes no part in equality.
    """

    id: str
    type: str
    protocol: str | None = None
    model_id: str | None = None
    relationships: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    where: str = field(default="", compare=False)

    @classmethod
    def make(
        cls,
        id: str,
        type: str,
        *,
        protocol: str | None = None,
        model_id: str | None = None,
        part_of: str | None = None,
        component_of: str | None = None,
        relationships: Mapping[str, Iterable[str]] | None = None,
        where: str = "",
    ) -> RegistryEntry:
        """An entry from keyword arguments (``part_of``/``component_of`` name the parent)."""
        rels: dict[str, tuple[str, ...]] = {}
        for name, targets in (relationships or {}).items():
            rels[name] = (targets,) if isinstance(targets, str) else tuple(targets)
        for name, parent in ((PART_OF, part_of), (COMPONENT_OF, component_of)):
            if parent is not None:
                rels[name] = (*rels.get(name, ()), parent)
        return cls(id, type, protocol, model_id, rels, where)

    @property
    def is_twin(self) -> bool:
        """True for a telemetry-reporting twin, False for an asset."""
        return self.protocol is not None

    @property
    def parent(self) -> str | None:
        """The containment target (the first one; the registry refuses more than one)."""
        for name in CONTAINMENT:
            if self.relationships.get(name):
                return self.relationships[name][0]
        return None

    @property
    def containment(self) -> str | None:
        """Which containment relationship names the parent (``partOf``/``isComponentOf``)."""
        for name in CONTAINMENT:
            if self.relationships.get(name):
                return name
        return None


class TwinRegistry:
    """Validated twins and assets with containment and relationship queries.

    ``source`` (e.g. the deployment file) starts every error line. Children keep the order
    the entries were given in. ``models`` maps a DTDL model's DTMI to the Relationships it
    declares (default: the catalogue's twin types); an entry whose ``model_id`` is there may
    only have the free relationships its model declares. A twin (an entry with a protocol)
    with free relationships and a ``model_id`` not there is refused, since they cannot be
    checked; entries without a ``model_id`` and assets with an unknown one are not checked.
    A Relationship's ``target`` must equal the target entry's ``model_id`` (the registry
    does not know which Interfaces a model extends).
    """

    def __init__(
        self,
        entries: Iterable[RegistryEntry],
        source: str = "registry",
        models: Mapping[str, Iterable[RelationshipSpec]] | None = None,
    ) -> None:
        self.source = source
        if models is None:
            models = {t.model_id: t.relationships for t in CATALOG.values() if t.model_id}
        self.models: dict[str, tuple[RelationshipSpec, ...]] = {
            dtmi: tuple(rels) for dtmi, rels in models.items()
        }
        self.entries: Mapping[str, RegistryEntry] = {}
        problems: list[str] = []
        by_id: dict[str, RegistryEntry] = {}
        for e in entries:
            if e.id in by_id:
                problems.append(
                    f"{self._at(e, 'id')}: id {e.id!r} is declared twice (also at "
                    f"{by_id[e.id].where or 'an earlier entry'}); give each twin and asset its "
                    "own id"
                )
                continue
            by_id[e.id] = e
        for e in by_id.values():
            problems.extend(self._check_entry(e, by_id))
            problems.extend(self._check_declared(e, by_id))
        parents = {e.id: e.parent for e in by_id.values() if e.parent in by_id}
        problems.extend(self._check_cycles(by_id, parents))
        if problems:
            raise RegistryError("\n".join(problems))
        self.entries = by_id
        self._parent: dict[str, str | None] = {i: e.parent for i, e in by_id.items()}
        self._children: dict[str, list[str]] = {i: [] for i in by_id}
        self._incoming: dict[tuple[str, str], list[str]] = {}
        for e in by_id.values():
            if e.parent is not None:
                self._children[e.parent].append(e.id)
            for name, targets in e.relationships.items():
                for t in targets:
                    self._incoming.setdefault((t, name), []).append(e.id)

    @classmethod
    def flat(
        cls, site: str, twin_types: Mapping[str, str], protocol: str = "simulator"
    ) -> TwinRegistry:
        """One site holding the given twins (id -> type) directly, e.g. for a simulated plant."""
        entries = [RegistryEntry.make(site, SITE)]
        entries += [
            RegistryEntry.make(i, t, protocol=protocol, part_of=site) for i, t in twin_types.items()
        ]
        return cls(entries, source=f"site {site}")

    def _at(self, e: RegistryEntry, key: str) -> str:
        where = f"{e.where}.{key}" if e.where else f"{e.id}.{key}"
        return f"{self.source}: {where}"

    def _check_entry(self, e: RegistryEntry, by_id: Mapping[str, RegistryEntry]) -> list[str]:
        out: list[str] = []
        if not e.id:
            out.append(f"{self._at(e, 'id')}: an id is required (a non-empty string)")
        if not e.type:
            out.append(
                f"{self._at(e, 'type')}: {e.id!r} needs a type (a twin type, or an asset "
                "type such as line)"
            )
        if e.model_id is not None and not _DTMI.match(e.model_id):
            out.append(
                f"{self._at(e, 'model_id')}: {e.model_id!r} is not a DTMI; write it as "
                "dtmi:<segment>:<segment>;<version>, e.g. dtmi:twinflow:sim:Pump;1"
            )
        parents = [(n, t) for n in CONTAINMENT for t in e.relationships.get(n, ())]
        if len(parents) > 1:
            named = ", ".join(f"{_FIELD[n]} {t!r}" for n, t in parents)
            out.append(
                f"{self._at(e, _FIELD[parents[0][0]])}: {e.id!r} has more than one parent "
                f"({named}); a twin or asset sits in one place: keep one and link the others "
                "with a named relationship"
            )
        for name, targets in e.relationships.items():
            key = _FIELD.get(name, f"relationships.{name}")
            if name not in CONTAINMENT and not _NAME.match(name):
                out.append(
                    f"{self._at(e, key)}: relationship name {name!r} must start with a letter "
                    "and hold only letters, digits and '_' (at most 64)"
                )
            for t in targets:
                if t == e.id:
                    out.append(f"{self._at(e, key)}: {e.id!r} cannot relate to itself")
                elif t not in by_id:
                    near = difflib.get_close_matches(t, list(by_id), n=1)
                    hint = f"did you mean {near[0]!r}? " if near else ""
                    out.append(
                        f"{self._at(e, key)}: {t!r} is not a declared twin or asset; {hint}"
                        "declare it (under assets: or twins:) or fix the id"
                    )
        return out

    def _check_declared(self, e: RegistryEntry, by_id: Mapping[str, RegistryEntry]) -> list[str]:
        """Free relationships against the Relationships of the entry's DTDL model."""
        free = {
            n: ts for n, ts in e.relationships.items() if n not in CONTAINMENT and _NAME.match(n)
        }
        if not free or e.model_id is None:
            return []  # no DTDL model (an asset, or an entry made without one): unchecked
        model = e.model_id
        if model not in self.models:
            if not e.is_twin:
                return []  # an asset's own model: not one the registry can check against
            key = f"relationships.{next(iter(free))}"
            known = ", ".join(sorted(self.models)) or "none"
            return [
                f"{self._at(e, key)}: {e.id!r} has model {model}, which the registry does not "
                f"know, so its relationships cannot be checked; give it a twin type with a "
                f"DTDL model (known: {known})"
            ]
        declared = {r.name: r for r in self.models[model]}
        out: list[str] = []
        for name, targets in free.items():
            at = self._at(e, f"relationships.{name}")
            spec = declared.get(name)
            if spec is None:
                near = difflib.get_close_matches(name, list(declared), n=1)
                hint = f"did you mean {near[0]!r}? " if near else ""
                names = ", ".join(declared) or "none"
                out.append(
                    f"{at}: the model of {e.id!r}, {model}, declares no Relationship "
                    f"{name!r} (it declares: {names}); {hint}use a declared one, or add a "
                    f"Relationship named {name!r} to the model"
                )
                continue
            if spec.max_multiplicity is not None and len(targets) > spec.max_multiplicity:
                out.append(
                    f"{at}: {e.id!r} names {len(targets)} targets ({', '.join(targets)}) but "
                    f"Relationship {name!r} of {model} allows at most {spec.max_multiplicity}; "
                    f"keep at most {spec.max_multiplicity} or raise maxMultiplicity in the model"
                )
            if spec.target is None:
                continue
            for t in targets:
                other = by_id.get(t)
                if other is None or t == e.id or other.model_id == spec.target:
                    continue  # unknown and self targets are reported by _check_entry
                what = f"has model {other.model_id}" if other.model_id else "has no DTDL model"
                out.append(
                    f"{at}: {t!r} {what}, but Relationship "
                    f"{name!r} of {model} targets {spec.target}; name a twin of {spec.target} "
                    "or fix the id"
                )
        return out

    def _check_cycles(
        self, by_id: Mapping[str, RegistryEntry], parents: Mapping[str, str | None]
    ) -> list[str]:
        out: list[str] = []
        done: set[str] = set()
        for start in by_id:
            path: list[str] = []
            on_path: set[str] = set()
            node: str | None = start
            while node is not None and node not in done and node not in on_path:
                path.append(node)
                on_path.add(node)
                node = parents.get(node)
            if node is not None and node in on_path:
                loop = path[path.index(node) :]
                e = by_id[loop[0]]
                out.append(
                    f"{self._at(e, _FIELD[e.containment or PART_OF])}: containment cycle "
                    f"{' -> '.join([*loop, loop[0]])}; an entry cannot be part of itself: "
                    "break the loop by changing one part_of/component_of"
                )
            done.update(path)
        return out

    # -- lookups -------------------------------------------------------------------------

    def __contains__(self, twin_id: object) -> bool:
        return twin_id in self.entries

    def __iter__(self) -> Iterator[RegistryEntry]:
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, twin_id: str) -> RegistryEntry:
        """The entry of ``twin_id`` (:class:`UnknownTwinError` with a suggestion if absent)."""
        try:
            return self.entries[twin_id]
        except KeyError:
            near = difflib.get_close_matches(str(twin_id), list(self.entries), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise UnknownTwinError(
                f"{self.source}: no twin or asset {twin_id!r} in the registry{hint}"
            ) from None

    def twins(self) -> tuple[RegistryEntry, ...]:
        """The telemetry-reporting twins."""
        return tuple(e for e in self.entries.values() if e.is_twin)

    def assets(self) -> tuple[RegistryEntry, ...]:
        """The entries that report no telemetry (sites, areas, skids...)."""
        return tuple(e for e in self.entries.values() if not e.is_twin)

    def parent(self, twin_id: str) -> str | None:
        self.get(twin_id)
        return self._parent[twin_id]

    def children(self, twin_id: str) -> tuple[str, ...]:
        self.get(twin_id)
        return tuple(self._children[twin_id])

    def ancestors(self, twin_id: str) -> tuple[str, ...]:
        """Parent, grandparent, ... up to the root (nearest first)."""
        out: list[str] = []
        node = self.parent(twin_id)
        while node is not None:
            out.append(node)
            node = self._parent[node]
        return tuple(out)

    def descendants(self, twin_id: str) -> tuple[str, ...]:
        """Everything contained, directly or not (depth first, in declaration order)."""
        self.get(twin_id)
        out: list[str] = []
        stack = list(reversed(self._children[twin_id]))
        while stack:
            node = stack.pop()
            out.append(node)
            stack.extend(reversed(self._children[node]))
        return tuple(out)

    def twins_under(self, twin_id: str) -> tuple[str, ...]:
        """The telemetry twins of ``twin_id``'s subtree, itself included if it is one."""
        subtree = (twin_id, *self.descendants(twin_id))
        return tuple(i for i in subtree if self.entries[i].is_twin)

    def site_of(self, twin_id: str) -> str:
        """The nearest ancestor (or itself) of type ``site``; the root when there is none."""
        chain = (twin_id, *self.ancestors(twin_id))
        for node in chain:
            if self.entries[node].type == SITE:
                return node
        return chain[-1]

    def related(self, twin_id: str, name: str, *, inverse: bool = False) -> tuple[str, ...]:
        """Targets of ``twin_id``'s relationship ``name``; ``inverse=True``: its sources."""
        e = self.get(twin_id)
        if inverse:
            return tuple(self._incoming.get((twin_id, name), ()))
        return e.relationships.get(name, ())

    def relationship_names(self, twin_id: str) -> tuple[str, ...]:
        """The names of the relationships ``twin_id`` declares (containment included)."""
        return tuple(self.get(twin_id).relationships)
