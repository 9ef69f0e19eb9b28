"""Benchmark: readings/s of ``twinflow replay`` of a recorded 1 Hz plant next to bench_flow's
path (the same frames from memory through build_flow), as medians of interleaved rounds.

The plant (1 Hz signals, no waveforms) is simulated once and recorded to one wide CSV per twin
type; each round runs the in-memory path and the replay (reading, parsing and batching the
CSV included) one after the other: once with frames of 60 timestamps, as the simulator's (like
for like), and once with replay's default of 600. Target: replay at least 0.8x the in-memory
path. Run:
``.venv/bin/python tests/benchmarks/bench_replay.py [--twins 50] [--hours 2] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bytewax.testing import TestingSource, run_main

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.flows.test_replay import deployment, simulated_frames, write_recording
from twinflow.connectors.recorded.spec import replay_spec
from twinflow.flows.config import FlowConfig
from twinflow.flows.deploy import load_deployment
from twinflow.flows.metrics import RunStats
from twinflow.flows.outputs import file_outputs
from twinflow.flows.replay import run_replay
from twinflow.flows.telemetry import build_flow

TARGET = 0.8


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--twins", type=int, default=50)
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        plant, frames = simulated_frames(args.twins, args.hours)
        files = write_recording(frames, root)
        dep = load_deployment(deployment(root, dict(plant.twins)))
        spec = replay_spec({"time": {"unit": "s"}, "frame_rows": 60}, Path("bench"))
        default = replay_spec({"time": {"unit": "s"}}, Path("bench"))
        readings = sum(f.readings for f in frames)
        print(
            f"{args.twins} twins, {args.hours} h at 1 Hz: {readings:,} readings, "
            f"{len(frames):,} frames"
        )
        memory: list[float] = []
        replayed: list[float] = []
        replayed_600: list[float] = []
        for r in range(args.rounds):
            cfg = FlowConfig(out_dir=root / f"mem{r}", write_telemetry=False)
            stats = RunStats()
            flow = build_flow(
                TestingSource(frames),
                file_outputs(cfg),
                cfg,
                clock=plant.now,
                twins=dict(plant.twins),
                stats=stats,
            )
            t0 = time.perf_counter()
            run_main(flow)
            memory.append(stats.readings / (time.perf_counter() - t0))
            s = run_replay(dep, files, spec, root / f"rep{r}", write_telemetry=False, progress=None)
            replayed.append(s["readings"] / s["wall_seconds"])
            s = run_replay(
                dep, files, default, root / f"big{r}", write_telemetry=False, progress=None
            )
            replayed_600.append(s["readings"] / s["wall_seconds"])
        m, p = statistics.median(memory), statistics.median(replayed)
        q = statistics.median(replayed_600)
        print(f"  bench_flow path (frames of 60 from memory): median {m:,.0f} readings/s")
        print(f"  twinflow replay, frames of 60 (CSV files):  median {p:,.0f} readings/s")
        print(f"  twinflow replay, frames of 600 (default):   median {q:,.0f} readings/s")
        print(f"  ratio replay / in-memory, like for like: {p / m:.2f} (target >= {TARGET})")
        print(f"  ratio replay (default frames) / in-memory: {q / m:.2f}")


if __name__ == "__main__":
    main()
