"""Benchmark: readings/s through the full telemetry flow, and per-twin state size.

Not a test (no assertion on time); prints figures and their ratio to the targets:
- throughput target: 250,000 readings/s in one process (5x the reference plant's 50,000/s);
- state target: at most 64 KB per twin, all steps' state (models included), pickled.

The plant is generated first (so the figure is the flow's own speed), then replayed through
the flow several times; the median run is reported. Run: ``infra/dev bench`` or
``.venv/bin/python tests/benchmarks/bench_flow.py [--twins 50] [--hours 2] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from twinflow.connectors.simulator import Plant, PlantConfig, SimulatedPlantSource
from twinflow.flows.config import FlowConfig
from twinflow.flows.metrics import RunStats
from twinflow.flows.outputs import file_outputs
from twinflow.flows.steps import (
    AnomalyStep,
    PolicyStep,
    TwinStateStep,
    alarm_step,
    new_window_aggregator,
    residuals,
    rul_step,
)
from twinflow.flows.telemetry import build_flow
from twinflow.operators.pipeline import check_item
from twinflow.operators.validate import Validator

TARGET_READINGS_S = 250_000
TARGET_STATE_BYTES = 64 * 1024


def generate(plant: Plant) -> tuple[list[Any], float]:
    """All items the simulated plant emits, and how long generating them took."""
    items: list[Any] = []
    flow = Dataflow("generate")
    op.output("out", op.input("in", flow, SimulatedPlantSource(plant)), TestingSink(items))
    t0 = time.perf_counter()
    run_main(flow)
    return items, time.perf_counter() - t0


def run_flow(plant: Plant, items: list[Any], out: Path, telemetry: bool) -> tuple[int, float]:
    stats = RunStats()
    cfg = FlowConfig(out_dir=out, write_telemetry=telemetry)
    flow = build_flow(
        TestingSource(items),
        file_outputs(cfg),
        cfg,
        clock=plant.now,
        twins=dict(plant.twins),
        stats=stats,
    )
    t0 = time.perf_counter()
    run_main(flow)
    return stats.readings, time.perf_counter() - t0


def state_sizes(plant: Plant, items: list[Any]) -> dict[str, int]:
    """Largest pickled per-twin state, by twin type, after the whole run."""
    cfg = FlowConfig()
    validator = Validator(twins=dict(plant.twins))
    states: dict[str, dict[str, Any]] = defaultdict(dict)
    anomaly, policy = AnomalyStep.from_config(cfg), PolicyStep.from_config(cfg)
    state = TwinStateStep(cfg)
    end = plant.now()
    for item in items:
        for x in check_item(item, validator, end):
            if not hasattr(x, "twin_type") or type(x).__name__ == "DeadLetter":
                continue
            frame = residuals(x)
            s = states[frame.twin_id]
            s.setdefault("type", frame.twin_type)
            s["state"], _out = state(s.get("state"), frame)
            agg = s.setdefault("windows", new_window_aggregator(frame, cfg))
            windows, _dead = agg.add(frame)
            for w in windows:
                s["anomaly"], w = anomaly(s.get("anomaly"), w)
                s["rul"], w = rul_step(s.get("rul"), w)
                s["alarms"], alerts = alarm_step(s.get("alarms"), w)
                for a in alerts:
                    s["policy"], _cmds = policy(s.get("policy"), a)
    largest: dict[str, int] = {}
    for s in states.values():
        kind = s.pop("type")
        size = len(pickle.dumps(s, protocol=pickle.HIGHEST_PROTOCOL))
        largest[kind] = max(largest.get(kind, 0), size)
    return largest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--twins", type=int, default=50)
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    scenarios = [
        ("default plant (motor vibration bursts of 4,096 samples every minute)", {}),
        # Nearly all readings are then 1 Hz scalar signals, 60 timestamps a frame: the
        # harder case per reading, closest to the reference plant of 1 Hz sensors.
        ("1 Hz signals only (vibration bursts once an hour)", {"burst_interval_s": 3600.0}),
    ]
    for label, overrides in scenarios:
        plant = Plant(
            PlantConfig(
                n_twins=args.twins, duration_s=args.hours * 3600, seed=args.seed, **overrides
            )
        )
        items, gen_s = generate(plant)
        readings = sum(getattr(i, "readings", 0) for i in items)
        print(
            f"\n{label}: {args.twins} twins, {args.hours} h simulated, {len(items):,} items, "
            f"{readings:,} readings; generated in {gen_s:.2f} s ({readings / gen_s:,.0f}/s)"
        )
        for telemetry in (False, True):
            rates = []
            for _ in range(args.repeat):
                with tempfile.TemporaryDirectory() as tmp:
                    n, secs = run_flow(plant, items, Path(tmp), telemetry)
                rates.append(n / secs)
            med = statistics.median(rates)
            what = "with" if telemetry else "without"
            print(
                f"  full flow {what} raw-telemetry Parquet: median {med:,.0f} readings/s over "
                f"{args.repeat} runs (min {min(rates):,.0f}, max {max(rates):,.0f}); "
                f"{med / TARGET_READINGS_S:.2f}x the {TARGET_READINGS_S:,}/s target"
            )
    print()
    sizes = state_sizes(plant, items)
    for kind, size in sorted(sizes.items()):
        print(
            f"per-twin state, {kind:<12}: {size / 1024:6.1f} KB pickled "
            f"({size / TARGET_STATE_BYTES:.2f}x the 64 KB budget)"
        )


if __name__ == "__main__":
    main()
