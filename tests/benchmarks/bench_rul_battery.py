"""Benchmark: RUL of progpy BatteryCircuit cells to end of discharge, through ``twinflow replay``.

A second progpy model with a known end of life beside the pumps (``progpy_battery.py``: cells
discharged under a two-level load around a current of their own, from a charge and with an
internal resistance of their own, until progpy's ``EOD`` event). The cells go in folds; each
fold is replayed once without history (``twinflow replay --faults``), then again with the
other folds' replays as ``--history``, and the RUL its windows carry is scored, as
``bench_analytics.py`` does for the pumps. No setting is tuned on the cells.

Printed: alpha-lambda (alpha 0.2) at half of the discharge, the interval's coverage there and
its median width relative to the truth, its coverage over every window of the discharge, the
RMSE over those windows (estimates capped at the longest life in the history), beside the
mean-life baseline (the other folds' mean life minus the age); the RMSE also over the
windows where the flow has an estimate (it needs a few points first). Run:
``.venv/bin/python tests/benchmarks/bench_rul_battery.py [--units 20] [--folds 5] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import inspect
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_analytics import deployment_file
from bench_rul_progpy import score
from progpy_battery import START, TYPE, battery_models, simulate_units, twin, write_units

from twinflow.connectors.files import read_parquet_dir
from twinflow.connectors.recorded.spec import replay_spec
from twinflow.flows.deploy import load_deployment
from twinflow.flows.replay import run_replay
from twinflow.models.rul_match import CourseMatch

FLOW = "twinflow replay --history (the flow)"
MEAN = "mean life minus age"
#: CourseMatch's default: points before its first estimate.
MIN_POINTS = int(inspect.signature(CourseMatch).parameters["min_points"].default)


def fold_runs(part: list[dict[str, Any]], windows: pl.DataFrame, mean_life: float,
              cap: float) -> list[dict[str, Any]]:  # fmt: skip
    """Per cell: the windows' (estimate, low, high) from onset to failure, the mean-life
    guess and the truth (hours left, the window's end, whether it is the half-life one)."""
    runs = []
    for u in part:
        rows = windows.filter(pl.col("twin_id") == twin(u)).sort("end")
        end = rows["end"].dt.epoch("us").to_numpy() / 1e6 - START
        keep = (end > u["onset_s"]) & (end <= u["failure_s"])
        half = int(np.argmin(np.abs(end - 0.5 * (u["onset_s"] + u["failure_s"]))))
        r: dict[str, Any] = {FLOW: [], MEAN: [], "truth": [], "cap": cap}
        for i in np.flatnonzero(keep):
            e = [rows[c][int(i)] for c in ("rul_hours", "rul_low_hours", "rul_high_hours")]
            r[FLOW].append((math.inf, 0.0, math.inf) if e[0] is None else tuple(e))
            age = (end[i] - u["onset_s"]) / 3600.0
            r[MEAN].append((max(mean_life - age, 0.0),) * 3)
            r["truth"].append(((u["failure_s"] - end[i]) / 3600.0, end[i], int(i) == half))
        runs.append(r)
    return runs


def _finite(r: dict[str, Any]) -> dict[str, Any]:
    """``r`` with only the windows where the flow's estimate is finite."""
    keep = [i for i, e in enumerate(r[FLOW]) if math.isfinite(e[0])]
    return {**r, **{k: [r[k][i] for i in keep] for k in (FLOW, MEAN, "truth")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=20, help="cells simulated")
    ap.add_argument("--folds", type=int, default=5, help="folds (each learns from the others)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the replays in this folder")
    args = ap.parse_args()
    t0 = time.perf_counter()
    units = [u for u in simulate_units(args.units) if math.isfinite(u["failure_s"])]
    lives = [(u["failure_s"] - u["onset_s"]) / 3600.0 for u in units]
    print(
        f"progpy BatteryCircuit: {len(units)} cells discharged to EOD; lives "
        f"{min(lives):.2f}-{max(lives):.2f} h (median {statistics.median(lives):.2f} h); "
        f"simulated in {time.perf_counter() - t0:.0f} s"
    )
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_rul_battery_"))
    root.mkdir(parents=True, exist_ok=True)
    battery_models(root)
    folds = [units[k :: args.folds] for k in range(args.folds)]
    spec = replay_spec({"time": {"zone": "UTC"}}, Path("bench"))
    folders = []
    for k, part in enumerate(folds):
        folder = root / f"fold{k}"
        folder.mkdir(exist_ok=True)
        files, faults = write_units(part, folder)
        if not (folder / "models").exists():
            (folder / "models").symlink_to(root / "models")
        dep = load_deployment(deployment_file(folder, {twin(u): TYPE for u in part}, True))
        run_replay(dep, files, spec, folder / "default", faults=faults, write_telemetry=False,
                   progress=None)  # fmt: skip
        folders.append((folder, files, faults))
    runs: list[dict[str, Any]] = []
    for k, (part, (folder, files, faults)) in enumerate(zip(folds, folders, strict=True)):
        others = [f / "default" for j, (f, _, _) in enumerate(folders) if j != k]
        history = [u for j, p in enumerate(folds) if j != k for u in p]
        mean_life = statistics.fmean((u["failure_s"] - u["onset_s"]) / 3600.0 for u in history)
        cap = max((u["failure_s"] - u["onset_s"]) / 3600.0 for u in history)
        run_replay(load_deployment(folder / "dep.yaml"), files, spec, folder / "history",
                   faults=faults, history=others, write_telemetry=False,
                   progress=None)  # fmt: skip
        windows = read_parquet_dir(folder / "history" / "windows")
        runs += fold_runs(part, windows, mean_life, cap)
    cap = max(r["cap"] for r in runs)
    print(
        f"  {len(folds)} folds; each replayed with the others as history\n"
        f"  {'estimator':<38} alpha-lambda at half life | interval covers truth | "
        "interval width / truth (median) | covers, every window | RMSE, h"
    )
    for name in (FLOW, MEAN):
        s = score(runs, name, cap)
        cov, wid, every = (
            ("-", "-", "-")
            if name == MEAN
            else (f"{s['cov']:4.0%}", f"{s['width']:.2f}", f"{s['all']:4.0%}")
        )
        print(f"  {name:<38} {s['al']:4.0%} | {cov} | {wid} | {every} | {s['rmse']:5.2f}")
    finite = [_finite(r) for r in runs]
    print(
        "  RMSE, h, over the windows with a finite estimate of the flow (it answers from its "
        f"window {MIN_POINTS} on): the flow {score(finite, FLOW, cap)['rmse']:.2f}, "
        f"mean life {score(finite, MEAN, cap)['rmse']:.2f}"
    )
    print(f"  ({time.perf_counter() - t0:.0f} s; replays in {root})")


if __name__ == "__main__":
    main()
