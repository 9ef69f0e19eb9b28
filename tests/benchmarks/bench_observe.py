"""Benchmark: what the operator's wrappers cost the telemetry flow.

Not a test; prints figures. The same pre-generated plant items go through ``build_flow`` with
file outputs twice per round, in alternating order: bare, and observed (every source wrapped
by :func:`twinflow.flows.shutdown.stoppable` with the arrival tap, and the alert, command and
dead-letter outputs tapped by :class:`twinflow.flows.observe.Observer`, as ``twinflow run``
and the demo do). Prints the median readings per CPU second of each over the rounds and
their ratio. Run:
``.venv/bin/python tests/benchmarks/bench_observe.py [--twins 20] [--hours 3] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bytewax.testing import TestingSource, run_main

from twinflow.connectors.simulator import Plant, PlantConfig
from twinflow.flows.config import FlowConfig
from twinflow.flows.metrics import RunStats
from twinflow.flows.observe import Observer
from twinflow.flows.outputs import file_outputs
from twinflow.flows.shutdown import stoppable
from twinflow.flows.telemetry import build_flow


def plant_items(twins: int, hours: float) -> tuple[list[Any], Plant]:
    plant = Plant(PlantConfig(n_twins=twins, duration_s=hours * 3600, seed=7))
    part = plant.partition(0, 1)
    items: list[Any] = []
    while not part.done:
        items.extend(part.next_chunk())
    return items, plant


def one_run(items: list[Any], plant: Plant, observed: bool) -> float:
    """Readings per CPU second of one run (the process's CPU time, which a busy machine
    disturbs less than the wall clock)."""
    with tempfile.TemporaryDirectory() as out:
        config = replace(FlowConfig(), out_dir=Path(out), write_telemetry=False)
        outputs = file_outputs(config)
        source: Any = TestingSource(items, batch_size=16)
        if observed:
            observer = Observer()
            outputs = observer.outputs(outputs)
            source = stoppable(source, threading.Event(), lambda _s, _p, _i, b: observer.arrived(b))
        stats = RunStats()
        times = [float(getattr(i, "end", 0.0) or 0.0) for i in items]
        clock_at = max(times) if times else 0.0
        flow = build_flow(source, outputs, config, clock=lambda: clock_at, twins=dict(plant.twins),
                          stats=stats)  # fmt: skip
        t0 = time.process_time()
        run_main(flow)
        return stats.readings / (time.process_time() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--twins", type=int, default=20)
    ap.add_argument("--hours", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    items, plant = plant_items(args.twins, args.hours)
    rates: dict[bool, list[float]] = {False: [], True: []}
    for r in range(args.rounds):
        for observed in (False, True) if r % 2 == 0 else (True, False):
            rates[observed].append(one_run(items, plant, observed))
    bare, seen = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"bench_observe: {args.twins} twins, {args.hours:g} h simulated, {len(items):,} items, "
          f"{args.rounds} interleaved rounds")  # fmt: skip
    for name, key in (("bare flow", False), ("observed flow", True)):
        r = rates[key]
        print(f"  {name:<14} median {statistics.median(r):12,.0f} readings/CPU-s "
              f"(min {min(r):,.0f}, max {max(r):,.0f})")  # fmt: skip
    print(f"  observed / bare: {seen / bare:.3f}")


if __name__ == "__main__":
    main()
