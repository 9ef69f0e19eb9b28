"""Roll-ups across sites at the central instance, from the merged replicated state.

The edges forward their twins' state (``metadata/state``), windows (``metadata/window``, with
the RUL estimate), alerts (``metadata/alert:<rule>``) and command transitions
(``metadata/command:<name>``) as replicated writes. :class:`FleetRollup` keeps the newest
write of each of those registers (the same last-writer-wins order as the replica, so a write
that lost, a duplicate or a late one changes nothing) and derives from them, per twin, its
open alarms and health, which it hands to the site roll-ups' own
:class:`~twinflow.operators.rollups.RollupOperator` as :class:`TwinFacts` along a tree
``fleet -> site -> twin`` (a twin's site is the edge that writes its metadata). Roll-ups are
therefore a function of the merged registers alone: the same writes in any order, any number
of times, end in the same roll-ups.

Besides the :class:`~twinflow.core.records.AssetRollup` of the fleet and of each site (twins
in alarm by severity, worst health), it emits a :class:`SiteStatus` per site and one for the
fleet with what an asset roll-up cannot carry: twins reporting and by status, open alarms by
rule, lowest RUL, commands in flight, and the link as the central instance sees it.

>>> from twinflow.operators.replication import PropertyKey, Stamp, Write
>>> from twinflow.operators.replication.register import canonical
>>> doc = {"alert_id": "a1", "rule": "overheat", "state": "raised", "severity": "critical"}
>>> w = Write(PropertyKey("pump-1", "metadata", "alert:overheat"), Stamp(1000, 0, "north"),
...           canonical(doc))
>>> state, out = FleetRollup()(None, FleetBatch((Seen(w, 1001),)))
>>> [(r.asset_id, r.twins_in_alarm) for r in out if isinstance(r, AssetRollup)]
[('north', 1), ('fleet', 1)]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from twinflow.core.records import TERMINAL_COMMAND_STATUSES, AssetRollup, Severity
from twinflow.core.times import iso, utc
from twinflow.operators.registry import SITE, RegistryEntry, TwinRegistry
from twinflow.operators.replication.register import Write
from twinflow.operators.rollups import SEVERITIES, RollupOperator, RollupState, TwinFacts

#: The metadata registers a fleet roll-up reads (exact names, and name prefixes).
NAMES = ("state", "window")
PREFIXES = ("alert:", "command:")
_DONE = frozenset(s.value for s in TERMINAL_COMMAND_STATUSES)
_SEVERITY = {s.value: s for s in SEVERITIES}
#: An order key: stamp (wall, logical, replica), then the value's JSON text, as the merge.
Order = tuple[int, int, str, str]


def tracked(kind: str, name: str) -> bool:
    """Whether a property's writes feed the fleet roll-up."""
    return kind == "metadata" and (name in NAMES or name.startswith(PREFIXES))


@dataclass(frozen=True, slots=True)
class Seen:
    """A write the central replica merged and that won there, with when it arrived (epoch
    ms; ``None`` for one taken from the replica's state at start)."""

    write: Write
    at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class LinkNow:
    """The central instance's own link at ``at_ms``: up or down since when, and how many of
    its writes wait in its outbox."""

    at_ms: int
    up: bool
    down_since_ms: int | None = None
    pending: int = 0


@dataclass(frozen=True, slots=True)
class FleetBatch:
    """What the roll-up step takes at once: merged writes, and the link now (a tick)."""

    writes: tuple[Seen, ...] = ()
    link: LinkNow | None = None


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


@dataclass
class FleetState:
    """The newest tracked write per register, and what was derived from them; picklable."""

    #: twin -> name -> (order, value) of the register's newest write
    regs: dict[str, dict[str, tuple[Order, Any]]] = field(default_factory=dict)
    #: twin -> (order, writer) of its newest tracked write: the writer is the twin's site
    owner: dict[str, tuple[Order, str]] = field(default_factory=dict)
    #: site -> newest arrival (ms) and newest stamp (ms) of its writes
    received: dict[str, int] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)
    twins: dict[str, Twin] = field(default_factory=dict)
    #: twin -> site, as the roll-up tree was built
    tree: dict[str, str] = field(default_factory=dict)
    rollup: RollupState = field(default_factory=RollupState)
    #: site -> its summary without the link (recomputed when one of its twins changes)
    sites: dict[str, SiteStatus] = field(default_factory=dict)
    link: LinkNow | None = None
    emitted: dict[str, tuple[object, ...]] = field(default_factory=dict)


def _twin(regs: Mapping[str, tuple[Order, Any]]) -> Twin:
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


def _summary(site: str, twins: Mapping[str, Twin], sites: int = 1) -> SiteStatus:
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


def _fleet(fleet_id: str, sites: Iterable[SiteStatus]) -> SiteStatus:
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
        _summary(fleet_id, {}, len(parts)),
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


class FleetRollup:
    """``(state, batch) -> (state, [AssetRollup | SiteStatus])``: the central instance's
    roll-ups across sites (see the module docstring). ``fleet_id`` is the tree's root,
    ``silent_after_ms`` how long without a write a site's link reads ``silent``,
    ``resolution`` the health step reported."""

    def __init__(
        self, fleet_id: str = "fleet", silent_after_ms: int = 60_000, resolution: float = 0.01
    ) -> None:
        self.fleet_id = fleet_id
        self.silent_after_ms = silent_after_ms
        self.resolution = resolution
        self._built: dict[str, str] | None = None
        self._op: RollupOperator | None = None

    def __call__(
        self, state: FleetState | None, batch: FleetBatch
    ) -> tuple[FleetState, list[AssetRollup | SiteStatus]]:
        state = FleetState() if state is None else state
        touched: set[str] = set()
        for seen in batch.writes:
            self._merge(state, seen, touched)
        if batch.link is not None:
            state.link = batch.link
        out: list[AssetRollup | SiteStatus] = []
        if touched:
            out.extend(self._rollups(state, touched))
        if touched or batch.link is not None:
            out.extend(self._statuses(state))
        return state, out

    def _merge(self, state: FleetState, seen: Seen, touched: set[str]) -> None:
        w = seen.write
        key = w.key
        if not tracked(key.kind, key.name):
            return
        site = w.stamp.replica
        if seen.at_ms is not None:
            state.received[site] = max(seen.at_ms, state.received.get(site, 0))
        state.written[site] = max(w.stamp.wall_ms, state.written.get(site, 0))
        order: Order = (w.stamp.wall_ms, w.stamp.logical, site, w.value_json)
        regs = state.regs.setdefault(key.twin_id, {})
        held = regs.get(key.name)
        if held is not None and held[0] >= order:
            return  # a duplicate, or older than the register's value: it lost
        regs[key.name] = (order, w.value)
        if order > state.owner.get(key.twin_id, ((-1, 0, "", ""), ""))[0]:
            state.owner[key.twin_id] = (order, site)
        touched.add(key.twin_id)

    def _operator(self, state: FleetState) -> tuple[RollupOperator, list[AssetRollup], bool]:
        """The roll-up operator of the current tree, the roll-ups a rebuild changed, and
        whether it was rebuilt (when a twin or site appears; when a twin moved to another
        site, every twin is rolled up afresh; the site it left keeps its last roll-up)."""
        sites = {o[1] for o in state.owner.values()} | {self.fleet_id}
        tree = {t: o[1] for t, o in state.owner.items() if t not in sites}
        if self._op is not None and tree == self._built:
            return self._op, [], False
        moved = any(state.tree.get(t, s) != s for t, s in tree.items())
        if moved:
            state.rollup = RollupState(emitted=state.rollup.emitted)
        entries = [RegistryEntry.make(self.fleet_id, "fleet")]
        entries += [
            RegistryEntry.make(s, SITE, part_of=self.fleet_id) for s in sorted(set(tree.values()))
        ]
        entries += [
            RegistryEntry.make(t, "twin", protocol="replication", part_of=s)
            for t, s in sorted(tree.items())
        ]
        self._op = RollupOperator(TwinRegistry(entries, source="fleet"), self.resolution)
        self._built = tree
        if moved or state.tree != tree:
            state.sites.clear()  # every site summed again
        state.tree = dict(tree)
        out: list[AssetRollup] = []
        if moved:
            for t in sorted(tree):
                out.extend(self._feed(state, t))
        return self._op, out, True

    def _feed(self, state: FleetState, twin: str) -> list[AssetRollup]:
        op = self._op
        assert op is not None
        t = state.twins.get(twin, Twin())
        facts = TwinFacts(twin, utc(state.owner[twin][0][0] / 1000), t.alarms, t.health)
        rolled, out = op(state.rollup, facts)
        state.rollup = rolled if rolled is not None else state.rollup
        return out

    def _rollups(self, state: FleetState, touched: set[str]) -> list[AssetRollup]:
        for twin in touched:
            state.twins[twin] = _twin(state.regs[twin])
        op, out, rebuilt = self._operator(state)
        for twin in sorted(touched):
            site = state.tree.get(twin)
            if site is not None and op.key(twin) is not None:
                state.sites.pop(site, None)
                out.extend(self._feed(state, twin))
        if rebuilt:  # the assets a new twin joined: their twins_total changed
            clock = state.rollup.clock.values()
            time = max(clock, default=utc(max(state.written.values(), default=0) / 1000))
            out.extend(op.emit(state.rollup, op.rolled, time))
        return out

    def _statuses(self, state: FleetState) -> list[SiteStatus]:
        by_site: dict[str, list[str]] = {}
        for twin, site in state.tree.items():
            by_site.setdefault(site, []).append(twin)
        for site, twins in by_site.items():
            if site not in state.sites:
                state.sites[site] = _summary(site, {t: state.twins[t] for t in twins})
        link = state.link
        now = max(link.at_ms if link else 0, max(state.received.values(), default=0))
        out: list[SiteStatus] = []
        for site in sorted(by_site):
            got = state.received.get(site)
            s = self._link(state.sites[site], link, now, got, state.written.get(site))
            out.extend(self._changed(state, s))
        got = max((state.received[s] for s in by_site if s in state.received), default=None)
        wrote = max((state.written[s] for s in by_site if s in state.written), default=None)
        fleet = _fleet(self.fleet_id, (state.sites[s] for s in sorted(by_site)))
        out.extend(self._changed(state, self._link(fleet, link, now, got, wrote)))
        return out

    def _link(
        self,
        s: SiteStatus,
        link: LinkNow | None,
        now: int,
        received: int | None,
        written: int | None,
    ) -> SiteStatus:
        """``s`` with its times and its link as the central instance sees it at ``now``."""
        if link is not None and not link.up:
            word, since = "down", link.down_since_ms
        elif received is None or now - received > self.silent_after_ms:
            word, since = "silent", received
        else:
            word, since = "up", None
        return replace(
            s,
            time=utc((written or 0) / 1000),
            link=word,
            link_since_ms=since,
            last_received_ms=received,
            last_written_ms=written,
            central_pending=0 if link is None else link.pending,
        )

    @staticmethod
    def _changed(state: FleetState, s: SiteStatus) -> list[SiteStatus]:
        """``s`` when it differs from the one last emitted for its site (times aside)."""
        skip = ("time", "last_received_ms", "last_written_ms")
        sig = tuple(v for k, v in s.__dict__.items() if k not in skip)
        if state.emitted.get(s.site) == sig:
            return []
        state.emitted[s.site] = sig
        return [s]


def statuses_of(items: Iterable[object]) -> dict[str, SiteStatus]:
    """The newest :class:`SiteStatus` per site among ``items`` (what a reader keeps)."""
    return {i.site: i for i in items if isinstance(i, SiteStatus)}


__all__ = [
    "FleetBatch",
    "FleetRollup",
    "FleetState",
    "LinkNow",
    "Seen",
    "SiteStatus",
    "statuses_of",
    "tracked",
]
