"""The second pass: what crosses files, once every Interface is read.

References (``extends``, Component schemas) must name a known Interface; the ``extends``
hierarchy must be acyclic and within DTDL v3's depth and size limits; names must stay unique
across inherited contents; and a Component's Interface may not hold Components itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from twinflow.operators.dtdl import quantities
from twinflow.operators.dtdl.model import Component, Interface, Property, Telemetry, walk_extends
from twinflow.operators.dtdl.reading import limits
from twinflow.operators.dtdl.reading.place import At, Report

if TYPE_CHECKING:
    from twinflow.operators.dtdl.reading.interfaces import InterfaceReader


def resolve(reader: InterfaceReader) -> None:
    """Report every problem between the Interfaces ``reader`` read."""
    interfaces, counts, versions = reader.interfaces, reader.counts, reader.versions
    for ref in reader.refs:
        if ref.target not in interfaces:
            reader.add(
                ref.at,
                f"{ref.kind}-unresolved",
                f"no Interface {ref.target!r} in the files given; add the file that defines it",
            )
        elif (
            versions.get(ref.target) == 3
            and ref.target not in reader.inline
            and _version_at(reader, ref.at, interfaces) == 2
        ):
            reader.add(
                ref.at,
                "version-mix",
                f"a DTDL v2 Interface cannot use the DTDL v3 Interface {ref.target!r} "
                "(a v3 Interface may use a v2 one)",
            )
    report: Report = reader
    depths, cyclic = _extends_depths(interfaces)
    for dtmi, iface in interfaces.items():
        at = At(iface.file, dtmi)
        if dtmi in cyclic:
            report.add(
                at.key("extends"),
                "extends-cycle",
                "this Interface extends itself through its 'extends' chain; break the cycle",
            )
        elif depths[dtmi] > limits.MAX_EXTENDS_DEPTH:
            report.add(
                at.key("extends"),
                "extends-depth",
                f"'extends' is {depths[dtmi]} levels deep; DTDL v3 allows "
                f"{limits.MAX_EXTENDS_DEPTH}",
            )
        else:
            hierarchy = ancestors(interfaces, dtmi)
            _check_inherited(report, interfaces, counts, at, hierarchy, versions.get(dtmi, 3))
            _check_components(report, interfaces, cyclic, at, hierarchy)
    for a_at, owner, raw in reader.annotations:
        if owner in interfaces and owner not in cyclic and "annotates" in raw:
            _check_annotation(report, interfaces, a_at, owner, raw)


def _version_at(reader: InterfaceReader, at: At, interfaces: Mapping[str, Interface]) -> int:
    """The DTDL version of the Interface a reference was written in (3 when unknown)."""
    owner = at.anchor if at.anchor in interfaces else None
    return reader.versions.get(owner, 3) if owner else 3


def _check_annotation(
    report: Report, interfaces: Mapping[str, Interface], at: At, owner: str, raw: dict[str, Any]
) -> None:
    """A ValueAnnotation names a sibling; an Override names a member that sibling has."""
    target = raw.get("annotates")
    siblings = {
        c.name: c
        for a in ancestors(interfaces, owner)
        for c in interfaces[a].contents
        if c.name != raw.get("name")
    }
    found = siblings.get(target) if isinstance(target, str) else None
    if not isinstance(found, (Telemetry, Property)):
        report.add(
            at.key("annotates"),
            "annotation-target",
            f"annotates {target!r}, which is not a Property or Telemetry of this Interface",
        )
        return
    overrides = raw.get("overrides")
    if overrides is None:
        return
    if overrides != "unit" or found.semantic_type is None:
        report.add(
            at.key("overrides"),
            "annotation-target",
            f"overrides {overrides!r}, which is not an extension member of {target!r} "
            "(only the 'unit' of an element with a semantic type can be overridden)",
        )
        return
    unit_type = quantities.SEMANTIC_TYPES.get(found.semantic_type)
    if raw.get("schema") != unit_type:
        report.add(
            at.key("schema"),
            "annotation-target",
            f"the schema of an Override of {target!r}'s unit must be its unit type {unit_type!r}",
        )


def ancestors(interfaces: Mapping[str, Interface], dtmi: str) -> list[str]:
    """The Interface and those it extends that were read, nearest first, each once."""
    return walk_extends(dtmi, lambda d: interfaces[d].extends if d in interfaces else None)


def _extends_depths(interfaces: Mapping[str, Interface]) -> tuple[dict[str, int], set[str]]:
    """Each Interface's ``extends`` depth (0: extends nothing known), and those in a cycle."""
    memo: dict[str, int] = {}
    cyclic: set[str] = set()

    def depth(dtmi: str, trail: tuple[str, ...]) -> int:
        if dtmi in trail:
            cyclic.update(trail[trail.index(dtmi) :])
            return 0
        if dtmi in memo:
            return memo[dtmi]
        parents = [p for p in interfaces[dtmi].extends if p in interfaces]
        d = 1 + max((depth(p, (*trail, dtmi)) for p in parents), default=-1)
        memo[dtmi] = d
        return d

    for dtmi in interfaces:
        depth(dtmi, ())
    return memo, cyclic


def _check_inherited(
    report: Report,
    interfaces: Mapping[str, Interface],
    counts: Mapping[str, int],
    at: At,
    hierarchy: list[str],
    version: int,
) -> None:
    """The size of the hierarchy, and names unique across inherited contents."""
    # every value of every 'extends' member met on the way up, each Interface counted once
    values = sum(len(interfaces[a].extends) for a in hierarchy)
    if version == 3 and values > limits.MAX_EXTENDS_COUNT:
        report.add(
            at.key("extends"),
            "extends-count",
            f"{values} values in the 'extends' members of this hierarchy; DTDL v3 allows "
            f"{limits.MAX_EXTENDS_COUNT}",
        )
    origin: dict[str, str] = {}
    for a in hierarchy:
        for c in interfaces[a].contents:
            if c.name in origin and origin[c.name] != a:
                report.add(
                    at.key("contents"),
                    "extends-conflict",
                    f"name {c.name!r} comes from both {origin[c.name]!r} and {a!r}; "
                    "names must be unique across inherited contents: rename one",
                )
            origin.setdefault(c.name, a)
    total = sum(counts.get(a, 0) for a in hierarchy)
    if version == 3 and interfaces[hierarchy[0]].extends and total > limits.MAX_CONTENTS:
        report.add(
            at.key("contents"),
            "contents-limit",
            f"{total} elements under contents including inherited ones; DTDL v3 "
            f"allows {limits.MAX_CONTENTS}",
        )


def _check_components(
    report: Report,
    interfaces: Mapping[str, Interface],
    cyclic: set[str],
    at: At,
    hierarchy: list[str],
) -> None:
    """A Component's Interface (with what it inherits) may not hold Components."""
    for i, c in enumerate(interfaces[hierarchy[0]].contents):
        if not isinstance(c, Component) or c.schema not in interfaces or c.schema in cyclic:
            continue
        nested = [
            n.name
            for a in ancestors(interfaces, c.schema)
            for n in interfaces[a].contents
            if isinstance(n, Component)
        ]
        if nested:
            report.add(
                at.key("contents").index(i).key("schema"),
                "component-nested",
                f"Component {c.name!r} uses {c.schema!r}, which itself holds "
                f"Components ({', '.join(nested)}); DTDL does not allow a Component inside "
                "a Component",
            )
