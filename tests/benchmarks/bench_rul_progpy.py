"""Benchmark: RUL estimators on the progpy pumps' replays, held-out folds, without re-replaying.

``bench_analytics.py --units 20 --skip-demo --keep DIR`` replays 20 progpy CentrifugalPump
units (5 folds of 4, every wear mode in each) through ``twinflow replay --faults``; this
script reads those *default* replays (the windows' features and anomaly scores, the faults,
the first alerts) and runs the RUL estimators on them window by window, each fold learning
only from the other four folds' replays. The health index and the RUL do not feed back into
the anomaly detector, so this gives what a replay with ``--history`` gives, in minutes:

- *similarity, anomaly score*: as the flow does it without a learned index (``ScoreHealth``
  with the failure levels and trajectories of :func:`twinflow.flows.replay.learn_trajectories`);
- the same with the nearest third of the history's units only;
- *similarity, learned index*: :class:`~twinflow.models.learned_index.LinearIndex` fitted on
  the history units' window means (signal levels and their squares) to the elapsed share of
  their degradation, then similarity to the history's trajectories of that index
  (:class:`~twinflow.models.similarity.SimilarityRul`, linear scale, the newest 48 points,
  the nearest third of the history's units);
- *the flow's learned indexes*: the :class:`~twinflow.models.learned_index.LearnedHealth`
  that ``twinflow replay --history`` learns (:func:`twinflow.flows.replay.learn_index` on
  the other folds' replays: the signals' window means, one index per failure mode of the
  faults, the weighting, rate spread and interval chosen leave-one-out on those history
  units), applied window by window as :class:`~twinflow.operators.health.HealthTracker`
  applies it (the whole course, older points thinned); also with the voting units' raw
  spread as the interval, to show what the calibration does;
- with ``--flow OUT``: each fold replayed again through ``twinflow replay --history`` (the
  other folds' replays) into ``OUT``, and the windows' own RUL scored (the flow end to end);
- *mean life*: the other units' mean life minus the age.

Printed: alpha-lambda (alpha 0.2) at half of the degradation, the interval's coverage
there and its median width relative to the truth, its coverage over every evaluated window
from onset to failure, RMSE over those windows (estimates capped at the longest life in the
history; infinite counts as that cap) and the share of units whose first alert came at
least 20 % of the degradation period before the failure. Run:
``.venv/bin/python tests/benchmarks/bench_rul_progpy.py --replays DIR [--flow OUT] [--quick]``
(``--quick``: without the anomaly-score estimators).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from twinflow.connectors.files import read_parquet_dir
from twinflow.connectors.recorded.spec import replay_spec
from twinflow.flows.deploy import load_deployment
from twinflow.flows.replay import learn_index, learn_trajectories, run_replay
from twinflow.flows.scoring import learn_failure_levels
from twinflow.models.health_index import ScoreHealth
from twinflow.models.learned_index import LearnedHealth, LinearIndex, elapsed
from twinflow.models.rul_match import Buffer
from twinflow.models.similarity import SimilarityRul, Trajectory, trajectory
from twinflow.operators.health import _driver

SIGNALS = ("w", "Qout", "Tt", "Tr", "To", "wsync")
FEATURES = tuple(f"{s}.mean" for s in SIGNALS)
STEP = 3  # RMSE on every third window (the half-life window always)


def _hours(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() / 3600.0


def load_fold(folder: Path) -> list[dict[str, Any]]:
    """The units of one fold's default replay: windows, truth and first alert."""
    out = folder / "default"
    events = json.loads((out / "summary.json").read_text())["scores"]["events"]
    windows = read_parquet_dir(out / "windows").sort("end")
    units = []
    for e in events:
        rows = windows.filter(pl.col("twin_id") == e["twin_id"])
        units.append(
            {
                "twin": e["twin_id"],
                "mode": e["kind"],
                "hours": rows["end"].dt.epoch("us").to_numpy() / 3.6e9,
                "score": rows["anomaly_score"].fill_null(math.nan).to_numpy(),
                "threshold": rows["anomaly_threshold"].fill_null(math.nan).to_numpy(),
                "features": rows.select(FEATURES).fill_null(math.nan).to_numpy(),
                "rows": rows.to_dicts(),
                "frame": rows,
                "onset": _hours(e["onset"]),
                "failure": _hours(e["failure"]),
                "lead": e["lead_time_hours"],
            }
        )
    return units


def learned_history(units: list[dict[str, Any]]) -> tuple[LinearIndex, list[Trajectory]]:
    """The learned index fitted on ``units`` and their trajectories of it."""
    fit = [(u["features"], elapsed(u["hours"], u["onset"], u["failure"])) for u in units]
    index = LinearIndex.fit(fit, FEATURES)
    library = []
    for u in units:
        tr = trajectory(u["hours"], index.values(u["features"]), u["failure"])
        if tr is not None:
            library.append(tr)
    return index, library


def run_unit(u: dict[str, Any], kinds: dict[str, Any]) -> dict[str, list[Any]]:
    """Each estimator's (estimate, low, high) at the evaluated windows, and the truth."""
    t, onset, fail = u["hours"], u["onset"], u["failure"]
    half = int(np.argmin(np.abs(t - (onset + 0.5 * (fail - onset)))))
    out: dict[str, list[Any]] = {k: [] for k in (*kinds, "truth")}
    score = {k: ScoreHealth(levels=v["levels"]) for k, v in kinds.items() if "levels" in v}
    index_values = {k: v["index"].values(u["features"]) for k, v in kinds.items() if "index" in v}
    buffers = {}
    for k, v in kinds.items():
        if "learned" in v:
            names = v["learned"].index.names
            rows = u["frame"].select(names).fill_null(math.nan).to_numpy()
            index_values[k] = v["learned"].rows(rows)
            buffers[k] = Buffer(v["learned"].recent)
    for i, now in enumerate(t):
        wanted = i == half or (onset < now <= fail and i % STEP == 0)
        ests = {}
        for k, v in kinds.items():
            if k in score:
                sh = score[k]  # the flow's step, its similarity only where evaluated
                e = sh.update(now, u["score"][i], u["threshold"][i], _driver(_finite(u["rows"][i])))
                if e is not None and wanted and sh.trend is not None:
                    e = v["similar"].estimate(*sh.trend.points, health=e.health)
                ests[k] = e
            elif "learned" in v:
                # as HealthTracker does: every complete index vector, older ones thinned
                if np.isfinite(index_values[k][i]).all():
                    buffers[k].push(float(now), index_values[k][i])
                if wanted:
                    learned: LearnedHealth = v["learned"]
                    b = buffers[k]
                    ests[k] = learned.estimate(b.times, b.rows, raw=v["raw"])
            elif wanted:
                h = index_values[k][: i + 1]
                ests[k] = v["similar"].estimate(t[: i + 1], h)
        if wanted and now <= fail:
            for k in kinds:
                e = ests.get(k)
                out[k].append((math.inf, 0.0, math.inf) if e is None else
                              (e.hours, e.low_hours, e.high_hours))  # fmt: skip
            out["truth"].append((fail - now, now, i == half))
    return out


FLOW = "twinflow replay --history (the flow)"


def replay_fold(folder: Path, others: list[Path], out: Path) -> Any:
    """Replay ``folder``'s pumps with the other folds' replays as history into ``out``;
    a function giving a unit's windows' (estimate, low, high) at the evaluated times."""
    spec = replay_spec({"time": {"zone": "UTC"}}, Path("bench"))
    target = out / folder.name
    run_replay(
        load_deployment(folder / "dep.yaml"), sorted(folder.glob("pump-*.csv")), spec, target,
        faults=folder / "faults.csv", history=others, write_telemetry=False, progress=None,
    )  # fmt: skip
    windows = read_parquet_dir(target / "windows").sort("end")

    def rul(u: dict[str, Any], truth: list[Any]) -> list[Any]:
        rows = windows.filter(pl.col("twin_id") == u["twin"])
        hours = rows["end"].dt.epoch("us").to_numpy() / 3.6e9
        got = []
        for _, now, _ in truth:
            i = int(np.argmin(np.abs(hours - now)))
            e = [rows[c][i] for c in ("rul_hours", "rul_low_hours", "rul_high_hours")]
            got.append((math.inf, 0.0, math.inf) if e[0] is None else tuple(e))
        return got

    return rul


def _finite(row: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in row.items() if isinstance(v, float) and math.isfinite(v)}


def score(runs: list[dict[str, Any]], name: str, cap: float) -> dict[str, float]:
    sq, hits, covered, n, width, inside = [], 0, 0, 0, [], []
    for r in runs:
        for (est, low, high), (truth, _, is_half) in zip(r[name], r["truth"], strict=True):
            sq.append((min(est, cap) - truth) ** 2)
            inside.append(low <= truth <= high)
            if is_half:
                n += 1
                hits += abs(est - truth) <= 0.2 * truth
                covered += low <= truth <= high
                width.append((high - low) / truth if truth > 0 else math.inf)
    return {
        "rmse": math.sqrt(statistics.fmean(sq)),
        "al": hits / n,
        "cov": covered / n,
        "width": statistics.median(width),
        "all": statistics.fmean(inside),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replays", type=Path, required=True, help="bench_analytics --keep DIR")
    ap.add_argument("--recent", type=int, default=48, help="points the learned index matches")
    ap.add_argument("--flow", type=Path, default=None, help="replay each fold with --history")
    ap.add_argument("--quick", action="store_true", help="skip the anomaly-score estimators")
    args = ap.parse_args()
    t0 = time.perf_counter()
    folders = sorted(p for p in args.replays.glob("fold*") if (p / "default").is_dir())
    folds = [load_fold(f) for f in folders]
    units = [u for f in folds for u in f]
    periods = [u["failure"] - u["onset"] for u in units]
    early = sum(
        u["lead"] is not None and u["lead"] >= 0.2 * (u["failure"] - u["onset"]) for u in units
    )
    print(
        f"progpy CentrifugalPump replays: {len(units)} units in {len(folds)} folds; "
        f"degradation {min(periods):.1f}-{max(periods):.1f} h; first alert >= 20 % of the "
        f"degradation before failure: {early}/{len(units)} ({early / len(units):.0%})"
    )
    runs: list[dict[str, Any]] = []
    names: list[str] = []
    calibrations: list[Any] = []
    for k, fold in enumerate(folds):
        others = [f / "default" for j, f in enumerate(folders) if j != k]
        history = [u for j, f in enumerate(folds) if j != k for u in f]
        levels = learn_failure_levels(others).get("progpy_pump", {})
        library = learn_trajectories(others).get("progpy_pump", ())
        index, learned = learned_history(history)
        dep = load_deployment(folders[k] / "dep.yaml")
        signals = {t.name: {s.name for s in t.signals} for t in dep.deployed_types().values()}
        flow_index = learn_index(others, signals)["progpy_pump"]
        calibrations.append((flow_index.recency, flow_index.spread, flow_index.calibration))
        near = max(3, len(learned) // 3)  # the nearest third of the history's units
        mean_life = statistics.fmean(u["failure"] - u["hours"][0] for u in history)
        kinds = {
            "similarity, anomaly score (ScoreHealth)": {
                "levels": levels, "library": library, "similar": SimilarityRul(library)},
            "  same, the nearest third of the units": {
                "levels": levels, "library": library,
                "similar": SimilarityRul(library, neighbours=near)},
            "similarity, learned index, nearest third": {
                "index": index,
                "similar": SimilarityRul(learned, log=False, recent=args.recent,
                                         neighbours=near, name="learned_index")},
            "flow's learned indexes (LOO calibration)": {"learned": flow_index, "raw": False},
            "  same, raw interval (neighbours' spread)": {"learned": flow_index, "raw": True},
        }  # fmt: skip
        if args.quick:
            kinds = {k: v for k, v in kinds.items() if "levels" not in v}
        names = list(kinds)
        cap = max(u["failure"] - u["hours"][0] for u in history)
        flow_rul = replay_fold(folders[k], others, args.flow) if args.flow else None
        for u in fold:
            r = run_unit(u, kinds)
            if flow_rul is not None:
                r[FLOW] = flow_rul(u, r["truth"])
            r["mean life"] = [
                (max(mean_life - (now - u["hours"][0]), 0.0),) * 3 for _, now, _ in r["truth"]
            ]
            r["cap"] = cap
            runs.append(r)
    cap = max(r["cap"] for r in runs)
    print(
        f"  {'estimator':<42} alpha-lambda at half life | interval covers truth | "
        "interval width / truth (median) | covers, every window | RMSE, h"
    )
    for rec, spread, c in calibrations:
        print(f"  chosen leave-one-out: recency {rec}, rate spread {spread}, interval {c}")
    for name in (*names, *([FLOW] if args.flow else []), "mean life"):
        s = score(runs, name, cap)
        cov, wid, every = (
            ("-", "-", "-")
            if name == "mean life"
            else (f"{s['cov']:4.0%}", f"{s['width']:.2f}", f"{s['all']:4.0%}")
        )
        print(f"  {name:<42} {s['al']:4.0%} | {cov} | {wid} | {every} | {s['rmse']:5.1f}")
    print(f"  ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
