"""Benchmark: readings/s through the full telemetry flow, and per-twin state size.

Not a test (no assertion on time); prints figures and their ratio to the targets:
- throughput target: 250,000 readings/s in one process (5x the reference plant's 50,000/s);
- state target: at most 64 KB per twin in memory, all steps' state (models and the command book
  included; bytes pickled printed beside it).

The plant is generated first (so the figure is the flow's own speed), then replayed through
the flow several times; the median run is reported. The file sinks are compared with those of
an earlier commit (``--baseline``, loaded from git): rounds interleave the variants (their
order rotating), and each prints its median, min and max, its ratio to the baseline, the
worker-thread time spent inside the telemetry sink (total, and the longest single call, which
holds back everything behind it, alerts included) and the Parquet files left. Run:
``infra/dev bench`` or ``.venv/bin/python tests/benchmarks/bench_flow.py [--twins 50]
[--hours 2] [--repeat 3] [--baseline REV] [--epoch-s 1]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from bytewax.testing import TestingSink, TestingSource, run_main

from twinflow.connectors.simulator import Plant, PlantConfig, SimulatedPlantSource
from twinflow.flows.config import FlowConfig
from twinflow.flows.metrics import RunStats
from twinflow.flows.outputs import (
    file_outputs,
    state_row,
    telemetry_columns,
    window_row,
)
from twinflow.flows.steps import (
    residuals,
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


@dataclass
class SinkTime:
    """Worker-thread seconds spent in one sink's calls: while the flow runs (write_batch,
    snapshot) and at its end (close: the last flush, and the merge of parts)."""

    calls: list[float] = field(default_factory=list)
    close: list[float] = field(default_factory=list)


class _TimedPartition(StatefulSinkPartition[Any, Any]):
    def __init__(self, inner: StatefulSinkPartition[Any, Any], t: SinkTime) -> None:
        self.inner, self.t = inner, t

    def _timed(self, into: list[float], f: Callable[..., Any], *a: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return f(*a)
        finally:
            into.append(time.perf_counter() - t0)

    def write_batch(self, values: list[Any]) -> None:
        self._timed(self.t.calls, self.inner.write_batch, values)

    def snapshot(self) -> Any:
        return self._timed(self.t.calls, self.inner.snapshot)

    def close(self) -> None:
        self._timed(self.t.close, self.inner.close)


class TimedSink(FixedPartitionedSink[Any, Any]):
    """A file sink whose partitions record how long the worker spends in them."""

    def __init__(self, inner: FixedPartitionedSink[Any, Any], t: SinkTime) -> None:
        self.inner, self.t = inner, t

    def list_parts(self) -> list[str]:
        return self.inner.list_parts()

    def build_part(self, step_id: str, for_part: str, resume: Any) -> _TimedPartition:
        return _TimedPartition(self.inner.build_part(step_id, for_part, resume), self.t)


def load_baseline(rev: str) -> ModuleType:
    """``connectors/files.py`` as it was at ``rev`` (from git), as a module of its own."""
    root = Path(__file__).resolve().parents[2]
    text = subprocess.run(
        ["git", "show", f"{rev}:connectors/files.py"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "baseline_files.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("baseline_files", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_files"] = module
    spec.loader.exec_module(module)
    return module


def run_flow(
    plant: Plant,
    items: list[Any],
    out: Path,
    telemetry: bool,
    baseline: ModuleType | None = None,
    epoch_s: float = 1.0,
) -> tuple[int, float, SinkTime]:
    stats = RunStats()
    cfg = FlowConfig(out_dir=out, write_telemetry=telemetry)
    outputs = file_outputs(cfg)
    if baseline is not None:  # the earlier commit's Parquet sinks, same settings

        def old(name: str, cols: Callable[[Any], Any], fp: Any = None) -> Any:
            return baseline.ParquetSink(
                out / name,
                cols,
                lambda v: str(v.twin_type),
                rows_per_part=cfg.parquet_rows_per_part,
                max_delay_s=cfg.parquet_max_delay_s,
                fingerprint=fp,
            )

        fp = getattr(outputs.telemetry, "fingerprint", None)
        outputs = replace(
            outputs,
            windows=old("windows", window_row),
            twin_states=old("twin_states", state_row),
            telemetry=old("telemetry", telemetry_columns, fp) if telemetry else None,
        )
    timing = SinkTime()
    if outputs.telemetry is not None:
        outputs = replace(outputs, telemetry=TimedSink(outputs.telemetry, timing))
    flow = build_flow(
        TestingSource(items),
        outputs,
        cfg,
        clock=plant.now,
        twins=dict(plant.twins),
        stats=stats,
    )
    t0 = time.perf_counter()
    run_main(flow, epoch_interval=timedelta(seconds=epoch_s))
    return stats.readings, time.perf_counter() - t0, timing


def interleaved(
    plant: Plant, items: list[Any], repeat: int, baseline: ModuleType, epoch_s: float
) -> None:
    """Run the variants in rotating order, ``repeat`` rounds, and print their medians."""
    variants: list[tuple[str, bool, ModuleType | None]] = [
        ("without raw-telemetry Parquet", False, None),
        ("with raw-telemetry Parquet, baseline sink", True, baseline),
        ("with raw-telemetry Parquet, this sink", True, None),
    ]
    rates: dict[str, list[float]] = defaultdict(list)
    sink_s: dict[str, list[float]] = defaultdict(list)
    longest: dict[str, list[float]] = defaultdict(list)
    closing: dict[str, list[float]] = defaultdict(list)
    files: dict[str, list[int]] = defaultdict(list)
    for r in range(repeat):
        for label, telemetry, module in variants[r % 3 :] + variants[: r % 3]:
            with tempfile.TemporaryDirectory() as tmp:
                n, secs, t = run_flow(plant, items, Path(tmp), telemetry, module, epoch_s)
                files[label].append(len(list(Path(tmp).glob("**/*.parquet"))))
            rates[label].append(n / secs)
            if t.calls:
                sink_s[label].append(sum(t.calls))
                longest[label].append(max(t.calls))
                closing[label].append(sum(t.close))
    base = statistics.median(rates[variants[1][0]])
    for label, _telemetry, _module in variants:
        med = statistics.median(rates[label])
        print(
            f"  full flow {label}: median {med:,.0f} readings/s over {repeat} rounds "
            f"(min {min(rates[label]):,.0f}, max {max(rates[label]):,.0f}); "
            f"{med / base:.2f}x the baseline sink; {med / TARGET_READINGS_S:.2f}x the "
            f"{TARGET_READINGS_S:,}/s target; {statistics.median(files[label]):.0f} Parquet files"
        )
        if sink_s[label]:
            total, one = statistics.median(sink_s[label]), statistics.median(longest[label])
            end = statistics.median(closing[label])
            print(
                f"    worker time in the telemetry sink while running: median {total:.2f} s a "
                f"run, longest single call median {one * 1e3:.0f} ms (max "
                f"{max(longest[label]) * 1e3:.0f} ms); at close {end * 1e3:.0f} ms"
            )


def state_sizes(plant: Plant, items: list[Any]) -> dict[str, tuple[int, int]]:
    """Largest per-twin state by twin type after the whole run, every step's state with the
    command book: (bytes in memory, shared type data left out; bytes pickled)."""
    from bench_memory import CATALOG, Twins, deep_size, reachable

    cfg = FlowConfig()
    validator = Validator(twins=dict(plant.twins))
    twins = Twins(cfg)
    end = plant.now()
    for item in items:
        for x in check_item(item, validator, end):
            if hasattr(x, "twin_type") and type(x).__name__ != "DeadLetter":
                twins.feed(residuals(x))
    shared = reachable([CATALOG, cfg, twins.anomaly, twins.alarms, twins.policy, validator])
    largest: dict[str, tuple[int, int]] = {}
    for twin, s in twins.states.items():
        kind = twins.kind[twin]
        size = (deep_size(s, shared), len(pickle.dumps(s, protocol=pickle.HIGHEST_PROTOCOL)))
        old = largest.get(kind, (0, 0))
        largest[kind] = (max(old[0], size[0]), max(old[1], size[1]))
    return largest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--twins", type=int, default=50)
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--baseline", default="cd5b158", help="git revision whose file sinks are compared"
    )
    ap.add_argument(
        "--epoch-s", type=float, default=1.0, help="Bytewax epoch (snapshot) interval, seconds"
    )
    args = ap.parse_args()
    baseline = load_baseline(args.baseline)
    print(f"file sinks compared with those of {args.baseline}; epochs of {args.epoch_s:g} s")

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
        interleaved(plant, items, args.repeat, baseline, args.epoch_s)
    print()
    sizes = state_sizes(plant, items)
    for kind, (memory, pickled) in sorted(sizes.items()):
        print(
            f"per-twin state incl. the command book, {kind:<12}: {memory / 1024:6.1f} KiB in "
            f"memory ({memory / TARGET_STATE_BYTES:.2f}x the 64 KiB budget), "
            f"{pickled / 1024:6.1f} KiB pickled"
        )


if __name__ == "__main__":
    main()
