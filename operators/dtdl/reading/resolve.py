"""The second pass: what crosses files, once every Interface is read.

References (``extends``, Component schemas) must name a known Interface; the ``extends``
hierarchy must be acyclic and within DTDL v3's depth and size limits; names must stay unique
across inherited contents; and a Component's Interface may not hold Components itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from twinflow.operators.dtdl.model import Component, Interface, walk_extends
from twinflow.operators.dtdl.reading import limits
from twinflow.operators.dtdl.reading.place import At, Ref, Report


def resolve(
    report: Report,
    interfaces: Mapping[str, Interface],
    refs: Iterable[Ref],
    counts: Mapping[str, int],
) -> None:
    """Report every problem between the ``interfaces`` read (``counts``: their elements)."""
    for ref in refs:
        if ref.target not in interfaces:
            report.add(
                ref.at,
                f"{ref.kind}-unresolved",
                f"no Interface {ref.target!r} in the files given; add the file that defines it",
            )
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
            _check_inherited(report, interfaces, counts, at, hierarchy)
            _check_components(report, interfaces, cyclic, at, hierarchy)


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
) -> None:
    """The size of the hierarchy, and names unique across inherited contents."""
    if len(hierarchy) - 1 > limits.MAX_EXTENDS_COUNT:
        report.add(
            at.key("extends"),
            "extends-count",
            f"{len(hierarchy) - 1} Interfaces in the 'extends' hierarchy; DTDL v3 "
            f"allows {limits.MAX_EXTENDS_COUNT}",
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
    if interfaces[hierarchy[0]].extends and total > limits.MAX_CONTENTS:
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
        if nested or c.schema in hierarchy:
            report.add(
                at.key("contents").index(i).key("schema"),
                "component-nested",
                f"Component {c.name!r} uses {c.schema!r}, which itself holds "
                f"Components ({', '.join(nested) or 'itself'}); DTDL v3 does not allow "
                "a Component inside a Component",
            )
