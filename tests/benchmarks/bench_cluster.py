"""Benchmark: ``twinflow run`` as 1 process against a cluster of 2 processes of 1 worker.

Not a test; prints figures and ratios. A seeded plant (1 Hz signals in telemetry wire format
v1, keyed by twin) is produced once into a Kafka topic of 4 partitions; then, alternating in
the same run, ``twinflow run --until-end`` reads the whole topic to file outputs:

- ``1 process``: one process, one worker;
- ``2 processes``: ``--process-id 0/1 --addresses ...`` on loopback, one worker each.

Each round also runs both shapes over an empty topic: what starting and stopping the
processes costs (Python imports, cluster connection, the Kafka end-of-topic checks). Figures
are medians over the rounds: readings/s over the whole wall time and over the wall time less
that fixed cost, per shape and per worker, the ratio 2 processes / 1 process, and each shape's
peak RSS per process (``VmHWM``), and the CPU time (user + system) the processes of each
shape spent per reading, less that of the empty topic: where two processes spend more CPU
for the same readings, that is the cost of the cluster (moving keyed items between the
processes, two runtimes), whatever the machine's load. The broker is ``KAFKA_BOOTSTRAP``
or a local Tansu, which shares the machine's cores with the flow. Run:
``.venv/bin/python tests/benchmarks/bench_cluster.py [--twins 50] [--hours 3] [--rounds 3]
[--flow write_telemetry=false ...] [--before DIR]`` (``--flow`` sets the deployment's flow
section for both shapes, e.g. without the raw telemetry output). ``--before DIR`` runs both
shapes also with the code of another tree (e.g. a ``git archive`` of an earlier commit),
interleaved with this tree's in every round, and prints its figures too and the ratios
this tree / that one; ``twinflow`` must import from that tree's root, so link its
``flows``, ``connectors``, ``operators``, ``models`` and ``infra/migrations`` (as
``migrations``) into its ``twinflow/`` folder first.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).absolute().parents[2]))

from confluent_kafka import Producer

from tests.services.kafka import KafkaBroker, create_topic, unique_topic
from tests.services.ports import free_port
from twinflow.connectors.simulator import Plant, PlantConfig
from twinflow.core.records import TelemetryFrame

ROOT = Path(__file__).absolute().parents[2]
PARTITIONS = 4


@dataclass(frozen=True)
class Run:
    wall_s: float
    peak_rss_mib: list[float]
    cpu_s: float


def record(bootstrap: str, topic: str, twins: int, hours: float) -> tuple[list[str], int]:
    """The plant's 1 Hz frames into ``topic``; returns the twin lines and the readings."""
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(
        hours=hours + 2
    )
    cfg = PlantConfig(n_twins=twins, duration_s=hours * 3600, seed=3, start=start, chunk_s=10)
    plant = Plant(cfg)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50})
    readings = 0
    for i, item in enumerate(plant.items()):
        if not isinstance(item, TelemetryFrame):
            continue  # bad payloads and waveform bursts stay out: count like for like
        signals = {
            k: [None if math.isnan(v) else v for v in vals.tolist()]
            for k, vals in item.signals.items()
        }
        doc: dict[str, Any] = {"twin_id": item.twin_id, "twin_type": item.twin_type}
        doc |= {"times": item.times.tolist(), "signals": signals}
        producer.produce(topic, json.dumps(doc).encode(), key=item.twin_id.encode())
        readings += sum(int((~np.isnan(v)).sum()) for v in item.signals.values())
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    lines = [f"  - {{id: {t}, type: {kind}, protocol: kafka}}" for t, kind in plant.twins]
    return lines, readings


def deployment(
    folder: Path,
    name: str,
    bootstrap: str,
    topic: str,
    twins: list[str],
    flow: Sequence[str] = (),
) -> Path:
    """The deployment file; ``flow`` holds ``key=value`` settings of its flow section."""
    path = folder / f"{name}.yaml"
    lines = [
        "version: 1",
        "site: s1",
        "services:",
        "  kafka:",
        f'    bootstrap: "{bootstrap}"',
        f"    telemetry_topics: [{topic}]",
        "flow:",
        "  window_s: 300",
        "  lateness_s: 60",
        *(f"  {key}: {value}" for key, _, value in (kv.partition("=") for kv in flow)),
        "twins:",
        *twins,
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def run(config: Path, folder: Path, processes: int, code: Path = ROOT) -> Run:
    """``twinflow run --until-end`` as ``processes`` processes of the tree ``code``; wall
    time, peak RSS and CPU time."""
    addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
    procs = []
    before = _children_cpu_s()
    t0 = time.perf_counter()
    for i in range(processes):
        out = folder / f"out-{time.monotonic_ns()}-{i}"
        argv = [sys.executable, "-m", "twinflow.flows.cli", "run", str(config), "--out", str(out)]
        argv += ["--until-end", "--quiet"]
        if processes > 1:
            argv += ["--process-id", str(i), "--addresses", addresses]
        env = {**os.environ, "PYTHONPATH": str(code)}
        procs.append(
            subprocess.Popen(argv, cwd=code, env=env, stdout=subprocess.DEVNULL, stderr=sys.stderr)
        )
    peaks = [0.0] * processes
    while any(p.poll() is None for p in procs):
        for i, p in enumerate(procs):
            peaks[i] = max(peaks[i], _hwm_mib(p.pid))
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    codes = [p.returncode for p in procs]
    if any(codes):
        raise SystemExit(f"twinflow run exited {codes}")
    return Run(wall, peaks, _children_cpu_s() - before)


def _children_cpu_s() -> float:
    """User + system CPU of the children waited for so far (the broker is still running)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _hwm_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--twins", type=int, default=50)
    ap.add_argument("--hours", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--flow",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting of the deployment's flow section, e.g. write_telemetry=false",
    )
    ap.add_argument(
        "--before",
        type=Path,
        default=None,
        metavar="DIR",
        help="another tree whose code runs both shapes too, interleaved (see above)",
    )
    args = ap.parse_args()
    trees = {"this tree": ROOT} | ({"before": args.before.absolute()} if args.before else {})
    with KafkaBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        topic = create_topic(broker.bootstrap, unique_topic("bench-cluster"), PARTITIONS)
        empty = create_topic(broker.bootstrap, unique_topic("bench-empty"), PARTITIONS)
        twins, readings = record(broker.bootstrap, topic, args.twins, args.hours)
        full_cfg = deployment(folder, "full", broker.bootstrap, topic, twins, args.flow)
        empty_cfg = deployment(folder, "empty", broker.bootstrap, empty, twins, args.flow)
        print(
            f"{args.twins} twins, {args.hours:g} h at 1 Hz: {readings:,} readings in a topic of "
            f"{PARTITIONS} partitions; {os.cpu_count()} cores; {args.rounds} rounds; load "
            f"average {os.getloadavg()[0]:.1f}"
            + (f"; flow {' '.join(args.flow)}" if args.flow else "")
            + (f"; before: {args.before}" if args.before else ""),
            flush=True,
        )
        shapes = [(name, n) for name in trees for n in (1, 2)]
        runs: dict[tuple[str, int], list[Run]] = {s: [] for s in shapes}
        fixed: dict[tuple[str, int], list[Run]] = {s: [] for s in shapes}
        for r in range(args.rounds):
            k = r % len(shapes)
            for name, n in shapes[k:] + shapes[:k]:  # each round starts one shape later
                fixed[name, n].append(run(empty_cfg, folder, n, trees[name]))
                runs[name, n].append(run(full_cfg, folder, n, trees[name]))
                print(
                    f"  round {r + 1}, {name}, {n} process(es): {runs[name, n][-1].wall_s:.2f} "
                    f"s, CPU {runs[name, n][-1].cpu_s:.2f} s (empty topic "
                    f"{fixed[name, n][-1].wall_s:.2f} s, CPU {fixed[name, n][-1].cpu_s:.2f} s); "
                    f"load average {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
        print()
        wall, cpu = {}, {}
        for name in trees:
            for n in (1, 2):
                wall[name, n], cpu[name, n] = _summary(
                    name, n, runs[name, n], fixed[name, n], readings
                )
            print(
                f"{name}: ratio 2 processes / 1 process on {os.cpu_count()} cores: "
                f"{wall[name, 2][0] / wall[name, 1][0]:.2f} (wall), "
                f"{wall[name, 2][1] / wall[name, 1][1]:.2f} (less start/stop); CPU per "
                f"reading, 2 processes / 1 process: {cpu[name, 2] / cpu[name, 1]:.2f}"
            )
        if args.before:
            for n in (1, 2):
                print(
                    f"{n} process(es), this tree / before: readings/s "
                    f"{wall['this tree', n][0] / wall['before', n][0]:.2f} (wall), "
                    f"{wall['this tree', n][1] / wall['before', n][1]:.2f} (less start/stop); "
                    f"CPU per reading {cpu['this tree', n] / cpu['before', n]:.2f}"
                )


def _summary(
    name: str, n: int, runs: list[Run], fixed: list[Run], readings: int
) -> tuple[tuple[float, float], float]:
    """Print one shape's medians; returns its readings/s (wall, less start/stop) and its
    CPU per reading (us)."""
    wall = statistics.median(x.wall_s for x in runs)
    cost = statistics.median(f.wall_s for f in fixed)
    net = statistics.median(x.wall_s - f.wall_s for x, f in zip(runs, fixed, strict=True))
    rss = statistics.median(max(x.peak_rss_mib) for x in runs)
    per = [(x.cpu_s - f.cpu_s) / readings * 1e6 for x, f in zip(runs, fixed, strict=True)]
    rates = (readings / wall, readings / net if net > 0 else math.nan)
    print(
        f"{name}, {n} process(es) x 1 worker: {wall:.2f} s wall, {cost:.2f} s of it "
        f"start/stop; {rates[0]:,.0f} readings/s ({rates[0] / n:,.0f} per worker); less "
        f"start/stop {rates[1]:,.0f}/s ({rates[1] / n:,.0f} per worker); peak RSS per "
        f"process {rss:.0f} MiB; CPU per reading {statistics.median(per):.2f} us "
        f"({min(per):.2f}-{max(per):.2f}), "
        f"{statistics.median(f.cpu_s for f in fixed):.2f} s CPU to start and stop"
    )
    return rates, statistics.median(per)


if __name__ == "__main__":
    main()
