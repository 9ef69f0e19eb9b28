"""What a what-if reports: each scenario's predicted signals per block, the alarms it would
raise or clear, and its time to failure against the baseline (:mod:`twinflow.flows.whatif`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from twinflow.core.records import Alert, TelemetryFrame, WindowFeatures
from twinflow.core.times import iso, utc

if TYPE_CHECKING:
    from twinflow.flows.whatif_state import TwinNow

#: Length of the blocks the report shows each signal's mean over.
BLOCK_S = 15 * 60


@dataclass(frozen=True)
class Outcome:
    """One scenario's prediction: signal means per block, alarm changes, time to failure."""

    name: str
    signals: Mapping[str, list[float | None]]
    alerts: list[dict[str, Any]]
    failure_hours: float | None
    failure_low_hours: float | None
    failure_high_hours: float | None
    frames: tuple[TelemetryFrame, ...] = field(default=(), repr=False, compare=False)

    def mean(self, signal: str, start_s: float, end_s: float, t0: float) -> float | None:
        """Mean of a predicted signal over ``[start_s, end_s)`` from now."""
        parts = [
            f.signals[signal][(f.times >= t0 + start_s) & (f.times < t0 + end_s)]
            for f in self.frames
            if signal in f.signals
        ]
        values = np.concatenate(parts) if parts else np.array([])
        values = values[np.isfinite(values)]
        return float(values.mean()) if values.size else None


@dataclass(frozen=True)
class WhatIfReport:
    twin_id: str
    twin_type: str
    time: float
    horizon_s: float
    blocks_min: list[int]
    outcomes: tuple[Outcome, ...]

    @property
    def baseline(self) -> Outcome:
        return self.outcomes[0]

    def to_json(self) -> dict[str, Any]:
        base = self.baseline.failure_hours
        return {
            "twin_id": self.twin_id,
            "twin_type": self.twin_type,
            "time": iso(utc(self.time)),
            "horizon_s": self.horizon_s,
            "blocks_min": self.blocks_min,
            "scenarios": [
                {
                    "name": o.name,
                    "signals": o.signals,
                    "alerts": o.alerts,
                    "failure_hours": _r(o.failure_hours),
                    "failure_low_hours": _r(o.failure_low_hours),
                    "failure_high_hours": _r(o.failure_high_hours),
                    "failure_change_hours": _change(o.failure_hours, base),
                }
                for o in self.outcomes
            ],
        }


def _r(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, 3)


def _change(x: float | None, base: float | None) -> float | str | None:
    """Time to failure minus the baseline's; ``"longer"``/``"shorter"`` when one is endless."""
    if x is None or base is None:
        return None
    if math.isinf(x) and math.isinf(base):
        return 0.0
    if math.isinf(x) or math.isinf(base):
        return "longer" if math.isinf(x) else "shorter"
    return round(x - base, 3)


def outcome(
    name: str,
    twin: TwinNow,
    horizon_s: float,
    frames: Sequence[TelemetryFrame],
    alerts: Sequence[Alert],
    windows: Sequence[WindowFeatures],
) -> Outcome:
    """What a scenario's run says: block means, alarm changes after now, time to failure."""
    ahead = [a for a in alerts if a.time.timestamp() > twin.time]
    changes = [
        {
            "rule": a.rule,
            "state": a.state.value,
            "at": iso(a.time),
            "after_min": round((a.time.timestamp() - twin.time) / 60.0, 1),
            "severity": a.severity.value,
            "diagnosis": a.diagnosis,
        }
        for a in sorted(ahead, key=lambda a: (a.time, a.rule))
    ]
    out = Outcome(name, {}, changes, None, None, None, tuple(frames))
    blocks = range(BLOCK_S, int(horizon_s) + 1, BLOCK_S)
    names = sorted({s for f in frames for s in f.signals})
    signals = {s: [_round(out.mean(s, b - BLOCK_S, b, twin.time)) for b in blocks] for s in names}
    estimated = [w for w in windows if w.rul is not None and w.end.timestamp() > twin.time]
    ttf: tuple[float | None, float | None, float | None] = (None, None, None)
    if estimated:
        last = max(estimated, key=lambda w: w.end)
        assert last.rul is not None
        lived = (last.end.timestamp() - twin.time) / 3600.0
        rul = last.rul
        ttf = (lived + rul.hours, lived + rul.low_hours, lived + rul.high_hours)
    return Outcome(name, signals, changes, *ttf, frames=tuple(frames))


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def render(report: WhatIfReport) -> str:
    """The scenarios side by side, for the terminal."""
    return render_doc(report.to_json())


def render_doc(doc: Mapping[str, Any]) -> str:
    """A report's document (:meth:`WhatIfReport.to_json`, or a ``whatif_result``'s report)
    for the terminal."""
    head = f"what-if for {doc['twin_id']} ({doc['twin_type']}) from {doc['time']}"
    lines = [head, f"  signal means per {BLOCK_S // 60} min block ending at +min:"]
    for o in doc["scenarios"]:
        lines.append(f"  [{o['name']}]")
        for s, values in o["signals"].items():
            cells = " ".join("    -" if v is None else f"{v:8.2f}" for v in values)
            lines.append(f"    {s:<22}{cells}")
        for a in o["alerts"]:
            lines.append(f"    alarm {a['rule']} {a['state']} at +{a['after_min']:g} min")
        if not o["alerts"]:
            lines.append("    no alarm raised or cleared")
        lines.append(f"    time to failure {_hours(o)}; change {_shown(o['failure_change_hours'])}")
    return "\n".join(lines)


def _hours(o: Mapping[str, Any]) -> str:
    if o["failure_hours"] is None:
        return "no estimate (no degradation trend)"
    lo, hi = o["failure_low_hours"], o["failure_high_hours"]
    span = "" if lo is None or hi is None else f" [{lo:.1f}, {hi:.1f}]"
    return f"{o['failure_hours']:.1f} h{span}"


def _shown(x: object) -> str:
    if x is None:
        return "-"
    return f"{x:+.1f} h" if isinstance(x, float) else str(x)


__all__ = ["BLOCK_S", "Outcome", "WhatIfReport", "outcome", "render", "render_doc"]
