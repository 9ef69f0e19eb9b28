"""Benchmark: the maintenance plan's realised cost and failures against run-to-failure and
fixed-interval maintenance, on the simulated plant whose failure times are known.

Not a test: prints figures. For each seed the plant runs through the telemetry flow
(``run_demo``, no telemetry files) and the policies are then played against the plant's
ground truth (``faults.json``) with one cost table (below):

- ``plan``: every ``--every`` (30 min simulated) the planner (``plan_maintenance``) plans
  from the RUL estimates known by then (windows that ended), for the twins still in
  service, with the crew hours left today; the actions of its first slot are carried out.
  An action after a fault's onset and before its failure averts the failure (the twin is
  renewed and leaves the study); an action before the onset is paid and changes nothing.
- ``run-to-failure``: nothing is done; every machine fault fails.
- ``fixed-Nh``: every twin is maintained every N hours (crews unlimited); a fault fails
  unless a maintenance falls between its onset and failure.
- ``oracle``: each fault maintained once, just before it fails (the floor no policy beats).

Sensor faults do not break machines: they are not failures, but a plan that acts on their
estimates pays for it. The flow is run open loop: maintenance does not change the recorded
data, which is why a twin leaves the study once renewed.

``--scale`` instead times the planner alone on synthetic fleets (RULs uniform in 1-60 days,
a 14-day horizon): the median over interleaved rounds of one plan's wall time per size.

Run: ``.venv/bin/python tests/benchmarks/bench_maintenance.py [--seeds 1 2 3] [--twins 30]``
or ``... --scale``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from twinflow.connectors.files import read_parquet_dir
from twinflow.connectors.simulator.faults import MACHINE_KINDS
from twinflow.flows.demo import run_demo
from twinflow.operators.maintenance import MaintenanceSettings, Outlook, TypeCosts
from twinflow.operators.maintenance import plan_maintenance as plan

HOURS = 6.0
COSTS = {
    "motor": TypeCosts("service", 1500.0, 2.0, 9000.0, 12.0),
    "pump": TypeCosts("impeller", 2500.0, 3.0, 12000.0, 16.0),
    "wind_turbine": TypeCosts("drivetrain", 6000.0, 4.0, 40000.0, 48.0),
}
DOWNTIME = 200.0  # per hour of outage
SETTINGS = MaintenanceSettings(
    horizon_s=HOURS * 3600.0,
    slot_s=1800.0,
    crew_hours_per_day=24.0,
    downtime_cost_per_hour=DOWNTIME,
    types=COSTS,
)


def planned_cost(kind: str) -> float:
    c = COSTS[kind]
    return c.planned_cost + DOWNTIME * c.planned_hours


def failure_cost(kind: str) -> float:
    c = COSTS[kind]
    return c.unplanned_cost + DOWNTIME * c.unplanned_hours


@dataclass
class Fault:
    twin: str
    kind: str
    onset: datetime
    failure: datetime


@dataclass
class Result:
    cost: float = 0.0
    failures: int = 0
    actions: int = 0


def t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def run_seed(
    seed: int, twins: int, folder: Path
) -> tuple[pl.DataFrame, list[Fault], dict[str, str]]:
    run_demo(twins=twins, duration_s=HOURS * 3600.0, seed=seed, out_dir=folder,
             write_telemetry=False, progress=None)  # fmt: skip
    windows = read_parquet_dir(folder / "windows").filter(pl.col("rul_hours").is_not_null())
    truth = json.loads((folder / "faults.json").read_text())
    faults = [
        Fault(f["twin_id"], f["kind"], t(f["onset"]), t(f["failure"]))
        for f in truth
        if f["kind"] in MACHINE_KINDS
    ]
    types = dict(
        read_parquet_dir(folder / "windows").select("twin_id", "twin_type").unique().iter_rows()
    )
    return windows, faults, types


def play_plan(windows: pl.DataFrame, faults: list[Fault], types: dict[str, str], start: datetime,
              every: timedelta) -> Result:  # fmt: skip
    res = Result()
    out: set[str] = set()  # renewed after a fault, or failed
    since: dict[str, datetime] = {}  # estimates of a twin count from its last action on
    used = 0.0
    tau = start + every
    end = start + timedelta(hours=HOURS)
    by_twin = {f.twin: f for f in faults}
    while tau < end:
        for f in faults:  # failures up to now
            if f.twin not in out and f.failure <= tau:
                out.add(f.twin)
                res.failures += 1
                res.cost += failure_cost(types[f.twin])
        known = windows.filter(pl.col("end") <= tau).sort("end").group_by("twin_id").last()
        outlooks = [
            Outlook(
                r["twin_id"],
                r["twin_type"],
                r["end"],
                r["rul_hours"],
                r["rul_low_hours"],
                r["rul_high_hours"],
            )
            for r in known.iter_rows(named=True)
            if r["twin_id"] not in out and r["end"] > since.get(r["twin_id"], start)
        ]
        left = SETTINGS.crew_hours_per_day - used
        if outlooks and left > 0:
            p = plan(outlooks, replace(SETTINGS, crew_hours_per_day=left), now=tau)
            for item in p.actions():
                if item.chosen.at != tau:
                    continue
                res.actions += 1
                res.cost += planned_cost(item.twin_type)
                used += COSTS[item.twin_type].planned_hours
                since[item.twin_id] = tau
                f = by_twin.get(item.twin_id)
                if f is not None and f.onset <= tau < f.failure:
                    out.add(item.twin_id)  # renewed: the failure is averted
        tau += every
    for f in faults:
        if f.twin not in out:
            res.failures += 1
            res.cost += failure_cost(types[f.twin])
    return res


def play_fixed(faults: list[Fault], types: dict[str, str], start: datetime, hours: float) -> Result:
    res = Result()
    times = [start + timedelta(hours=hours * k) for k in range(1, math.ceil(HOURS / hours))]
    res.actions = len(times) * len(types)
    res.cost = len(times) * sum(planned_cost(k) for k in types.values())
    for f in faults:
        if not any(f.onset <= m < f.failure for m in times):
            res.failures += 1
            res.cost += failure_cost(types[f.twin])
    return res


def scale(rounds: int = 3) -> None:
    """Median wall time of one plan per fleet size and slot length (interleaved rounds)."""
    import time

    import numpy as np

    t0 = datetime.fromisoformat("2026-01-01T00:00:00+00:00")
    cases = [(100, 1.0), (1000, 1.0), (1000, 0.25), (3000, 1.0)]
    fleets = {}
    for n, _ in cases:
        hours = np.random.default_rng(n).uniform(24.0, 24.0 * 60, n)
        fleets[n] = [
            Outlook(f"m{i}", "motor", t0, h, 0.7 * h, 1.4 * h) for i, h in enumerate(hours)
        ]
    times: dict[tuple[int, float], list[float]] = {c: [] for c in cases}
    plan(fleets[100], SETTINGS)  # imports SciPy's solver once, outside the timings
    for _ in range(rounds):
        for n, days in cases:
            s = replace(SETTINGS, horizon_s=14 * 86400.0, slot_s=days * 86400.0,
                        crew_hours_per_day=40.0)  # fmt: skip
            a = time.perf_counter()
            plan(fleets[n], s)
            times[(n, days)].append(time.perf_counter() - a)
    print(f"planner wall time, median of {rounds} interleaved rounds (14-day horizon):")
    for (n, days), ts in times.items():
        slots = round(14 / days)
        print(f"  {n:>5} twins x {slots:>3} slots: {statistics.median(ts):6.2f} s")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--twins", type=int, default=30)
    ap.add_argument("--every", type=float, default=30.0, help="minutes between re-plans")
    ap.add_argument("--scale", action="store_true", help="time the planner alone")
    args = ap.parse_args(argv)
    if args.scale:
        scale()
        return
    every = timedelta(minutes=args.every)
    rows: dict[str, list[Result]] = {}
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            windows, faults, types = run_seed(seed, args.twins, Path(tmp) / "out")
        start = datetime.fromisoformat("2026-01-01T00:00:00+00:00")
        results = {
            "plan": play_plan(windows, faults, types, start, every),
            "run-to-failure": Result(sum(failure_cost(types[f.twin]) for f in faults), len(faults)),
            **{f"fixed-{h:g}h": play_fixed(faults, types, start, h) for h in (1.0, 2.0, 3.0)},
            "oracle": Result(sum(planned_cost(types[f.twin]) for f in faults), 0, len(faults)),
        }
        print(f"seed {seed}: {args.twins} twins, {HOURS:g} h, {len(faults)} machine faults")
        for name, r in results.items():
            line = f"  {name:<15} cost {r.cost:>10,.0f}  failures {r.failures:>3}"
            print(f"{line}  actions {r.actions:>4}")
            rows.setdefault(name, []).append(r)
        sys.stdout.flush()
    plan_costs = [r.cost for r in rows["plan"]]
    print(f"\nover seeds {args.seeds} (median of per-seed ratios):")
    for name in rows:
        if name == "plan":
            continue
        ratios = [p / r.cost for p, r in zip(plan_costs, rows[name], strict=True) if r.cost > 0]
        fails = sum(r.failures for r in rows[name])
        mine = sum(r.failures for r in rows["plan"])
        ratio = statistics.median(ratios)
        print(
            f"  plan / {name:<15} cost ratio {ratio:.3f}  (failures: plan {mine}, {name} {fails})"
        )


if __name__ == "__main__":
    main()
