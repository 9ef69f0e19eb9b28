"""Where twins and assets sit: ``part_of``/``component_of``, ``relationships`` and ``assets:``.

Parsers of the deployment file's containment and relationship fields; the registry built
from them (:meth:`Deployment.registry`) checks targets, cycles and DTDL declarations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twinflow.core.config import OptionalText, Part, Schema, Section, Text
from twinflow.core.errors import ConfigError
from twinflow.flows.deployment import AssetSpec
from twinflow.operators.catalog import CATALOG
from twinflow.operators.registry import COMPONENT_OF, CONTAINMENT, PART_OF, SITE
from twinflow.operators.twin_type import TwinType

PLACEMENT = (
    OptionalText("part_of", "Id of the asset or twin this one sits in; none: the site."),
    OptionalText("component_of", "Like `part_of`, as a component (`isComponentOf`)."),
    Part(
        "relationships",
        "Named relationships to other twins or assets (names the twin's DTDL model declares).",
        kind="mapping of name to id or list of ids",
    ),
)
PLACEMENT_KEYS = tuple(f.key for f in PLACEMENT)

ASSET = Schema(
    "assets[]",
    "An asset that reports no telemetry (an area, a line, a skid) and where it sits.",
    (
        Text("id", "Unique id (not the site's).", "", required=True),
        Text(
            "type",
            "Asset type, e.g. `skid`, `line`, `area` (not a twin type).",
            "",
            required=True,
        ),
        OptionalText("model_id", "DTMI of the asset's DTDL model, if it has one."),
        *PLACEMENT,
    ),
)


def placement(s: Section) -> dict[str, Any]:
    """``part_of``/``component_of`` and ``relationships`` of a twin or an asset."""
    out: dict[str, Any] = {}
    for key, kind in (("component_of", COMPONENT_OF), ("part_of", PART_OF)):
        if key in s.data:
            if isinstance(s.data[key], list):
                raise s.fail(
                    key,
                    "one id: a twin or asset sits in one place; link the others with "
                    "relationships (e.g. feeds: [...])",
                )
            parent = s.get(Text(key, "", "", required=True))
            if "part_of" in out:  # both keys: the registry reports the two parents
                out["relationships"] = {kind: (parent,)}
            else:
                out.update(part_of=parent, containment=kind)
    named: dict[str, tuple[str, ...]] = dict(out.pop("relationships", {}))
    named.update(_relationships(s))
    if named:
        out["relationships"] = named
    return out


def _relationships(s: Section) -> dict[str, tuple[str, ...]]:
    rels = s.section("relationships")
    named: dict[str, tuple[str, ...]] = {}
    for name, targets in rels.data.items():
        if not isinstance(name, str):
            raise ConfigError(f"{s.file}: {rels.path(str(name))}: a relationship name is text")
        if name in (*CONTAINMENT, *PLACEMENT_KEYS[:2]):
            raise ConfigError(
                f"{s.file}: {rels.path(name)}: containment is not a named relationship; "
                f"write part_of: <id> (or component_of: <id>) on the {s.where} entry instead"
            )
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, list) or not all(isinstance(t, str) and t for t in targets):
            raise rels.fail(name, "a twin or asset id, or a list of ids")
        named[name] = tuple(targets)
    return named


def assets(
    top: Section, site: str, types: Mapping[str, TwinType] = CATALOG
) -> tuple[AssetSpec, ...]:
    """The ``assets:`` list; an asset is neither the site nor of a telemetry twin type."""
    raw = top.data.get("assets")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise top.fail("assets", "a list of assets, each with an id and a type")
    return tuple(
        _asset(Section(item, f"assets[{i}]", top.file), site, types) for i, item in enumerate(raw)
    )


def _asset(s: Section, site: str, types: Mapping[str, TwinType]) -> AssetSpec:
    s.check_keys(ASSET)
    asset_id = s.get(ASSET["id"])
    if asset_id == site:
        raise ConfigError(
            f"{s.file}: {s.path('id')} {asset_id!r} is the deployment's site (top-level "
            "site:); assets sit in it without declaring it: remove this entry"
        )
    asset_type = s.get(ASSET["type"])
    if asset_type in types:
        raise ConfigError(
            f"{s.file}: {s.path('type')} = {asset_type!r} is a telemetry twin type; "
            "declare it under twins: with a protocol, or give the asset its own type "
            "(e.g. skid, line, area)"
        )
    if asset_type == SITE:
        raise ConfigError(
            f"{s.file}: {s.path('type')} = 'site' is the top-level site:; use e.g. area "
            "for a part of the site"
        )
    return AssetSpec(asset_id, asset_type, model_id=s.get(ASSET["model_id"]), **placement(s))


__all__ = ["ASSET", "PLACEMENT", "PLACEMENT_KEYS", "assets", "placement"]
