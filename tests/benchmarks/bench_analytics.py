"""Benchmark: detection and remaining useful life through ``twinflow replay``, against baselines.

Two recordings, each scored by ``twinflow replay --faults`` (:mod:`twinflow.flows.scoring`):

- **progpy CentrifugalPump** (NASA's prognostics package, ``pip install "twinflow[bench]"``;
  the units are simulated by ``progpy_pump.py``): the twin type is defined only by files (no
  rules, no indicators), so the generic rules, the anomaly detector and the anomaly-score
  health index. The units form folds of four (every wear mode in each); each fold is
  replayed with the default failure level, with the levels learned from the other folds'
  replays (the trend; ``run_replay(history=[...], similarity=False)``) and with the
  health index learned from those replays and their trajectories of it (similarity;
  ``run_replay(history=[...])``, :func:`twinflow.flows.replay.learn_index`). The error of
  each unit's estimate at half life is printed too.
- **The demo plant** (the simulator, 1 Hz, its injected faults).

Printed per run: point-wise F1 and false alarms per day, lead time of the first alert,
the share of degradations whose first alert came >= 20 % of the degradation period before
failure, alpha-lambda accuracy (alpha 0.2, lambda 0.5), the interval's coverage at half
life and RMSE of the RUL, next to the baselines *always anomalous* (every window flagged)
and *mean life* (RUL = mean life of the other units minus the age). Run:
``.venv/bin/python tests/benchmarks/bench_analytics.py [--units 12] [--demo-twins 20]
[--cache DIR] [--keep DIR] [--skip-demo] [--set KEY=VALUE ...]`` (simulating 12 pumps takes
minutes; ``--cache`` keeps them for the next run).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks.progpy_pump import (
    MODES,
    START,
    pump_deployment,
    simulate_units,
    write_units,
)
from twinflow.connectors.files import read_parquet_dir
from twinflow.connectors.recorded.spec import replay_spec
from twinflow.flows.deploy import load_deployment
from twinflow.flows.replay import run_replay

#: Flow settings replacing the documented defaults in every replay (``--set KEY=VALUE``).
SETTINGS: dict[str, str] = {}


def deployment_file(folder: Path, twins: dict[str, str], models: bool) -> Path:
    lines = ["version: 1", "site: bench"]
    if models:
        lines.append("models: [models]")
    if SETTINGS:
        lines.append("flow:")
        lines += [f"  {k}: {v}" for k, v in SETTINGS.items()]
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
    errors: list[tuple[str, float]] = []
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
            errors.append((f["twin"], 100.0 * (est["hours"] - truth) / truth))
        others = [v for k, v in lives.items() if k != f["twin"]]
        mean_life = statistics.fmean(others) if others else math.nan
        at = on + 0.5 * period
        truth = (fail - at) / 3600.0
        guess = (mean_life - (at - f["start"])) / 3600.0
        base_hits += abs(guess - truth) <= 0.2 * truth
        rows = windows.filter(
            (pl.col("twin_id") == f["twin"]) & pl.col("rul_hours").is_finite()
        ).select(pl.col("end").dt.epoch("us") / 1e6, "rul_hours")
        cap = max(lives.values()) / 3600.0  # no life is longer than the longest seen
        for end, r in rows.iter_rows():
            if on < end <= fail:
                sq.append((min(r, cap) - (fail - end) / 3600.0) ** 2)
                base_sq.append(((mean_life - (end - f["start"])) - (fail - end)) ** 2 / 3600.0**2)
    n = len(faults)
    pw = s["pointwise"]
    positives, total = pw["tp"] + pw["fn"], pw["windows"]
    always_p = positives / total if total else 0.0
    return {
        "units": n,
        "f1": pw["f1"],
        "false_alarms_per_day": s["false_alarms_per_day"],
        "lead_median_h": (s.get("lead_time_hours") or {}).get("median"),
        "early_share": early / n,
        "alpha_lambda": hits / n,
        "covered": covered / n,
        "always_f1": 2 * always_p / (always_p + 1.0) if always_p else 0.0,
        "mean_life_alpha_lambda": base_hits / n,
        "_sq": (sum(sq), len(sq)),
        "_sq_base": (sum(base_sq), len(base_sq)),
        "learned": summary.get("learned_failure_levels"),
        "errors": errors,
    }


def _fmt(v: Any, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def _levels(learned: list[dict[str, dict[str, dict[str, float]]]]) -> str:
    """The learned levels of each fold, by driving signal, rounded."""
    folds = []
    for fold in learned:
        for levels in fold.values():
            folds.append(", ".join(f"{k} {v['level']:.0f}" for k, v in sorted(levels.items())))
    return " | ".join(folds)


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
        + (f"\n  {'':<34} failure levels learned: {_levels(r['learned'])}" if r["learned"] else "")
    )


# -- runs --------------------------------------------------------------------------------

#: The progpy replays of each fold: output folder -> label.
RUNS = {
    "default": "default failure level",
    "history": "failure levels from history (trend)",
    "similarity": "learned index from history (similar)",
}


def progpy_bench(root: Path, n_units: int, cache: Path | None = None) -> None:
    units = simulate_units(n_units, cache)
    units = [u for u in units if math.isfinite(u["failure_s"])]
    lives = {f"pump-{u['seed']:02d}": u["failure_s"] for u in units}
    periods = [(u["failure_s"] - u["onset_s"]) / 3600.0 for u in units]
    print(
        f"progpy CentrifugalPump: {len(units)} units run to failure; degradation "
        f"{min(periods):.1f}-{max(periods):.1f} h (median {statistics.median(periods):.1f} h); "
        f"modes {sorted({u['mode'] for u in units})}"
    )
    pump_deployment(root)
    # folds of consecutive seeds hold every wear mode (the mode is the seed modulo 4)
    size = len(MODES)
    folds = [units[i : i + size] for i in range(0, len(units), size)]
    spec = replay_spec({"time": {"zone": "UTC"}}, Path("bench"))
    folders: list[Path] = []
    for k, part in enumerate(folds):
        folder = root / f"fold{k}"
        folder.mkdir()
        files, faults = write_units(part, folder)
        twins = {f"pump-{u['seed']:02d}": "progpy_pump" for u in part}
        (folder / "models").symlink_to(root / "models")
        dep = load_deployment(deployment_file(folder, twins, models=True))
        run_replay(
            dep, files, spec, folder / "default", faults=faults, write_telemetry=False,
            progress=None,
        )  # fmt: skip
        folders.append(folder)
    results: dict[str, list[dict[str, Any]]] = {run: [] for run in RUNS}
    for k, (part, folder) in enumerate(zip(folds, folders, strict=True)):
        others = [f / "default" for j, f in enumerate(folders) if j != k]
        for run in ("history", "similarity"):
            run_replay(
                load_deployment(folder / "dep.yaml"),
                sorted(folder.glob("pump-*.csv")),
                spec,
                folder / run,
                faults=folder / "faults.csv",
                history=others,
                similarity=run == "similarity",
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
        for run in RUNS:
            results[run].append(score_units(folder / run, truth, lives))
    print(f"  {len(folds)} folds of {size}; each learns from the others' default replays")
    modes = {f"pump-{u['seed']:02d}": u["mode"] for u in units}
    for name, parts in results.items():
        print_row(RUNS[name], _merge(parts))
        errors = sorted((e for p in parts for e in p["errors"]), key=lambda e: e[0])
        print(
            f"  {'':<34} error at half life, % of the truth: "
            + ", ".join(f"{t[-2:]} {modes[t][:3]} {v:+.0f}" for t, v in errors)
        )


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The folds' figures over all their units (RMSE pooled; learned levels listed)."""
    n = [p["units"] for p in parts]
    out: dict[str, Any] = {"learned": [p["learned"] for p in parts if p["learned"]] or None}
    for k in parts[0]:
        if k in ("learned", "units", "errors") or k.startswith("_sq"):
            continue
        vals = [(p[k], m) for p, m in zip(parts, n, strict=True) if p[k] is not None]
        out[k] = sum(v * m for v, m in vals) / sum(m for _, m in vals) if vals else None
    for key, name in (("_sq", "rmse_h"), ("_sq_base", "mean_life_rmse_h")):
        total = sum(p[key][0] for p in parts)
        count = sum(p[key][1] for p in parts)
        out[name] = math.sqrt(total / count) if count else None
    return out


def demo_bench(root: Path, twins: int, hours: float) -> None:
    from tests.flows.test_replay import simulated_frames, write_recording

    plant, frames = simulated_frames(twins, hours)
    folder = root / "demo"
    folder.mkdir()
    files = write_recording(frames, folder)
    faults = plant.faults
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
    first = read_parquet_dir(out / "windows")["start"].min()
    for t in truth:
        t["start"] = first.timestamp()  # type: ignore[union-attr]
    lives = {t["twin"]: t["failure"] - t["start"] for t in truth}
    print(
        f"demo plant: {twins} twins, {hours:g} h at 1 Hz, {len(faults)} injected faults "
        f"({len(degr)} degradations); events detected {s['eventwise']['detected']}/"
        f"{s['eventwise']['events']}, alerts {s['eventwise']['alerts']}, false alarms/day "
        f"{s['false_alarms_per_day']}"
    )
    if truth:
        # F1 and false alarms over every injected fault; lead time and RUL over the
        # degradations (the sensor faults have no life to predict)
        print_row("demo plant (profile indicators)", _merge([score_units(out, truth, lives)]))


def state_size() -> None:
    """Pickled size of one twin's health tracker after a long degradation (buffer full)."""
    import pickle
    from datetime import UTC, datetime, timedelta

    from twinflow.core.records import WindowFeatures
    from twinflow.operators.health import HealthTracker

    rng = np.random.default_rng(0)
    tracker = HealthTracker("t", "bench_type")
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    features = {f"s{i}.{k}": 1.0 for i in range(8) for k in ("mean", "std", "min", "max")}
    for i in range(3000):
        excess = 0.0 if i < 500 else 2.0 * ((i - 500) / 2500) ** 2
        score = 0.4 + excess + float(rng.normal(0.0, 0.05))
        end = t0 + timedelta(minutes=5 * (i + 1))
        w = WindowFeatures("t", "bench_type", end - timedelta(minutes=5), end, features)
        tracker.update(replace(w, anomaly_score=score, anomaly_threshold=1.0), None)
    size = len(pickle.dumps(tracker))
    print(f"health state per twin (index, onset, trend buffer full): {size / 1024:.1f} KB pickled")
    print(f"health state per twin with a learned index (its points full): {learned_size()} bytes")


def learned_size() -> int:
    """Pickled size of a health tracker whose type has a learned index, after 3000 windows
    (the index and its library belong to the type, not to the tracker)."""
    import pickle
    from datetime import UTC, datetime, timedelta

    from twinflow.core.records import WindowFeatures
    from twinflow.models.learned_index import learn_health
    from twinflow.operators.catalog import TwinType
    from twinflow.operators.health import HealthTracker
    from twinflow.operators.health_profile import with_learned_index

    names = [f"s{i}.mean" for i in range(8)]
    rng = np.random.default_rng(0)
    t = np.arange(200.0)
    units = [(t, rng.normal(size=(200, 8)) + t[:, None] / 100.0, 50.0, 199.0) for _ in range(4)]
    learned = learn_health(units, names)
    assert learned is not None
    kind = with_learned_index(TwinType("bench_type", ()), learned)
    tracker = HealthTracker("t", "bench_type")
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    for i in range(3000):
        end = t0 + timedelta(minutes=5 * (i + 1))
        f = {n: float(v) for n, v in zip(names, rng.normal(size=8) + i / 1000.0, strict=True)}
        tracker.update(WindowFeatures("t", "bench_type", end - timedelta(minutes=5), end, f), kind)
    return len(pickle.dumps(tracker))


def main() -> None:
    try:
        import progpy  # noqa: F401
    except ImportError:
        sys.exit('bench_analytics needs NASA\'s progpy: pip install "twinflow[bench]"')
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=12, help="progpy pumps run to failure")
    ap.add_argument("--demo-twins", type=int, default=20)
    ap.add_argument("--demo-hours", type=float, default=6.0)
    ap.add_argument("--cache", type=Path, default=None, help="keep the simulated pumps here")
    ap.add_argument("--keep", type=Path, default=None, help="write the replays here (kept)")
    ap.add_argument("--skip-demo", action="store_true", help="only the progpy pumps")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a flow setting for every replay instead of its default (repeatable)",
    )
    args = ap.parse_args()
    SETTINGS.update(kv.split("=", 1) for kv in args.set)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        state_size()
        progpy_bench(root, args.units, args.cache)
        if not args.skip_demo:
            demo_bench(root, args.demo_twins, args.demo_hours)


if __name__ == "__main__":
    main()
