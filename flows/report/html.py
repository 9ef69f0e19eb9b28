"""The report page: fleet overview, evaluation against ground truth, one section per twin.

One HTML file with its style and every chart inline (SVG): it opens offline, from a mail
attachment or an artifact store, and runs no script.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime
from html import escape
from typing import Any

from twinflow.flows.report.loading import RunData, epoch
from twinflow.flows.report.plots import PALETTE, Chart, Line, lanes, time_chart
from twinflow.flows.report.twin import alarm_spans, command_marks, fault_marks, twin_section

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:800px;color:#222}
h1{font-size:1.5em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0;font-size:13px;display:block;overflow-x:auto}
td,th{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f4f4f4}.muted{color:#777}figure{margin:.6em 0}
figcaption{font-size:12px;color:#555}svg text{font-size:10px;fill:#444}
svg text.legend{font-size:11px}summary{cursor:pointer;padding:3px 0}
.badge{font-size:11px;border-radius:3px;padding:0 4px;color:#fff}
.alarm{background:#d62728}.cmd{background:#9467bd}.fault{background:#ff7f0e}
"""


def page(data: RunData, max_twins: int = 60) -> str:
    """The whole report as HTML text."""
    spans, commands, faults = alarm_spans(data), command_marks(data), fault_marks(data)
    marks = {t: commands.get(t, []) + faults.get(t, []) for t in data.twins}
    ranked = sorted(data.twins, key=lambda t: (not (spans.get(t) or marks[t]), t))
    shown = ranked[:max_twins]
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        f"<title>twinflow report: {escape(data.out.name)}</title><style>{STYLE}</style></head>",
        f"<body><h1>twinflow report</h1><p class=muted>{escape(str(data.out))}, "
        f"{_when(data.span[0])} to {_when(data.span[1])} (UTC)</p>",
        _overview(data, spans, commands, faults),
        _evaluation(data.summary),
        _plan(data.plan),
        "<h2>Twins</h2><p class=muted>Shaded: an alarm from raised to cleared; purple lines: "
        "commands (hover for their outcome); orange: a known fault's onset (dashed) and "
        "failure. Signal lines are bucket means with the bucket's range shaded.</p>",
    ]
    parts += [twin_section(data, t, spans.get(t, []), marks[t]) for t in shown]
    if len(ranked) > len(shown):
        rest = ", ".join(ranked[len(shown) :])
        parts.append(
            f"<p class=muted>Not drawn (no alarm, command or fault; --max-twins "
            f"{max_twins}): {escape(rest)}</p>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")


def _overview(
    data: RunData, spans: dict[str, Any], commands: dict[str, Any], faults: dict[str, Any]
) -> str:
    raised = Counter(a.get("rule") for a in data.alerts if a.get("state") == "raised")
    # A command's furthest status: a `sent` learnt late is written after the end state.
    step = {"issued": 0, "queued": 1, "sent": 2, "acknowledged": 3}
    last_status: dict[str, str] = {}
    for c in data.commands:
        seen = last_status.get(c["command_id"])
        if seen is None or step.get(c["status"], 4) >= step.get(seen, 4):
            last_status[c["command_id"]] = c["status"]
    facts = [
        ("twins", len(data.twins)),
        ("alerts raised", sum(raised.values())),
        ("by rule", ", ".join(f"{k} {v}" for k, v in sorted(raised.items())) or "-"),
        ("commands", len(last_status)),
        (
            "by last status",
            ", ".join(f"{k} {v}" for k, v in sorted(Counter(last_status.values()).items())) or "-",
        ),
        ("dead letters", data.dead_letters),
        ("known faults", len(data.faults)),
    ]
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in facts)
    out = ["<h2>Fleet overview</h2>", f"<table>{rows}</table>"]
    if data.twins:
        order = sorted(data.twins, key=lambda t: (data.twin_types.get(t, ""), t))
        marks = {t: commands.get(t, []) + faults.get(t, []) for t in order}
        out.append(
            "<figure><figcaption>Alarms (red), commands (purple) and known faults "
            "(orange) per twin</figcaption>"
            f"{lanes('fleet', data.span, order, spans, marks)}</figure>"
        )
    out.append(_rollups(data))
    return "".join(out)


def _rollups(data: RunData) -> str:
    """Twins in alarm and worst health over time, per top-level asset of the roll-ups."""
    by_asset: dict[str, list[tuple[float, float, float]]] = {}
    for r in data.rollups:
        t = epoch(r.get("time"))
        if t is not None:
            health = r.get("worst_health")
            by_asset.setdefault(r["asset_id"], []).append(
                (t, float(r.get("twins_in_alarm", 0)), math.nan if health is None else health)
            )
    if not by_asset:
        return ""
    biggest = sorted(by_asset, key=lambda a: -len(by_asset[a]))[:4]
    alarm, health = [], []
    for i, asset in enumerate(biggest):
        pts = sorted(by_asset[asset])
        xs = [p[0] for p in pts]
        color = PALETTE[i % len(PALETTE)]
        alarm.append(Line(asset, xs, [p[1] for p in pts], color))
        health.append(Line(asset, xs, [p[2] for p in pts], color))
    return (
        "<figure><figcaption>Twins in alarm per asset (roll-ups)</figcaption>"
        f"{time_chart(Chart('in alarm', alarm, height=120), data.span)}</figure>"
        "<figure><figcaption>Worst health index per asset</figcaption>"
        f"{time_chart(Chart('worst health', health, height=110), data.span)}</figure>"
    )


def _evaluation(summary: dict[str, Any]) -> str:
    """The run's own summary.json (the demo's or the replay's scoring), as tables."""
    if not summary:
        return (
            "<h2>Evaluation</h2><p class=muted>No summary.json: this run had no ground "
            "truth to score against.</p>"
        )
    out = ["<h2>Evaluation</h2><p class=muted>From the run's summary.json.</p>"]
    scalars = {k: v for k, v in summary.items() if not isinstance(v, dict | list)}
    out.append(_table([scalars]) if scalars else "")
    for key, value in summary.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            out.append(f"<h3>{escape(key)}</h3>{_table(value)}")
        elif isinstance(value, dict) and value:
            out.append(f"<h3>{escape(key)}</h3>{_table([value])}")
    return "".join(out)


#: The plan's figures shown above its table (maintenance_plan.v1).
_PLAN_FIGURES = (
    "plan_id", "time", "horizon_end", "status", "expected_cost", "run_to_failure_cost",
    "expected_failures", "any_failure_risk",
)  # fmt: skip
#: The columns of the plan's table, one row per twin.
_PLAN_COLUMNS = ("twin_id", "twin_type", "action", "at", "outage", "expected_cost",
                 "failure_risk", "rul")  # fmt: skip


def _plan(plan: dict[str, Any] | None) -> str:
    """The maintenance plan ``twinflow plan`` wrote beside the outputs (none: no section)."""
    if not plan:
        return ""
    items = [i for i in plan.get("items", []) if isinstance(i, dict)]
    items.sort(key=lambda i: (i.get("action") == "run_to_failure", str(i.get("at")), i["twin_id"]))
    out = [
        "<h2>Maintenance plan</h2><p class=muted>From maintenance_plan.json (twinflow plan): "
        "what to do to each twin and when, with its expected cost and risk of failure.</p>",
        _table([{k: plan.get(k) for k in _PLAN_FIGURES}]),
        _table([{k: i.get(k) for k in _PLAN_COLUMNS} for i in items]) if items else "",
    ]
    for key in ("outages", "skipped"):
        rows = [r for r in plan.get(key, []) if isinstance(r, dict)]
        if rows:
            out.append(f"<h3>{escape(key)}</h3>{_table(rows)}")
    return "".join(out)


def _table(rows: list[dict[str, Any]]) -> str:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    if len(rows) == 1:  # one record: a key/value table reads better
        body = "".join(f"<tr><th>{escape(k)}</th><td>{_cell(rows[0][k])}</td></tr>" for k in keys)
        return f"<table>{body}</table>"
    head = "".join(f"<th>{escape(k)}</th>" for k in keys)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(r.get(k))}</td>" for k in keys) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(v: Any) -> str:
    if v is None:
        return "<span class=muted>-</span>"
    if isinstance(v, dict):
        return escape(", ".join(f"{k}: {_plain(x)}" for k, x in v.items()))
    if isinstance(v, list):
        return escape(", ".join(_plain(x) for x in v))
    return escape(_plain(v))


def _plain(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_plain(x)}" for k, x in v.items()) + "}"
    return str(v)
