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

from dataclasses import dataclass, field, replace
from typing import Any

from twinflow.core.records import AssetRollup
from twinflow.core.times import utc
from twinflow.operators.registry import SITE, RegistryEntry, TwinRegistry
from twinflow.operators.replication.fleet_status import (
    SiteStatus,
    Twin,
    fleet_summary,
    statuses_of,
    summary,
    twin_facts,
)
from twinflow.operators.replication.register import Write
from twinflow.operators.rollups import RollupOperator, RollupState, TwinFacts

#: The metadata registers a fleet roll-up reads (exact names, and name prefixes); ``link``
#: is an edge's report of its own link, a write of its site twin (:func:`site_twin`).
NAMES = ("state", "window", "link")
SITE_TWIN = "_site:"
PREFIXES = ("alert:", "command:")
#: An order key: stamp (wall, logical, replica), then the value's JSON text, as the merge.
Order = tuple[int, int, str, str]


def site_twin(replica: str) -> str:
    """The twin id an edge reports its own link under."""
    return SITE_TWIN + replica


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
    #: twin -> site, and site -> twins: the roll-up tree
    tree: dict[str, str] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)
    rollup: RollupState = field(default_factory=RollupState)
    #: site -> its summary without the link (recomputed when one of its twins changes)
    sites: dict[str, SiteStatus] = field(default_factory=dict)
    link: LinkNow | None = None
    #: site -> (order, value) of the newest report of its edge's own link
    edge_link: dict[str, tuple[Order, Any]] = field(default_factory=dict)
    emitted: dict[str, tuple[object, ...]] = field(default_factory=dict)


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
        self._built: set[str] = set()  # the sites the operator was built with
        self._op: RollupOperator | None = None

    def __call__(
        self, state: FleetState | None, batch: FleetBatch
    ) -> tuple[FleetState, list[AssetRollup | SiteStatus]]:
        state = FleetState() if state is None else state
        touched: set[str] = set()
        reports = sum(self._merge(state, seen, touched) for seen in batch.writes)
        if batch.link is not None:
            state.link = batch.link
        out: list[AssetRollup | SiteStatus] = []
        if touched:
            out.extend(self._rollups(state, touched))
        if touched or reports or batch.link is not None:
            out.extend(self._statuses(state))
        return state, out

    def _merge(self, state: FleetState, seen: Seen, touched: set[str]) -> bool:
        """Take one write; True when it was an edge's report of its own link."""
        w = seen.write
        key = w.key
        if not tracked(key.kind, key.name):
            return False
        site = w.stamp.replica
        if seen.at_ms is not None:
            state.received[site] = max(seen.at_ms, state.received.get(site, 0))
        state.written[site] = max(w.stamp.wall_ms, state.written.get(site, 0))
        order: Order = (w.stamp.wall_ms, w.stamp.logical, site, w.value_json)
        if key.twin_id.startswith(SITE_TWIN):  # an edge's report of its own link
            edge = key.twin_id[len(SITE_TWIN) :]
            held_link = state.edge_link.get(edge)
            if key.name == "link" and (held_link is None or held_link[0] < order):
                state.edge_link[edge] = (order, w.value)
            return True
        regs = state.regs.setdefault(key.twin_id, {})
        held = regs.get(key.name)
        if held is not None and held[0] >= order:
            return False  # a duplicate, or older than the register's value: it lost
        regs[key.name] = (order, w.value)
        if order > state.owner.get(key.twin_id, ((-1, 0, "", ""), ""))[0]:
            state.owner[key.twin_id] = (order, site)
        touched.add(key.twin_id)
        return False

    def _operator(
        self, state: FleetState, touched: set[str]
    ) -> tuple[RollupOperator, list[AssetRollup], bool]:
        """The roll-up operator of the current tree, the roll-ups a change of the tree
        changed, and whether it grew. A new twin joins the operator; a new site rebuilds
        it; a twin that moved to another site rolls every twin up afresh. A site stays in
        the tree when its last twin left, so its roll-up goes to zero twins rather than
        keeping the twin it lost."""
        moved = False
        new: list[str] = []
        for twin in sorted(touched):
            site = state.owner[twin][1]
            was = state.tree.get(twin)
            if was == site:
                continue
            if was is not None:
                moved = True
                state.members[was].discard(twin)
                state.sites.pop(was, None)
            state.tree[twin] = site
            state.members.setdefault(site, set()).add(twin)
            new.append(twin)
        op = self._op
        sites = set(state.members)
        if op is not None and not moved and sites == self._built:
            for twin in new:
                if twin not in sites and twin != self.fleet_id:
                    op.join(twin, state.tree[twin])
            return op, [], bool(new)
        if moved:
            state.rollup = RollupState(emitted=state.rollup.emitted)
        taken = {self.fleet_id, *sites}
        entries = [RegistryEntry.make(self.fleet_id, "fleet")]
        entries += [RegistryEntry.make(s, SITE, part_of=self.fleet_id) for s in sorted(sites)]
        entries += [
            RegistryEntry.make(t, "twin", protocol="replication", part_of=s)
            for t, s in sorted(state.tree.items())
            if t not in taken  # a twin named like a site is left out
        ]
        op = self._op = RollupOperator(TwinRegistry(entries, source="fleet"), self.resolution)
        self._built = sites
        out: list[AssetRollup] = []
        if moved:
            for t in sorted(state.tree):
                if op.key(t) is not None:
                    out.extend(self._feed(state, t))
        return op, out, True

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
            state.twins[twin] = twin_facts(state.regs[twin])
        op, out, rebuilt = self._operator(state, touched)
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
        """Each site's summary (a site whose twins all moved away: with none) and the
        fleet's, of the sites that hold twins, as far as they changed."""
        by_site = state.members
        for site, twins in by_site.items():
            if site not in state.sites:
                state.sites[site] = summary(site, {t: state.twins[t] for t in sorted(twins)})
        link = state.link
        now = max(link.at_ms if link else 0, max(state.received.values(), default=0))
        out: list[SiteStatus] = []
        for site in sorted(by_site):
            got = state.received.get(site)
            s = self._link(state.sites[site], link, now, got, state.written.get(site))
            s = _edge(s, state.edge_link.get(site))
            out.extend(self._changed(state, s))
        held = sorted(s for s, twins in by_site.items() if twins)
        got = max((state.received[s] for s in held if s in state.received), default=None)
        wrote = max((state.written[s] for s in held if s in state.written), default=None)
        fleet = fleet_summary(self.fleet_id, (state.sites[s] for s in held))
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
        skip = ("time", "last_received_ms", "last_written_ms", "edge_reported_ms")
        sig = tuple(v for k, v in s.__dict__.items() if k not in skip)
        if state.emitted.get(s.site) == sig:
            return []
        state.emitted[s.site] = sig
        return [s]


def _edge(s: SiteStatus, report: tuple[Order, Any] | None) -> SiteStatus:
    """``s`` with its edge's newest report of its own link (as of ``edge_reported_ms``)."""
    doc = report[1] if report is not None and isinstance(report[1], dict) else None
    if doc is None:
        return s

    def whole(x: object) -> int | None:
        return x if isinstance(x, int) and not isinstance(x, bool) else None

    connected = doc.get("connected")
    return replace(
        s,
        edge_connected=connected if isinstance(connected, bool) else None,
        edge_down_since_ms=whole(doc.get("down_since_ms")),
        edge_pending=whole(doc.get("pending")),
        edge_reported_ms=whole(doc.get("at_ms")),
    )


__all__ = [
    "SITE_TWIN",
    "FleetBatch",
    "FleetRollup",
    "FleetState",
    "LinkNow",
    "Seen",
    "SiteStatus",
    "site_twin",
    "statuses_of",
    "tracked",
]
