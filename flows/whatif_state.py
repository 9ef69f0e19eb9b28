"""A twin's state for a what-if, from a run's outputs or PostgreSQL: its recorded telemetry
(the history the analysis is warmed up on), its newest signals and, on the simulated plant,
its fault.

The newest value of a signal is a straight line fitted to its last five minutes, read at the
newest time (one noisy sample would set a temperature a few tenths off); its slope (per
second) comes along as ``<signal>.slope``, so a lagging temperature's trend is known.
``faults.json`` (written by ``twinflow demo``) holds the simulated plant's ground truth: a
machine fault that has begun by the what-if's time gives its kind, its severity now and the
time left until failure.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from twinflow.connectors.files import read_parquet_dir
from twinflow.connectors.simulator.dynamics import severity
from twinflow.connectors.simulator.faults import MACHINE_KINDS
from twinflow.core.errors import ConfigError
from twinflow.core.records import TelemetryFrame
from twinflow.core.redact import redact
from twinflow.core.times import iso
from twinflow.operators.catalog import TwinType
from twinflow.operators.whatif import FaultCourse
from twinflow.operators.whatif.scenario import CHUNK_S

#: Seconds of the newest readings a signal's newest value and slope are fitted to.
RECENT_S = 300


@dataclass(frozen=True)
class TwinNow:
    """Where a what-if starts: the twin, the time, its newest signals, history and fault."""

    twin_id: str
    twin_type: str
    time: float
    last: dict[str, float]
    history: tuple[TelemetryFrame, ...]
    fault: FaultCourse | None = None


def frames_of(
    twin_id: str, twin_type: str, rows: pl.DataFrame, signals: list[str]
) -> list[TelemetryFrame]:
    """Telemetry rows (``time`` and one column per signal) as frames of a minute each."""
    times = rows["time"].dt.epoch("us").to_numpy().astype(np.float64) / 1e6
    values = {s: rows[s].cast(pl.Float64).fill_null(np.nan).to_numpy() for s in signals}
    out = []
    for a in range(0, len(times), CHUNK_S):
        sl = slice(a, a + CHUNK_S)
        out.append(
            TelemetryFrame(twin_id, twin_type, times[sl], {s: v[sl] for s, v in values.items()})
        )
    return out


def state_from_outputs(
    out: Path,
    twin_id: str,
    types: dict[str, TwinType],
    at: datetime | None = None,
    history_s: float | None = None,
) -> TwinNow:
    """The twin's state at ``at`` (default: its newest reading) from a run's ``--out``, with
    its telemetry of the last ``history_s`` before it (default: all) as history."""
    telemetry = read_parquet_dir(out / "telemetry")
    if telemetry.is_empty():
        raise ConfigError(
            f"{out}: no telemetry under {out / 'telemetry'}; a what-if needs the twin's recorded "
            "telemetry (run without --no-telemetry)"
        )
    rows = telemetry.filter(pl.col("twin_id") == twin_id)
    if at is not None:
        rows = rows.filter(pl.col("time") <= at)
    if rows.is_empty():
        when = f" by {iso(at)}" if at is not None else ""
        raise ConfigError(f"{out}: twin {twin_id!r} has no telemetry{when}")
    rows = rows.sort("time")
    kind = _kind(types, str(rows["twin_type"][-1]), twin_id, str(out))
    state = state_from_rows(_recent(rows, history_s), twin_id, kind)
    return replace(state, fault=_truth(out / "faults.json", twin_id, state.time))


#: The twin's readings, newest first cut at ``at`` (the sink's table is long: one row each).
_TELEMETRY_SQL = """
SELECT time, signal, value FROM twinflow.telemetry
WHERE twin_id = %s AND time <= %s AND time > %s
ORDER BY time
"""


def state_from_db(
    url: str,
    twin_id: str,
    types: dict[str, TwinType],
    at: datetime | None = None,
    history_s: float = 6 * 3600.0,
) -> TwinNow:
    """The twin's state at ``at`` (default: its newest reading) from PostgreSQL: its type from
    ``twin_state``, its telemetry of the last ``history_s`` from ``telemetry``."""
    from twinflow.connectors.postgres.connection import connect

    with connect(url, application_name="twinflow-whatif") as conn:
        found = conn.execute(
            "SELECT twin_type FROM twinflow.twin_state WHERE twin_id = %s", (twin_id,)
        ).fetchone()
        if found is None:
            raise ConfigError(
                f"{redact(url)}: twin {twin_id!r} has no state in twinflow.twin_state"
            )
        newest = at
        if newest is None:
            row = conn.execute(
                "SELECT max(time) FROM twinflow.telemetry WHERE twin_id = %s", (twin_id,)
            ).fetchone()
            newest = None if row is None else row[0]
        if newest is None:
            raise ConfigError(f"{redact(url)}: twin {twin_id!r} has no telemetry")
        start = newest - timedelta(seconds=history_s)
        rows = conn.execute(_TELEMETRY_SQL, (twin_id, newest, start)).fetchall()
    if not rows:
        raise ConfigError(f"{redact(url)}: twin {twin_id!r} has no telemetry by {iso(newest)}")
    kind = _kind(types, str(found[0]), twin_id, redact(url))
    long = pl.DataFrame(rows, schema=["time", "signal", "value"], orient="row")
    wide = long.pivot(on="signal", index="time", values="value").sort("time")
    return state_from_rows(wide, twin_id, kind)


def _kind(types: dict[str, TwinType], name: str, twin_id: str, where: str) -> TwinType:
    kind = types.get(name)
    if kind is None:
        raise ConfigError(f"{where}: twin {twin_id!r} is of type {name!r}, unknown here")
    return kind


def _recent(rows: pl.DataFrame, history_s: float | None) -> pl.DataFrame:
    if history_s is None:
        return rows
    return rows.filter(pl.col("time") > rows["time"][-1] - timedelta(seconds=history_s))


def state_from_rows(rows: pl.DataFrame, twin_id: str, kind: TwinType) -> TwinNow:
    """The state at the newest of ``rows`` (``time`` and a column per signal, in time order)."""
    signals = [s.name for s in kind.scalar_signals if s.name in rows.columns]
    now = rows["time"][-1]
    recent = rows.filter(pl.col("time") > now - pl.duration(seconds=RECENT_S))
    t0 = now.timestamp()
    times = recent["time"].dt.epoch("us").to_numpy().astype(np.float64) / 1e6 - t0
    last: dict[str, float] = {}
    for s in signals:
        v = recent[s].cast(pl.Float64).fill_null(np.nan).to_numpy()
        ok = np.isfinite(v)
        if ok.sum() >= 10:
            slope, value = np.polyfit(times[ok], v[ok], 1)
            last[s], last[f"{s}.slope"] = float(value), float(slope)
        elif ok.any():
            last[s] = float(np.median(v[ok]))
    frames = tuple(frames_of(twin_id, kind.name, rows, signals))
    return TwinNow(twin_id, kind.name, t0, last, frames)


def _truth(path: Path, twin_id: str, t0: float) -> FaultCourse | None:
    """The simulated plant's fault of the twin, if it is a machine fault begun by ``t0``."""
    if not path.exists():
        return None
    for f in json.loads(path.read_text()):
        if f["twin_id"] != twin_id or f["kind"] not in MACHINE_KINDS:
            continue
        onset = datetime.fromisoformat(f["onset"].replace("Z", "+00:00")).timestamp()
        failure = datetime.fromisoformat(f["failure"].replace("Z", "+00:00")).timestamp()
        if onset <= t0 < failure:
            now = float(severity(np.array([t0]), onset, failure)[0])
            return FaultCourse(f["kind"], now, failure - t0)
        if t0 >= failure:
            return FaultCourse(f["kind"], 1.0, math.inf)
    return None


__all__ = [
    "CHUNK_S",
    "TwinNow",
    "frames_of",
    "state_from_db",
    "state_from_outputs",
    "state_from_rows",
]
