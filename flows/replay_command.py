"""``twinflow replay``: its options and the command (the flow is :mod:`twinflow.flows.replay`)."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from twinflow.flows.cluster import add_cluster_arguments, cluster_from
from twinflow.flows.shutdown import stop_on_signals


def add_replay_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``replay`` to the ``twinflow`` command's subparsers."""
    replay = sub.add_parser(
        "replay",
        help="run recorded data (CSV, Parquet) through the telemetry flow in event time",
        description="Replay recorded telemetry of a deployment's twins through the telemetry "
        "flow as fast as the machine allows, the data's own clock driving windows and "
        "time-outs; optionally score the run against labels or a faults file.",
    )
    replay.add_argument("config", type=Path, help="deployment file (YAML): twins and types")
    replay.add_argument("data", type=Path, nargs="+", metavar="DATA", help="CSV or Parquet files")
    replay.add_argument("--out", type=Path, default=Path("out"), help="output folder (default out)")
    replay.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the outputs an earlier run left in --out (refused without it)",
    )
    replay.add_argument("--spec", type=Path, default=None, help="replay description (YAML)")
    replay.add_argument("--format", choices=("wide", "long"), default=None, help="layout")
    replay.add_argument("--time-column", default=None, help="time column (default time)")
    replay.add_argument(
        "--time-unit", choices=("iso", "s", "ms"), default=None, help="iso text or epoch s/ms"
    )
    replay.add_argument("--tz", default=None, help="zone of times without an offset, e.g. UTC")
    replay.add_argument("--twin-column", default=None, help="twin id column (default twin_id)")
    replay.add_argument("--twin", default=None, help="the twin of files without a twin column")
    replay.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="COLUMN=SIGNAL[:SCALE[:OFFSET]]",
        help="map a column to a signal (repeatable)",
    )
    truth = replay.add_mutually_exclusive_group()
    truth.add_argument("--labels", default=None, metavar="COLUMN", help="anomaly label column")
    truth.add_argument("--faults", type=Path, default=None, help="faults file to score against")
    replay.add_argument(
        "--history",
        type=Path,
        action="append",
        default=None,
        metavar="DIR",
        help="output folder of an earlier replay of run-to-failure data scored with --faults; "
        "learns each type's failure level for the health index (repeatable)",
    )
    add_cluster_arguments(replay)
    replay.add_argument("--no-telemetry", action="store_true", help="no raw-telemetry Parquet")
    replay.add_argument("--quiet", action="store_true", help="no progress lines")
    replay.add_argument("--debug", action="store_true", help="log everything, with tracebacks")


def replay_command(args: argparse.Namespace) -> int:
    """``twinflow replay``: Ctrl-C or SIGTERM ends the reading; what was read is written and
    summarised."""
    from twinflow.connectors.recorded.spec import load_spec, parse_map
    from twinflow.flows.deploy import load_deployment
    from twinflow.flows.outputs import prepare_out
    from twinflow.flows.replay import run_replay

    flags: dict[str, object] = {}
    time_flags = {"column": args.time_column, "unit": args.time_unit, "zone": args.tz}
    if any(v is not None for v in time_flags.values()):
        flags["time"] = {k: v for k, v in time_flags.items() if v is not None}
    for key, value in (
        ("format", args.format),
        ("twin_column", args.twin_column),
        ("twin", args.twin),
        ("label_column", args.labels),
    ):
        if value is not None:
            flags[key] = value
    if args.map:
        flags["columns"] = dict(parse_map(m) for m in args.map)
    dep = load_deployment(args.config)
    cluster = cluster_from(args)
    spec = load_spec(args.spec, flags, deployment=args.config)
    prepare_out(args.out, overwrite=args.overwrite)
    if not args.quiet:
        print(
            f"twinflow replay: {len(args.data)} file(s) for {len(dep.twins)} twins; output in "
            f"{args.out}/",
            file=sys.stderr,
        )
    stop = threading.Event()
    with stop_on_signals(stop):
        summary = run_replay(
            dep,
            list(args.data),
            spec,
            args.out,
            workers=cluster.workers_per_process,
            cluster=cluster,
            faults=args.faults,
            history=args.history,
            write_telemetry=not args.no_telemetry,
            progress=None if args.quiet else sys.stderr,
            stop=stop,
        )
    if stop.is_set():
        print("twinflow replay: stopped by a signal; the summary covers what was read")
    print(
        f"replayed {summary['rows']:,} rows, {summary['readings']:,} readings in "
        f"{summary['wall_seconds']:.1f} s ({summary['readings_per_second'] or 0:,}/s); "
        f"{summary['alerts']} alerts, {summary['dead_letters']:,} dead letters"
    )
    scores = summary.get("scores")
    if scores:
        e, pw = scores["eventwise"], scores["pointwise"]
        print(
            f"  events {e['detected']}/{e['events']} detected; event-wise P/R/F1 "
            f"{e['precision']}/{e['recall']}/{e['f1']}; point-wise {pw['precision']}/"
            f"{pw['recall']}/{pw['f1']}; false alarms/day {scores['false_alarms_per_day']}"
        )
    print(f"wrote {args.out}/summary.json and the outputs beside it")
    return 0
