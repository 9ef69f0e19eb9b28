"""``twinflow replay DEPLOYMENT DATA... --out DIR``: recorded data through the telemetry flow.

The deployment names the twins and their types; the files (CSV or Parquet, wide or long, see
:mod:`twinflow.connectors.recorded`) are read in batches into frames and go through
:func:`~twinflow.flows.telemetry.build_flow` as in ``twinflow run``, with the same outputs
(:func:`~twinflow.flows.run.outputs_for`). The reference clock is the data's own: the latest
event time read. A recording cannot be commanded, so no twin has an actuator route: commands
are written to the commands stream and not followed. With labels or a faults file the run is
scored into ``summary.json`` (:mod:`twinflow.flows.scoring`).
"""

from __future__ import annotations

import inspect
import json
import sys
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import polars as pl
from bytewax.run import cli_main

from twinflow.connectors.files import read_jsonl, read_parquet_dir
from twinflow.connectors.recorded.source import ReplaySource
from twinflow.connectors.recorded.spec import ReplaySpec
from twinflow.core.errors import ConfigError
from twinflow.core.records import FaultTruth
from twinflow.core.times import iso, utc
from twinflow.flows.cluster import Cluster, replay_source
from twinflow.flows.deployment import Deployment
from twinflow.flows.faults_file import load_faults
from twinflow.flows.metrics import RunStats
from twinflow.flows.run import outputs_for
from twinflow.flows.scoring import learn_failure_levels
from twinflow.flows.shutdown import stoppable
from twinflow.flows.telemetry import build_flow
from twinflow.models.learned_index import LearnedHealth, Unit, learn_health
from twinflow.models.similarity import Trajectory, trajectory
from twinflow.operators.catalog import TwinType
from twinflow.operators.health_profile import (
    with_learned_failure,
    with_learned_index,
    with_learned_trajectories,
)


def nowhere(_twin_id: str) -> bool:
    """No twin of a replay has an actuator route."""
    return False


def learn_trajectories(history: Path | Sequence[Path]) -> dict[str, tuple[Trajectory, ...]]:
    """Per twin type, the anomaly-score health index each failed twin of earlier replays
    scored with a faults file followed to its failure (log scale; folders already checked
    by :func:`~twinflow.flows.scoring.learn_failure_levels`)."""
    out: dict[str, list[Trajectory]] = {}
    for folder in [history] if isinstance(history, Path) else list(history):
        events = json.loads((folder / "summary.json").read_text())["scores"]["events"]
        windows = read_parquet_dir(folder / "windows")
        if windows.is_empty() or "anomaly_threshold" not in windows.columns:
            continue
        for e in events:
            rows = windows.filter(
                (pl.col("twin_id") == e["twin_id"]) & (pl.col("anomaly_threshold") > 0)
            ).sort("end")
            if rows.is_empty():
                continue
            hours = rows["end"].dt.epoch("us").to_numpy() / 3.6e9
            index = (rows["anomaly_score"] / rows["anomaly_threshold"]).to_numpy()
            failure = datetime.fromisoformat(e["failure"]).timestamp() / 3600.0
            got = trajectory(hours, index, failure, log=True)
            if got is not None:
                out.setdefault(str(rows["twin_type"][-1]), []).append(got)
    return {kind: tuple(v) for kind, v in out.items()}


def learn_index(
    history: Path | Sequence[Path], signals: Mapping[str, Collection[str]] | None = None
) -> dict[str, LearnedHealth]:
    """Per twin type, a health index learned from the failed twins of earlier replays
    scored with a faults file (:func:`~twinflow.models.learned_index.learn_health`): their
    windows' signal means (the ``<signal>.mean`` features present in >= 90 % of every
    unit's windows; ``signals``: type -> its signals, others left out) regressed on the
    elapsed share of the degradation from the fault's onset to its failure (and one index
    per failure mode, the faults' ``kind``, when they name several), with their courses and
    interval calibration (leave-one-out on these units)."""
    frames: dict[str, list[tuple[pl.DataFrame, float, float, str]]] = {}
    for folder in [history] if isinstance(history, Path) else list(history):
        events = json.loads((folder / "summary.json").read_text())["scores"]["events"]
        windows = read_parquet_dir(folder / "windows")
        for e in events if not windows.is_empty() else ():
            rows = windows.filter(pl.col("twin_id") == e["twin_id"]).sort("end")
            if rows.height >= 4 and e.get("onset") and e.get("failure"):
                on, fail = (datetime.fromisoformat(e[k]).timestamp() / 3600.0
                            for k in ("onset", "failure"))  # fmt: skip
                kind = str(e.get("kind") or "")
                frames.setdefault(str(rows["twin_type"][-1]), []).append((rows, on, fail, kind))
    out: dict[str, LearnedHealth] = {}
    for kind, units in frames.items():
        known = None if signals is None else signals.get(kind, ())
        names = sorted(
            set.intersection(*(
                {c for c in rows.columns if c.endswith(".mean")
                 and (known is None or c.removesuffix(".mean") in known)
                 and rows[c].dtype.is_float() and rows[c].null_count() <= 0.1 * rows.height}
                for rows, _, _, _ in units
            ))
        )  # fmt: skip
        if not names:
            continue
        fit: list[Unit] = [
            (
                rows["end"].dt.epoch("us").to_numpy() / 3.6e9,
                rows.select(names).fill_null(float("nan")).to_numpy(),
                on,
                fail,
            )
            for rows, on, fail, _ in units
        ]
        got = learn_health(fit, names, [m for *_, m in units])
        if got is not None:
            out[kind] = got
    return out


def replay_types(dep: Deployment, source: ReplaySource, spec: ReplaySpec) -> dict[str, TwinType]:
    """Each twin's deployed type limited to the signals the recording carries for it (as a
    binding limits it), so state and windows expect only those."""
    deployed = dep.deployed_types()
    known = {s.name for t in deployed.values() for s in t.signals}
    for column, m in spec.columns.items():
        if m.signal not in known:
            raise ConfigError(
                f"{spec.where}: replay.columns.{column}.signal = {m.signal!r}: no twin type of "
                f"the deployment has this signal (known: {', '.join(sorted(known))})"
            )
    carried: dict[str, set[str]] = {}
    for reader in source.readers:
        for twin, signals in reader.signals_by_twin().items():
            carried.setdefault(twin, set()).update(signals)
    out = dict(deployed)
    for twin, signals in carried.items():
        t = deployed.get(twin)
        kept = tuple(s for s in t.signals if s.name in signals) if t else ()
        if t is not None and kept:
            out[twin] = replace(t, signals=kept)
    return out


def _catalog(dep: Deployment) -> dict[str, Any]:
    """``catalog=`` for :func:`build_flow` when both know a deployment's own twin types (the
    file-defined types land beside this module; until then the bundled catalogue serves)."""
    types = getattr(dep, "types", None)
    if types is None or "catalog" not in inspect.signature(build_flow).parameters:
        return {}
    return {"catalog": types}


class _Ticker(threading.Thread):
    """One progress line every ``every`` seconds: rows, readings/s, event time reached."""

    def __init__(self, source: ReplaySource, stream: TextIO, every: float = 2.0) -> None:
        super().__init__(daemon=True, name="twinflow-replay-progress")
        self.source, self.stream, self.every = source, stream, every
        self.stop = threading.Event()
        self.t0 = time.perf_counter()

    def line(self) -> str:
        p = self.source.progress
        wall = time.perf_counter() - self.t0
        rate = p.readings / wall if wall > 0 else 0.0
        reached = iso(utc(self.source.clock())) if p.readings else "-"
        return (
            f"  rows {p.rows:,} | readings {p.readings:,} | {rate / 1e3:,.0f} k/s | "
            f"event time {reached} | dead letters {p.dead_letters:,}"
        )

    def run(self) -> None:
        while not self.stop.wait(self.every):
            print(self.line(), file=self.stream, flush=True)


def run_replay(
    dep: Deployment,
    files: list[Path],
    spec: ReplaySpec,
    out_dir: Path,
    *,
    workers: int = 1,
    cluster: Cluster | None = None,
    faults: Path | None = None,
    history: Path | Sequence[Path] | None = None,
    similarity: bool = True,
    write_telemetry: bool = True,
    progress: TextIO | None = sys.stderr,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """Replay ``files`` through the deployment's flow; return (and write) the summary.

    In a ``cluster`` of several processes, each process reads the files Bytewax assigns it
    and summarises its own share (see :mod:`twinflow.flows.cluster`). ``history`` is the
    output folder (or folders) of earlier replays of run-to-failure data scored with a
    faults file: the health index each twin type reached at failure there, by the signal
    that drove it, becomes its failure level here
    (:func:`twinflow.flows.scoring.learn_failure_levels`), and with ``similarity`` the
    trajectories its twins followed to failure give the RUL (:func:`learn_trajectories`,
    :mod:`twinflow.models.similarity`), of a health index learned from their signals
    (:func:`learn_index`) where one could be learned. Setting ``stop`` (e.g. from a
    signal handler) ends the reading early; the outputs and the summary cover what was
    read."""
    out_dir.mkdir(parents=True, exist_ok=True)
    truth = load_faults(faults, spec.zone) if faults is not None else None
    learned = learn_failure_levels(history) if history is not None else {}
    library = learn_trajectories(history) if history is not None and similarity else {}
    signals = {t.name: {s.name for s in t.signals} for t in dep.deployed_types().values()}
    indexes = learn_index(history, signals) if history is not None and similarity else {}
    cluster = cluster or Cluster(workers)
    if cluster.processes > 1 and (faults is not None or spec.label_column):
        raise ConfigError(
            "twinflow replay: scoring (--faults, --labels) needs the outputs of every twin in "
            "one place, and each process of a cluster writes only its share; replay in one "
            "process (more threads with --workers-per-process) to score"
        )
    source = replay_source(files, spec, dep.deployed_types(), cluster, dep.flow.max_past_s / 4)
    types = {
        twin: with_learned_failure(t, learned[t.name]) if t.name in learned else t
        for twin, t in replay_types(dep, source, spec).items()
    }
    types = {
        twin: with_learned_trajectories(t, library[t.name]) if t.name in library else t
        for twin, t in types.items()
    }
    types = {
        twin: with_learned_index(t, indexes[t.name]) if t.name in indexes else t
        for twin, t in types.items()
    }
    config = replace(
        dep.flow,
        out_dir=out_dir,
        write_telemetry=write_telemetry and dep.flow.write_telemetry,
        sink_partitions=max(dep.flow.sink_partitions, cluster.workers),
    )
    run_dep = replace(dep, flow=config)
    stats = RunStats()
    flow = build_flow(
        stoppable(source, stop) if stop is not None else source,
        outputs_for(run_dep, out_dir, None, cluster),
        config,
        clock=source.clock,
        twins=dep.twin_types,
        twin_types=types,
        stats=stats,
        flow_id="twinflow-replay",
        routed=nowhere,
        registry=dep.registry(),
        **_catalog(dep),
    )
    ticker = _Ticker(source, progress) if progress is not None else None
    if ticker is not None:
        ticker.start()
    t0 = time.perf_counter()
    try:
        cli_main(flow, **cluster.main_kwargs())  # type: ignore[no-untyped-call]
    except Exception:
        if source.error is not None:
            raise source.error from None
        raise
    finally:
        wall = time.perf_counter() - t0
        if ticker is not None:
            ticker.stop.set()
    if ticker is not None:
        print(ticker.line(), file=progress, flush=True)
    summary = summarise_replay(source, stats, wall, out_dir, spec, truth, dep.flow.window_s)
    if history is not None:
        summary["learned_failure_levels"] = {
            kind: {
                k: {"level": round(v, 4), "log_spread": round(sd, 4)} for k, (v, sd) in got.items()
            }
            for kind, got in learned.items()
        }
        summary["learned_trajectories"] = {kind: len(v) for kind, v in library.items()}
        summary["learned_index"] = {
            kind: {"features": list(v.index.names), "units": len(v.library),
                   "modes": list(v.mode_names),
                   "interval": v.calibration.to_json() if v.calibration else None}
            for kind, v in indexes.items()
        }  # fmt: skip
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def summarise_replay(
    source: ReplaySource,
    stats: RunStats,
    wall: float,
    out_dir: Path,
    spec: ReplaySpec,
    faults: list[FaultTruth] | None,
    window_s: float,
) -> dict[str, Any]:
    """The run's figures and, with labels or faults, its scores."""
    from collections import Counter

    from twinflow.flows.scoring import score_events

    alerts = read_jsonl(out_dir / "alerts.jsonl")
    raised = [a for a in alerts if a["state"] == "raised"]
    windows = read_parquet_dir(out_dir / "windows")
    first: datetime | None = None
    last: datetime | None = None
    if not windows.is_empty():
        first, last = windows["start"].min(), windows["end"].max()  # type: ignore[assignment]
    days = (last - first).total_seconds() / 86400.0 if first and last else 0.0
    p = source.progress
    out: dict[str, Any] = {
        "files": [str(r.path) for r in source.readers],
        "rows": p.rows,
        "readings": stats.readings,
        "wall_seconds": round(wall, 3),
        "readings_per_second": round(stats.readings / wall) if wall > 0 else None,
        "event_time": {"first": iso(first), "last": iso(last)},
        "windows": stats.windows,
        "alerts": len(raised),
        "alerts_by_rule": dict(sorted(Counter(a["rule"] for a in raised).items())),
        "alerts_by_diagnosis": dict(
            sorted(Counter(str(a.get("diagnosis")) for a in raised).items())
        ),
        "dead_letters": stats.dead_letters,
        "late_readings": stats.late_readings,
    }
    scored = set(windows["twin_id"].unique().to_list()) if not windows.is_empty() else set()
    if faults is not None:
        out["scores"] = score_events(
            events=faults,
            alerts=alerts,
            windows=windows,
            twins=scored,
            days=days,
            failures=True,
            grace_s=window_s,
        )
    elif spec.label_column:
        runs = source.label_runs()
        events = [
            FaultTruth(twin, "labelled", utc(a), utc(b))
            for twin, spans in sorted(runs.items())
            for a, b in spans
        ]
        out["scores"] = score_events(
            events=events,
            alerts=alerts,
            windows=windows,
            twins=scored & source.labelled_twins(),
            days=days,
            failures=False,
            grace_s=window_s,
        )
    return out


__all__ = ["replay_types", "run_replay", "summarise_replay"]
