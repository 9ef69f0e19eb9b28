"""Benchmark: detection and remaining useful life through ``twinflow replay``, against baselines.

Two recordings, each scored by ``twinflow replay --faults`` (:mod:`twinflow.flows.scoring`):

- **progpy CentrifugalPump** (NASA's prognostics package, ``pip install "twinflow[bench]"``):
  seeded pumps start from a warmed-up healthy state, run healthy for a few hours under a load
  cycle (speed setpoint alternating every 30 min), then wear sets in (impeller, thrust
  bearing, radial bearing or all three, rates drawn per unit) until progpy's first failure
  threshold; 10 s readings of speed, flow, three temperatures and the setpoint, with sensor
  noise. The twin type is defined only by files (no rules, no indicators): the generic
  rules, the anomaly detector and the anomaly-score health index. The units are split in two
  halves; each half is replayed with the default failure level and with the level learned
  from the other half (``run_replay(history=...)``, ``twinflow replay --history``).
- **The demo plant** (the simulator, 1 Hz, its injected faults).

Printed per run: point-wise F1 and false alarms per day, lead time of the first alert,
the share of degradations whose first alert came >= 20 % of the degradation period before
failure, alpha-lambda accuracy (alpha 0.2, lambda 0.5), the interval's coverage at half
life and RMSE of the RUL, next to the baselines *always anomalous* (every window flagged)
and *mean life* (RUL = mean life of the other units minus the age). Run:
``.venv/bin/python tests/benchmarks/bench_analytics.py [--units 12] [--demo-twins 20]``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from twinflow.connectors.files import read_jsonl, read_parquet_dir
from twinflow.connectors.recorded.spec import replay_spec
from twinflow.flows.deploy import load_deployment
from twinflow.flows.replay import run_replay

START = 1_704_067_200.0  # 2024-01-01T00:00:00Z
STEP_S = 10.0
SIGNALS = ("w", "Qout", "Tt", "Tr", "To", "wsync")
NOISE = {"w": 0.3, "Qout": 2e-4, "Tt": 0.15, "Tr": 0.15, "To": 0.15, "wsync": 0.0}
#: Wear rates per mode (progpy's state names), scaled per unit by a log-normal factor.
MODES = {
    "impeller": {"wA": 2e-3},
    "thrust": {"wThrust": 1.5e-11},
    "radial": {"wRadial": 2e-11},
    "mixed": {"wA": 1e-3, "wThrust": 8e-12, "wRadial": 1e-11},
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
  w: {low: 0, high: 600, rate_hz: 0.1}
  Qout: {low: 0, high: 1, rate_hz: 0.1}
  Tt: {low: 200, high: 500, rate_hz: 0.1}
  Tr: {low: 200, high: 500, rate_hz: 0.1}
  To: {low: 200, high: 500, rate_hz: 0.1}
  wsync: {low: 0, high: 600, rate_hz: 0.1}
"""


# -- progpy units ------------------------------------------------------------------------


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
    while t < warm + 120 * 3600.0:
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
        on = _iso(START + u["onset_s"])
        fail = _iso(START + u["failure_s"])
        faults.append(f"{twin},{u['mode']},{on},{fail}")
    path = folder / "faults.csv"
    path.write_text("\n".join(faults) + "\n")
    return files, path


def _iso(t: float) -> str:
    return np.datetime_as_string(np.datetime64(int(t), "s")) + "Z"


def pump_deployment(folder: Path) -> Path:
    models = folder / "models"
    models.mkdir(parents=True, exist_ok=True)
    (models / "progpy_pump.json").write_text(json.dumps(INTERFACE))
    (models / "progpy_pump.yaml").write_text(PROFILE)
    return folder


def deployment_file(folder: Path, twins: dict[str, str], models: bool) -> Path:
    lines = ["version: 1", "site: bench"]
    if models:
        lines.append("models: [models]")
    lines.append("twins:")
    lines += [f"  - {{id: {t}, type: {k}, protocol: replay}}" for t, k in twins.items()]
    path = folder / "dep.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


# -- scores and baselines ----------------------------------------------------------------


def rul_at(windows: pl.DataFrame, twin: str, at: float) -> dict[str, float] | None:
    """The RUL estimate of the window ending nearest ``at`` (epoch seconds)."""
    rows = windows.filter(pl.col("twin_id") == twin)
    if rows.is_empty():
        return None
    ends = rows["end"].dt.epoch("us").to_numpy() / 1e6
    i = int(np.argmin(np.abs(ends - at)))
    row = rows.row(i, named=True)
    return {
        "end": float(ends[i]),
        "hours": _num(row.get("rul_hours")),
        "low": _num(row.get("rul_low_hours")),
        "high": _num(row.get("rul_high_hours")),
    }


def _num(v: Any) -> float:
    return math.inf if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def score_units(out: Path, faults: list[dict[str, Any]], lives: dict[str, float]) -> dict[str, Any]:
    """The run's own scores plus per-unit RUL checks and the mean-life baseline."""
    summary = json.loads((out / "summary.json").read_text())
    s = summary["scores"]
    windows = read_parquet_dir(out / "windows")
    early = hits = covered = base_hits = 0
    sq: list[float] = []
    base_sq: list[float] = []
    for f in faults:
        on, fail = f["onset"], f["failure"]
        period = fail - on
        row = next(e for e in s["events"] if e["twin_id"] == f["twin"])
        if row["lead_time_hours"] is not None and row["lead_time_hours"] * 3600 >= 0.2 * period:
            early += 1
        est = rul_at(windows, f["twin"], on + 0.5 * period)
        if est is not None:
            truth = (fail - est["end"]) / 3600.0
            hits += abs(est["hours"] - truth) <= 0.2 * truth
            covered += est["low"] <= truth <= est["high"]
        others = [v for k, v in lives.items() if k != f["twin"]]
        mean_life = statistics.fmean(others) if others else math.nan
        at = on + 0.5 * period
        truth = (fail - at) / 3600.0
        guess = (mean_life - (at - f["start"])) / 3600.0
        base_hits += abs(guess - truth) <= 0.2 * truth
        rows = windows.filter(
            (pl.col("twin_id") == f["twin"]) & pl.col("rul_hours").is_finite()
        ).select(pl.col("end").dt.epoch("us") / 1e6, "rul_hours")
        for end, r in rows.iter_rows():
            if on < end <= fail:
                sq.append((r - (fail - end) / 3600.0) ** 2)
                base_sq.append(((mean_life - (end - f["start"])) - (fail - end)) ** 2 / 3600.0**2)
    n = len(faults)
    pw = s["pointwise"]
    positives, total = pw["tp"] + pw["fn"], pw["windows"]
    always_p = positives / total if total else 0.0
    return {
        "f1": pw["f1"],
        "false_alarms_per_day": s["false_alarms_per_day"],
        "lead_median_h": (s.get("lead_time_hours") or {}).get("median"),
        "early_share": early / n,
        "alpha_lambda": hits / n,
        "covered": covered / n,
        "rmse_h": math.sqrt(statistics.fmean(sq)) if sq else None,
        "always_f1": 2 * always_p / (always_p + 1.0) if always_p else 0.0,
        "mean_life_alpha_lambda": base_hits / n,
        "mean_life_rmse_h": math.sqrt(statistics.fmean(base_sq)) if base_sq else None,
        "learned": summary.get("learned_failure_levels"),
    }


def _fmt(v: Any, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def print_row(name: str, r: dict[str, Any]) -> None:
    print(
        f"  {name:<34} F1 {_fmt(r['f1'])} (always-anomalous {r['always_f1']:.2f}) | "
        f"false alarms/day {_fmt(r['false_alarms_per_day'])} | lead median "
        f"{_fmt(r['lead_median_h'], '.1f')} h | first alert >= 20 % early "
        f"{r['early_share']:.0%}"
    )
    print(
        f"  {'':<34} RUL alpha-lambda(0.2, 0.5) {r['alpha_lambda']:.0%} (mean life "
        f"{r['mean_life_alpha_lambda']:.0%}) | interval covers truth {r['covered']:.0%} | "
        f"RMSE {_fmt(r['rmse_h'], '.1f')} h (mean life {_fmt(r['mean_life_rmse_h'], '.1f')} h)"
        + (f" | learned failure level {r['learned']}" if r["learned"] else "")
    )


# -- runs --------------------------------------------------------------------------------


def progpy_bench(root: Path, n_units: int) -> None:
    with ProcessPoolExecutor(max_workers=2) as pool:
        units = list(pool.map(simulate_unit, range(n_units)))
    units = [u for u in units if math.isfinite(u["failure_s"])]
    lives = {f"pump-{u['seed']:02d}": u["failure_s"] for u in units}
    periods = [(u["failure_s"] - u["onset_s"]) / 3600.0 for u in units]
    print(
        f"progpy CentrifugalPump: {len(units)} units run to failure; degradation "
        f"{min(periods):.1f}-{max(periods):.1f} h (median {statistics.median(periods):.1f} h); "
        f"modes {sorted({u['mode'] for u in units})}"
    )
    pump_deployment(root)
    halves = [units[0::2], units[1::2]]
    spec = replay_spec({"time": {"zone": "UTC"}}, Path("bench"))
    outs: dict[tuple[int, str], Path] = {}
    results: dict[str, list[dict[str, Any]]] = {"default": [], "history": []}
    for h, part in enumerate(halves):
        folder = root / f"half{h}"
        folder.mkdir()
        files, faults = write_units(part, folder)
        twins = {f"pump-{u['seed']:02d}": "progpy_pump" for u in part}
        (folder / "models").symlink_to(root / "models")
        dep = load_deployment(deployment_file(folder, twins, models=True))
        outs[(h, "files")] = folder
        out = folder / "out-default"
        run_replay(dep, files, spec, out, faults=faults, write_telemetry=False, progress=None)
        outs[(h, "default")] = out
    for h, part in enumerate(halves):
        folder = outs[(h, "files")]
        files = sorted(folder.glob("pump-*.csv"))
        dep = load_deployment(folder / "dep.yaml")
        out = folder / "out-history"
        run_replay(
            dep,
            files,
            spec,
            out,
            faults=folder / "faults.csv",
            history=outs[(1 - h, "default")],
            write_telemetry=False,
            progress=None,
        )
        truth = [
            {
                "twin": f"pump-{u['seed']:02d}",
                "start": START,
                "onset": START + u["onset_s"],
                "failure": START + u["failure_s"],
            }
            for u in part
        ]
        results["default"].append(score_units(outs[(h, "default")], truth, lives))
        results["history"].append(score_units(out, truth, lives))
    for name, parts in results.items():
        merged = _merge(parts, [len(p) for p in halves])
        label = "default failure level" if name == "default" else "failure level from history"
        print_row(label, merged)


def _merge(parts: list[dict[str, Any]], sizes: list[int]) -> dict[str, Any]:
    """Unit-weighted means of the halves' figures (learned levels listed)."""
    out: dict[str, Any] = {}
    for k in parts[0]:
        vals = [(p[k], n) for p, n in zip(parts, sizes, strict=True) if p[k] is not None]
        if k == "learned":
            out[k] = [p[k] for p in parts if p[k]] or None
        elif vals and all(isinstance(v, int | float) for v, _ in vals):
            out[k] = sum(v * n for v, n in vals) / sum(n for _, n in vals)
        else:
            out[k] = None
    return out


def demo_bench(root: Path, twins: int, hours: float) -> None:
    from tests.flows.test_replay import simulated_frames, write_recording

    plant, frames = simulated_frames(twins, hours)
    folder = root / "demo"
    folder.mkdir()
    files = write_recording(frames, folder)
    faults = plant.faults()
    (folder / "faults.json").write_text(json.dumps([f.to_json() for f in faults]))
    dep = load_deployment(deployment_file(folder, dict(plant.twins), models=False))
    spec = replay_spec({"time": {"unit": "s"}, "frame_rows": 60}, Path("bench"))
    out = folder / "out"
    run_replay(dep, files, spec, out, faults=folder / "faults.json", progress=None)
    s = json.loads((out / "summary.json").read_text())["scores"]
    degr = [f for f in faults if f.kind in {"bearing", "overheating", "impeller_wear"}]
    truth = [
        {
            "twin": f.twin_id,
            "start": START,
            "onset": f.onset.timestamp(),
            "failure": f.failure.timestamp(),
        }
        for f in degr
    ]
    t0 = min(f.onset.timestamp() for f in faults) if faults else 0.0
    for t in truth:
        t["start"] = t0
    lives = {t["twin"]: t["failure"] - t["start"] for t in truth}
    print(
        f"demo plant: {twins} twins, {hours:g} h at 1 Hz, {len(faults)} injected faults "
        f"({len(degr)} degradations); events detected {s['eventwise']['detected']}/"
        f"{s['eventwise']['events']}, alerts {s['eventwise']['alerts']}"
    )
    if truth:
        r = score_units(out, truth, lives)
        print_row("demo plant (profile indicators)", r)
    alerts = read_jsonl(out / "alerts.jsonl")
    del alerts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=12, help="progpy pumps run to failure")
    ap.add_argument("--demo-twins", type=int, default=20)
    ap.add_argument("--demo-hours", type=float, default=6.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        progpy_bench(root, args.units)
        demo_bench(root, args.demo_twins, args.demo_hours)


if __name__ == "__main__":
    main()
