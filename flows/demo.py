"""``twinflow demo``: the telemetry flow on the built-in simulated plant, no services needed.

The simulator is the source; the flow's commands go back to it (closing the loop); every
output lands in files under ``out_dir``; the run ends with a scored summary.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

import polars as pl
from bytewax.run import cli_main

from twinflow.connectors.feedback import CommandFeedback, CommandFeedbackSource
from twinflow.connectors.files import read_jsonl, read_parquet_dir
from twinflow.connectors.simulator import (
    Plant,
    PlantConfig,
    SimulatedPlantSource,
    SimulatorCommandSink,
)
from twinflow.core.errors import DecodeError
from twinflow.core.records import RawMessage
from twinflow.flows.config import FlowConfig
from twinflow.flows.evaluation import render, summarise
from twinflow.flows.metrics import RunStats
from twinflow.flows.observe import Observer, per_reading_rules
from twinflow.flows.outputs import file_outputs, telemetry_columns
from twinflow.flows.shutdown import stoppable
from twinflow.flows.telemetry import build_flow
from twinflow.operators.catalog import CATALOG
from twinflow.operators.decode import decode
from twinflow.operators.registry import TwinRegistry

#: The site the demo's simulated twins belong to (for roll-ups).
DEMO_SITE = "demo-site"


class _Progress(threading.Thread):
    """Prints one progress line every ``every`` seconds while the flow runs."""

    def __init__(self, plant: Plant, stats: RunStats, stream: TextIO, every: float = 2.0):
        super().__init__(daemon=True, name="twinflow-progress")
        self.plant, self.stats, self.stream, self.every = plant, stats, stream, every
        self.stop = threading.Event()
        self.t0 = time.perf_counter()

    def line(self) -> str:
        cfg = self.plant.config
        done = max(0.0, self.plant.now() - cfg.start.timestamp())
        wall = time.perf_counter() - self.t0
        s = self.stats
        rate = s.readings / wall if wall > 0 else 0.0
        return (
            f"  sim {done / 3600:5.2f}/{cfg.duration_s / 3600:.2f} h | readings "
            f"{s.readings / 1e6:7.2f} M | {rate / 1e3:6.0f} k/s | windows {s.windows:6d} | "
            f"alerts {sum(v for k, v in s.alerts.items() if k.endswith(':raised')):4d} | "
            f"commands {sum(v for k, v in s.commands.items() if k.endswith(':queued')):3d} | "
            f"dead letters {s.dead_letters:5d}"
        )

    def run(self) -> None:
        while not self.stop.wait(self.every):
            print(self.line(), file=self.stream, flush=True)


def run_demo(
    *,
    twins: int = 50,
    duration_s: float = 6 * 3600.0,
    seed: int = 7,
    out_dir: Path = Path("out"),
    workers: int = 1,
    write_telemetry: bool = True,
    progress: TextIO | None = sys.stderr,
    flow_config: FlowConfig | None = None,
    plant_overrides: dict[str, Any] | None = None,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """Run the simulated plant through the telemetry flow and return the summary.

    Setting ``stop`` (e.g. from a signal handler) ends the simulated plant early; the flow
    drains and the summary scores what was simulated. The alerts, commands and dead letters
    written are observed for the metrics of :mod:`twinflow.flows.observe`.
    """
    plant = Plant(
        PlantConfig(n_twins=twins, duration_s=duration_s, seed=seed, **(plant_overrides or {}))
    )
    base = flow_config or FlowConfig()
    config = replace(
        base,
        out_dir=Path(out_dir),
        seed=seed,
        write_telemetry=write_telemetry,
        sink_partitions=max(base.sink_partitions, workers),
        # The simulated clock runs about a thousand times faster than wall time, and a
        # derate shows in the reported power limit only a chunk (60 s simulated) later.
        command_timeout_s=max(base.command_timeout_s, 3600.0),
    )
    stats = RunStats()
    feedback = CommandFeedback()
    source = SimulatedPlantSource(plant, partitions=max(4, workers))
    observer = Observer(clock=time.time)
    kinds = {twin_id: CATALOG[name] for twin_id, name in plant.twins}
    observer.judge_by(config.lateness_s, per_reading_rules(kinds))
    outputs = observer.outputs(
        file_outputs(config, actuators=SimulatorCommandSink(plant, feedback))
    )
    stop = stop if stop is not None else threading.Event()
    flow = build_flow(
        stoppable(source, stop, _arrivals(observer)),
        outputs,
        config,
        clock=plant.now,
        twins=dict(plant.twins),
        stats=stats,
        feedback=stoppable(CommandFeedbackSource(feedback, until=source.done), stop),
        registry=TwinRegistry.flat(DEMO_SITE, dict(plant.twins)),
    )
    ticker = _Progress(plant, stats, progress) if progress is not None else None
    if ticker is not None:
        ticker.start()
    t0 = time.perf_counter()
    try:
        # Bytewax's production runner; it also serves the dataflow API (/metrics) when
        # BYTEWAX_DATAFLOW_API_ENABLED is set.
        cli_main(flow, workers_per_process=workers)  # type: ignore[no-untyped-call]
    finally:
        wall = time.perf_counter() - t0
        if ticker is not None:
            ticker.stop.set()
    out = Path(out_dir)
    summary = summarise(
        readings=stats.readings,
        wall_seconds=wall,
        faults=list(plant.faults),
        alerts=read_jsonl(out / "alerts.jsonl"),
        commands=read_jsonl(out / "commands.jsonl"),
        windows=read_parquet_dir(out / "windows"),
        telemetry=read_parquet_dir(out / "telemetry") if write_telemetry else pl.DataFrame(),
        baseline=counterfactual(plant, {c.twin_id for c in _commanded(plant)}),
        dead_letters=stats.dead_letters,
        late_readings=stats.late_readings,
        twins=twins,
        simulated_seconds=duration_s,
        seed=seed,
    )
    summary["windows"] = stats.windows
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "faults.json").write_text(
        json.dumps([f.to_json() for f in plant.faults], indent=2) + "\n"
    )
    from twinflow.flows.report import write_report  # the run's page with plots

    summary["report"] = str(write_report(out))
    return summary


def _arrivals(observer: Observer) -> Any:
    def tap(_step_id: str, _part: str, _inner: Any, items: list[Any]) -> None:
        observer.arrived(items)

    return tap


def _commanded(plant: Plant) -> list[Any]:
    return [r for r in plant.command_log if r.accepted]


def counterfactual(plant: Plant, twin_ids: set[str]) -> pl.DataFrame:
    """Telemetry of the given twins simulated again without any command.

    The simulator draws the same random numbers whether or not commands arrive, so this is
    the same machine, same weather and same fault, only never commanded.
    """
    fresh = Plant(plant.config)
    index = {t: i for i, (t, _type) in enumerate(fresh.twins)}
    frames = []
    for twin_id in sorted(twin_ids):
        part = fresh.partition(index[twin_id], fresh.config.n_twins)
        while not part.done:
            for item in part.next_chunk():
                if isinstance(item, RawMessage):
                    try:
                        item = decode(item)
                    except DecodeError:
                        continue
                cols = telemetry_columns(item) if item.twin_id == twin_id else None
                if cols is not None:
                    frames.append(pl.DataFrame(cols))
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


__all__ = ["render", "run_demo"]
