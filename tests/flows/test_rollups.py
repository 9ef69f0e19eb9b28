"""rollup_stream through Bytewax: keyed alerts and windows in, asset roll-ups out."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from twinflow.core.records import (
    Alert,
    AlertState,
    AssetRollup,
    RulEstimate,
    Severity,
    WindowFeatures,
)
from twinflow.flows.rollups import rollup_stream
from twinflow.operators.registry import RegistryEntry, TwinRegistry

E = RegistryEntry.make
T0 = datetime(2024, 5, 1, tzinfo=UTC)


def registry() -> TwinRegistry:
    """Two sites: north holds a skid with a pump and a motor, south one turbine."""
    return TwinRegistry(
        [
            E("north", "site"),
            E("skid-1", "pump_skid", part_of="north"),
            E("pump-002", "pump", protocol="opcua", part_of="skid-1"),
            E("motor-003", "motor", protocol="modbus", component_of="skid-1"),
            E("south", "site"),
            E("wt-001", "wind_turbine", protocol="mqtt", part_of="south"),
        ]
    )


def alert(twin: str, alert_id: str, state: AlertState, minute: int) -> tuple[str, Alert]:
    t = T0 + timedelta(minutes=minute)
    a = Alert(alert_id, twin, "x", "rule", state, Severity.CRITICAL, t, T0, "msg")
    return twin, a


def window(twin: str, health: float | None, minute: int) -> tuple[str, WindowFeatures]:
    end = T0 + timedelta(minutes=minute)
    rul = None if health is None else RulEstimate("wear", health, 10.0, 5.0, 20.0)
    return twin, WindowFeatures(twin, "x", end - timedelta(minutes=5), end, {}, rul=rul)


def build(alerts: list[Any], windows: list[Any], out: list[AssetRollup]) -> Dataflow:
    flow = Dataflow("rollups-test")
    a = op.input("alerts", flow, TestingSource(alerts))
    w = op.input("windows", flow, TestingSource(windows))
    rolled = rollup_stream(a, w, registry(), "rollups")
    op.output("out", rolled, TestingSink(out))
    return flow


def latest(out: list[AssetRollup]) -> dict[str, AssetRollup]:
    """The last roll-up emitted per asset (a site's roll-ups come from one worker, in order)."""
    last = {r.asset_id: r for r in out}
    for asset, r in last.items():  # times never go backwards
        assert r.time == max(x.time for x in out if x.asset_id == asset)
    return last


ALERTS = [
    alert("motor-003", "m1", AlertState.RAISED, 1),
    alert("pump-002", "p1", AlertState.RAISED, 2),
    alert("wt-001", "w1", AlertState.RAISED, 3),
    alert("pump-002", "p1", AlertState.CLEARED, 4),
    alert("ghost-9", "g1", AlertState.RAISED, 5),  # not registered: dropped
]
WINDOWS = [
    window("pump-002", 0.7, 5),
    window("motor-003", None, 5),  # no estimate yet: no health fact
    window("motor-003", 0.3, 10),
    window("wt-001", 0.9, 10),
]


def test_rollups_per_site_from_keyed_streams() -> None:
    out: list[AssetRollup] = []
    run_main(build(ALERTS, WINDOWS, out))
    assert all(isinstance(r, AssetRollup) for r in out)
    last = latest(out)
    assert set(last) == {"north", "skid-1", "south"}
    assert (last["north"].twins_total, last["north"].twins_in_alarm) == (2, 1)
    assert last["north"].in_alarm_by_severity["critical"] == 1
    assert (last["skid-1"].worst_health, last["skid-1"].worst_twin) == (0.3, "motor-003")
    assert (last["south"].twins_in_alarm, last["south"].worst_health) == (1, 0.9)
    # each emission differs from the asset's previous one
    for asset in last:
        mine = [(r.twins_in_alarm, r.worst_health) for r in out if r.asset_id == asset]
        assert all(a != b for a, b in itertools.pairwise(mine))


def test_bare_items_and_two_workers_give_the_same_result() -> None:
    out: list[AssetRollup] = []
    bare_alerts = [a for _, a in ALERTS]
    bare_windows = [w for _, w in WINDOWS]
    cluster_main(build(bare_alerts, bare_windows, out), [], 0, worker_count_per_proc=2)
    last = latest(out)
    assert last["north"].twins_in_alarm == 1 and last["south"].twins_in_alarm == 1
    assert last["skid-1"].worst_twin == "motor-003"
