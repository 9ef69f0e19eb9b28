"""The roll-up step: alerts and windows of every twin, re-keyed by site, rolled up the
registry's containment tree (logic in :mod:`twinflow.operators.rollups`).

In the telemetry flow, it takes the keyed alerts and the keyed windows carrying their RUL
estimate, both out of the ``analytics`` sub-flow::

    rollups = rollup_stream(analysed.alerts, analysed.windows, registry, "rollups")

All twins of a site meet in one worker (the stream is keyed by site), so one busy site is
one worker's load; sites spread over workers.

At a central instance of replicated twins, :func:`fleet_rollups` rolls the writes its edges
forward up a tree ``fleet -> site -> twin`` (logic in
:mod:`twinflow.operators.replication.fleet`)::

    fleet   [feed] merged writes and the link, in batches -> [rollup] -> AssetRollup
            [fleet_metrics] SiteStatus as gauges -> [fleet_status_out] (fleet_status.jsonl)
                                                  -> [fleet_status_store_0] (PostgreSQL)
"""

from __future__ import annotations

import time
from typing import Any, TypeGuard

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream, operator
from prometheus_client import Gauge

from twinflow.connectors.replication.node import ReplicationNode
from twinflow.core.records import Alert, AssetRollup, WindowFeatures
from twinflow.flows.replication import NodeSource, Replication
from twinflow.flows.steps import SiteOf, has_health, unkey
from twinflow.operators.registry import TwinRegistry
from twinflow.operators.replication.fleet import FleetBatch, FleetRollup, SiteStatus
from twinflow.operators.rollups import RollupOperator

REPORTING = Gauge(
    "twinflow_fleet_twins_reporting",
    "Twins whose state a central instance holds, per site (the fleet id: every site)",
    ["site"],
)
IN_ALARM = Gauge(
    "twinflow_fleet_twins_in_alarm",
    "Twins with an open alarm per site, by the worst severity open",
    ["site", "severity"],
)
IN_FLIGHT = Gauge(
    "twinflow_fleet_commands_in_flight",
    "Commands whose newest forwarded status is not an end state, per site",
    ["site"],
)
SITE_UP = Gauge(
    "twinflow_fleet_site_up",
    "1 while a site's writes arrive at the central instance, 0 when silent or the link is down",
    ["site"],
)
LAST_RECEIVED = Gauge(
    "twinflow_fleet_site_last_received_seconds",
    "Epoch seconds at which the central instance last received a write of the site",
    ["site"],
)


@operator
def asset_rollups(
    step_id: str,
    alerts: Stream[Any],
    windows: Stream[Any],
    registry: TwinRegistry,
    resolution: float,
) -> Stream[AssetRollup]:
    logic = RollupOperator(registry, resolution=resolution)
    site = SiteOf(logic)
    facts = op.merge(
        "merge_facts",
        op.map("unkey_alerts", alerts, unkey),
        op.filter("with_health", op.map("unkey_windows", windows, unkey), has_health),
    )
    known = op.filter("registered", facts, site.known)
    keyed = op.key_on("key_by_site", known, site)
    rolled = op.stateful_flat_map("rollup", keyed, logic)
    return op.key_rm("unkey_rollups", rolled)


def rollup_stream(
    alerts_stream: Stream[tuple[str, Alert]] | Stream[Alert],
    windows_stream: Stream[tuple[str, WindowFeatures]] | Stream[WindowFeatures],
    registry: TwinRegistry,
    step_id: str,
    resolution: float = 0.01,
) -> Stream[AssetRollup]:
    """A stream of :class:`AssetRollup`, one each time an asset's roll-up changes.

    Both inputs may be keyed ``(twin_id, item)`` pairs or bare items; facts of twins the
    registry does not hold are dropped. ``resolution`` is the health step reported.
    """
    return asset_rollups(step_id, alerts_stream, windows_stream, registry, resolution)


class FleetFeed:
    """The fleet step's input: a :class:`FleetBatch` of the writes the node took since the
    last one, at most one every ``gap_s`` (a busy link's writes are rolled up together),
    and the link's state every ``interval_s`` (a tick, so that a silent site is noticed
    without writes)."""

    def __init__(self, node: ReplicationNode, interval_s: float, gap_s: float = 0.2) -> None:
        self.node = node
        self.interval_s = interval_s
        self.gap_s = gap_s
        self._next = 0.0
        self._last = 0.0

    def __call__(self) -> list[FleetBatch]:
        now = time.monotonic()
        if now - self._last < self.gap_s:
            return []
        self._last = now
        writes = tuple(self.node.feeds.take_fleet())
        link = None
        if now >= self._next:
            self._next = now + self.interval_s
            link = self.node.link_now()
        return [FleetBatch(writes, link)] if writes or link is not None else []

    def last(self) -> list[FleetBatch]:
        """What is left at the end, with the link's state then."""
        return [FleetBatch(tuple(self.node.feeds.take_fleet()), self.node.link_now())]


def is_rollup(item: object) -> TypeGuard[AssetRollup]:
    return isinstance(item, AssetRollup)


def site_of(status: SiteStatus) -> str:
    return status.site


def observe(status: AssetRollup | SiteStatus) -> SiteStatus:
    """``fleet_metrics``: a site's (or the fleet's) summary as gauges."""
    if not isinstance(status, SiteStatus):  # the branch sent every AssetRollup elsewhere
        raise TypeError(f"fleet_metrics takes SiteStatus items, got {type(status).__name__}")
    site = status.site
    REPORTING.labels(site).set(status.twins_reporting)
    for severity, n in status.in_alarm_by_severity.items():
        IN_ALARM.labels(site, severity).set(n)
    IN_FLIGHT.labels(site).set(status.commands_in_flight)
    SITE_UP.labels(site).set(1 if status.link == "up" else 0)
    if status.last_received_ms is not None:
        LAST_RECEIVED.labels(site).set(status.last_received_ms / 1000)
    return status


@operator
def fleet_rollups(
    step_id: str, flow: Dataflow, replication: Replication, fleet_id: str = "fleet"
) -> Stream[AssetRollup]:
    """A central instance's roll-ups across sites: the fleet's and each site's
    :class:`AssetRollup` (returned, for the flow's roll-up sinks); each
    :class:`SiteStatus` goes to the gauges, to ``replication.fleet_status`` and to
    ``replication.stores`` (PostgreSQL's ``fleet_status`` and ``fleet_status_latest``)."""
    node = replication.node
    node.watch_fleet()
    feed = FleetFeed(node, replication.status_interval_s)
    src = NodeSource(feed, idle_s=0.2, until=replication.until, last=feed.last)
    batches = op.key_on("key_fleet", op.input("feed", flow, src), lambda _b: fleet_id)
    logic = FleetRollup(fleet_id, silent_after_ms=int(node.silent_after_s * 1000))
    out = op.key_rm("unkey", op.stateful_flat_map("rollup", batches, logic))
    split = op.branch("split", out, is_rollup)
    statuses = op.map("fleet_metrics", split.falses, observe)
    keyed = op.key_on("key_status", statuses, site_of)
    if replication.fleet_status is not None:
        op.output("fleet_status_out", keyed, replication.fleet_status)
    for i, store in enumerate(replication.stores):  # the database: fleet_status(_latest)
        op.output(f"fleet_status_store_{i}", keyed, store)
    return split.trues
