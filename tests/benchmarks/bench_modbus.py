"""Benchmark: ModbusSource in a minimal Bytewax flow against a bare pymodbus poll loop.

Not a test (nothing is asserted). Both read the same fixed register map from the same
simulated devices: ``--units`` wind turbines (units 1..N behind one endpoint), 8 float32
holding registers each (16 words, one request per unit and poll), ``--polls`` polls of
every unit, back to back (poll interval 0). The devices run in a separate process, so
their CPU time is not charged to the client side. Runs alternate (bare, source, bare,
...); the medians of ``--repeat`` runs are printed: polls/s, readings/s, the client
process's CPU time per poll, and the throughput ratio source / bare (the median of the
paired runs' ratios; target at least 0.8). On a machine busy with other work the
throughput of both swings; CPU per poll is the steadier figure.

Run: ``.venv/bin/python tests/benchmarks/bench_modbus.py [--units 10] [--polls 2000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import socket
import statistics
import subprocess
import sys
import time

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import run_main

from twinflow.connectors.bindings import ModbusBinding
from twinflow.connectors.modbus.source import ModbusSource
from twinflow.connectors.simulator import Plant, PlantConfig
from twinflow.connectors.simulator.devices.modbus import ModbusDevices, default_binding
from twinflow.core.records import TelemetryFrame

HOST = "127.0.0.1"
TARGET_RATIO = 0.8


def plant_and_bindings(units: int, port: int) -> tuple[Plant, list[ModbusBinding]]:
    """A plant whose first ``units`` wind turbines sit behind ``port`` as units 1..N."""
    plant = Plant(
        PlantConfig(
            n_twins=3 * units,
            duration_s=120,
            seed=5,
            fault_fraction=0.0,
            raw_message_rate=0.0,
            bad_message_rate=0.0,
        )
    )
    turbines = [t for t, kind in plant.twins if kind == "wind_turbine"][:units]
    bindings = [
        default_binding(t, "wind_turbine", HOST, port, i + 1, poll_interval_s=0.0, timeout_s=2.0)
        for i, t in enumerate(turbines)
    ]
    return plant, bindings


async def serve(units: int, port: int) -> None:
    """The devices, filled with the plant's first chunk, until stdin closes."""
    plant, bindings = plant_and_bindings(units, port)
    devices = ModbusDevices(plant, HOST, port, bindings)
    await devices.start()
    for item in plant.partition(0, 1).next_chunk():
        await devices.update(item)  # type: ignore[arg-type]
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await devices.stop()


async def bare_loop(bindings: list[ModbusBinding], polls: int) -> tuple[int, int, float]:
    """The same reads with pymodbus alone: returns (polls, readings, seconds)."""
    from pymodbus.client import AsyncModbusTcpClient

    client = AsyncModbusTcpClient(HOST, port=bindings[0].port, timeout=2.0, retries=0)
    await client.connect()
    f32 = client.DATATYPE.FLOAT32
    n_polls = readings = 0
    t0 = time.perf_counter()
    for _ in range(polls):
        for b in bindings:
            rr = await client.read_holding_registers(0, count=16, device_id=b.unit)
            values = client.convert_from_registers(rr.registers, f32)
            readings += len(values)  # type: ignore[arg-type]
            n_polls += 1
    elapsed = time.perf_counter() - t0
    client.close()
    return n_polls, readings, elapsed


class _Count(DynamicSink[TelemetryFrame]):
    """Counts rows (polls) and readings of the frames it receives."""

    def __init__(self) -> None:
        self.rows = 0
        self.readings = 0

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CountPart:
        return _CountPart(self)


class _CountPart(StatelessSinkPartition[TelemetryFrame]):
    def __init__(self, owner: _Count) -> None:
        self.owner = owner

    def write_batch(self, items: list[TelemetryFrame]) -> None:
        for f in items:
            self.owner.rows += len(f.times)
            self.owner.readings += f.readings


def source_flow(
    bindings: list[ModbusBinding], polls: int, batch_interval_s: float | None
) -> tuple[int, int, float, int]:
    """The reads through ModbusSource in a minimal flow: (polls, readings, seconds, frames)."""
    extra = {} if batch_interval_s is None else {"batch_interval_s": batch_interval_s}
    source = ModbusSource(bindings, max_polls=polls, **extra)
    sink = _Count()
    flow = Dataflow("bench_modbus")
    op.output("out", op.input("modbus", flow, source), sink)
    t0 = time.perf_counter()
    run_main(flow)
    elapsed = time.perf_counter() - t0
    stats = source.stats.snapshot()
    if stats.get("poll:ok", 0) != polls * len(bindings):
        raise SystemExit(f"source polls did not all succeed: {stats}")
    return sink.rows, sink.readings, elapsed, stats.get("frames", 0)


def measured(run):  # type: ignore[no-untyped-def]
    """``(result, CPU seconds of this process)`` of ``run()``."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    result = run()
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result, cpu


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=10)
    ap.add_argument("--polls", type=int, default=2000, help="polls of every unit per run")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--batch-interval-s",
        type=float,
        default=None,
        help="ModbusSource batch_interval_s (default: the source's own default)",
    )
    ap.add_argument("--serve", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        asyncio.run(serve(args.units, args.serve))
        return

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), "--units", str(args.units)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise SystemExit("the device process did not start")
        _, bindings = plant_and_bindings(args.units, port)
        bare_runs, source_runs, ratios, frames = [], [], [], []
        for _ in range(args.repeat):
            (n, _, secs), cpu = measured(lambda: asyncio.run(bare_loop(bindings, args.polls)))
            bare_runs.append((n / secs, cpu / n))
            (n, _, secs, nf), cpu = measured(
                lambda: source_flow(bindings, args.polls, args.batch_interval_s)
            )
            source_runs.append((n / secs, cpu / n))
            ratios.append(source_runs[-1][0] / bare_runs[-1][0])
            frames.append(nf)
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(10)

    bare = statistics.median(r[0] for r in bare_runs)
    src = statistics.median(r[0] for r in source_runs)
    bare_cpu = statistics.median(r[1] for r in bare_runs) * 1e6
    src_cpu = statistics.median(r[1] for r in source_runs) * 1e6
    per_poll = 8
    total = args.polls * args.units
    print(
        f"register map: {args.units} units x 8 float32 holding registers; "
        f"{args.polls} polls per unit = {total} polls per run; median of {args.repeat}"
    )
    print(
        f"bare pymodbus loop : {bare:8,.0f} polls/s {bare * per_poll:10,.0f} readings/s "
        f"{bare_cpu:6.1f} us CPU/poll"
    )
    print(
        f"ModbusSource flow  : {src:8,.0f} polls/s {src * per_poll:10,.0f} readings/s "
        f"{src_cpu:6.1f} us CPU/poll ({statistics.median(frames):,.0f} frames per run)"
    )
    ratio = statistics.median(ratios)
    verdict = "meets" if ratio >= TARGET_RATIO else "below"
    print(
        f"ratio source/bare  : {ratio:.2f} throughput ({verdict} the {TARGET_RATIO}x target; "
        f"paired runs {min(ratios):.2f}..{max(ratios):.2f}); CPU per poll {src_cpu / bare_cpu:.2f}x"
    )


if __name__ == "__main__":
    main()
