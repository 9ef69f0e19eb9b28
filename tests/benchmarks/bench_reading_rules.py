"""Benchmark: what judging rules per reading costs, in CPU time (not a test; prints figures).

Two measurements over the same simulated plant (1 Hz signals only: vibration bursts once an
hour), rounds interleaved with the order turning, medians with min-max:

- ``steps``: the per-reading evaluator (``reading_rules``, judged inside the ``windows`` step)
  alone over every frame, beside the window aggregator over the same frames: microseconds of
  CPU per frame and the ratio of the two;
- ``flow``: the whole telemetry flow (files only, no raw telemetry) in a child process per run,
  its CPU seconds (all threads) and readings per CPU second, beside the same flow of this
  checkout with the per-reading evaluator switched off (``without``: its rules are judged per
  window again, as before they existed), interleaved, and the ratio. ``--before PYTHON`` adds
  the same child under another interpreter, e.g. the venv of an older checkout.

CPU time, not wall time, because the machine may be shared: a busy machine stretches wall time
several-fold but CPU time far less. Run: ``.venv/bin/python tests/benchmarks/bench_reading_rules.py
[--twins 50] [--hours 1] [--rounds 3] [--before /path/to/other/python]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).absolute().parents[2]))

from twinflow.connectors.simulator import Plant, PlantConfig
from twinflow.core.records import TelemetryFrame

HERE = Path(__file__).absolute()


def plant(twins: int, hours: float) -> Plant:
    return Plant(PlantConfig(n_twins=twins, duration_s=hours * 3600, seed=7,
                             burst_interval_s=3600.0))  # fmt: skip


def steps(twins: int, hours: float, rounds: int) -> None:
    """The evaluator and the window aggregator over the same frames, CPU µs per frame."""
    from twinflow.flows.config import FlowConfig
    from twinflow.flows.steps import TypeOf, judge_readings, new_window_aggregator, residuals

    frames = [residuals(f) for f in plant(twins, hours).items() if isinstance(f, TelemetryFrame)]
    readings = sum(f.readings for f in frames)
    cfg = FlowConfig()

    def rules() -> None:
        type_of, state = TypeOf(), {}  # type: ignore[var-annotated]
        for f in frames:
            state[f.twin_id], _ = judge_readings(state.get(f.twin_id), f, type_of)

    def windows() -> None:
        aggs: dict[str, Any] = {}
        for f in frames:
            agg = aggs.get(f.twin_id) or aggs.setdefault(f.twin_id, new_window_aggregator(f, cfg))
            agg.add(f)

    cpu: dict[str, list[float]] = {"reading_rules": [], "windows": []}
    sides = [("reading_rules", rules), ("windows", windows)]
    for r in range(rounds):
        for name, fn in sides[r % 2 :] + sides[: r % 2]:
            t0 = time.process_time()
            fn()
            cpu[name].append((time.process_time() - t0) * 1e6 / len(frames))
    print(f"steps: {len(frames):,} frames of {readings / len(frames):.0f} 1 Hz readings "
          f"({readings:,}), {rounds} rounds, CPU µs per frame")  # fmt: skip
    for name, xs in cpu.items():
        print(f"  {name:<14} median {statistics.median(xs):7.1f} (min {min(xs):.1f}, max "
              f"{max(xs):.1f}); {statistics.median(xs) * 1e3 / (readings / len(frames)):.0f} "
              "ns per reading")  # fmt: skip
    ratio = statistics.median(cpu["reading_rules"]) / statistics.median(cpu["windows"])
    print(f"  reading_rules / windows: {ratio:.2f}x")


def without_reading_rules() -> None:
    """Switch the per-reading evaluator off in this process: the windows step judges no
    reading and the alarms step judges every rule per window again (as before it existed)."""
    import twinflow.flows.steps as steps
    import twinflow.operators.rules as rules

    class NoPlan:
        names: frozenset[str] = frozenset()

    steps.judge_readings = lambda alarms, *_: (alarms, [])  # type: ignore[assignment]
    rules.reading_plan = lambda kind: NoPlan()  # type: ignore[assignment,return-value]


def child(twins: int, hours: float, without: bool) -> None:
    """One run of the whole flow (files, no raw telemetry); prints CPU s, wall s, readings,
    alerts."""
    from bytewax.testing import TestingSource, run_main

    from twinflow.flows.config import FlowConfig
    from twinflow.flows.metrics import RunStats
    from twinflow.flows.outputs import file_outputs
    from twinflow.flows.telemetry import build_flow

    if without:
        without_reading_rules()
    p = plant(twins, hours)
    items = list(p.items())
    with tempfile.TemporaryDirectory() as tmp:
        cfg = FlowConfig(out_dir=Path(tmp), write_telemetry=False)
        stats = RunStats()
        flow = build_flow(TestingSource(items), file_outputs(cfg), cfg, clock=p.now,
                          twins=dict(p.twins), stats=stats)  # fmt: skip
        c0, w0 = time.process_time(), time.perf_counter()
        run_main(flow, epoch_interval=timedelta(seconds=1))
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        alerts = (Path(tmp) / "alerts.jsonl").read_text().count("\n")
    print(json.dumps({"cpu": cpu, "wall": wall, "readings": stats.readings, "alerts": alerts}))


def flows(twins: int, hours: float, rounds: int, before: str | None) -> None:
    """The whole flow, one child process a run: this checkout with and without the
    per-reading evaluator (and ``before``), interleaved, the order turning each round."""
    sides = [("this checkout", sys.executable, []), ("without", sys.executable, ["--without"])]
    sides += [("before", before, [])] if before else []
    got: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in sides}
    for r in range(rounds):
        for name, python, extra in sides[r % len(sides) :] + sides[: r % len(sides)]:
            args = [python, str(HERE), "--child", "--twins", str(twins), "--hours", str(hours)]
            out = subprocess.run(args + extra, check=True, capture_output=True, text=True).stdout
            got[name].append(json.loads(out.strip().splitlines()[-1]))
    print(f"flow: {twins} twins, {hours:g} h, files only, {rounds} rounds interleaved, one "
          "process a run")  # fmt: skip
    rates = {}
    for name, runs in got.items():
        cpu = [x["cpu"] for x in runs]
        rate = [x["readings"] / x["cpu"] for x in runs]
        wall = [x["wall"] for x in runs]
        rates[name] = statistics.median(rate)
        print(f"  {name:<14} CPU {statistics.median(cpu):.2f} s (min {min(cpu):.2f}, max "
              f"{max(cpu):.2f}); {rates[name]:,.0f} readings per CPU second (min "
              f"{min(rate):,.0f}, max {max(rate):,.0f}); wall {statistics.median(wall):.2f} s "
              f"(min {min(wall):.2f}, max {max(wall):.2f}); alerts "
              f"{sorted({int(x.get('alerts', -1)) for x in runs})}")  # fmt: skip
    for other in ("without", "before")[: len(sides) - 1]:
        print(f"  this checkout / {other}: {rates['this checkout'] / rates[other]:.3f}x "
              "readings per CPU second")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--twins", type=int, default=50)
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--before", default=None, help="python of a checkout to compare with")
    ap.add_argument("--only", choices=("steps", "flow"), default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--without", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.twins, args.hours, args.without)
        return
    print(f"bench_reading_rules on {os.cpu_count()} cores (CPU time; the machine may be busy)")
    if args.only in (None, "steps"):
        steps(args.twins, args.hours, args.rounds)
    if args.only in (None, "flow"):
        flows(args.twins, args.hours, args.rounds, args.before)


if __name__ == "__main__":
    main()
