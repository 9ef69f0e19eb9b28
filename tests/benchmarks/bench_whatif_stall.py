"""Benchmark: how much what-ifs answered inside the flow stall its telemetry.

Not a test: prints figures. The simulated plant runs through the telemetry flow
(``build_flow``, Bytewax testing source) three ways, interleaved round by round:

- ``none``: no what-if;
- ``processes``: ``--requests`` what-if requests (derate now against no change,
  ``--horizon`` ahead, from 1 h of live history) arrive while telemetry flows and run in
  the default pool of worker processes (``flow.whatif_workers``);
- ``threads``: the same requests in a pool of threads in the flow's process.

For each run it prints how long the telemetry took to pass (start to its last batch at the
output; the flow's wall time also waits for the what-ifs at the end), the longest pause
between two telemetry batches reaching the output (the stall a reader of the telemetry sees)
and the 99th percentile of those pauses, then the medians over rounds with min-max, and
each side's ratio to ``none``. It also times building a twin's state from its live frames
(done on the flow's own thread for each request) and one what-if alone. The machine may be
shared: read the ratios, not the absolute figures.

Run: ``.venv/bin/python tests/benchmarks/bench_whatif_stall.py [--twins 20] [--hours 6]
[--requests 4] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSink, TestingSource, run_main

from twinflow.connectors.simulator import Plant, PlantConfig
from twinflow.core.records import TelemetryFrame
from twinflow.core.times import utc
from twinflow.flows.config import FlowConfig
from twinflow.flows.decide_steps import Decide
from twinflow.flows.telemetry import FlowOutputs, build_flow
from twinflow.flows.whatif_live import WhatIfPool, live_state, run_whatif_job
from twinflow.operators.catalog import CATALOG
from twinflow.operators.whatif import read_whatif
from twinflow.operators.whatif.request import WhatIfRequest

SCENARIO = {
    "scenarios": [
        {"name": "derate now", "steps": [{"command": "derate", "params": {"fraction": 0.7}}]}
    ],
}


class _Paced(StatelessSourcePartition[Any]):
    def __init__(self, items: Sequence[Any], start: float, every_s: float) -> None:
        self.items, self.next, self.every_s = list(items), start, every_s

    def next_batch(self) -> list[Any]:
        if not self.items:
            raise StopIteration
        if time.time() < self.next:
            return []
        self.next += self.every_s
        return [self.items.pop(0)]

    def next_awake(self) -> datetime | None:
        return datetime.fromtimestamp(self.next, UTC)


class Paced(DynamicSource[Any]):
    """One item every ``every_s`` of wall time, the first after ``after_s``."""

    def __init__(self, items: Sequence[Any], after_s: float, every_s: float) -> None:
        self.items, self.after_s, self.every_s = items, after_s, every_s

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Paced:
        mine = self.items if worker_index == 0 else []
        return _Paced(mine, time.time() + self.after_s, self.every_s)


class _Gaps(StatelessSinkPartition[Any]):
    def __init__(self, seen: list[float]) -> None:
        self.seen = seen

    def write_batch(self, items: list[Any]) -> None:
        self.seen.append(time.perf_counter())


class Gaps(DynamicSink[Any]):
    """Records when each batch of telemetry reaches the output."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Gaps:
        return _Gaps(self.seen)


def one_run(items: list[Any], side: str, args: argparse.Namespace) -> dict[str, float]:
    end = max(float(i.times[-1]) for i in items if isinstance(i, TelemetryFrame))
    motors = sorted({i.twin_id for i in items if getattr(i, "twin_type", "") == "motor"})
    whatif = read_whatif({**SCENARIO, "horizon": args.horizon}, Path("bench"))
    asked = [
        WhatIfRequest(f"r{k}", motors[k % len(motors)], "motor", whatif, utc(end), utc(9e9))
        for k in range(args.requests)
    ]
    got: list[Any] = []
    pool = None
    decide = None
    if side != "none":
        pool = WhatIfPool(1, args.requests, threads=side == "threads")
        pool.warm()  # a running flow's pool is warm after its first request
        decide = Decide(whatif_sinks=[TestingSink(got)], pool=pool)
    gaps = Gaps()
    config = FlowConfig(whatif_history_s=3600.0)
    flow = build_flow(
        TestingSource(items, batch_size=10),
        FlowOutputs(dead_letters=None, alerts=None, commands=None, telemetry=gaps),
        config,
        clock=lambda: end,
        requests=[Paced(asked, args.after, args.every)],
        decide=decide,
    )
    start = time.perf_counter()
    run_main(flow)  # type: ignore[no-untyped-call]
    wall = time.perf_counter() - start
    if pool is not None:
        pool.close()
    pauses = np.diff([start, *gaps.seen])
    done = sum(1 for _k, r in got if r.status == "done")
    if side != "none" and done != args.requests:
        print(f"  note: {side}: {done}/{args.requests} what-ifs done")
    return {
        "telemetry_s": gaps.seen[-1] - start,
        "wall_s": wall,
        "max_pause_s": float(pauses.max()),
        "p99_pause_s": float(np.percentile(pauses, 99)),
    }


def costs(items: list[Any], horizon: str) -> tuple[float, float]:
    """Median seconds to build a motor's state from 1 h of its live frames, and to run one
    what-if from it (here, in this process)."""
    twin = next(i.twin_id for i in items if getattr(i, "twin_type", "") == "motor")
    frames = [i for i in items if isinstance(i, TelemetryFrame) and i.twin_id == twin]
    whatif = read_whatif({**SCENARIO, "horizon": horizon}, Path("bench"))
    state, run = [], []
    for _ in range(3):
        t = time.perf_counter()
        now = live_state(twin, CATALOG["motor"], frames, 3600.0)
        state.append(time.perf_counter() - t)
        t = time.perf_counter()
        run_whatif_job(now, whatif, CATALOG, FlowConfig(whatif_history_s=3600.0))
        run.append(time.perf_counter() - t)
    return statistics.median(state), statistics.median(run)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--twins", type=int, default=20)
    p.add_argument("--hours", type=float, default=6.0)
    p.add_argument("--requests", type=int, default=4)
    p.add_argument("--horizon", default="1h", help="each what-if's horizon")
    p.add_argument("--after", type=float, default=1.0, help="first request after (s)")
    p.add_argument("--every", type=float, default=0.5, help="then one every (s)")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    plant = Plant(PlantConfig(n_twins=args.twins, duration_s=args.hours * 3600.0, seed=3))
    items = list(plant.items())
    head = f"plant: {args.twins} twins, {args.hours:g} h, {len(items)} items; {args.requests} "
    print(f"{head}what-ifs ({args.horizon}) from +{args.after:g} s, one every {args.every:g} s")
    sides = ("none", "processes", "threads")
    runs: dict[str, list[dict[str, float]]] = {s: [] for s in sides}
    for r in range(args.rounds):
        for side in sides if r % 2 == 0 else tuple(reversed(sides)):
            fig = one_run(items, side, args)
            runs[side].append(fig)
            pauses = f"longest pause {fig['max_pause_s']:6.3f} s  p99 {fig['p99_pause_s']:6.3f} s"
            took = f"telemetry {fig['telemetry_s']:6.2f} s (wall {fig['wall_s']:6.2f} s)"
            print(f"  round {r + 1} {side:<10} {took}  {pauses}")
    print("medians (min-max):")
    base = {k: statistics.median(f[k] for f in runs["none"]) for k in runs["none"][0]}
    for side in sides:
        cells = []
        for k in ("telemetry_s", "max_pause_s", "p99_pause_s"):
            values = [f[k] for f in runs[side]]
            med = statistics.median(values)
            cells.append(f"{k} {med:.3f} ({min(values):.3f}-{max(values):.3f}, "
                         f"x{med / base[k]:.2f})")  # fmt: skip
        print(f"  {side:<10} " + "; ".join(cells))
    state, run = costs(items, args.horizon)
    print(f"building a motor's state from 1 h of live frames: {state * 1e3:.1f} ms (median of 3)")
    print(f"one what-if ({args.horizon} ahead, 2 scenarios) in one process: {run:.2f} s")


if __name__ == "__main__":
    main()
