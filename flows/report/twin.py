"""One twin's section of the report: signal timelines with its alarms, commands and fault,
the anomaly score against its threshold, health and RUL against the failure time, and the
vibration band powers per window."""

from __future__ import annotations

import math
from collections import defaultdict
from html import escape
from typing import Any

import numpy as np
import polars as pl

from twinflow.flows.report.loading import META, RunData, epoch
from twinflow.flows.report.plots import (
    ALARM,
    COMMAND,
    FAULT,
    PALETTE,
    Band,
    Chart,
    Line,
    Mark,
    Span,
    heatmap,
    time_chart,
)


def alarm_spans(data: RunData) -> dict[str, list[Span]]:
    """Per twin, each alert from raised to cleared (or to the end of the run)."""
    open_: dict[str, tuple[float, dict[str, Any]]] = {}
    out: dict[str, list[Span]] = defaultdict(list)
    for a in data.alerts:
        t = epoch(a.get("time"))
        if t is None:
            continue
        key = a.get("alert_id") or f"{a['twin_id']}/{a.get('rule')}"
        if a.get("state") == "raised":
            open_.setdefault(key, (t, a))
        elif key in open_:
            t0, raised = open_.pop(key)
            out[a["twin_id"]].append(Span(t0, t, _alert_label(raised, t0, t)))
    for t0, raised in open_.values():
        out[raised["twin_id"]].append(Span(t0, data.span[1], _alert_label(raised, t0, None)))
    return out


def _alert_label(a: dict[str, Any], t0: float, t1: float | None) -> str:
    until = "still open at the end" if t1 is None else f"{(t1 - t0) / 60:.0f} min"
    return f"{a.get('severity', '')} {a.get('rule', '')} ({a.get('diagnosis') or '-'}), {until}"


def command_marks(data: RunData) -> dict[str, list[Mark]]:
    """Per twin, each command at its issue time, labelled with its last status."""
    last: dict[str, dict[str, Any]] = {}
    for c in data.commands:
        last[c["command_id"]] = c
    out: dict[str, list[Mark]] = defaultdict(list)
    for c in last.values():
        t = epoch(c.get("issued_at"))
        if t is not None:
            params = ", ".join(f"{k}={v}" for k, v in (c.get("params") or {}).items())
            label = f"command {c['name']}({params}): {c['status']}"
            out[c["twin_id"]].append(Mark(t, label, COMMAND))
    return out


def fault_marks(data: RunData) -> dict[str, list[Mark]]:
    """Per twin, the known fault's onset (dashed) and failure."""
    out: dict[str, list[Mark]] = defaultdict(list)
    for f in data.faults:
        for key, dashed in (("onset", True), ("failure", False)):
            t = epoch(f.get(key))
            if t is not None:
                out[f["twin_id"]].append(Mark(t, f"{f.get('kind')} fault {key}", FAULT, dashed))
    return out


def failure_of(data: RunData, twin: str) -> float | None:
    return next((epoch(f.get("failure")) for f in data.faults if f["twin_id"] == twin), None)


def twin_section(data: RunData, twin: str, spans: list[Span], marks: list[Mark]) -> str:
    """The ``<section>`` of one twin (charts only for what the run wrote)."""
    charts = [
        _signal_chart(data, name, rows, tcol, spans, marks)
        for name, rows, tcol in _signals(data, twin)
    ]
    win = data.windows.filter(pl.col("twin_id") == twin) if "twin_id" in data.windows else None
    if win is not None and win.height:
        win = win.sort("end")
        charts.append(_anomaly_chart(data, win, spans, marks))
        charts += _health_charts(data, twin, win, marks)
        charts += _spectra(data, win)
    kind = data.twin_types.get(twin, "?")
    body = "".join(c for c in charts if c) or "<p>No data was written for this twin.</p>"
    return (
        f'<section class="twin" id="twin-{escape(twin)}"><details><summary>'
        f"<b>{escape(twin)}</b> <span class=muted>{escape(kind)}</span> {_badges(spans, marks)}"
        f"</summary>{body}</details></section>"
    )


def _badges(spans: list[Span], marks: list[Mark]) -> str:
    commands = sum(1 for m in marks if m.color == COMMAND)
    faults = any(m.color == FAULT for m in marks)
    out = [f'<span class="badge alarm">{len(spans)} alarms</span>'] if spans else []
    out += [f'<span class="badge cmd">{commands} commands</span>'] if commands else []
    out += ['<span class="badge fault">fault</span>'] if faults else []
    return " ".join(out)


def _signals(data: RunData, twin: str) -> list[tuple[str, pl.DataFrame, str]]:
    """(signal, rows, time column) for each signal with data: downsampled raw telemetry, or
    the window means when the run wrote no telemetry."""
    tel = data.telemetry
    if tel.height and "twin_id" in tel.columns:
        rows = tel.filter(pl.col("twin_id") == twin)
        names = [
            c
            for c in rows.columns
            if c not in META
            and "__" not in c
            and rows[c].dtype.is_numeric()
            and rows[c].null_count() < rows.height
        ]
        return [(n, rows, "time") for n in names]
    win = data.windows
    if not win.height:
        return []
    rows = win.filter(pl.col("twin_id") == twin).sort("end")
    names = [
        c.removesuffix(".mean")
        for c in rows.columns
        if c.endswith(".mean") and rows[c].null_count() < rows.height
    ]
    return [(n, rows.rename({f"{n}.mean": n}), "end") for n in names]


def _signal_chart(
    data: RunData,
    name: str,
    rows: pl.DataFrame,
    tcol: str,
    spans: list[Span],
    marks: list[Mark],
) -> str:
    xs = _col(rows, tcol)
    bands = []
    if f"{name}__min" in rows.columns:  # the bucket's range: spikes stay visible
        bands.append(Band(xs, _col(rows, f"{name}__min"), _col(rows, f"{name}__max")))
    chart = Chart(name, [Line(name, xs, _col(rows, name))], bands, spans, marks, height=110)
    return _figure(name, chart, data)


def _col(df: pl.DataFrame, name: str) -> np.ndarray:
    return df[name].cast(pl.Float64).fill_null(math.nan).to_numpy()


def _anomaly_chart(data: RunData, win: pl.DataFrame, spans: list[Span], marks: list[Mark]) -> str:
    if "anomaly_score" not in win.columns or win["anomaly_score"].null_count() == win.height:
        return ""
    xs = _col(win, "end")
    lines = [Line("anomaly score", xs, _col(win, "anomaly_score"), PALETTE[0])]
    if "anomaly_threshold" in win.columns:
        lines.append(Line("threshold", xs, _col(win, "anomaly_threshold"), ALARM, dashed=True))
    return _figure("Anomaly score", Chart("anomaly", lines, spans=spans, marks=marks), data)


def _health_charts(data: RunData, twin: str, win: pl.DataFrame, marks: list[Mark]) -> list[str]:
    if "health" not in win.columns or win["health"].null_count() == win.height:
        return []
    xs = _col(win, "end")
    faults = [m for m in marks if m.color == FAULT]
    health = Chart(
        "health",
        [Line("health index", xs, _col(win, "health"), PALETTE[2])],
        marks=faults,
        height=110,
    )
    rul = _col(win, "rul_hours")
    lines = [Line("RUL estimate (h)", xs, rul, PALETTE[3])]
    failure = failure_of(data, twin)
    if failure is not None:
        truth = np.where(xs <= failure, (failure - xs) / 3600.0, math.nan)
        lines.append(Line("true RUL (h)", xs, truth, FAULT, dashed=True))
    rul_chart = Chart(
        "rul",
        lines,
        bands=[Band(xs, _col(win, "rul_low_hours"), _col(win, "rul_high_hours"), PALETTE[3])],
        marks=faults,
    )
    out = [_figure("Health index", health, data)]
    if np.isfinite(rul).any():
        out.append(_figure("Remaining useful life, with its interval", rul_chart, data))
    return out


def _spectra(data: RunData, win: pl.DataFrame) -> list[str]:
    out = []
    signals = sorted({c.split(".band_")[0] for c in win.columns if ".band_" in c})
    for sig in signals:
        cols = [c for c in win.columns if c.startswith(f"{sig}.band_")]
        rows = win.select(["start", "end", *cols]).drop_nulls(cols)
        if not rows.height:
            continue
        power = np.vstack([_col(rows, c) for c in cols])
        values = np.log10(np.where(power > 0, power, math.nan))
        labels = [c.split(".band_")[1].replace("_", "-") + " Hz" for c in cols]
        svg = heatmap(
            f"{sig} band power", data.span, _col(rows, "start"), _col(rows, "end"), labels, values
        )
        out.append(
            f"<figure><figcaption>{escape(sig)}: power per frequency band and window "
            f"(log scale, darker is stronger)</figcaption>{svg}</figure>"
        )
    return out


def _figure(caption: str, chart: Chart, data: RunData) -> str:
    return (
        f"<figure><figcaption>{escape(caption)}</figcaption>{time_chart(chart, data.span)}</figure>"
    )
