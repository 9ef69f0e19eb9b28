"""NASA progpy's CentrifugalPump run to failure, as recordings for the analytics benchmark.

Each seeded unit starts from a warmed-up healthy state, runs healthy for 4-8 h under a load
cycle (speed setpoint alternating every 30 min), then wears (impeller, thrust bearing,
radial bearing or all three; the mode is the seed modulo 4, the rates drawn per unit) until
progpy's first failure event; 10 s readings with sensor noise. Used by
``bench_analytics.py``; needs ``pip install "twinflow[bench]"``.
"""

from __future__ import annotations

import json
import math
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

START = 1_704_067_200.0  # 2024-01-01T00:00:00Z
STEP_S = 10.0
SIGNALS = ("w", "Qout", "Tt", "Tr", "To", "wsync")
NOISE = {"w": 0.3, "Qout": 2e-4, "Tt": 0.15, "Tr": 0.15, "To": 0.15, "wsync": 0.0}
#: Wear rates per mode (progpy's state names), scaled per unit by a log-normal factor.
MODES = {
    "impeller": {"wA": 5e-3},
    "thrust": {"wThrust": 5e-11},
    "radial": {"wRadial": 8e-11},
    "mixed": {"wA": 2.5e-3, "wThrust": 2.5e-11, "wRadial": 4e-11},
}

INTERFACE = {
    "@context": "dtmi:dtdl:context;3",
    "@id": "dtmi:bench:ProgpyPump;1",
    "@type": "Interface",
    "displayName": "progpy centrifugal pump",
    "contents": [{"@type": "Telemetry", "name": s, "schema": "double"} for s in SIGNALS],
}
PROFILE = """\
name: progpy_pump
model: "dtmi:bench:ProgpyPump;1"
signals:
  w: {low: 0, high: 600, rate_hz: 0.1, unit: rad/s}
  Qout: {low: 0, high: 1, rate_hz: 0.1, unit: m3/s}
  Tt: {low: 200, high: 500, rate_hz: 0.1, unit: K}
  Tr: {low: 200, high: 500, rate_hz: 0.1, unit: K}
  To: {low: 200, high: 500, rate_hz: 0.1, unit: K}
  wsync: {low: 0, high: 600, rate_hz: 0.1, unit: rad/s}
"""


def _load(m: Any, t: float) -> Any:
    speed = 376.991 * (1.0 if (t % 3600.0) < 1800.0 else 0.95)
    return m.InputContainer(
        {"Tamb": 290.0, "V": 471.2389, "pdisch": 928654.0, "psuc": 239179.0, "wsync": speed}
    )


def simulate_unit(seed: int) -> dict[str, Any]:
    """One pump: healthy, then wear until progpy's first failure event (10 s readings)."""
    warnings.filterwarnings("ignore")
    from progpy.models import CentrifugalPump

    rng = np.random.default_rng(seed)
    m = CentrifugalPump(process_noise=0, measurement_noise=0)
    x = m.initialize(_load(m, 0.0))
    for k in ("wA", "wThrust", "wRadial"):
        x[k] = 0.0
    healthy_h = float(rng.uniform(4.0, 8.0))
    mode = list(MODES)[seed % len(MODES)]
    factor = float(rng.lognormal(0.0, 0.3))
    t, rows, warm = 0.0, [], 6 * 3600.0  # a healthy pre-run warms the oil and bearings
    onset = warm + healthy_h * 3600.0
    failure, worn = math.nan, False
    while t < warm + 90 * 3600.0:
        if t >= onset and not worn:
            worn = True
            for k, rate in MODES[mode].items():
                x[k] = rate * factor
        x = m.next_state(x, _load(m, t), 1.0)
        t += 1.0
        if t >= warm and t % STEP_S == 0.0:
            z = m.output(x)
            u = _load(m, t)
            row = {s: float(z[s]) if s != "wsync" else float(u["wsync"]) for s in SIGNALS}
            rows.append({"t": t - warm, **row})
        if any(m.threshold_met(x).values()):
            failure = t - warm
            break
    df = pl.DataFrame(rows)
    noise = {
        s: df[s] + rng.normal(0.0, NOISE[s], df.height) if NOISE[s] else df[s] for s in SIGNALS
    }
    return {
        "seed": seed,
        "mode": mode,
        "onset_s": onset - warm,
        "failure_s": failure,
        "frame": df.with_columns(**noise),
    }


def write_units(units: list[dict[str, Any]], folder: Path) -> tuple[list[Path], Path]:
    """One CSV per unit (ISO times, UTC) and the faults file."""
    files, faults = [], ["twin_id,kind,onset,failure"]
    for u in units:
        twin = f"pump-{u['seed']:02d}"
        iso = pl.from_epoch((pl.col("t") + START).cast(pl.Int64), time_unit="s")
        out = folder / f"{twin}.csv"
        u["frame"].with_columns(time=iso.dt.strftime("%Y-%m-%dT%H:%M:%SZ")).drop("t").write_csv(out)
        files.append(out)
        on = iso_time(START + u["onset_s"])
        fail = iso_time(START + u["failure_s"])
        faults.append(f"{twin},{u['mode']},{on},{fail}")
    path = folder / "faults.csv"
    path.write_text("\n".join(faults) + "\n")
    return files, path


def iso_time(t: float) -> str:
    """Epoch seconds as an ISO 8601 UTC time, as the faults files write them."""
    return np.datetime_as_string(np.datetime64(int(t), "s")) + "Z"


def write_type(folder: Path, name: str, interface: Any, profile: str) -> Path:
    """A twin type's files (DTDL interface and profile) in ``folder/models``."""
    models = folder / "models"
    models.mkdir(parents=True, exist_ok=True)
    (models / f"{name}.json").write_text(json.dumps(interface))
    (models / f"{name}.yaml").write_text(profile)
    return models


def pump_deployment(folder: Path) -> Path:
    write_type(folder, "progpy_pump", INTERFACE, PROFILE)
    return folder


def simulate_units(n_units: int, cache: Path | None) -> list[dict[str, Any]]:
    """The units, simulated on two processes (or read back from ``cache``)."""
    if cache is not None and (cache / "units.json").exists():
        meta = json.loads((cache / "units.json").read_text())
        if len(meta) == n_units:
            return [{**m, "frame": pl.read_parquet(cache / f"{m['seed']}.parquet")} for m in meta]
    with ProcessPoolExecutor(max_workers=2) as pool:
        units = list(pool.map(simulate_unit, range(n_units)))
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        for u in units:
            u["frame"].write_parquet(cache / f"{u['seed']}.parquet")
        meta = [{k: v for k, v in u.items() if k != "frame"} for u in units]
        (cache / "units.json").write_text(json.dumps(meta))
    return units
