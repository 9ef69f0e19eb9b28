"""Benchmark: what the raw-telemetry Parquet sink adds to peak RSS (issue 13: 10,000 twins < 1 GB).

Not a test; prints figures. In a child process per run, the simulated plant (``--twins``,
``--minutes`` of data in messages of ``--message-s`` seconds) is generated frame by frame and
fed to the telemetry ``ParquetSink`` exactly as ``twinflow run`` configures it
(``file_outputs``: ``telemetry_batch``, the frame fingerprint, the default rows per part and
delay), in batches of ``--batch`` items with an unpickled snapshot every ``--epoch-s`` seconds
(what Bytewax does without recovery), then closed (the last parts written and merged). The
``none`` side generates the same frames and drops them. Peak RSS (``VmHWM``) per side, medians
with min-max over ``--rounds`` interleaved rounds; the sink's share is a side's peak less the
``none`` side's, and its rate is 1 Hz readings per second of the whole child.

Run: ``.venv/bin/python tests/benchmarks/bench_memory_sink.py [--twins 10000] [--minutes 6]
[--rounds 3] [--env MALLOC_ARENA_MAX=2]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _hwm_kib() -> int:
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM")).split()[1])


def child(twins: int, minutes: float, message_s: int, batch: int, epoch_s: float, sink: bool) -> None:
    """Feed the plant's telemetry to the sink (or to nothing); print peak KiB and seconds."""
    from twinflow.connectors.files import ParquetSink
    from twinflow.connectors.simulator import Plant, PlantConfig
    from twinflow.core.records import TelemetryFrame
    from twinflow.flows.config import FlowConfig
    from twinflow.flows.outputs import frame_fingerprint, telemetry_batch

    cfg = FlowConfig()
    plant = Plant(PlantConfig(n_twins=twins, duration_s=message_s, seed=7, chunk_s=message_s))
    first = [i for i in plant.items() if isinstance(i, TelemetryFrame)]
    t0 = time.perf_counter()
    readings = 0
    with tempfile.TemporaryDirectory() as tmp:
        part = None
        if sink:
            part = ParquetSink(
                Path(tmp) / "telemetry", telemetry_batch, lambda f: str(f.twin_type),
                rows_per_part=int(os.environ.get("BENCH_ROWS", cfg.parquet_rows_per_part)),
                max_delay_s=cfg.parquet_max_delay_s, fingerprint=frame_fingerprint,
            ).build_part("telemetry_out", "p0", None)  # fmt: skip
        last = time.monotonic()
        for k in range(int(minutes * 60 / message_s)):
            # the first message of each twin again, later: new arrays, as decoding makes them
            frames = [
                TelemetryFrame(f.twin_id, f.twin_type, f.times + k * message_s,
                               {n: v.copy() for n, v in f.signals.items()})  # fmt: skip
                for f in first
            ]
            readings += sum(f.readings for f in frames)
            for i in range(0, len(frames), batch):
                if part is not None:
                    part.write_batch(frames[i : i + batch])
                if part is not None and time.monotonic() - last >= epoch_s:
                    part.snapshot()
                    last = time.monotonic()
            del frames
        if part is not None:
            part.close()
    print(_hwm_kib(), time.perf_counter() - t0, readings)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--twins", type=int, default=10_000)
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--message-s", type=int, default=10)
    ap.add_argument("--batch", type=int, default=100, help="items per write_batch")
    ap.add_argument("--epoch-s", type=float, default=10.0, help="seconds between snapshots")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--env", default="", help="K=V,... for the sink side's child process")
    ap.add_argument("--child", choices=["none", "sink"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.twins, args.minutes, args.message_s, args.batch, args.epoch_s,
              args.child == "sink")  # fmt: skip
        return
    extra = dict(kv.split("=", 1) for kv in filter(None, args.env.split(",")))
    sides = ["none", "sink"]
    peaks: dict[str, list[float]] = {s: [] for s in sides}
    rates: dict[str, list[float]] = {s: [] for s in sides}
    for r in range(args.rounds):
        for side in sides if r % 2 == 0 else sides[::-1]:
            argv = [sys.executable, __file__, "--child", side, "--twins", str(args.twins),
                    "--minutes", str(args.minutes), "--message-s", str(args.message_s),
                    "--batch", str(args.batch), "--epoch-s", str(args.epoch_s)]  # fmt: skip
            env = {**os.environ, **(extra if side == "sink" else {})}
            out = subprocess.run(argv, capture_output=True, text=True, check=True, env=env)
            kib, secs, readings = out.stdout.split()[-3:]
            peaks[side].append(int(kib) / 1024)
            rates[side].append(int(readings) / float(secs))
            print(f"  round {r + 1} {side}: peak RSS {peaks[side][-1]:,.0f} MiB, "
                  f"{float(secs):,.1f} s", flush=True)  # fmt: skip
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"{args.twins:,} twins, {args.minutes:g} min of data, {args.rounds} rounds, "
          f"load average {load}{', sink env ' + args.env if args.env else ''}:")  # fmt: skip
    for side in sides:
        p = peaks[side]
        print(f"  {side:>4}: peak RSS {statistics.median(p):,.0f} MiB ({min(p):,.0f}-{max(p):,.0f}), "
              f"{statistics.median(rates[side]):,.0f} readings/s")  # fmt: skip
    share = [s - n for s, n in zip(peaks["sink"], peaks["none"], strict=True)]
    print(f"  the sink's share of the peak: {statistics.median(share):,.0f} MiB "
          f"({min(share):,.0f}-{max(share):,.0f})")  # fmt: skip


if __name__ == "__main__":
    main()
