"""Score a run against ground truth given as events: faults (onset, failure) or labels.

Shared by ``twinflow replay`` and usable for the demo's faults: detection, lead time and
diagnosis come from :func:`twinflow.flows.evaluation.score_faults`; this module adds

- *point-wise* precision/recall/F1 over windows: a window is truly anomalous when it overlaps
  an event, and flagged when an alert of its twin is open at the window's end;
- *event-wise* precision/recall/F1: an event is detected when an alert is raised on its twin
  within it; an alert is right when it falls within an event of its twin (for labelled spans,
  up to ``grace_s`` after their end; for faults, any time after onset);
- *false alarms per day*: raised alerts that are not right, per day of recording;
- *lead time* before failure and *detection delay* after onset;
- *RUL error*: RMSE of every estimate between onset and failure, and alpha-lambda accuracy
  (the estimate at ``onset + lambda * (failure - onset)`` within ``alpha`` of the truth);
- *failure levels* learned from a scored run-to-failure replay (:func:`learn_failure_levels`):
  the anomaly-score health index each twin type reached at its failures.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from twinflow.connectors.files import read_parquet_dir
from twinflow.core.errors import ConfigError
from twinflow.core.records import FaultTruth
from twinflow.core.times import utc
from twinflow.flows.evaluation import score_faults
from twinflow.models.degradation import failure_level, failure_spread

#: The prefix of the anomaly step's per-feature contributions in window rows.
DRIVER_PREFIX = "anomaly.z."

LAMBDAS = (0.25, 0.5, 0.75)


def _t(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def alert_spans(alerts: Iterable[Mapping[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """Per twin, the spans each alert was open: raised to cleared (or forever)."""
    opened: dict[str, tuple[str, float]] = {}
    spans: dict[str, list[tuple[float, float]]] = {}
    for a in sorted(alerts, key=lambda a: (a["time"], a["state"] != "cleared")):
        if a["state"] == "raised":
            opened[a["alert_id"]] = (a["twin_id"], _t(a["time"]))
        elif a["alert_id"] in opened:
            twin, raised = opened.pop(a["alert_id"])
            spans.setdefault(twin, []).append((raised, _t(a["time"])))
    for twin, raised in opened.values():
        spans.setdefault(twin, []).append((raised, math.inf))
    return spans


def _prf(tp: int, fp: int, fn: int) -> dict[str, float | None]:
    p = tp / (tp + fp) if tp + fp else None
    r = tp / (tp + fn) if tp + fn else None
    f1 = 2 * p * r / (p + r) if p is not None and r is not None and p + r > 0 else None
    return {
        k: None if v is None else round(v, 4)
        for k, v in (("precision", p), ("recall", r), ("f1", f1))
    }


def pointwise(
    windows: pl.DataFrame,
    events: Sequence[FaultTruth],
    spans: Mapping[str, list[tuple[float, float]]],
    twins: set[str],
) -> dict[str, Any]:
    """Windows of the scored ``twins`` as points: truth from events, flag from open alerts."""
    tp = fp = fn = tn = 0
    if not windows.is_empty():
        by_twin: dict[str, list[tuple[float, float]]] = {}
        for e in events:
            by_twin.setdefault(e.twin_id, []).append((e.onset.timestamp(), e.failure.timestamp()))
        rows = windows.filter(pl.col("twin_id").is_in(sorted(twins))).select(
            "twin_id", pl.col("start").dt.epoch("us") / 1e6, pl.col("end").dt.epoch("us") / 1e6
        )
        for twin, start, end in rows.iter_rows():
            truth = any(a <= end and start <= b for a, b in by_twin.get(twin, ()))
            flag = any(r <= end < c for r, c in spans.get(twin, ()))
            tp += truth and flag
            fp += flag and not truth
            fn += truth and not flag
            tn += not (truth or flag)
    return {
        "windows": tp + fp + fn + tn,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        **_prf(tp, fp, fn),
    }


def eventwise(
    events: Sequence[FaultTruth],
    alerts: Sequence[Mapping[str, Any]],
    twins: set[str],
    open_ended: bool,
    grace_s: float,
) -> tuple[dict[str, Any], list[Mapping[str, Any]]]:
    """Event detection and alert precision; also the alerts that are false alarms."""
    raised = [a for a in alerts if a["state"] == "raised" and a["twin_id"] in twins]
    by_twin: dict[str, list[FaultTruth]] = {}
    for e in events:
        by_twin.setdefault(e.twin_id, []).append(e)

    def right(a: Mapping[str, Any]) -> bool:
        t = _t(a["time"])
        return any(
            e.onset.timestamp()
            <= t
            <= (math.inf if open_ended else e.failure.timestamp() + grace_s)
            for e in by_twin.get(a["twin_id"], ())
        )

    detected = sum(
        any(
            a["twin_id"] == e.twin_id
            and e.onset.timestamp() <= _t(a["time"]) <= e.failure.timestamp() + grace_s
            for a in raised
        )
        for e in events
    )
    good = [a for a in raised if right(a)]
    false = [a for a in raised if not right(a)]
    p = len(good) / len(raised) if raised else None
    r = detected / len(events) if events else None
    f1 = 2 * p * r / (p + r) if p is not None and r is not None and p + r > 0 else None
    out = {
        "events": len(events),
        "detected": detected,
        "alerts": len(raised),
        "alerts_in_events": len(good),
        **{
            k: None if v is None else round(v, 4)
            for k, v in (("precision", p), ("recall", r), ("f1", f1))
        },
    }
    return out, false


def rul_errors(
    events: Sequence[FaultTruth], windows: pl.DataFrame, alpha: float = 0.2
) -> dict[str, Any]:
    """RMSE of the finite RUL estimates before failure; per lambda, the share of events
    whose estimate at ``onset + lambda * (failure - onset)`` (the window ending nearest) is
    within ``alpha`` of the truth, and the share whose interval covers the truth. An event
    with no estimate there counts as a miss."""
    out: dict[str, Any] = {
        "estimates": 0,
        "rmse_hours": None,
        "alpha": alpha,
        "alpha_lambda": {},
        "interval_coverage": {},
    }
    if windows.is_empty() or "rul_hours" not in windows.columns:
        return out
    errors: list[float] = []
    hits: dict[float, list[bool]] = {lam: [] for lam in LAMBDAS}
    covered: dict[float, list[bool]] = {lam: [] for lam in LAMBDAS}
    has_interval = {"rul_low_hours", "rul_high_hours"} <= set(windows.columns)
    for e in events:
        rows = windows.filter(
            (pl.col("twin_id") == e.twin_id)
            & (pl.col("end") > e.onset)
            & (pl.col("end") <= e.failure)
        ).sort("end")
        fail, onset = e.failure.timestamp(), e.onset.timestamp()
        ends = [x.timestamp() for x in rows["end"].to_list()]
        ruls = [_hours(v) for v in rows["rul_hours"].to_list()]
        lows = [_hours(v) for v in rows["rul_low_hours"].to_list()] if has_interval else []
        highs = [_hours(v) for v in rows["rul_high_hours"].to_list()] if has_interval else []
        errors += [
            est - (fail - t) / 3600.0
            for t, est in zip(ends, ruls, strict=True)
            if math.isfinite(est)
        ]
        for lam in LAMBDAS:
            if not ends:
                hits[lam].append(False)
                covered[lam].append(False)
                continue
            at = onset + lam * (fail - onset)
            i = min(range(len(ends)), key=lambda k: abs(ends[k] - at))
            truth = (fail - ends[i]) / 3600.0
            hits[lam].append(math.isfinite(ruls[i]) and abs(ruls[i] - truth) <= alpha * truth)
            covered[lam].append(bool(lows) and lows[i] <= truth <= highs[i])
    if errors:
        out["estimates"] = len(errors)
        out["rmse_hours"] = round(math.sqrt(sum(x * x for x in errors) / len(errors)), 3)
    for key, table in (("alpha_lambda", hits), ("interval_coverage", covered)):
        out[key] = {
            str(lam): (round(sum(h) / len(h), 4) if h else None) for lam, h in table.items()
        }
    return out


def _hours(v: float | None) -> float:
    """A stored RUL value: ``None`` and NaN (no estimate) are infinite."""
    return math.inf if v is None or math.isnan(v) else float(v)


def _stats(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "mean": round(statistics.fmean(values), 3),
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def score_events(
    *,
    events: Sequence[FaultTruth],
    alerts: Sequence[Mapping[str, Any]],
    windows: pl.DataFrame,
    twins: set[str],
    days: float,
    failures: bool,
    grace_s: float,
) -> dict[str, Any]:
    """Every score of a run against ``events`` on the scored ``twins``.

    ``failures``: the events end in a failure (a faults file), so alerts after an onset are
    right however late, and lead time and RUL are scored; otherwise (labelled spans) alerts
    count up to ``grace_s`` after a span.
    """
    fault_rows, _ = score_faults(events, alerts)
    spans = alert_spans(alerts)
    events_out, false = eventwise(events, alerts, twins, failures, grace_s)
    delays = [
        (_t(f["first_alert"]) - _t(f["onset"])) / 3600.0 for f in fault_rows if f["first_alert"]
    ]
    out: dict[str, Any] = {
        "truth": "faults" if failures else "labels",
        "twins_scored": len(twins),
        "days": round(days, 4),
        "pointwise": pointwise(windows, events, spans, twins),
        "eventwise": events_out,
        "false_alarms": len(false),
        "false_alarms_per_day": round(len(false) / days, 3) if days > 0 else None,
        "false_alarm_list": [
            {k: a.get(k) for k in ("twin_id", "rule", "time", "diagnosis")} for a in false
        ],
        "detection_delay_hours": _stats(delays),
    }
    if failures:
        leads = [f["lead_time_hours"] for f in fault_rows if f["lead_time_hours"] is not None]
        out["lead_time_hours"] = _stats(leads)
        out["rul"] = rul_errors(events, windows)
    out["events"] = fault_rows
    return out


def index_at_failures(
    windows: pl.DataFrame, events: Sequence[FaultTruth], last: int = 3
) -> dict[str, dict[str, list[float]]]:
    """Per twin type and driving signal, the health index (anomaly score over its
    threshold) each event's twin reached at failure: the median over its ``last`` windows
    ending by the failure. The driving signal is the one with the largest
    ``anomaly.z.<signal>.<feature>`` contribution in the last of them; every failure also
    counts under ``"*"``."""
    out: dict[str, dict[str, list[float]]] = {}
    need = {"twin_id", "twin_type", "end", "anomaly_score", "anomaly_threshold"}
    if windows.is_empty() or not need <= set(windows.columns):
        return out
    drivers = [c for c in windows.columns if c.startswith(DRIVER_PREFIX)]
    for e in events:
        rows = (
            windows.filter(
                (pl.col("twin_id") == e.twin_id)
                & (pl.col("end") <= e.failure)
                & (pl.col("anomaly_threshold") > 0)
            )
            .sort("end")
            .tail(last)
        )
        if rows.is_empty():
            continue
        index = (rows["anomaly_score"] / rows["anomaly_threshold"]).drop_nulls().drop_nans()
        if index.is_empty():
            continue
        level = float(index.median())  # type: ignore[arg-type]
        by_driver = out.setdefault(str(rows["twin_type"][-1]), {})
        by_driver.setdefault("*", []).append(level)
        newest = rows.row(rows.height - 1, named=True)
        weights = [(newest[c], c) for c in drivers if _finite(newest[c])]
        if weights:
            top = max(weights)[1][len(DRIVER_PREFIX) :].split(".", 1)[0]
            by_driver.setdefault(top, []).append(level)
    return out


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def learn_failure_levels(
    history: Path | Sequence[Path],
) -> dict[str, dict[str, tuple[float, float]]]:
    """Failure levels by twin type and driving signal (``"*"``: all failures) from the
    output folders of earlier replays run with a faults file (``history``, one or several):
    the median index their twins reached at failure and the spread of its logarithm
    (:func:`~twinflow.models.degradation.failure_spread`). Errors name the folder and what
    is missing."""
    folders = [history] if isinstance(history, Path) else list(history)
    pooled: dict[str, dict[str, list[float]]] = {}
    for folder in folders:
        for kind, by_driver in _history_levels(folder).items():
            for driver, values in by_driver.items():
                pooled.setdefault(kind, {}).setdefault(driver, []).extend(values)
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for kind, by_driver in pooled.items():
        learned = {k: (failure_level(v), failure_spread(v)) for k, v in by_driver.items()}
        kept = {k: v for k, v in learned.items() if math.isfinite(v[0]) and v[0] > 0.0}
        if kept:
            out[kind] = kept
    return out


def _history_levels(history: Path) -> dict[str, dict[str, list[float]]]:
    """The indices at failure of one earlier replay's output folder."""
    try:
        summary = json.loads((history / "summary.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"--history {history}: no readable summary.json of an earlier replay ({exc})"
        ) from None
    rows = summary.get("scores", {}).get("events") if isinstance(summary, dict) else None
    if summary.get("scores", {}).get("truth") != "faults" or not rows:
        raise ConfigError(
            f"--history {history}: that replay was not scored with --faults, so it holds no "
            "failures to learn a failure level from"
        )
    events = [
        FaultTruth(r["twin_id"], r["kind"], utc(_t(r["onset"])), utc(_t(r["failure"])))
        for r in rows
    ]
    return index_at_failures(read_parquet_dir(history / "windows"), events)


__all__ = [
    "alert_spans",
    "eventwise",
    "index_at_failures",
    "learn_failure_levels",
    "pointwise",
    "rul_errors",
    "score_events",
]
