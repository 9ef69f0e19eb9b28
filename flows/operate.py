"""``twinflow run`` and ``twinflow simulate`` as an operator meets them.

Both check what they need at start, print a progress line every few seconds, stop cleanly
on Ctrl-C or SIGTERM (the sources end, the outputs flush, exit status 0) and close with a
summary. ``twinflow run`` probes its services first (:mod:`twinflow.flows.startup`) and
serves its metrics on the documented address (:func:`start_metrics`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from dataclasses import replace

from twinflow.core.errors import ConfigError, TwinflowError
from twinflow.flows.metrics import RunStats
from twinflow.flows.progress import Progress, summary_lines
from twinflow.flows.shutdown import stop_on_signals


def start_metrics(port: int | None, address: str) -> None:
    """Serve ``/metrics`` on ``address:port``: twinflow's own server on a given address, or,
    with ``0.0.0.0``, Bytewax's dataflow API (which always listens on every interface) with
    Bytewax's per-step metrics added."""
    if port is None:
        return
    from twinflow.flows.metrics import enable_dataflow_api, serve_metrics

    if address == "0.0.0.0":
        enable_dataflow_api(port)
    else:
        try:
            serve_metrics(port, address)
        except OSError as exc:  # the port is taken, the address is not this machine's
            raise ConfigError(
                f"cannot serve metrics on {address}:{port}: {exc.strerror or exc}; choose "
                "another --metrics-port or --metrics-address"
            ) from None
    print(f"metrics: http://{address}:{port}/metrics", file=sys.stderr)


def bytewax_error(exc: BaseException) -> TwinflowError | None:
    """The twinflow error behind an exception Bytewax raised from a step, if any."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, TwinflowError):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def run_command(args: argparse.Namespace) -> int:
    """``twinflow run``: checks, progress, a clean stop, a summary."""
    from bytewax.run import cli_main

    from twinflow.flows.cluster import cluster_from, cluster_recovery
    from twinflow.flows.deploy import load_deployment
    from twinflow.flows.outputs import prepare_out
    from twinflow.flows.recovery import partitions_in
    from twinflow.flows.run import Watch, deployment_flow, epoch_interval, settle_heap
    from twinflow.flows.startup import check_services

    dep = load_deployment(args.config)
    cluster = cluster_from(args)
    resuming = args.recovery_dir is not None and partitions_in(args.recovery_dir) > 0
    prepare_out(args.out, overwrite=args.overwrite, resuming=resuming)  # refusals come first
    watch = Watch()
    with stop_on_signals(watch.stop):
        check_services(
            dep,
            sys.stderr,
            wait_s=args.wait_for_services,
            require=args.require_services,
            stop=watch.stop.is_set,
        )
        if watch.stop.is_set():
            print("twinflow run: stopped before the flow started", file=sys.stderr)
            return 0
        start_metrics(args.metrics_port, args.metrics_address)
        limits = (
            {"kafka": {"tail": False}, "requests": {"tail": False}, "replication": {"settle": True}}
            if args.until_end
            else None
        )
        stats = RunStats()
        flow = deployment_flow(
            dep, args.out, limits=limits, stats=stats, watch=watch, cluster=cluster
        )
        recovery = None
        if args.recovery_dir is not None:
            recovery = cluster_recovery(args.recovery_dir, cluster)
        protocols = sorted({t.protocol for t in dep.twins})
        print(
            f"twinflow run: {len(dep.twins)} twins over {', '.join(protocols)}; output in "
            f"{args.out}/"
            + (f"; Kafka at {dep.kafka.bootstrap}" if dep.kafka else "")
            + (f"; recovery in {args.recovery_dir}/" if recovery else "")
            + (f"; {cluster.describe()}" if cluster.processes > 1 else "")
            + "; Ctrl-C stops",
            file=sys.stderr,
        )
        progress = None
        if not args.quiet:
            progress = Progress(stats, sys.stderr, observer=watch.observer, lag=watch.lag,
                                every_s=args.progress_every)  # fmt: skip
            progress.start()
        watch.lag.start()
        settle_heap()
        t0 = time.monotonic()
        try:
            cli_main(  # type: ignore[no-untyped-call]  # bytewax.run's stub has no annotations
                flow,
                **cluster.main_kwargs(),
                epoch_interval=epoch_interval(args.snapshot_interval, recovery is not None),
                recovery_config=recovery,
            )
        except Exception as exc:
            cause = bytewax_error(exc)
            if cause is None or args.debug:
                raise
            raise cause from None  # the command line prints its message, no traceback
        finally:
            watch.lag.stop()
            if progress is not None:
                progress.finish()
        wall = time.monotonic() - t0
    stopped = "a signal" if watch.stop.is_set() else None
    for line in summary_lines("twinflow run", stats, wall, observer=watch.observer,
                              lag=watch.lag, stopped_by=stopped):  # fmt: skip
        print(line, file=sys.stderr)
    return 0


def simulate_command(args: argparse.Namespace) -> int:
    """``twinflow simulate``: the devices, a progress line, a clean stop, a summary."""
    from twinflow.connectors.simulator import Plant
    from twinflow.flows.deploy import load_deployment
    from twinflow.flows.simulate import simulate

    dep = load_deployment(args.config)
    sim = dep.simulator
    if args.speed is not None:
        if not args.speed > 0:
            raise ConfigError(
                f"--speed must be a number of simulated seconds per second above 0, got "
                f"{args.speed:g}"
            )
        sim = replace(sim, speed=args.speed)
    if args.duration is not None:
        sim = replace(sim, duration_s=args.duration)
    dep = replace(dep, simulator=sim)
    from twinflow.flows.startup import check_services

    check_services(dep, sys.stderr, only=("MQTT broker",))  # the devices it serves are its own
    print(
        f"twinflow simulate: {len(dep.twins)} twins of a {sim.twins}-twin plant (seed "
        f"{sim.seed}), {sim.duration_s / 3600:.2f} h at {sim.speed:g}x real time; Ctrl-C stops",
        file=sys.stderr,
    )
    stats = RunStats()
    plants: list[Plant] = []
    sim_now: list[float] = []

    def started(plant: Plant) -> None:
        plants.append(plant)
        print("  devices up; injected faults of the deployed twins:", file=sys.stderr)
        for f in plant.faults:
            if f.twin_id in dep.twin_types:
                print(
                    f"    {f.twin_id} {f.kind}: onset {f.onset:%Y-%m-%d %H:%M:%S}Z, failure "
                    f"{f.failure:%H:%M:%S}Z (simulated time)",
                    file=sys.stderr,
                )

    def reached() -> str:
        if not plants or not sim_now:
            return "starting"
        start = plants[0].config.start.timestamp()
        done = (sim_now[-1] - start) / 3600
        obeyed = sum(1 for r in plants[0].command_log if r.accepted)
        return f"sim {done:.2f}/{sim.duration_s / 3600:.2f} h | commands obeyed {obeyed}"

    stop = threading.Event()
    progress = None if args.quiet else Progress(stats, sys.stderr, extra=reached, flow=False,
                                                 every_s=args.progress_every)  # fmt: skip
    t0 = time.monotonic()
    with stop_on_signals(stop):
        if progress is not None:
            progress.start()
        try:
            asyncio.run(simulate(dep, stop=stop, on_start=started, stats=stats,
                                 on_chunk=lambda t: _keep_last(sim_now, t)))  # fmt: skip
        finally:
            if progress is not None:
                progress.finish()
    wall = time.monotonic() - t0
    log = plants[0].command_log if plants else []
    accepted = sum(1 for r in log if r.accepted)
    print(
        f"twinflow simulate {'stopped by a signal' if stop.is_set() else 'ended'} after "
        f"{wall:,.1f} s: {stats.readings:,} readings published in {stats.frames:,} frames; "
        f"{len(log)} commands received, {accepted} obeyed",
        file=sys.stderr,
    )
    return 0


def _keep_last(box: list[float], value: float) -> None:
    if box:
        box[0] = value
    else:
        box.append(value)
