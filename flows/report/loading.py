"""Read a run's outputs folder into what the report draws, downsampled on the way in.

Everything is optional: a run without raw telemetry, without ground truth or without any
alert still gives a report of what it has. Telemetry is scanned per twin-type folder with
polars and reduced to at most ``points`` buckets per twin (mean, min and max of each bucket,
so a spike stays visible), which bounds the page whatever the run's length.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from twinflow.connectors.files import read_jsonl, read_parquet_dir
from twinflow.core.errors import ConfigError

#: Columns of the telemetry and window files that are not signals or features.
META = {"twin_id", "twin_type", "time", "start", "end", "late"}


@dataclass
class RunData:
    """One run's outputs, as plain data for the plots (times in epoch seconds)."""

    out: Path
    alerts: list[dict[str, Any]] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)
    rollups: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: int = 0
    summary: dict[str, Any] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    windows: pl.DataFrame = field(default_factory=pl.DataFrame)
    telemetry: pl.DataFrame = field(default_factory=pl.DataFrame)
    twin_types: dict[str, str] = field(default_factory=dict)
    span: tuple[float, float] = (0.0, 1.0)
    #: The maintenance plan ``twinflow plan`` wrote beside the outputs, if any.
    plan: dict[str, Any] | None = None

    @property
    def twins(self) -> list[str]:
        return sorted(self.twin_types)


def epoch(text: str | None) -> float | None:
    """Seconds since the epoch of an ISO time (``Z`` accepted), or ``None``."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def load(out: Path, points: int = 240) -> RunData:
    """The outputs under ``out``; a folder with none of them is refused."""
    if not out.is_dir():
        raise ConfigError(f"report: {out} is not a folder (give a run's --out folder)")
    names: tuple[str, ...] = ("alerts.jsonl", "commands.jsonl", "windows", "telemetry")
    names += ("summary.json", "maintenance_plan.json")
    if not any((out / n).exists() for n in names):
        raise ConfigError(
            f"report: {out} holds no twinflow outputs (alerts.jsonl, windows/, telemetry/, "
            "summary.json, ...): give the --out folder of a demo, replay or run"
        )
    data = RunData(out)
    data.alerts = read_jsonl(out / "alerts.jsonl")
    data.commands = read_jsonl(out / "commands.jsonl")
    data.rollups = read_jsonl(out / "rollups.jsonl")
    data.dead_letters = len(read_jsonl(out / "deadletter.jsonl"))
    data.summary = _json(out / "summary.json", {})
    data.faults = _json(out / "faults.json", None) or truth_in(data.summary)
    data.plan = _json(out / "maintenance_plan.json", None)
    data.windows = _epoch_cols(read_parquet_dir(out / "windows"), ("start", "end"))
    data.telemetry = downsample(out / "telemetry", points)
    for df in (data.windows, data.telemetry):
        if {"twin_id", "twin_type"} <= set(df.columns):
            for twin, kind in df.select("twin_id", "twin_type").unique().iter_rows():
                data.twin_types[str(twin)] = str(kind)
    for rec in (*data.alerts, *data.commands):
        data.twin_types.setdefault(rec["twin_id"], rec.get("twin_type", "?"))
    data.span = _span(data)
    return data


def truth_in(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The known faults a summary lists (the demo's ``faults``, a scored replay's
    ``scores.events``): records with a twin and a failure time.

    >>> truth_in({"scores": {"events": [{"twin_id": "p1", "failure": "2024-03-01T01:00:00Z"}]}})
    [{'twin_id': 'p1', 'failure': '2024-03-01T01:00:00Z'}]
    """
    places = [summary, *(v for v in summary.values() if isinstance(v, dict))]
    for place in places:
        for key in ("faults", "events"):
            found = [
                f
                for f in place.get(key) or []
                if isinstance(f, dict) and "twin_id" in f and f.get("failure")
            ]
            if found:
                return found
    return []


def _json(path: Path, default: Any) -> Any:
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"report: {path} is not valid JSON: {exc}") from exc


def _epoch_cols(df: pl.DataFrame, names: tuple[str, ...]) -> pl.DataFrame:
    """Datetime columns as float epoch seconds (the plots' x axis)."""
    return df.with_columns(
        (pl.col(n).dt.epoch("us").cast(pl.Float64) / 1e6).alias(n)
        for n in names
        if n in df.columns and isinstance(df.schema[n], pl.Datetime)
    )


def downsample(root: Path, points: int) -> pl.DataFrame:
    """Raw telemetry reduced to ``points`` buckets per twin over the run's time span: columns
    ``twin_id``, ``twin_type``, ``time`` (bucket mean) and ``<signal>``, ``<signal>__min``,
    ``<signal>__max``; empty when the run wrote no telemetry."""
    folders = sorted(p for p in root.glob("*=*") if p.is_dir()) if root.is_dir() else []
    scans = []
    for folder in folders:
        files = sorted(folder.glob("part-*.parquet"))
        if files:
            kind = folder.name.partition("=")[2]
            lf = pl.concat(
                [pl.scan_parquet(f, hive_partitioning=False) for f in files],
                how="diagonal_relaxed",
            )
            scans.append((kind, lf.with_columns(pl.col("time").dt.epoch("us") / 1e6)))
    if not scans:
        return pl.DataFrame()
    bounds = pl.concat(
        [
            lf.select(pl.col("time").min().alias("lo"), pl.col("time").max().alias("hi"))
            for _, lf in scans
        ]
    ).collect()
    lo, hi = float(bounds["lo"].min()), float(bounds["hi"].max())  # type: ignore[arg-type]
    width = max(hi - lo, 1e-9) / points
    frames = []
    for kind, lf in scans:
        signals = [c for c, t in lf.collect_schema().items() if c not in META and t.is_numeric()]
        lf = lf.with_columns(pl.col(s).cast(pl.Float64).fill_nan(None) for s in signals)
        aggs = [pl.col("time").mean()]
        for s in signals:
            aggs += [
                pl.col(s).mean(),
                pl.col(s).min().alias(f"{s}__min"),
                pl.col(s).max().alias(f"{s}__max"),
            ]
        bucket = ((pl.col("time") - lo) / width).floor().clip(0, points - 1).alias("_bucket")
        frames.append(
            lf.with_columns(bucket)
            .group_by("twin_id", "_bucket")
            .agg(aggs)
            .drop("_bucket")
            .with_columns(pl.lit(kind).alias("twin_type"))
            .collect()
        )
    return pl.concat(frames, how="diagonal_relaxed").sort("twin_id", "time")


def _span(data: RunData) -> tuple[float, float]:
    """The run's time range: data, alerts, commands and faults together."""
    times: list[float] = []
    for df, cols in ((data.telemetry, ("time",)), (data.windows, ("start", "end"))):
        for c in cols:
            if c in df.columns and df.height:
                times += [float(df[c].min()), float(df[c].max())]  # type: ignore[arg-type]
    for rec in (*data.alerts, *data.commands):
        t = epoch(rec.get("time") or rec.get("issued_at"))
        if t is not None:
            times.append(t)
    times = [t for t in times if math.isfinite(t)]
    if not times:
        return (0.0, 1.0)
    lo, hi = min(times), max(times)
    return (lo, hi if hi > lo else lo + 1.0)
