"""Benchmark: what one twin's state costs in memory, step by step (issue 13: ≤ 64 KB a twin).

Not a test; prints figures. Three parts:

1. **State by step.** A seeded simulated plant is generated, then fed through the flow's own
   step adapters (the ones ``build_flow`` wires: twin state, raw-sample model and alarm when a
   type scores samples, windows, window anomaly model, RUL, the RUL stamp, alarms, policy and
   the command book, which sees the policy's commands and every twin state) without Bytewax.
   At the end each twin's state is measured per step: in memory (every object reachable from
   it, counted once, leaving out what all twins share: twin types, the catalogue, the step
   settings, classes and functions) and pickled. Also the traced allocation (``tracemalloc``)
   left after the run, divided by the twin count.
2. **Bytewax's own cost per key** (``--keys``): a flow of ``--steps`` stateful steps whose
   state per key is one small int, run in a child process over that many keys; peak RSS
   (``VmHWM``) less the same flow over one key, per key. This is what Bytewax itself keeps per
   twin and per stateful step, whatever the state is.
3. **The whole flow's peak RSS** (``--flow 1000,10000``): ``build_flow`` over the simulated
   plant (``--minutes`` of data, file outputs without raw telemetry) in a child process per
   twin count; no Kafka and no decoding, so it tells the flow's share of ``bench_e2e.py
   --memory`` apart from the edge's. Also prints the snapshot copy cost of part 1: Bytewax
   deep-copies the state of every twin touched in an epoch, recovery on or off.

Run: ``.venv/bin/python tests/benchmarks/bench_memory.py [--twins 100] [--hours 2]
[--keys 10000] [--steps 12] [--flow 1000,10000 --minutes 10] [--rounds 3] [--no-steps]``.
"""

from __future__ import annotations

import argparse
import copy
import gc
import pickle
import statistics
import subprocess
import sys
import time
import tracemalloc
import types
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

from twinflow.connectors.simulator import Plant, PlantConfig
from twinflow.core.records import Command, DeadLetter, Frame, TelemetryFrame, TwinState
from twinflow.core.times import epoch
from twinflow.flows.anomaly_steps import AnomalyStep, SampleAlarmStep, SampleAnomalyStep
from twinflow.flows.command_steps import PolicyStep, command_settings
from twinflow.flows.config import FlowConfig
from twinflow.flows.steps import (
    AlarmStep,
    RulStep,
    TwinStateStep,
    TypeOf,
    new_window_aggregator,
    residuals,
    stamp_health,
)
from twinflow.operators.anomaly_profile import anomaly_of
from twinflow.operators.catalog import CATALOG
from twinflow.operators.command_book import CommandBook
from twinflow.operators.pipeline import check_item
from twinflow.operators.validate import Validator

BUDGET = 64 * 1024
_SKIP = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)


def reachable(roots: Iterable[object]) -> set[int]:
    """Ids of every object reachable from ``roots`` (what twins share)."""
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        if isinstance(o, np.ndarray):
            if o.base is not None:
                stack.append(o.base)
            continue
        stack.extend(gc.get_referents(o))
    return seen


def deep_size(obj: object, shared: set[int]) -> int:
    """Bytes of every object reachable from ``obj`` and not in ``shared``, each once
    (``sys.getsizeof``; a numpy array counts its buffer when it owns it, else its base)."""
    seen: set[int] = set()
    stack = [obj]
    total = 0
    while stack:
        o = stack.pop()
        i = id(o)
        if i in seen or i in shared or isinstance(o, _SKIP):
            continue
        seen.add(i)
        total += sys.getsizeof(o)
        if isinstance(o, np.ndarray):
            if o.base is not None:
                stack.append(o.base)
            continue
        stack.extend(gc.get_referents(o))
    return total


def generate(twins: int, hours: float, seed: int) -> tuple[Plant, list[Any]]:
    from bytewax.dataflow import Dataflow
    from bytewax.operators import input as bw_input
    from bytewax.operators import output
    from bytewax.testing import TestingSink, run_main

    from twinflow.connectors.simulator import SimulatedPlantSource

    plant = Plant(PlantConfig(n_twins=twins, duration_s=hours * 3600, seed=seed))
    items: list[Any] = []
    flow = Dataflow("generate")
    output("out", bw_input("in", flow, SimulatedPlantSource(plant)), TestingSink(items))
    run_main(flow)
    return plant, items


class Twins:
    """Every twin's state per step, fed as ``build_flow`` feeds it (without Bytewax)."""

    def __init__(self, cfg: FlowConfig) -> None:
        self.cfg = cfg
        type_of = TypeOf()
        self.state = TwinStateStep(cfg)
        self.samples = SampleAnomalyStep.from_config(cfg, type_of)
        self.sample_alarm = SampleAlarmStep(cfg.sample_alarm_for_s, cfg.sample_alarm_clear_s)
        self.scores_samples = cfg.sample_anomaly or any(
            anomaly_of(t).samples for t in CATALOG.values()
        )
        self.anomaly = AnomalyStep.from_config(cfg, type_of)
        self.rul = RulStep(type_of)
        self.alarms = AlarmStep(type_of)
        self.policy = PolicyStep.from_config(cfg, type_of)
        self.states: dict[str, dict[str, Any]] = defaultdict(dict)
        self.kind: dict[str, str] = {}
        self.commands = 0

    def book(self, s: dict[str, Any], twin_type: str, states: list[TwinState]) -> None:
        book = s.get("command_book")
        if book is None:
            book = s["command_book"] = CommandBook(
                CATALOG[twin_type], command_settings(self.cfg, routed=True)
            )
        for st in states:
            now = epoch(st.time)
            book.observe(st, now)
            book.tick(now)

    def feed(self, frame: Frame) -> None:
        s = self.states[frame.twin_id]
        self.kind.setdefault(frame.twin_id, frame.twin_type)
        s["twin_state"], out = self.state(s.get("twin_state"), frame)
        for st in out:
            s["stamp"], _ = stamp_health(s.get("stamp"), st)
        self.book(s, frame.twin_type, out)
        if self.scores_samples and isinstance(frame, TelemetryFrame):
            s["samples"], frame = self.samples(s.get("samples"), frame)
            s["sample_alarm"], _a = self.sample_alarm(s.get("sample_alarm"), frame)
        agg = s.get("windows")
        if agg is None:
            agg = s["windows"] = new_window_aggregator(frame, self.cfg)
        windows, _dead = agg.add(frame)
        for w in windows:
            s["anomaly"], w = self.anomaly(s.get("anomaly"), w)
            s["rul"], w = self.rul(s.get("rul"), w)
            s["stamp"], _ = stamp_health(s.get("stamp"), w)
            s["alarms"], alerts = self.alarms(s.get("alarms"), w)
            for a in alerts:
                s["policy"], cmds = self.policy(s.get("policy"), a)
                book: CommandBook = s["command_book"]
                for c in cmds:
                    self.commands += 1
                    book.submit(c, epoch(a.time)) if isinstance(c, Command) else None


def state_by_step(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    plant, items = generate(args.twins, args.hours, args.seed)
    readings = sum(getattr(i, "readings", 0) for i in items)
    print(
        f"plant: {args.twins} twins, {args.hours:g} h simulated, {len(items):,} items, "
        f"{readings:,} readings (generated in {time.perf_counter() - t0:.1f} s)"
    )
    cfg = FlowConfig()
    validator = Validator(twins=dict(plant.twins))
    end = plant.now()
    frames: list[Frame] = []
    for item in items:
        for x in check_item(item, validator, end):
            if not isinstance(x, DeadLetter):
                frames.append(residuals(x))
    del items
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    twins = Twins(cfg)
    t1 = time.perf_counter()
    for frame in frames:
        twins.feed(frame)
    fed = time.perf_counter() - t1
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    print(
        f"fed {len(frames):,} frames through the steps in {fed:.1f} s; "
        f"{twins.commands} policy commands"
    )
    shared = reachable([CATALOG, cfg, twins.state, twins.samples, twins.anomaly, twins.rul,
                        twins.alarms, twins.policy, validator, plant.twins])  # fmt: skip
    sizes: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    pickled: dict[str, list[int]] = defaultdict(list)
    copy_s: dict[str, float] = defaultdict(float)
    copy_bytes: dict[str, int] = defaultdict(int)
    for twin, s in twins.states.items():
        kind = twins.kind[twin]
        for step, value in s.items():
            sizes[kind][step].append(deep_size(value, shared))
            t = time.perf_counter()
            snap = copy.deepcopy(value)  # what Bytewax's snapshot() does at every epoch
            copy_s[step] += time.perf_counter() - t
            copy_bytes[step] += deep_size(snap, shared)
        sizes[kind]["(all steps)"].append(deep_size(s, shared))
        pickled[kind].append(len(pickle.dumps(s, protocol=pickle.HIGHEST_PROTOCOL)))
    steps = sorted({step for per in sizes.values() for step in per})
    kinds = sorted(sizes)
    print("\nin-memory bytes per twin, median (max) over the type's twins, shared data left out:")
    print(f"  {'step':<14}" + "".join(f"{k:>24}" for k in kinds))
    for step in steps:
        cells = []
        for k in kinds:
            v = sizes[k].get(step)
            cells.append(f"{statistics.median(v):>14,.0f} ({max(v):>7,})" if v else f"{'-':>24}")
        print(f"  {step:<14}" + "".join(cells))
    cells = [f"{statistics.median(pickled[k]):>14,.0f} ({max(pickled[k]):>7,})" for k in kinds]
    print(f"  {'pickled':<14}" + "".join(cells))
    n = len(twins.states)
    print("\nBytewax's snapshot of each touched twin at every epoch (copy.deepcopy), per twin:")
    for step in sorted(copy_s):
        print(
            f"  {step:<14} {copy_s[step] / n * 1e6:8,.0f} µs, {copy_bytes[step] / n:9,.0f} B copied"
        )
    total_s, total_b = sum(copy_s.values()) / n, sum(copy_bytes.values()) / n
    print(f"  {'(all steps)':<14} {total_s * 1e6:8,.0f} µs, {total_b:9,.0f} B copied")
    worst = max(max(sizes[k]["(all steps)"]) for k in kinds)
    print(
        f"largest twin in memory: {worst / 1024:.1f} KiB ({worst / BUDGET:.2f}x the 64 KiB "
        f"budget: {'met' if worst <= BUDGET else 'NOT met'}); traced allocation left by the "
        f"run: {traced / len(twins.states) / 1024:.1f} KiB per twin"
    )


def _keys_child(keys: int, steps: int) -> None:
    from bytewax.dataflow import Dataflow
    from bytewax.operators import input as bw_input
    from bytewax.operators import key_on, output, stateful_map
    from bytewax.testing import TestingSink, TestingSource, run_main

    def count(state: int | None, _item: int) -> tuple[int, int]:
        return (state or 0) + 1, 0

    flow = Dataflow("keys")
    stream: Any = key_on("key", bw_input("in", flow, TestingSource(range(keys))), str)
    for i in range(steps):
        stream = stateful_map(f"s{i}", stream, count)
    output("out", stream, TestingSink([]))
    run_main(flow)
    with open("/proc/self/status") as f:
        hwm = next(line for line in f if line.startswith("VmHWM"))
    print(int(hwm.split()[1]))


def per_key(args: argparse.Namespace) -> None:
    def hwm(keys: int) -> float:
        out = subprocess.run(
            [sys.executable, __file__, "--child-keys", str(keys), "--steps", str(args.steps)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return float(out.split()[-1]) * 1024

    small, large = [], []
    for _ in range(args.rounds):
        small.append(hwm(1))
        large.append(hwm(args.keys))
    per = [(b - a) / args.keys for a, b in zip(small, large, strict=True)]
    big, one = statistics.median(large) / 2**20, statistics.median(small) / 2**20
    print(
        f"\nBytewax, {args.steps} stateful steps, {args.keys:,} keys (state: one int): peak RSS "
        f"{big:,.0f} MiB against {one:,.0f} MiB for one key; "
        f"{statistics.median(per):,.0f} B per key ({min(per):,.0f}-"
        f"{max(per):,.0f}), {statistics.median(per) / args.steps:,.0f} B per key and step; "
        f"{args.rounds} rounds"
    )


def _flow_child(twins: int, minutes: float, copies: bool = True) -> None:
    """Run the simulated plant through ``build_flow``; print the peak RSS in KiB.

    ``copies=False`` measures what the snapshots' deep copies add: Bytewax's and the step
    adapters' ``copy.deepcopy`` return the state itself (safe here: nothing keeps them)."""
    import tempfile
    from pathlib import Path

    import bytewax.operators
    from bytewax.testing import run_main

    import twinflow.flows.command_steps
    import twinflow.flows.steps

    if not copies:
        same = types.SimpleNamespace(deepcopy=lambda x, memo=None: x)
        for module in (bytewax.operators, twinflow.flows.steps, twinflow.flows.command_steps):
            module.copy = same  # type: ignore[attr-defined]

    from twinflow.connectors.simulator import SimulatedPlantSource
    from twinflow.flows.metrics import RunStats
    from twinflow.flows.outputs import file_outputs
    from twinflow.flows.telemetry import build_flow

    plant = Plant(PlantConfig(n_twins=twins, duration_s=minutes * 60, seed=7))
    source = SimulatedPlantSource(plant, partitions=4)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = FlowConfig(out_dir=Path(tmp), write_telemetry=False)
        flow = build_flow(
            source, file_outputs(cfg), cfg, clock=plant.now, twins=dict(plant.twins),
            stats=RunStats(),
        )  # fmt: skip
        run_main(flow)
    with open("/proc/self/status") as f:
        hwm = next(line for line in f if line.startswith("VmHWM"))
    print(int(hwm.split()[1]))


def flow_peaks(args: argparse.Namespace) -> None:
    def hwm(twins: int) -> float:
        argv = [sys.executable, __file__, "--child-flow", str(twins), "--minutes",
                str(args.minutes), *(["--no-copies"] if args.no_copies else [])]  # fmt: skip
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        return float(out.split()[-1]) / 1024

    counts = [int(x) for x in args.flow.split(",")]
    print(f"\nbuild_flow on the simulated plant, {args.minutes:g} min of data, files only "
          "(no raw telemetry), peak RSS (MiB), medians of rounds"
          f"{', snapshots not copied' if args.no_copies else ''}:")  # fmt: skip
    flows: dict[int, float] = {}
    for n in counts:
        whole = [hwm(n) for _ in range(args.rounds)]
        flows[n] = statistics.median(whole)
        print(
            f"  {n:>6,} twins: {flows[n]:,.0f} MiB ({min(whole):,.0f}-{max(whole):,.0f}), "
            f"{flows[n] * 1024 / n:,.1f} KiB per twin"
        )
    if len(counts) > 1:
        lo, hi = counts[0], counts[-1]
        grow = (flows[hi] - flows[lo]) * 1024 / (hi - lo)
        print(f"  whole flow growth from {lo:,} to {hi:,} twins: {grow:,.1f} KiB per twin")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--twins", type=int, default=100)
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--keys", type=int, default=10_000, help="0: skip the per-key part")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--flow", default="", help="twin counts, e.g. 1000,10000 (whole-flow RSS)")
    ap.add_argument("--minutes", type=float, default=10.0, help="data per twin (--flow)")
    ap.add_argument("--no-steps", action="store_true", help="skip the state-by-step part")
    ap.add_argument(
        "--no-copies", action="store_true", help="--flow: snapshots return the state, uncopied"
    )
    ap.add_argument("--child-keys", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--child-flow", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_keys:
        _keys_child(args.child_keys, args.steps)
        return
    if args.child_flow:
        _flow_child(args.child_flow, args.minutes, not args.no_copies)
        return
    if not args.no_steps:
        state_by_step(args)
    if args.keys:
        per_key(args)
    if args.flow:
        flow_peaks(args)


if __name__ == "__main__":
    main()
