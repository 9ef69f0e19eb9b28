"""The roll-up step: alerts and windows of every twin, re-keyed by site, rolled up the
registry's containment tree (logic in :mod:`twinflow.operators.rollups`).

In the telemetry flow, pass the keyed alerts stream (``alerts``, out of ``alarms``) and the
keyed windows carrying their RUL estimate (``with_rul``, out of ``rul``)::

    rollups = rollup_stream(alerts, with_rul, deployment.registry(), "rollups")
    op.output("rollups_out", op.key_on("key_rollups", rollups, lambda r: r.asset_id), sink)

All twins of a site meet in one worker (the stream is keyed by site), so one busy site is
one worker's load; sites spread over workers.
"""

from __future__ import annotations

from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream, operator

from twinflow.core.records import Alert, AssetRollup, WindowFeatures
from twinflow.operators.registry import TwinRegistry
from twinflow.operators.rollups import RollupOperator


def _unkey(item: Any) -> Any:
    """``(key, value)`` -> ``value``; a bare item passes as is."""
    return item[1] if isinstance(item, tuple) else item


@operator
def _rollups(
    step_id: str,
    alerts: Stream[Any],
    windows: Stream[Any],
    registry: TwinRegistry,
    resolution: float,
) -> Stream[AssetRollup]:
    logic = RollupOperator(registry, resolution=resolution)
    facts = op.merge(
        "merge_facts",
        op.map("unkey_alerts", alerts, _unkey),
        op.filter(
            "with_health",
            op.map("unkey_windows", windows, _unkey),
            lambda w: isinstance(w, WindowFeatures) and w.rul is not None,
        ),
    )
    known = op.filter("registered", facts, lambda x: logic.key(x.twin_id) is not None)
    keyed = op.key_on("key_by_site", known, lambda x: logic.key(x.twin_id) or "")
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
    return _rollups(step_id, alerts_stream, windows_stream, registry, resolution)
