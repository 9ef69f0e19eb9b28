"""NASA progpy's BatteryCircuit discharged to its end of discharge, as replay recordings.

A second progpy model with a known end of life for the RUL benchmark
(``bench_rul_battery.py``): each seeded cell is discharged from full under a load that
alternates between two levels every 10 minutes around a current of its own (0.35-0.9 A), with
an aged capacity (``qMax`` 75-100 % of progpy's) and internal resistance (``Rs`` 1-1.6 times),
until progpy's ``EOD`` event (voltage at ``VEOD``, 3.0 V): lives of about 2-7 h. Readings every
10 s of the voltage ``v``, the temperature ``t`` (noisy) and the current ``i`` (the operating
setting). The degradation is the discharge, so its onset is the first reading. Needs
``pip install "twinflow[bench]"``.
"""

from __future__ import annotations

import math
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from progpy_pump import iso_time, write_type

START = 1_704_067_200.0  # 2024-01-01T00:00:00Z
STEP_S = 10.0
SIGNALS = ("v", "t", "i")
NOISE = {"v": 0.005, "t": 0.05, "i": 0.0}
TYPE = "progpy_battery"
PREFIX = "cell"

INTERFACE = {
    "@context": "dtmi:dtdl:context;3",
    "@id": "dtmi:bench:ProgpyBattery;1",
    "@type": "Interface",
    "displayName": "progpy battery (equivalent circuit)",
    "contents": [{"@type": "Telemetry", "name": s, "schema": "double"} for s in SIGNALS],
}
PROFILE = f"""\
name: {TYPE}
model: "dtmi:bench:ProgpyBattery;1"
signals:
  v: {{low: 0, high: 5, rate_hz: 0.1, unit: V}}
  t: {{low: 250, high: 350, rate_hz: 0.1, unit: K}}
  i: {{low: 0, high: 5, rate_hz: 0.1, unit: A}}
"""


def _current(base: float, t: float) -> float:
    return base * (1.2 if (t % 1200.0) < 600.0 else 0.8)


def simulate_unit(seed: int) -> dict[str, Any]:
    """One cell from full to its end of discharge (1 s steps, a reading every 10 s)."""
    warnings.filterwarnings("ignore")
    from progpy.models import BatteryCircuit

    rng = np.random.default_rng(seed)
    base = float(rng.uniform(0.35, 0.9))
    m = BatteryCircuit(process_noise=0, measurement_noise=0)
    m.parameters["Rs"] = m.parameters["Rs"] * float(rng.uniform(1.0, 1.6))
    x = m.initialize()
    x["qb"] = x["qb"] * float(rng.uniform(0.75, 1.0))
    t, rows, failure = 0.0, [], math.nan
    while t < 12 * 3600.0:
        u = m.InputContainer({"i": _current(base, t)})
        x = m.next_state(x, u, 1.0)
        t += 1.0
        if t % STEP_S == 0.0:
            z = m.output(x)
            rows.append({"t_s": t, "v": float(z["v"]), "t": float(z["t"]), "i": float(u["i"])})
        if m.event_state(x)["EOD"] <= 0.0 or any(m.threshold_met(x).values()):
            failure = t
            break
    df = pl.DataFrame(rows)
    noisy = {s: df[s] + rng.normal(0.0, NOISE[s], df.height) for s in SIGNALS if NOISE[s]}
    return {
        "seed": seed,
        "mode": "discharge",
        "onset_s": float(df["t_s"][0]),
        "failure_s": failure,
        "frame": df.with_columns(**noisy),
    }


def twin(u: dict[str, Any]) -> str:
    return f"{PREFIX}-{u['seed']:02d}"


def write_units(units: list[dict[str, Any]], folder: Path) -> tuple[list[Path], Path]:
    """One CSV per cell (ISO times, UTC) and the faults file (onset: the first reading)."""
    files, faults = [], ["twin_id,kind,onset,failure"]
    for u in units:
        iso = pl.from_epoch((pl.col("t_s") + START).cast(pl.Int64), time_unit="s")
        out = folder / f"{twin(u)}.csv"
        u["frame"].with_columns(time=iso.dt.strftime("%Y-%m-%dT%H:%M:%SZ")).drop("t_s").write_csv(
            out
        )
        files.append(out)
        on, fail = iso_time(START + u["onset_s"]), iso_time(START + u["failure_s"])
        faults.append(f"{twin(u)},{u['mode']},{on},{fail}")
    path = folder / "faults.csv"
    path.write_text("\n".join(faults) + "\n")
    return files, path


def battery_models(folder: Path) -> Path:
    """The type's files (interface and profile) in ``folder/models``."""
    return write_type(folder, TYPE, INTERFACE, PROFILE)


def simulate_units(n_units: int) -> list[dict[str, Any]]:
    """The cells, simulated on two processes."""
    with ProcessPoolExecutor(max_workers=2) as pool:
        return list(pool.map(simulate_unit, range(n_units)))
