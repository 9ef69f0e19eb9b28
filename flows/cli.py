"""The ``twinflow`` command line.

``twinflow demo`` runs the telemetry flow on the built-in simulated plant with no services
and no configuration, and prints a scored summary.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from twinflow.core.errors import TwinflowError
from twinflow.core.times import parse_duration
from twinflow.flows.cluster import add_cluster_arguments

#: Where ``twinflow demo`` writes unless told otherwise; each demo run replaces it.
DEMO_OUT = Path("out") / "demo"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except TwinflowError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="twinflow", description="Streaming digital twins as Bytewax dataflows."
    )
    sub = p.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="run the telemetry flow on the built-in simulated plant (no services needed)",
        description="Simulate a plant of the bundled machine types with injected faults, "
        "run it through the telemetry flow, and score detections against the ground truth.",
    )
    demo.add_argument("--twins", type=_positive_int, default=50, help="machines (default 50)")
    demo.add_argument(
        "--duration",
        type=_duration,
        default=6 * 3600.0,
        help="simulated time, e.g. 30m, 6h, 2d (default 6h)",
    )
    demo.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    demo.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"output folder (default {DEMO_OUT}, the demo's own, replaced at every run)",
    )
    demo.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the outputs an earlier run left in --out (refused without it)",
    )
    demo.add_argument(
        "--workers", type=_positive_int, default=1, help="Bytewax worker threads (default 1)"
    )
    demo.add_argument(
        "--no-telemetry",
        action="store_true",
        help="do not write raw telemetry to Parquet (window features are still written)",
    )
    demo.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        help="serve Prometheus metrics on this port at /metrics (while the demo runs)",
    )
    demo.add_argument(
        "--metrics-address",
        default="127.0.0.1",
        help="address the metrics listen on (default 127.0.0.1; 0.0.0.0: Bytewax's dataflow "
        "API, with its per-step metrics, on every interface)",
    )
    demo.add_argument("--quiet", action="store_true", help="no progress lines")

    run = sub.add_parser(
        "run",
        help="run the telemetry flow on a deployment's real sources (MQTT, OPC UA, Modbus, Kafka)",
        description="Validate the deployment file, then run the telemetry flow until stopped "
        "(Ctrl-C). Outputs go to files under --out and, when configured, to Kafka topics.",
    )
    run.add_argument("config", type=Path, help="deployment file (YAML)")
    run.add_argument("--out", type=Path, default=Path("out"), help="output folder (default out)")
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the outputs an earlier run left in --out (refused without it)",
    )
    add_cluster_arguments(run)
    _operator_options(run)
    run.add_argument(
        "--wait-for-services",
        type=_duration,
        default=0.0,
        metavar="DURATION",
        help="at start, wait this long (e.g. 30s, 5m) for unreachable services, with a "
        "countdown (default 0: report them and start; a Kafka source is required)",
    )
    run.add_argument(
        "--require-services",
        action="store_true",
        help="exit with an error when a service is still unreachable after the wait",
    )
    run.add_argument(
        "--recovery-dir",
        type=Path,
        default=None,
        help="keep Bytewax recovery snapshots here (created on first use); after a crash, the "
        "same command resumes per-twin state, models and Kafka offsets from the last snapshot",
    )
    run.add_argument(
        "--snapshot-interval",
        type=_duration,
        default=10.0,
        help="how often state is snapshotted, e.g. 2s, 1m (default 10s); a crash replays at "
        "most this much input",
    )
    run.add_argument(
        "--until-end",
        action="store_true",
        help="stop once the Kafka telemetry (and command request) topics are read to their "
        "end (a backfill) instead of waiting for more; MQTT, OPC UA and Modbus sources, and "
        "the actuators' feedback, still run until stopped",
    )

    from twinflow.flows.replay_command import add_replay_parser

    add_replay_parser(sub)

    simulate = sub.add_parser(
        "simulate",
        help="serve the simulated plant of a deployment as real MQTT, OPC UA and Modbus devices",
        description="Publish the deployment's simulated twins over their protocols and obey "
        "the commands that reach them, until the simulated duration is over or Ctrl-C.",
    )
    simulate.add_argument("config", type=Path, help="deployment file (YAML)")
    simulate.add_argument(
        "--speed",
        type=float,
        default=None,
        help="simulated seconds per wall-clock second (overrides simulator.speed)",
    )
    simulate.add_argument(
        "--duration",
        type=_duration,
        default=None,
        help="simulated time to run, e.g. 30m, 6h (overrides simulator.duration)",
    )
    simulate.add_argument("--quiet", action="store_true", help="no progress lines")
    simulate.add_argument(
        "--progress-every",
        type=_duration,
        default=5.0,
        metavar="DURATION",
        help="seconds between progress lines (default 5s)",
    )
    simulate.add_argument("--debug", action="store_true", help="log everything, with tracebacks")

    db = sub.add_parser(
        "db",
        help="database schema: apply migrations, show what is applied",
        description="Manage twinflow's PostgreSQL/TimescaleDB schema.",
    )
    db_sub = db.add_subparsers(dest="db_command", required=True)
    for name, text in (
        ("migrate", "apply pending migrations (idempotent)"),
        ("status", "show applied and pending migrations and the storage path (exit 1 if behind)"),
    ):
        c = db_sub.add_parser(name, help=text, description=text)
        c.add_argument(
            "--url", default=None, help="PostgreSQL URL (default: the DATABASE_URL variable)"
        )
        c.add_argument(
            "--allow-insecure",
            action="store_true",
            help="allow a password without sslmode require, verify-ca or verify-full",
        )

    models = sub.add_parser(
        "models",
        help="twin models (DTDL v3): check model files",
        description="Work with the DTDL v3 Interfaces that define twin types.",
    )
    models_sub = models.add_subparsers(dest="models_command", required=True)
    check = models_sub.add_parser(
        "check",
        help="validate DTDL v3 files and folders (exit 0 only when all are valid)",
        description="Parse DTDL v3 model files together (folders are searched for *.json) and "
        "print every problem as 'file: element: rule: message'. Exit status: 0 when all are "
        "valid, 1 when any is invalid, 2 on a usage error such as a missing path.",
    )
    check.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="file or folder")

    from twinflow.flows.compact import add_compact_parser
    from twinflow.flows.report import add_report_parser

    add_report_parser(sub)
    add_compact_parser(sub)
    from twinflow.flows.plan import add_plan_parser
    from twinflow.flows.whatif import add_whatif_parser

    add_plan_parser(sub)
    add_whatif_parser(sub)
    return p


def _operator_options(p: argparse.ArgumentParser) -> None:
    """Metrics, progress and logging options of the long-running commands."""
    p.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        help="serve Prometheus metrics on this port at /metrics",
    )
    p.add_argument(
        "--metrics-address",
        default="127.0.0.1",
        help="address the metrics listen on (default 127.0.0.1); 0.0.0.0 serves Bytewax's "
        "dataflow API instead, which adds Bytewax's per-step metrics and listens on every "
        "interface",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument(
        "--progress-every",
        type=_duration,
        default=5.0,
        metavar="DURATION",
        help="seconds between progress lines (default 5s)",
    )
    p.add_argument("--debug", action="store_true", help="log everything, with tracebacks")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    os.umask(0o077)  # outputs, recovery state and summaries are their owner's alone
    undo_logging = None
    if args.command in ("run", "simulate", "replay"):
        from twinflow.flows.logs import setup_logging

        undo_logging = setup_logging(debug=args.debug)
    try:
        return _command(args)
    except TwinflowError as exc:
        print(f"twinflow: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if undo_logging is not None:
            undo_logging()


def _command(args: argparse.Namespace) -> int:
    """Run the parsed subcommand; its exit status."""
    if args.command == "demo":
        return _demo(args)
    if args.command == "run":
        return _run(args)
    if args.command == "simulate":
        return _simulate(args)
    if args.command == "replay":
        return _replay(args)
    if args.command == "db":
        return _db(args)
    if args.command == "models":
        return _models(args)
    if args.command == "plan":
        from twinflow.flows.plan import run_plan

        return run_plan(args)
    if args.command == "whatif":
        from twinflow.flows.whatif import run_whatif

        return run_whatif(args)
    if args.command == "report":
        from twinflow.flows.report import run_report

        return run_report(args)
    if args.command == "compact":
        from twinflow.flows.compact import run_compact

        return run_compact(args)
    return 1


def _demo(args: argparse.Namespace) -> int:
    import threading

    from twinflow.flows.operate import start_metrics
    from twinflow.flows.shutdown import stop_on_signals

    start_metrics(args.metrics_port, args.metrics_address)
    from twinflow.flows.demo import render, run_demo
    from twinflow.flows.outputs import prepare_out

    if args.out is None:  # the demo's own folder: its previous outputs are the demo's too
        args.out, args.overwrite = DEMO_OUT, True
    prepare_out(args.out, overwrite=args.overwrite)
    print(
        f"twinflow demo: {args.twins} twins, {args.duration / 3600:.2f} h simulated, "
        f"seed {args.seed}, output in {args.out}/",
        file=sys.stderr,
    )
    stop = threading.Event()
    with stop_on_signals(stop):
        summary = run_demo(
            twins=args.twins,
            duration_s=args.duration,
            seed=args.seed,
            out_dir=args.out,
            workers=args.workers,
            write_telemetry=not args.no_telemetry,
            progress=None if args.quiet else sys.stderr,
            stop=stop,
        )
    if stop.is_set():
        print("twinflow demo: stopped by a signal; the summary scores what was simulated")
    print(render(summary))
    print(f"\nwrote {args.out}/summary.json and the outputs beside it")
    print(f"report: {summary['report']}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from twinflow.flows.operate import run_command

    return run_command(args)


def _replay(args: argparse.Namespace) -> int:
    from twinflow.flows.replay_command import replay_command

    return replay_command(args)


def _simulate(args: argparse.Namespace) -> int:
    from twinflow.flows.operate import simulate_command

    return simulate_command(args)


def _db(args: argparse.Namespace) -> int:
    import os

    from twinflow.connectors.postgres import migrate, status
    from twinflow.core.errors import ConfigError
    from twinflow.core.pgurl import ENCRYPTED, has_password, sslmode_of
    from twinflow.core.transport import refuse_plain_password

    url = args.url or os.environ.get("DATABASE_URL")
    if not url:
        raise ConfigError("no database: pass --url or set DATABASE_URL")
    refuse_plain_password(
        "twinflow db: --url (or DATABASE_URL)",
        password=has_password(url),
        encrypted=sslmode_of(url, os.environ) in ENCRYPTED,
        allow_insecure=args.allow_insecure,
        fix="add sslmode=verify-full to the URL (or set PGSSLMODE)",
    )
    if args.db_command == "migrate":
        applied = migrate(url)
        for m in applied:
            print(f"applied {m}")
        if not applied:
            print("nothing to apply: the schema is up to date")
        return 0
    report = status(url)
    print(report)
    return 0 if report.up_to_date else 1


def _models(args: argparse.Namespace) -> int:
    from twinflow.flows.models_check import check_models

    return check_models(args.paths)


if __name__ == "__main__":
    raise SystemExit(main())
