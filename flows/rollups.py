"""The roll-up step: alerts and windows of every twin, re-keyed by site, rolled up the
registry's containment tree (logic in :mod:`twinflow.operators.rollups`).

In the telemetry flow, it takes the keyed alerts and the keyed windows carrying their RUL
estimate, both out of the ``analytics`` sub-flow::

    rollups = rollup_stream(analysed.alerts, analysed.windows, registry, "rollups")

All twins of a site meet in one worker (the stream is keyed by site), so one busy site is
one worker's load; sites spread over workers.
"""

from __future__ import annotations

from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream, operator

from twinflow.core.records import Alert, AssetRollup, WindowFeatures
from twinflow.flows.steps import SiteOf, has_health, unkey
from twinflow.operators.registry import TwinRegistry
from twinflow.operators.rollups import RollupOperator


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
