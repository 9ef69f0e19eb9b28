"""The embedded default outputs: Parquet and JSON Lines files under one folder.

==========================  ==========================================================
``telemetry/``              readings, one row per timestamp, a column per signal (Parquet)
``windows/``                window features, anomaly score and RUL per twin and window
``twin_states/``            twin state snapshots (on status change and periodically)
``alerts.jsonl``            alert transitions, schema ``operators/schemas/alert.v1.json``
``commands.jsonl``          command lifecycle transitions, schema ``command.v2.json``
``rollups.jsonl``           asset roll-ups (twins in alarm, worst health), ``asset_rollup.v1.json``
``deadletter.jsonl``        refused inputs with the reason, ``deadletter.v1.json``
==========================  ==========================================================

Parquet folders are split by twin type (``twin_type=<type>/part-p0-00000.parquet``).
The folder is created 0700 and its files 0600. :func:`prepare_out` refuses to write into a
folder that already holds outputs unless the run resumes them or ``overwrite`` is given.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from bytewax.outputs import Sink

from twinflow.connectors.files import Columns, JsonLinesSink, ParquetSink, private_dir
from twinflow.connectors.placement_keys import Placement, place
from twinflow.core.errors import ConfigError
from twinflow.core.records import TelemetryFrame, TwinState, WindowFeatures
from twinflow.flows.config import FlowConfig
from twinflow.flows.telemetry import FlowOutputs


def telemetry_batch(frame: Any) -> dict[str, Any] | None:
    """Scalar telemetry as the Parquet sink's columns (numpy only: times as ``datetime64[us]``,
    which the sink writes as UTC); waveform bursts are summarised by the window features."""
    if not isinstance(frame, TelemetryFrame):
        return None
    cols: dict[str, Any] = {
        "twin_id": frame.twin_id,
        "time": (frame.times * 1e6).astype(np.int64).astype("datetime64[us]"),
    }
    cols.update(frame.signals)
    return cols


def telemetry_columns(frame: Any) -> dict[str, Any] | None:
    """:func:`telemetry_batch` with the times as a UTC polars Series (for ``pl.DataFrame``)."""
    cols = telemetry_batch(frame)
    if cols is not None:
        cols["time"] = pl.Series("time", cols["time"]).dt.replace_time_zone("UTC")
    return cols


def frame_fingerprint(frame: Any) -> tuple[str, int] | None:
    """A telemetry frame's twin and a 64-bit digest of its times and signal names: a frame
    delivered twice (e.g. a Kafka message read again) has the same one."""
    if not isinstance(frame, TelemetryFrame):
        return None
    h = hashlib.blake2b(digest_size=8)
    h.update(np.ascontiguousarray(frame.times, dtype=np.float64).tobytes())
    h.update("\0".join(sorted(frame.signals)).encode())
    return frame.twin_id, int.from_bytes(h.digest(), "big")


def window_row(w: WindowFeatures) -> dict[str, Any]:
    return w.to_row()


def state_row(s: TwinState) -> dict[str, Any]:
    return s.to_row()


def _type_of(item: Any) -> str:
    return str(item.twin_type)


#: What a run writes under ``--out`` (``--overwrite`` removes these, and nothing else).
OUTPUT_NAMES = (
    "telemetry",
    "windows",
    "twin_states",
    "alerts.jsonl",
    "commands.jsonl",
    "rollups.jsonl",
    "deadletter.jsonl",
    "whatif_results.jsonl",
    "maintenance_plans.jsonl",
    "maintenance_plan.json",
    "replicated.jsonl",
    "sync_status.jsonl",
    "fleet_status.jsonl",
    "summary.json",
    "faults.json",
    "report.html",
)


def prepare_out(out: Path, *, overwrite: bool = False, resuming: bool = False) -> Path:
    """Make ``out`` ready for a run that must not destroy earlier outputs.

    A new or empty folder is created (0700). A folder that holds something is refused unless
    the run resumes from recovery (the sinks cut their files back to the last snapshot) or
    ``overwrite`` is set, which deletes the previous outputs (:data:`OUTPUT_NAMES`) first.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if held and not resuming:
        if not overwrite:
            shown = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
            raise ConfigError(
                f"--out {out} already holds {shown}; a new run would replace it. Give a new "
                "folder, resume with the same --recovery-dir, or pass --overwrite"
            )
        for name in OUTPUT_NAMES:
            p = out / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()
    return private_dir(out)


def file_outputs(
    config: FlowConfig, actuators: Sink[Any] | None = None, placement: Placement | None = None
) -> FlowOutputs:
    """File sinks under ``config.out_dir`` (created if missing).

    With a ``placement`` (a cluster of several workers), the Parquet sinks get a multiple of
    the workers' count of partitions (at least ``config.sink_partitions``) and write each
    twin's rows on the worker that holds its state (:mod:`~twinflow.connectors.placement_keys`),
    so in a cluster telemetry, windows and twin states do not cross between processes on
    their way out. The JSON Lines files stay one partition each (one file, on worker 0).
    """
    out = private_dir(Path(config.out_dir))

    def parquet(
        name: str,
        to_columns: Callable[[Any], Columns | None],
        fingerprint: Callable[[Any], tuple[str, int] | None] | None = None,
    ) -> ParquetSink:
        sink = ParquetSink(
            out / name,
            to_columns,
            _type_of,
            partitions=config.sink_partitions,
            rows_per_part=config.parquet_rows_per_part,
            max_delay_s=config.parquet_max_delay_s,
            fingerprint=fingerprint,
        )
        place(sink, placement)
        return sink

    return FlowOutputs(
        dead_letters=JsonLinesSink(out / "deadletter.jsonl", lambda d: d.to_json()),
        alerts=JsonLinesSink(out / "alerts.jsonl", lambda a: a.to_json()),
        commands=JsonLinesSink(out / "commands.jsonl", lambda c: c.to_json()),
        rollups=JsonLinesSink(out / "rollups.jsonl", lambda r: r.to_json()),
        windows=parquet("windows", window_row),
        twin_states=parquet("twin_states", state_row),
        telemetry=parquet("telemetry", telemetry_batch, frame_fingerprint)
        if config.write_telemetry
        else None,
        actuators=actuators,
    )
