"""Benchmark: OpcUaSource in a Bytewax flow against a bare asyncua subscription handler.

Not a test. A separate process serves the simulated devices (20 pumps x 6 nodes by default)
and, on request, writes a fixed set of value changes as fast as it can: ``rounds`` rounds in
which every node changes once (with source timestamps from 2030-01-01, so the values the
consumers already hold are told apart). The same set is consumed

(a) by ``OpcUaSource`` in a minimal Bytewax flow (input -> count), and
(b) by a bare asyncua subscription whose handler keeps each change (node, value, status, time),

each with a 50 ms sampling/publishing interval and monitored-item queues deep enough that no
change is discarded. For each it prints data changes/s and readings/s over the wall clock from
the request to the last change (``wall``), and per CPU second of the consuming process
(``capacity``: what the consumer could take if the producer were not the limit), then the
ratio (a)/(b) of both. Target: (a) at least 0.8x (b).

Run: ``.venv/bin/python tests/benchmarks/bench_opcua.py [--twins 20] [--rounds 500] [--repeat 2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing as mp
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import bytewax.operators as op
import numpy as np
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import run_main

from twinflow.connectors.bindings import OpcUaBinding
from twinflow.connectors.opcua import OpcUaSource
from twinflow.connectors.simulator import Plant, PlantConfig
from twinflow.connectors.simulator.devices.opcua import OpcUaDevices, default_binding
from twinflow.core.records import TelemetryFrame

#: Source timestamps of the benchmark's changes start here (2030-01-01T00:00Z).
T_BENCH = 1_893_456_000.0
TARGET_RATIO = 0.8
SAMPLING_MS = 50.0
QUEUE = 1000


def bindings_for(n_twins: int, url: str) -> list[OpcUaBinding]:
    """The first ``n_twins`` pumps of a plant (a pump has 6 scalar signals)."""
    pumps = [(t, k) for t, k in plant_for(n_twins).twins if k == "pump"][:n_twins]
    return [default_binding(t, k, url, sampling_interval_ms=SAMPLING_MS) for t, k in pumps]


def plant_for(n_twins: int) -> Plant:
    return Plant(PlantConfig(n_twins=3 * n_twins, duration_s=60, seed=1, fault_fraction=0.0))


# --------------------------------------------------------------------------- the producer


def serve(conn: Connection, url: str, n_twins: int) -> None:
    """Server process: serve the devices; on ``("burst", rounds, paused)`` write the rounds and
    reply how long that took. With ``paused`` the server's subscriptions stop publishing while
    it writes and resume after (the backlog scenario)."""
    asyncio.run(_serve(conn, url, n_twins))


async def _serve(conn: Connection, url: str, n_twins: int) -> None:
    bindings = bindings_for(n_twins, url)
    devices = OpcUaDevices(plant_for(n_twins), url, bindings)
    await devices.start()
    loop = asyncio.get_running_loop()
    conn.send("ready")
    burst = 0
    while (msg := await loop.run_in_executor(None, conn.recv)) != "quit":
        _, rounds, paused = msg
        burst += 1
        subscriptions = list(devices.server.iserver.subscription_service.subscriptions.values())
        if paused:  # the changes pile up in the monitored items' queues
            for sub in subscriptions:
                await sub.set_publishing_mode(False)
        started = time.perf_counter()
        for r in range(rounds):
            t = np.array([T_BENCH + burst * 1e5 + r * 1e-3])
            for i, b in enumerate(bindings):
                values = {
                    s: np.array([burst * 1e6 + r + i * 1e-3 + j]) for j, s in enumerate(b.nodes)
                }
                await devices.update(TelemetryFrame(b.twin_id, b.twin_type, t, values))
            await asyncio.sleep(0)  # let the server publish while it produces
        elapsed = time.perf_counter() - started
        for sub in subscriptions if paused else ():
            await sub.set_publishing_mode(True)  # all of it goes out at the next tick
        conn.send(elapsed)
    await devices.stop()


# --------------------------------------------------------------------------- consumers


@dataclass
class Run:
    """One consumer's run: changes counted, wall and CPU seconds, frames (source only)."""

    changes: int
    wall_s: float
    cpu_s: float
    producer_s: float
    frames: int = 0

    @property
    def per_wall_s(self) -> float:
        return self.changes / self.wall_s

    @property
    def per_cpu_s(self) -> float:
        return self.changes / self.cpu_s


class _Discard(StatelessSinkPartition[Any]):
    def write_batch(self, items: list[Any]) -> None:
        pass


class Discard(DynamicSink[Any]):
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Discard:
        return _Discard()


def drive(
    conn: Connection,
    rounds: int,
    paused: bool,
    ready: threading.Event,
    done: threading.Event,
    rebase: Callable[[], None],
) -> tuple[float, float, float]:
    """Once the consumer is subscribed, ask for a burst; wait for all of it to arrive.

    ``rebase`` tells the consumer to count from here (the initial values have passed).
    Returns consumer wall and CPU seconds and the producer's seconds. Steady: timed from the
    request. Backlog (``paused``): timed from the moment the server resumes publishing.
    """
    if not ready.wait(30.0):
        raise RuntimeError("the consumer did not subscribe within 30 s")
    time.sleep(0.3)
    rebase()
    cpu0, t0 = time.process_time(), time.perf_counter()
    conn.send(("burst", rounds, paused))
    producer = 0.0
    if paused:
        producer = float(conn.recv())
        cpu0, t0 = time.process_time(), time.perf_counter()
    if not done.wait(180.0):
        raise RuntimeError("not all changes arrived within 180 s")
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if not paused:
        producer = float(conn.recv())
    return wall, cpu, producer


def run_source(conn: Connection, bindings: list[OpcUaBinding], rounds: int, paused: bool) -> Run:
    """(a) OpcUaSource -> count, in a Bytewax flow."""
    expected = rounds * sum(len(b.nodes) for b in bindings)
    stop, ready, done = threading.Event(), threading.Event(), threading.Event()
    counted = {"changes": 0, "frames": 0, "base": math.inf}
    source = OpcUaSource(
        bindings, max_batch_s=0.05, poll_s=0.01, stop=stop, monitored_queue_size=QUEUE
    )

    def count(item: Any) -> Any:
        if isinstance(item, TelemetryFrame):
            ready.set()
            fresh = item.times >= T_BENCH
            if fresh.any():
                n = sum(int(np.count_nonzero(~np.isnan(v[fresh]))) for v in item.signals.values())
                counted["changes"] += n
                counted["frames"] += 1
                if counted["changes"] >= counted["base"] + expected:
                    done.set()
                    stop.set()
        return item

    flow = Dataflow("bench_opcua")
    op.output("out", op.map("count", op.input("in", flow, source), count), Discard())
    result: list[tuple[float, float, float]] = []

    def rebase() -> None:
        counted["base"] = counted["changes"]

    def driver() -> None:
        result.append(drive(conn, rounds, paused, ready, done, rebase))

    t = threading.Thread(target=driver, daemon=True)
    t.start()
    run_main(flow)
    t.join()
    wall, cpu, producer = result[0]
    return Run(expected, wall, cpu, producer, counted["frames"])


def run_bare(conn: Connection, bindings: list[OpcUaBinding], rounds: int, paused: bool) -> Run:
    """(b) a bare asyncua subscription handler keeping every change."""
    from asyncua import Client

    expected = rounds * sum(len(b.nodes) for b in bindings)
    ready, done = threading.Event(), threading.Event()

    class Handler:
        def __init__(self) -> None:
            self.kept: list[tuple[Any, Any, Any, Any]] = []
            self.base = math.inf

        def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
            ready.set()
            dv = data.monitored_item.Value
            ts = dv.SourceTimestamp
            if ts is not None and ts.timestamp() >= T_BENCH:
                self.kept.append((node, val, dv.StatusCode, ts))
                if len(self.kept) >= self.base + expected:
                    done.set()

    async def consume(handler: Handler) -> None:
        async with Client(bindings[0].endpoint, timeout=10.0) as client:
            sub = await client.create_subscription(SAMPLING_MS, handler)
            nodes = [client.get_node(n) for b in bindings for n in b.nodes.values()]
            await sub.subscribe_data_change(nodes, queuesize=QUEUE, sampling_interval=SAMPLING_MS)
            while not done.is_set():
                await asyncio.sleep(0.01)
            await sub.delete()

    handler = Handler()
    result: list[tuple[float, float, float]] = []

    def rebase() -> None:
        handler.base = len(handler.kept)

    def driver() -> None:
        result.append(drive(conn, rounds, paused, ready, done, rebase))

    t = threading.Thread(target=driver, daemon=True)
    t.start()
    asyncio.run(consume(handler))
    t.join()
    wall, cpu, producer = result[0]
    return Run(expected, wall, cpu, producer)


# --------------------------------------------------------------------------- main


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--twins", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    url = f"opc.tcp://127.0.0.1:{free_port()}/bench/"
    bindings = bindings_for(args.twins, url)
    nodes = sum(len(b.nodes) for b in bindings)
    ctx = mp.get_context("spawn")
    ours, theirs = ctx.Pipe()
    server = ctx.Process(target=serve, args=(theirs, url, args.twins), daemon=True)
    server.start()
    if not ours.poll(60.0) or ours.recv() != "ready":
        raise SystemExit("the OPC UA server process did not start")
    print(
        f"{args.twins} twins x {nodes // args.twins} nodes, {args.rounds} rounds: "
        f"{nodes * args.rounds:,} data changes per run; best of {args.repeat}"
    )
    results: dict[str, dict[str, list[Run]]] = {}
    try:
        run_bare(ours, bindings, max(10, args.rounds // 10), False)  # warm-up
        for scenario, paused in (("steady", False), ("backlog", True)):
            runs = results[scenario] = {"source": [], "bare": []}
            for _ in range(args.repeat):
                runs["bare"].append(run_bare(ours, bindings, args.rounds, paused))
                runs["source"].append(run_source(ours, bindings, args.rounds, paused))
    finally:
        ours.send("quit")
        server.join(10.0)
    for scenario, runs in results.items():
        report(scenario, runs)


def report(scenario: str, runs: dict[str, list[Run]]) -> None:
    what = {
        "steady": "producer-paced: consumers take changes as the server writes them",
        "backlog": "the server holds all changes, then publishes them at once",
    }[scenario]
    print(f"\n{scenario} ({what})")
    best = {k: max(v, key=lambda r: r.per_wall_s) for k, v in runs.items()}
    cap = {k: max(r.per_cpu_s for r in v) for k, v in runs.items()}
    labels = (("source", "(a) OpcUaSource + Bytewax"), ("bare", "(b) bare asyncua handler"))
    for name, label in labels:
        r = best[name]
        producer = f"; producer {r.changes / r.producer_s:,.0f}/s" if r.producer_s else ""
        frames = f"; {r.frames:,} frames" if r.frames else ""
        print(
            f"  {label:27s} {r.per_wall_s:>9,.0f} changes/s = {r.per_wall_s:>9,.0f} readings/s; "
            f"{cap[name]:>7,.0f} changes per CPU s{producer}{frames}"
        )
    wall_ratio = best["source"].per_wall_s / best["bare"].per_wall_s
    cpu_ratio = cap["source"] / cap["bare"]
    verdict = "meets" if wall_ratio >= TARGET_RATIO else "misses"
    print(
        f"  ratio (a)/(b): {wall_ratio:.2f}x changes/s (target >= {TARGET_RATIO}x: {verdict}), "
        f"{cpu_ratio:.2f}x changes per CPU s"
    )


if __name__ == "__main__":
    main()
