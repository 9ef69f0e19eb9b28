"""What the central roll-ups derive from forwarded writes: each twin's facts, and a site's
(or the fleet's) summary, :class:`SiteStatus` (for :mod:`twinflow.operators.replication.fleet`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from twinflow.core.records import TERMINAL_COMMAND_STATUSES, Severity
from twinflow.core.times import iso, utc
from twinflow.operators.rollups import SEVERITIES

_DONE = frozenset(s.value for s in TERMINAL_COMMAND_STATUSES)
_SEVERITY = {s.value: s for s in SEVERITIES}


@dataclass(frozen=True)
class SiteStatus:
    """One site's summary (``site`` is an edge's replica id), or the fleet's (the fleet id).

    ``link`` is ``up`` (a write arrived within the silence limit), ``silent`` (none since
    ``last_received_ms``) or ``down`` (the central instance's own link is down, since
    ``link_since_ms``); what waits in an edge's outbox is not known centrally.
    """

    SCHEMA = "twinflow.fleet_status"
    VERSION = 1

    site: str
    time: datetime
    sites: int
    twins_reporting: int
    twins_by_status: Mapping[str, int]
    twins_in_alarm: int
    in_alarm_by_severity: Mapping[str, int]
    open_alarms_by_rule: Mapping[str, int]
    worst_health: float | None
    worst_twin: str | None
    lowest_rul_h: float | None
    lowest_rul_twin: str | None
    commands_in_flight: int
    link: str
    link_since_ms: int | None
    last_received_ms: int | None
    last_written_ms: int | None
    central_pending: int
    #: the edge's newest report of its own link: connected, down since, writes waiting in
    #: its outbox, as of ``edge_reported_ms`` (``None`` until one arrived; a report made while
    #: the link was down arrives once it is back)
    edge_connected: bool | None = None
    edge_down_since_ms: int | None = None
    edge_pending: int | None = None
    edge_reported_ms: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.SCHEMA,
            "version": self.VERSION,
            **self.__dict__,
            "time": iso(self.time),
        }


@dataclass
class Twin:
    """What the merged registers say of one twin."""

    status: str | None = None
    alarms: dict[str, Severity] = field(default_factory=dict)
    rules: tuple[str, ...] = ()
    health: float | None = None
    rul_h: float | None = None
    in_flight: int = 0


def twin_facts(regs: Mapping[str, tuple[Any, Any]]) -> Twin:
    """A twin's facts from its registers' newest ``(order, value)`` by name."""
    t = Twin()
    rules: list[str] = []
    for name, (_order, value) in regs.items():
        doc = value if isinstance(value, dict) else {}
        if name == "state":
            t.status = str(doc["status"]) if doc.get("status") is not None else None
        elif name == "window":
            rul = doc.get("rul")
            rul = rul if isinstance(rul, dict) else {}
            health, hours = rul.get("health"), rul.get("hours")
            t.health = float(health) if isinstance(health, int | float) else None
            t.rul_h = float(hours) if isinstance(hours, int | float) else None
        elif name.startswith("alert:") and doc.get("state") == "raised":
            sev = _SEVERITY.get(str(doc.get("severity")))
            if sev is not None:
                t.alarms[str(doc.get("alert_id", name))] = sev
                rules.append(name.split(":", 1)[1])
        elif name.startswith("command:") and doc.get("status") not in _DONE:
            t.in_flight += 1
    t.rules = tuple(sorted(rules))
    return t


def summary(site: str, twins: Mapping[str, Twin], sites: int = 1) -> SiteStatus:
    """A site's (or the fleet's) summary of ``twins``, its link fields left empty."""
    by_status: dict[str, int] = {}
    rules: dict[str, int] = {}
    counts = [0] * len(SEVERITIES)
    worst: tuple[float, str] | None = None
    lowest: tuple[float, str] | None = None
    in_flight = 0
    for name, t in twins.items():
        if t.status is not None:
            by_status[t.status] = by_status.get(t.status, 0) + 1
        if t.alarms:
            counts[max(SEVERITIES.index(s) for s in t.alarms.values())] += 1
        for r in t.rules:
            rules[r] = rules.get(r, 0) + 1
        if t.health is not None and (worst is None or (t.health, name) < worst):
            worst = (t.health, name)
        rul = t.rul_h
        if rul is not None and math.isfinite(rul) and (lowest is None or (rul, name) < lowest):
            lowest = (rul, name)
        in_flight += t.in_flight
    return SiteStatus(
        site=site,
        time=utc(0),
        sites=sites,
        twins_reporting=sum(by_status.values()),
        twins_by_status=dict(sorted(by_status.items())),
        twins_in_alarm=sum(counts),
        in_alarm_by_severity={s.value: n for s, n in zip(SEVERITIES, counts, strict=True)},
        open_alarms_by_rule=dict(sorted(rules.items())),
        worst_health=None if worst is None else round(worst[0], 4),
        worst_twin=None if worst is None else worst[1],
        lowest_rul_h=None if lowest is None else round(lowest[0], 3),
        lowest_rul_twin=None if lowest is None else lowest[1],
        commands_in_flight=in_flight,
        link="",
        link_since_ms=None,
        last_received_ms=None,
        last_written_ms=None,
        central_pending=0,
    )


def fleet_summary(fleet_id: str, sites: Iterable[SiteStatus]) -> SiteStatus:
    """The fleet's summary from its sites' (sums, and the worst of each)."""
    parts = list(sites)

    def add(field_: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in parts:
            for k, n in getattr(p, field_).items():
                out[k] = out.get(k, 0) + n
        return dict(sorted(out.items()))

    worst = min(((p.worst_health, p.worst_twin) for p in parts if p.worst_twin), default=None)
    low = min(
        ((p.lowest_rul_h, p.lowest_rul_twin) for p in parts if p.lowest_rul_twin), default=None
    )
    return replace(
        summary(fleet_id, {}, len(parts)),
        twins_reporting=sum(p.twins_reporting for p in parts),
        twins_by_status=add("twins_by_status"),
        twins_in_alarm=sum(p.twins_in_alarm for p in parts),
        in_alarm_by_severity={
            s.value: sum(p.in_alarm_by_severity[s.value] for p in parts) for s in SEVERITIES
        },
        open_alarms_by_rule=add("open_alarms_by_rule"),
        worst_health=None if worst is None else worst[0],
        worst_twin=None if worst is None else worst[1],
        lowest_rul_h=None if low is None else low[0],
        lowest_rul_twin=None if low is None else low[1],
        commands_in_flight=sum(p.commands_in_flight for p in parts),
    )


def statuses_of(items: Iterable[object]) -> dict[str, SiteStatus]:
    """The newest :class:`SiteStatus` per site among ``items`` (what a reader keeps)."""
    return {i.site: i for i in items if isinstance(i, SiteStatus)}


__all__ = ["SiteStatus", "Twin", "fleet_summary", "statuses_of", "summary", "twin_facts"]
