"""Roll-ups across sites from the merged replicated writes (``FleetRollup``).

The writes are what edges forward (``twinflow.connectors.replication.forward``): alerts,
windows with their RUL estimate, twin states and command transitions. The roll-ups must be
a function of the merged registers: a write that lost, a duplicate or a late delivery
changes nothing, so any order and any duplication of the same writes ends the same.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinflow.core.records import AssetRollup
from twinflow.operators.replication import PropertyKey, Stamp, Write
from twinflow.operators.replication.fleet import (
    FleetBatch,
    FleetRollup,
    FleetState,
    LinkNow,
    Seen,
    SiteStatus,
    statuses_of,
)
from twinflow.operators.replication.register import canonical

T0 = 1_700_000_000_000


def write(site: str, twin: str, name: str, value: Any, at: int, logical: int = 0) -> Seen:
    w = Write(PropertyKey(twin, "metadata", name), Stamp(T0 + at, logical, site), canonical(value))
    return Seen(w, T0 + at + 5)


def alert(site: str, twin: str, rule: str, state: str, severity: str, at: int, n: int = 0) -> Seen:
    doc = {
        "alert_id": f"{twin}-{rule}-{n}",
        "twin_id": twin,
        "rule": rule,
        "state": state,
        "severity": severity,
    }
    return write(site, twin, f"alert:{rule}", doc, at)


def window(site: str, twin: str, health: float, hours: float | None, at: int) -> Seen:
    doc = {"start": "", "end": "", "features": {}, "rul": {"health": health, "hours": hours}}
    return write(site, twin, "window", doc, at)


def state(site: str, twin: str, status: str, at: int) -> Seen:
    return write(site, twin, "state", {"status": status, "time": "", "readings": 1}, at)


def command(site: str, twin: str, name: str, status: str, at: int) -> Seen:
    doc = {"command_id": f"{twin}-{at}", "status": status}
    return write(site, twin, f"command:{name}", doc, at)


def run(
    writes: list[Seen], batches: list[int] | None = None, logic: FleetRollup | None = None
) -> tuple[FleetState, list[AssetRollup | SiteStatus]]:
    """Feed ``writes`` in batches of the given sizes (default: all at once)."""
    logic = logic or FleetRollup()
    fleet: FleetState | None = None
    out: list[AssetRollup | SiteStatus] = []
    sizes = batches or [len(writes)]
    i = 0
    for n in sizes:
        fleet, got = logic(fleet, FleetBatch(tuple(writes[i : i + n])))
        out += got
        i += n
    if i < len(writes):
        fleet, got = logic(fleet, FleetBatch(tuple(writes[i:])))
        out += got
    assert fleet is not None
    return fleet, out


def rollups_of(out: list[AssetRollup | SiteStatus]) -> dict[str, tuple[object, ...]]:
    """The newest roll-up per asset, without its time (when it changed depends on order)."""
    last = {r.asset_id: r for r in out if isinstance(r, AssetRollup)}
    return {
        a: (r.asset_type, r.twins_total, r.twins_in_alarm, dict(r.in_alarm_by_severity),
            r.worst_health, r.worst_twin)
        for a, r in last.items()
    }  # fmt: skip


def summaries_of(out: list[AssetRollup | SiteStatus]) -> dict[str, dict[str, object]]:
    """The newest summary per site, without its times (as of its last change, which
    depends on the order; the state's times are compared apart)."""
    skip = ("time", "last_received_ms", "last_written_ms")
    return {
        s: {k: v for k, v in st_.to_json().items() if k not in skip}
        for s, st_ in statuses_of(out).items()
    }


def test_each_sites_twins_in_alarm_and_the_fleet_total() -> None:
    writes = [
        state("north", "pump-1", "ok", 0),
        state("north", "pump-2", "ok", 0),
        state("south", "fan-1", "stale", 0),
        alert("north", "pump-1", "overheat", "raised", "critical", 10),
        alert("north", "pump-2", "vibration", "raised", "warning", 11),
        alert("south", "fan-1", "overheat", "raised", "warning", 12),
        window("north", "pump-2", 0.42, 120.0, 13),
        window("south", "fan-1", 0.8, 30.5, 14),
        command("south", "fan-1", "derate", "sent", 15),
        command("north", "pump-1", "derate", "succeeded", 16),
    ]
    _, out = run(writes)
    rolled = rollups_of(out)
    assert rolled["north"][:4] == ("site", 2, 2, {"info": 0, "warning": 1, "critical": 1})
    assert rolled["south"][:3] == ("site", 1, 1)
    assert rolled["fleet"] == (
        "fleet", 3, 3, {"info": 0, "warning": 2, "critical": 1}, 0.42, "pump-2"
    )  # fmt: skip
    s = statuses_of(out)
    assert set(s) == {"north", "south", "fleet"}
    assert s["fleet"].sites == 2 and s["fleet"].twins_reporting == 3
    assert s["fleet"].twins_by_status == {"ok": 2, "stale": 1}
    assert s["fleet"].open_alarms_by_rule == {"overheat": 2, "vibration": 1}
    assert s["south"].open_alarms_by_rule == {"overheat": 1}
    assert (s["fleet"].lowest_rul_h, s["fleet"].lowest_rul_twin) == (30.5, "fan-1")
    assert (s["fleet"].worst_health, s["fleet"].worst_twin) == (0.42, "pump-2")
    assert s["fleet"].commands_in_flight == 1 and s["north"].commands_in_flight == 0
    assert s["north"].last_received_ms == T0 + 16 + 5
    assert s["north"].link == "up"


def test_a_write_that_lost_does_not_count() -> None:
    cleared = alert("north", "pump-1", "overheat", "cleared", "critical", 20)
    raised = alert("north", "pump-1", "overheat", "raised", "critical", 10)
    _, out = run([cleared, raised])  # the raise arrives late: older than the clear
    assert rollups_of(out)["fleet"][2] == 0
    assert statuses_of(out)["fleet"].open_alarms_by_rule == {}
    # In order, the raise counted until the clear came.
    _, out = run([raised, cleared], batches=[1, 1])
    assert [r.twins_in_alarm for r in out if isinstance(r, AssetRollup)] == [1, 1, 0, 0]


def test_the_link_reads_down_or_silent() -> None:
    logic = FleetRollup(silent_after_ms=1000)
    fleet, out = logic(None, FleetBatch((state("north", "pump-1", "ok", 0),)))
    assert statuses_of(out)["north"].link == "up"
    fleet, out = logic(fleet, FleetBatch(link=LinkNow(T0 + 5000, True, None, 0)))
    assert statuses_of(out)["north"].link == "silent"
    assert statuses_of(out)["north"].link_since_ms == T0 + 5
    fleet, out = logic(fleet, FleetBatch(link=LinkNow(T0 + 6000, False, T0 + 5500, 3)))
    down = statuses_of(out)["fleet"]
    assert (down.link, down.link_since_ms, down.central_pending) == ("down", T0 + 5500, 3)
    _, out = logic(fleet, FleetBatch(link=LinkNow(T0 + 7000, False, T0 + 5500, 3)))
    assert out == []  # nothing changed: nothing emitted


def test_a_twin_that_moves_to_another_site_counts_there_only() -> None:
    writes = [
        alert("north", "pump-1", "overheat", "raised", "warning", 0),
        alert("south", "pump-1", "overheat", "raised", "critical", 10, n=1),
    ]
    _, out = run(writes, batches=[1, 1])
    rolled = rollups_of(out)
    assert rolled["south"][2] == 1 and rolled["fleet"][2] == 1
    assert rolled["fleet"][3] == {"info": 0, "warning": 0, "critical": 1}
    assert statuses_of(out)["fleet"].sites == 1
    # The site it left no longer counts it: its last roll-up and summary hold no twin.
    assert rolled["north"][1:3] == (0, 0)
    north = statuses_of(out)["north"]
    assert (north.twins_reporting, north.twins_in_alarm, north.open_alarms_by_rule) == (0, 0, {})


SITES = ("north", "south", "east")
TWINS = {s: [f"{s}-{i}" for i in range(3)] for s in SITES}


@st.composite
def histories(draw: st.DrawFn) -> list[Seen]:
    """Writes of a few twins at three sites, as their edges would forward them."""
    out: list[Seen] = []
    n = draw(st.integers(1, 40))
    for i in range(n):
        site = draw(st.sampled_from(SITES))
        twin = draw(st.sampled_from(TWINS[site]))
        at = draw(st.integers(0, 50))
        kind = draw(st.sampled_from(("alert", "window", "state", "command")))
        if kind == "alert":
            rule = draw(st.sampled_from(("overheat", "vibration")))
            up = draw(st.booleans())
            sev = draw(st.sampled_from(("info", "warning", "critical")))
            out.append(alert(site, twin, rule, "raised" if up else "cleared", sev, at, n=i))
        elif kind == "window":
            health = draw(st.floats(0, 1))
            hours = draw(st.one_of(st.none(), st.floats(0, 1000)))
            out.append(window(site, twin, health, hours, at))
        elif kind == "state":
            out.append(state(site, twin, draw(st.sampled_from(("ok", "stale"))), at))
        else:
            status = draw(st.sampled_from(("sent", "acknowledged", "succeeded", "failed")))
            out.append(command(site, twin, "derate", status, at))
    return out


@settings(max_examples=150, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_any_order_and_duplication_gives_the_same_rollups(
    writes: list[Seen], rnd: random.Random
) -> None:
    done, reference = run(sorted(writes, key=lambda s: s.write.stamp.wall_ms))
    delivered = writes + [rnd.choice(writes) for _ in range(rnd.randint(0, len(writes)))]
    rnd.shuffle(delivered)
    sizes = [rnd.randint(1, 5) for _ in range(len(delivered))]
    fleet, out = run(delivered, batches=sizes)
    assert rollups_of(out) == rollups_of(reference)
    assert summaries_of(out) == summaries_of(reference)
    assert (fleet.received, fleet.written) == (done.received, done.written)
    assert fleet.sites == done.sites


def test_every_summary_matches_its_schema() -> None:
    path = Path(__file__).resolve().parents[2] / "operators" / "schemas" / "fleet_status.v1.json"
    schema = json.loads(path.read_text())
    logic = FleetRollup(silent_after_ms=1000)
    fleet, out = run(
        [state("north", "p", "ok", 0), window("north", "p", 0.5, 12.0, 1)], logic=logic
    )
    _, later = logic(fleet, FleetBatch(link=LinkNow(T0 + 9000, False, T0 + 8000, 2)))
    docs = [s.to_json() for s in out + later if isinstance(s, SiteStatus)]
    assert {d["link"] for d in docs} == {"up", "down"}
    for doc in docs:
        jsonschema.validate(doc, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**docs[0], "link": "maybe"}, schema)


def test_an_edges_report_of_its_own_link_is_in_its_site_summary() -> None:
    from twinflow.operators.replication.fleet import site_twin

    down = {"connected": False, "down_since_ms": T0 + 100, "pending": 42, "at_ms": T0 + 900}
    up = {"connected": True, "down_since_ms": None, "pending": 0, "at_ms": T0 + 2000}
    reports = [
        write("north", site_twin("north"), "link", d, at) for d, at in ((down, 900), (up, 2000))
    ]
    twin = state("north", "pump-1", "ok", 0)
    _, out = run([twin, reports[1], reports[0]])  # the newer report wins whatever the order
    north = statuses_of(out)["north"]
    assert (north.edge_connected, north.edge_pending, north.edge_down_since_ms) == (True, 0, None)
    _, out = run([twin, reports[0]])
    north = statuses_of(out)["north"]
    assert (north.edge_connected, north.edge_pending) == (False, 42)
    assert north.edge_down_since_ms == T0 + 100 and north.edge_reported_ms == T0 + 900
    assert statuses_of(out)["fleet"].twins_reporting == 1  # the site twin is no twin
