"""Benchmark: what the raw-telemetry Parquet sink adds to peak RSS (issue 13: 10,000 twins < 1 GB).

Not a test; prints figures. The first message of each of ``--twins`` simulated twins
(``--message-s`` seconds of 1 Hz data) is generated once; a child process per run sends it
again and again, shifted in time and with new arrays (as decoding makes them), for ``--minutes`` of
data, to the telemetry ``ParquetSink`` exactly as ``twinflow run`` configures it
(``file_outputs``: ``telemetry_batch``, the frame fingerprint, the default rows per part and
delay), in batches of ``--batch`` items with an unpickled snapshot every ``--epoch-s`` seconds
(what Bytewax does without recovery), then closed (the last parts written and merged). The
``none`` side makes the same frames and drops them. Peak RSS (``VmHWM``) per side, medians
with min-max over ``--rounds`` interleaved rounds; the sink's share is a side's peak less the
``none`` side's, and its rate is 1 Hz readings per second of the child's feed and close.

Run: ``.venv/bin/python tests/benchmarks/bench_memory_sink.py [--twins 10000] [--minutes 6]
[--rounds 3] [--chunk-rows 16384] [--chunk-items 1024] [--env MALLOC_ARENA_MAX=2]``.
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _hwm_kib() -> int:
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM")).split()[1])


def first_messages(twins: int, message_s: int) -> list[Any]:
    """Each twin's first message of the seeded plant (telemetry frames only)."""
    from twinflow.connectors.simulator import Plant, PlantConfig
    from twinflow.core.records import TelemetryFrame

    plant = Plant(PlantConfig(n_twins=twins, duration_s=message_s, seed=7, chunk_s=message_s))
    return [i for i in plant.items() if isinstance(i, TelemetryFrame)]


def child(args: argparse.Namespace, sink: bool) -> None:
    """Feed the twins' telemetry to the sink (or to nothing); print peak KiB, seconds, readings."""
    from twinflow.connectors.files import ParquetSink
    from twinflow.core.records import TelemetryFrame
    from twinflow.flows.config import FlowConfig
    from twinflow.flows.outputs import frame_fingerprint, telemetry_batch

    cfg = FlowConfig()
    step = args.message_s
    first: list[TelemetryFrame] = pickle.loads(Path(args.frames).read_bytes())
    kw: dict[str, Any] = {"chunk_rows": args.chunk_rows} if args.chunk_rows else {}
    kw |= {"chunk_items": args.chunk_items} if args.chunk_items else {}
    t0 = time.perf_counter()
    readings = 0
    with tempfile.TemporaryDirectory() as tmp:
        part = None
        if sink:
            part = ParquetSink(
                Path(tmp) / "telemetry",
                telemetry_batch,
                lambda f: str(f.twin_type),
                rows_per_part=args.rows_per_part or cfg.parquet_rows_per_part,
                max_delay_s=cfg.parquet_max_delay_s,
                fingerprint=frame_fingerprint,
                **kw,
            ).build_part("telemetry_out", "p0", None)
        last = time.monotonic()
        for k in range(int(args.minutes * 60 / step)):
            frames = [
                TelemetryFrame(
                    f.twin_id,
                    f.twin_type,
                    f.times + k * step,
                    {n: v.copy() for n, v in f.signals.items()},
                )
                for f in first
            ]
            readings += sum(f.readings for f in frames)
            for i in range(0, len(frames), args.batch):
                if part is None:
                    continue
                part.write_batch(frames[i : i + args.batch])
                if time.monotonic() - last >= args.epoch_s:
                    part.snapshot()
                    last = time.monotonic()
            del frames
        if part is not None:
            part.close()
    print(_hwm_kib(), time.perf_counter() - t0, readings)


SAME = ("twins", "minutes", "message_s", "batch", "epoch_s", "rows_per_part", "chunk_rows",
        "chunk_items")  # fmt: skip


def _range(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--twins", type=int, default=10_000)
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--message-s", type=int, default=10)
    ap.add_argument("--batch", type=int, default=100, help="items per write_batch")
    ap.add_argument("--epoch-s", type=float, default=10.0, help="seconds between snapshots")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows-per-part", type=int, default=0, help="0: the flow's default")
    ap.add_argument("--chunk-rows", type=int, default=0, help="0: the sink's default")
    ap.add_argument("--chunk-items", type=int, default=0, help="0: the sink's default")
    ap.add_argument("--env", default="", help="K=V,... for the sink side's child process")
    ap.add_argument("--child", choices=["none", "sink"], help=argparse.SUPPRESS)
    ap.add_argument("--frames", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args, args.child == "sink")
        return
    extra = dict(kv.split("=", 1) for kv in filter(None, args.env.split(",")))
    sides = ["none", "sink"]
    peaks: dict[str, list[float]] = {s: [] for s in sides}
    rates: dict[str, list[float]] = {s: [] for s in sides}
    same = [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in SAME]
    frames = Path(tempfile.mkdtemp()) / "frames.pickle"  # generated once, outside the children
    frames.write_bytes(pickle.dumps(first_messages(args.twins, args.message_s)))
    same.append(f"--frames={frames}")
    for r in range(args.rounds):
        for side in sides if r % 2 == 0 else sides[::-1]:
            env = {**os.environ, **(extra if side == "sink" else {})}
            argv = [sys.executable, __file__, "--child", side, *same]
            out = subprocess.run(argv, capture_output=True, text=True, check=True, env=env)
            kib, secs, readings = out.stdout.split()[-3:]
            peaks[side].append(int(kib) / 1024)
            rates[side].append(int(readings) / float(secs))
            print(f"  round {r + 1} {side}: peak RSS {peaks[side][-1]:,.0f} MiB", flush=True)
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(
        f"{args.twins:,} twins, {args.minutes:g} min of data, {args.rounds} rounds, load average "
        f"{load}; rows per part {args.rows_per_part or 'default'}, chunk rows "
        f"{args.chunk_rows or 'default'}, chunk items {args.chunk_items or 'default'}"
        f"{', sink env ' + args.env if args.env else ''}:"
    )
    for side in sides:
        p, rate = peaks[side], statistics.median(rates[side])
        print(f"  {side:>4}: peak RSS {_range(p)} MiB, {rate:,.0f} readings/s")
    share = [s - n for s, n in zip(peaks["sink"], peaks["none"], strict=True)]
    print(f"  the sink's share of the peak: {_range(share)} MiB")


if __name__ == "__main__":
    main()
