"""Score a run on the simulated plant against the simulator's ground truth.

Pure functions over what the run wrote (alerts, commands, window features, telemetry) and the
injected faults; the demo prints the result and stores it as ``summary.json``.

- A fault is *detected* when an alert is raised on its twin between its onset and its failure;
  the lead time is failure minus that alert's time; the diagnosis is right when the alert's
  diagnosis matches the fault's kind.
- A fault with no alert before its failure but one after it (before the twin's next fault) is
  *detected after failure*, said so with how late; it does not count as detected.
- A *false alarm* is a raised alert on a twin before any of its faults began (or on a twin
  with no fault); the summary lists each with the rule that fired.
- RUL is checked at the window nearest the middle of each degradation's detected life.
- A command's *effect* is the mean of the signal it acts on in the half hour that starts 30 min
  after it (the machine needs time to respond), minus the same mean in a counterfactual run of
  the same twin without any command (the simulator is deterministic for a seed).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from twinflow.connectors.simulator.types import EFFECT_SIGNAL
from twinflow.core.records import FaultTruth
from twinflow.core.times import iso

#: Diagnosis an alert should carry for each kind of injected fault.
EXPECTED_DIAGNOSIS: Mapping[str, str] = {
    "bearing": "bearing",
    "overheating": "overheating",
    "impeller_wear": "impeller_wear",
    "underperformance": "underperformance",
    "sensor_stuck": "sensor_fault",
    "sensor_drift": "sensor_fault",
    "sensor_spikes": "sensor_fault",
    "sensor_dropout": "sensor_fault",
}

#: False alarms listed one per line in the printed summary (all are in summary.json).
FALSE_ALARMS_SHOWN = 10

#: Faults that degrade a machine over time, for which a remaining useful life makes sense.
DEGRADATION_KINDS = frozenset({"bearing", "overheating", "impeller_wear", "underperformance"})


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def score_faults(
    faults: Iterable[FaultTruth], alerts: Iterable[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], list[Mapping[str, Any]]]:
    """Per-fault detection results and the list of false alarms."""
    raised = sorted(
        (a for a in alerts if a["state"] == "raised"), key=lambda a: (a["time"], a["alert_id"])
    )
    by_twin: dict[str, list[Mapping[str, Any]]] = {}
    for a in raised:
        by_twin.setdefault(a["twin_id"], []).append(a)
    faults = sorted(faults, key=lambda f: (f.twin_id, f.onset))
    first_onset: dict[str, datetime] = {}
    results = []
    for i, f in enumerate(faults):
        first_onset[f.twin_id] = min(first_onset.get(f.twin_id, f.onset), f.onset)
        hits = [a for a in by_twin.get(f.twin_id, []) if f.onset <= _t(a["time"]) <= f.failure]
        following = [g.onset for g in faults[i + 1 :] if g.twin_id == f.twin_id]
        until = following[0] if following else datetime.max.replace(tzinfo=f.failure.tzinfo)
        late = [a for a in by_twin.get(f.twin_id, []) if f.failure < _t(a["time"]) < until]
        want = EXPECTED_DIAGNOSIS.get(f.kind)
        right = [a for a in hits if a.get("diagnosis") == want]
        first = hits[0] if hits else None
        first_right = right[0] if right else None
        results.append(
            {
                **f.to_json(),
                "first_alert": first["time"] if first else None,
                "first_alert_rule": first["rule"] if first else None,
                "first_alert_diagnosis": first.get("diagnosis") if first else None,
                "lead_time_hours": _hours(f.failure - _t(first["time"])) if first else None,
                "diagnosed": first_right is not None,
                "first_diagnosis_alert": first_right["time"] if first_right else None,
                "after_failure_alert": late[0]["time"] if late and not hits else None,
                "after_failure_rule": late[0]["rule"] if late and not hits else None,
                "after_failure_hours": (
                    _hours(_t(late[0]["time"]) - f.failure) if late and not hits else None
                ),
            }
        )
    false_alarms = [
        a
        for a in raised
        if a["twin_id"] not in first_onset or _t(a["time"]) < first_onset[a["twin_id"]]
    ]
    return results, false_alarms


def _hours(td: timedelta) -> float:
    return round(td.total_seconds() / 3600.0, 3)


def score_rul(faults: Iterable[FaultTruth], windows: pl.DataFrame) -> list[dict[str, Any]]:
    """The RUL estimate at mid-life of each degradation fault, against the truth."""
    if windows.is_empty() or "rul_hours" not in windows.columns:
        return []
    out = []
    for f in faults:
        if f.kind not in DEGRADATION_KINDS:
            continue
        rows = windows.filter(
            (pl.col("twin_id") == f.twin_id)
            & (pl.col("end") > f.onset)
            & (pl.col("end") <= f.failure)
            & pl.col("rul_hours").is_not_null()
            & pl.col("rul_hours").is_finite()
        ).sort("end")
        entry: dict[str, Any] = {"twin_id": f.twin_id, "kind": f.kind, "estimates": rows.height}
        if rows.height:
            mid = f.onset + (f.failure - f.onset) / 2
            idx = (rows["end"] - mid).abs().arg_min()
            row = rows.row(idx or 0, named=True)
            truth = (f.failure - row["end"]).total_seconds() / 3600.0
            low, high = row["rul_low_hours"], row["rul_high_hours"]
            entry.update(
                at=iso(row["end"]),
                true_hours=round(truth, 2),
                estimate_hours=round(row["rul_hours"], 2),
                low_hours=None if low is None or not math.isfinite(low) else round(low, 2),
                high_hours=None if high is None or not math.isfinite(high) else round(high, 2),
                error_hours=round(row["rul_hours"] - truth, 2),
                covered=bool(low is not None and high is not None and low <= truth <= high),
            )
        out.append(entry)
    return out


def score_commands(
    commands: Iterable[Mapping[str, Any]],
    telemetry: pl.DataFrame,
    baseline: pl.DataFrame | None = None,
) -> list[dict[str, Any]]:
    """Mean of the acted-on signal before and after each command.

    ``baseline`` is the same plant simulated without any command (the counterfactual): the
    effect of a command is the signal after it minus the same signal, same time, without it.
    """
    out = []
    for c in commands:
        if c.get("status") != "queued":  # each command that went to the plant, once
            continue
        signal = EFFECT_SIGNAL.get(c["twin_type"])
        entry: dict[str, Any] = {
            "command_id": c["command_id"],
            "twin_id": c["twin_id"],
            "name": c["name"],
            "params": c["params"],
            "issued_at": c["issued_at"],
            "signal": signal,
        }
        if signal:
            t = _t(c["issued_at"])
            after = (t + timedelta(minutes=30), t + timedelta(minutes=60))
            entry["before"] = _mean(telemetry, c["twin_id"], signal, t - timedelta(minutes=30), t)
            entry["after"] = _mean(telemetry, c["twin_id"], signal, *after)
            if baseline is not None:
                entry["after_without_command"] = _mean(baseline, c["twin_id"], signal, *after)
            ref = entry.get("after_without_command", entry["before"])
            entry["effect"] = (
                None if entry["after"] is None or ref is None else round(entry["after"] - ref, 2)
            )
        out.append(entry)
    return out


def _mean(frame: pl.DataFrame, twin_id: str, signal: str, a: datetime, b: datetime) -> float | None:
    """Mean of a signal of one twin over ``[a, b)`` (None if no reading)."""
    if frame.is_empty() or signal not in frame.columns:
        return None
    sel = (
        frame.filter((pl.col("twin_id") == twin_id) & (pl.col("time") >= a) & (pl.col("time") < b))[
            signal
        ]
        .drop_nans()
        .drop_nulls()
    )
    return None if sel.is_empty() else round(float(sel.mean()), 2)  # type: ignore[arg-type]


def summarise(
    *,
    readings: int,
    wall_seconds: float,
    faults: Sequence[FaultTruth],
    alerts: Sequence[Mapping[str, Any]],
    commands: Sequence[Mapping[str, Any]],
    windows: pl.DataFrame,
    telemetry: pl.DataFrame,
    baseline: pl.DataFrame | None = None,
    dead_letters: int,
    late_readings: int,
    twins: int,
    simulated_seconds: float,
    seed: int,
) -> dict[str, Any]:
    """The figures of ``summary.json``."""
    fault_rows, false_alarms = score_faults(faults, alerts)
    raised = [a for a in alerts if a["state"] == "raised"]
    detected = sum(1 for f in fault_rows if f["first_alert"])
    return {
        "twins": twins,
        "seed": seed,
        "simulated_hours": round(simulated_seconds / 3600.0, 3),
        "readings": readings,
        "wall_seconds": round(wall_seconds, 3),
        "readings_per_second": round(readings / wall_seconds) if wall_seconds > 0 else None,
        "alerts": len(raised),
        "alerts_by_rule": dict(sorted(Counter(a["rule"] for a in raised).items())),
        "alerts_by_diagnosis": dict(
            sorted(Counter(str(a.get("diagnosis")) for a in raised).items())
        ),
        "false_alarms": len(false_alarms),
        "false_alarm_list": [
            {k: a[k] for k in ("twin_id", "rule", "time", "diagnosis")} for a in false_alarms
        ],
        "faults_detected": detected,
        "faults_diagnosed": sum(1 for f in fault_rows if f["diagnosed"]),
        "faults": fault_rows,
        "rul": score_rul(faults, windows),
        "commands": len([c for c in commands if c.get("status") == "queued"]),
        "command_outcomes": _outcomes(commands),
        "commands_held": [
            {k: c[k] for k in ("twin_id", "name", "issued_at", "detail")}
            for c in commands
            if c.get("status") == "rejected"
        ],
        "command_effects": score_commands(commands, telemetry, baseline),
        "dead_letters": dead_letters,
        "late_readings": late_readings,
    }


def render(summary: Mapping[str, Any]) -> str:
    """The summary as a few readable paragraphs for the terminal."""
    s = summary
    lines = [
        f"twinflow demo: {s['twins']} twins, {s['simulated_hours']} h simulated, seed {s['seed']}",
        f"  readings      {s['readings']:,} in {s['wall_seconds']:.1f} s "
        f"= {s['readings_per_second'] or 0:,} readings/s",
        f"  dead letters  {s['dead_letters']:,} (late readings {s['late_readings']:,})",
        f"  alerts        {s['alerts']} raised: "
        + (", ".join(f"{k} {v}" for k, v in s["alerts_by_rule"].items()) or "none"),
        f"  false alarms  {s['false_alarms']}"
        + (
            " (alerts on twins with no fault, or before their fault began):"
            if s["false_alarms"]
            else ""
        ),
    ]
    shown = s.get("false_alarm_list", [])[:FALSE_ALARMS_SHOWN]
    for a in shown:
        lines.append(
            f"    {a['twin_id']:<10} {a['rule']} at {a['time'][:16].replace('T', ' ')}"
            f" ({a.get('diagnosis') or 'no diagnosis'})"
        )
    if s["false_alarms"] > len(shown):
        lines.append(f"    ... and {s['false_alarms'] - len(shown)} more in summary.json")
    lines += [
        f"  faults        {s['faults_detected']}/{len(s['faults'])} detected before failure, "
        f"{s['faults_diagnosed']} with the right diagnosis",
    ]
    for f in s["faults"]:
        if f["first_alert"]:
            what = (
                f"detected {f['lead_time_hours']:.1f} h before failure by {f['first_alert_rule']}"
                f" ({f['first_alert_diagnosis'] or 'no diagnosis'})"
            )
        elif f.get("after_failure_alert"):
            what = (
                f"NOT detected before failure; detected {f['after_failure_hours']:.1f} h after "
                f"failure by {f['after_failure_rule']}"
            )
        else:
            what = "NOT detected"
        lines.append(f"    {f['twin_id']:<10} {f['kind']:<17} {what}")
    if s["rul"]:
        lines.append("  remaining useful life at mid-life (estimate [interval] vs truth, hours)")
        for r in s["rul"]:
            if "estimate_hours" in r:
                lo = "-" if r["low_hours"] is None else f"{r['low_hours']:.1f}"
                hi = "-" if r["high_hours"] is None else f"{r['high_hours']:.1f}"
                lines.append(
                    f"    {r['twin_id']:<10} {r['kind']:<17} {r['estimate_hours']:.1f} "
                    f"[{lo}, {hi}] vs {r['true_hours']:.1f}"
                )
            else:
                lines.append(f"    {r['twin_id']:<10} {r['kind']:<17} no estimate")
    ends = ", ".join(f"{n} {k}" for k, n in sorted(s.get("command_outcomes", {}).items()))
    lines.append(
        f"  commands      {s['commands']} sent to the plant ({ends or 'none ended'}), "
        f"{len(s['commands_held'])} held back (their evidence came from a suspect sensor)"
    )
    if s["command_effects"]:
        lines.append(
            "    (signal mean 30 min before -> 30-60 min after; effect = after minus the same "
            "plant simulated without the command)"
        )
    for c in s["command_effects"]:
        params = ", ".join(f"{k}={v:.2f}" for k, v in c["params"].items() if v is not None)
        head = f"    {c['twin_id']:<10} {c['name']}({params}) at {c['issued_at'][11:16]}"
        if c.get("effect") is not None:
            lines.append(
                f"{head}: {c['signal']} {c['before']} -> {c['after']}, effect "
                f"{c['effect']:+.2f} (without: {c.get('after_without_command')})"
            )
        else:
            lines.append(f"{head}: effect not measured (run too short after the command)")
    return "\n".join(lines)


def _outcomes(commands: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How the commands that were sent ended: succeeded, failed, timed_out, ..."""
    sent = {c["command_id"] for c in commands if c.get("status") == "queued"}
    ends = ("succeeded", "failed", "timed_out", "expired", "rejected")
    out: dict[str, int] = {}
    for c in commands:
        if c["command_id"] in sent and c.get("status") in ends:
            out[c["status"]] = out.get(c["status"], 0) + 1
    return out
