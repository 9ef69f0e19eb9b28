"""The ``maintenance:`` section of a deployment file: costs, crews, windows and shared outages.

The planner (:mod:`twinflow.operators.maintenance.planner`) reads nothing else: cost tables
are data, checked here with the deployment reader's fields, so a bad value is an error that
names the file and the field.

>>> from pathlib import Path
>>> s = Section({"types": {"motor": {"planned_cost": -1}}}, "maintenance", Path("p.yaml"))
>>> read_maintenance(s)
Traceback (most recent call last):
...
twinflow.core.errors.ConfigError: p.yaml: maintenance.types.motor.planned_cost must be >= 0, got -1
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from twinflow.core.config import Duration, Names, Number, Part, Schema, Section, Text
from twinflow.core.errors import ConfigError

MAINTENANCE = Schema(
    "maintenance",
    "Maintenance planning (`twinflow plan`): what actions cost, how much crew time there is, "
    "when work may be done and which twins stop together.",
    (
        Duration("horizon", "How far ahead the plan looks.", 7 * 86400.0, shown="`7d`"),
        Duration(
            "slot",
            "Length of a planning slot: an action starts at the earliest allowed moment of a slot.",
            86400.0,
            shown="`1d`",
        ),
        Number(
            "crew_hours_per_day",
            "Crew hours of planned work available per calendar day (UTC).",
            16.0,
            above=0,
        ),
        Number(
            "downtime_cost_per_hour",
            "Cost of an hour of outage of a twin whose id or asset is not under `downtime`.",
            0.0,
            low=0,
        ),
        Number(
            "default_spread",
            "Log-normal sigma of the failure time when an RUL estimate has no usable interval.",
            0.5,
            above=0,
        ),
        Part(
            "types",
            "Costs of each twin type's planned action and of its failure: type name -> costs.",
            kind="mapping",
            see="maintenance.types.<type>",
        ),
        Part(
            "downtime",
            "Downtime cost per hour by twin or asset id (a twin takes its own, else its "
            "asset's, else `downtime_cost_per_hour`).",
            kind="mapping",
        ),
        Part(
            "windows",
            "When planned work may start; none: at any time.",
            kind="list",
            see="maintenance.windows[]",
        ),
        Part(
            "groups",
            "Twins that share an outage: one stop serves them all.",
            kind="list",
            see="maintenance.groups[]",
        ),
    ),
)
TYPE_COSTS = Schema(
    "maintenance.types.<type>",
    "What maintaining a twin of the type costs, planned and after a failure.",
    (
        Text("action", "Name of the planned action.", "maintenance"),
        Number("planned_cost", "Cost of the planned action.", 0.0, low=0, required=True),
        Duration(
            "planned_duration", "How long the planned action stops the twin.", 0.0, required=True
        ),
        Number("unplanned_cost", "Cost of the repair after a failure.", 0.0, low=0, required=True),
        Duration("unplanned_duration", "How long a failure stops the twin.", 0.0, required=True),
    ),
)
WINDOW = Schema(
    "maintenance.windows[]",
    "A time span in which planned work may start.",
    (
        Text("start", "ISO 8601 time with a zone, e.g. `2026-12-05T06:00:00Z`.", "", required=True),
        Text("end", "ISO 8601 time with a zone, after `start`.", "", required=True),
    ),
)
GROUP = Schema(
    "maintenance.groups[]",
    "Twins that stop together: planned work on any of them is one outage of all.",
    (
        Text("name", "Name of the outage group.", "", required=True),
        Names("twins", "The twins (at least two).", (), what="twin ids", required=True),
        Number(
            "downtime_cost_per_hour",
            "Cost of an hour of the group's outage; default: the highest of its twins'.",
            -1.0,
            low=0,
            shown="its twins' highest",
        ),
    ),
)
SCHEMAS = (MAINTENANCE, TYPE_COSTS, WINDOW, GROUP)


@dataclass(frozen=True)
class TypeCosts:
    """Costs of one twin type: the planned action and a failure (durations in hours)."""

    action: str
    planned_cost: float
    planned_hours: float
    unplanned_cost: float
    unplanned_hours: float


@dataclass(frozen=True)
class Group:
    """Twins that share an outage; ``downtime_cost_per_hour`` ``None``: their highest."""

    name: str
    twins: tuple[str, ...]
    downtime_cost_per_hour: float | None = None


@dataclass(frozen=True)
class MaintenanceSettings:
    """The checked ``maintenance:`` section; every field has a default (no types: no plan)."""

    horizon_s: float = 7 * 86400.0
    slot_s: float = 86400.0
    crew_hours_per_day: float = 16.0
    downtime_cost_per_hour: float = 0.0
    default_spread: float = 0.5
    types: Mapping[str, TypeCosts] = field(default_factory=dict)
    downtime: Mapping[str, float] = field(default_factory=dict)
    windows: tuple[tuple[datetime, datetime], ...] = ()
    groups: tuple[Group, ...] = ()

    def downtime_rate(self, twin_id: str, asset: str | None = None) -> float:
        """Downtime cost per hour of a twin: its own, else its asset's, else the default."""
        if twin_id in self.downtime:
            return self.downtime[twin_id]
        if asset is not None and asset in self.downtime:
            return self.downtime[asset]
        return self.downtime_cost_per_hour


def read_maintenance(
    s: Section, twins: Collection[str] | None = None, assets: Collection[str] = ()
) -> MaintenanceSettings:
    """The ``maintenance:`` section, checked. When ``twins`` is given, groups may name only
    them and ``downtime`` only them and ``assets``."""
    s.check_keys(MAINTENANCE)
    horizon = s.get(MAINTENANCE["horizon"])
    slot = s.get(MAINTENANCE["slot"])
    if slot > horizon:
        raise s.error("slot", f" ({slot:g} s) must not be longer than horizon ({horizon:g} s)")
    return MaintenanceSettings(
        horizon_s=horizon,
        slot_s=slot,
        crew_hours_per_day=s.get(MAINTENANCE["crew_hours_per_day"]),
        downtime_cost_per_hour=s.get(MAINTENANCE["downtime_cost_per_hour"]),
        default_spread=s.get(MAINTENANCE["default_spread"]),
        types=_types(s.section("types")),
        downtime=_downtime(s.section("downtime"), None if twins is None else {*twins, *assets}),
        windows=_windows(s),
        groups=_groups(s, twins),
    )


def _types(s: Section) -> dict[str, TypeCosts]:
    out: dict[str, TypeCosts] = {}
    for name in s.data:
        e = s.section(str(name))
        e.check_keys(TYPE_COSTS)
        out[str(name)] = TypeCosts(
            action=e.get(TYPE_COSTS["action"]),
            planned_cost=e.get(TYPE_COSTS["planned_cost"]),
            planned_hours=e.get(TYPE_COSTS["planned_duration"]) / 3600.0,
            unplanned_cost=e.get(TYPE_COSTS["unplanned_cost"]),
            unplanned_hours=e.get(TYPE_COSTS["unplanned_duration"]) / 3600.0,
        )
    return out


def _downtime(s: Section, known: Collection[str] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for key in s.data:
        if known is not None and key not in known:
            raise ConfigError(
                f"{s.file}: {s.path(str(key))}: {key!r} is neither a twin nor an asset of this "
                "deployment"
            )
        rate = Number(str(key), "Downtime cost per hour.", 0.0, low=0, required=True)
        out[str(key)] = s.get(rate)
    return out


def _items(s: Section, key: str) -> list[Section]:
    raw = s.data.get(key)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise s.fail(key, "a list")
    return [Section(item, f"{s.path(key)}[{i}]", s.file) for i, item in enumerate(raw)]


def _time(e: Section, key: str) -> datetime:
    text = e.get(WINDOW[key])
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise e.fail(key, "an ISO 8601 time such as '2026-12-05T06:00:00Z'") from None
    if t.tzinfo is None:
        raise e.fail(key, "an ISO 8601 time with a zone (Z or +hh:mm)")
    return t


def _windows(s: Section) -> tuple[tuple[datetime, datetime], ...]:
    out = []
    for e in _items(s, "windows"):
        e.check_keys(WINDOW)
        start, end = _time(e, "start"), _time(e, "end")
        if end <= start:
            raise e.error("end", f" ({end.isoformat()}) must be after start ({start.isoformat()})")
        out.append((start, end))
    return tuple(sorted(out))


def _groups(s: Section, twins: Collection[str] | None) -> tuple[Group, ...]:
    out: list[Group] = []
    seen: dict[str, str] = {}
    for e in _items(s, "groups"):
        e.check_keys(GROUP)
        name = e.get(GROUP["name"])
        members = e.get(GROUP["twins"])
        if len(set(members)) < 2:
            raise e.error("twins", f" must name at least two different twins, got {list(members)}")
        for twin in members:
            if twins is not None and twin not in twins:
                raise e.error("twins", f": {twin!r} is not a twin of this deployment")
            if twin in seen:
                raise e.error("twins", f": {twin!r} is already in group {seen[twin]!r}")
            seen[twin] = name
        rate = e.get(GROUP["downtime_cost_per_hour"])
        out.append(Group(name, tuple(dict.fromkeys(members)), None if rate < 0 else rate))
    names = [g.name for g in out]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ConfigError(f"{s.file}: {s.path('groups')}: the name {dup!r} appears twice")
    return tuple(out)


__all__ = [
    "GROUP",
    "MAINTENANCE",
    "SCHEMAS",
    "TYPE_COSTS",
    "WINDOW",
    "Group",
    "MaintenanceSettings",
    "TypeCosts",
    "read_maintenance",
]
