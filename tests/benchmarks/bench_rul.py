"""Benchmark: RUL on synthetic turbofan-style run-to-failure data, with and without history.

**Synthetic, not C-MAPSS** (no network here): a generator in the spirit of NASA's
turbofan simulations. Each unit has 14 sensors (10 move with wear, 4 do not) whose healthy
levels depend strongly on 6 operating conditions (three settings, drawn per cycle); wear
``D(t) = d0 + A (exp(b t) - 1)`` with unit-to-unit initial wear ``d0``, amplitude ``A`` and
rate ``b``; the unit fails when ``D`` reaches 1 (lives of about 120-450 cycles); sensor
noise; each unit has small offsets of its own. One cycle is one "hour" for the estimators.

The health index is twinflow's: the multivariate detector (:class:`~twinflow.models.spc.
SpcDetector`, the settings as operating variables, warm-up on the unit's first 30 cycles,
learning frozen after it) and its score over threshold, fed to
:class:`~twinflow.models.health_index.ScoreHealth` as the flow does. Training units give
the history (failure levels, trajectories); the figures are on held-out units:

- *trend, default level*: no history, failure at 3x the threshold;
- *trend, learned level*: the failure level (and its spread) from the training units;
- *similarity*: the training units' trajectories (:mod:`twinflow.models.similarity`);
- *learned index*: a health index fitted on the training units by regression
  (:class:`~twinflow.models.learned_index.LinearIndex`: the 17 columns and their squares to
  the elapsed share of the life), and similarity to the training units' trajectories of it
  (linear scale, the newest 48 points, the nearest third of the units);
- *learned index, whole course*: what ``twinflow replay --history`` learns and the health
  step does (:func:`~twinflow.models.learned_index.learn_health`: the twin's whole course of
  the index, older points thinned, matched to the training units' courses with rates
  0.4-2.5; its interval from leave-one-out errors on the training units only), and the same
  with the neighbours' raw spread as the interval, to show the calibration;
- *mean life*: the training units' mean life minus the age (the baseline).

Also printed: the share of held-out units whose first degradation alarm came at least 20 %
of the degradation period before the failure (wear starts at the first cycle here, so the
period is the life): the detector's alarm (index above 1 on 3 cycles in a row) and the
onset the health index's CUSUM declares (:class:`~twinflow.models.health_index.OnsetDetector`).

Printed: RMSE in cycles over every cycle after the warm-ups with truth and estimate capped
at 125 cycles (the piecewise target usual on C-MAPSS; an infinite estimate counts as 125),
alpha-lambda (alpha 0.2) at half life, the interval's coverage there, and the mean width
of the interval relative to the truth; then, per held-out unit, the whole-course estimate
over the truth at half life ordered by the unit's wear rate, with the median and spread of
its logarithm and its correlation with the rate and the life (bias, spread or rate?). With
``--bound``, the alpha-lambda of an ideal estimator (:func:`bound`: it knows the wear law and
its fleet distribution and sees the wear itself with the sensors' combined noise), an upper
bound for this fleet. Run:
``.venv/bin/python tests/benchmarks/bench_rul.py [--train 60] [--test 30] [--seed 0]
[--step 1] [--test-first N] [--bound]`` (``--step n``: the estimators answer every n-th
cycle only, and at half life; ``--test-first N``: held-out seeds from N, e.g. ``--train 40
--test 20 --test-first 40`` holds out training seeds 40-59 to try settings without
touching the held-out seeds 10000-10029).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from twinflow.models.degradation import failure_level, failure_spread
from twinflow.models.health_index import OnsetDetector, ScoreHealth
from twinflow.models.learned_index import LearnedHealth, LinearIndex, elapsed, learn_health
from twinflow.models.rul_match import Buffer
from twinflow.models.similarity import SimilarityRul, Trajectory, trajectory
from twinflow.models.spc import SpcDetector

SENSORS = 14
INFORMATIVE = 10
CAP = 125.0
WARMUP = 30
REGIMES = np.array(
    [[0.0, 0.0, 100.0], [10.0, 0.25, 100.0], [20.0, 0.7, 100.0], [25.0, 0.62, 60.0],
     [35.0, 0.84, 100.0], [42.0, 0.84, 100.0]]
)  # fmt: skip


def engine(seed: int = 12345) -> dict[str, np.ndarray]:
    """The fleet's engine model: how the sensors depend on the settings and on wear."""
    rng = np.random.default_rng(seed)
    z = (REGIMES - REGIMES.mean(axis=0)) / REGIMES.std(axis=0)
    coef = rng.normal(0.0, 1.0, (3, SENSORS)) * 8.0
    quad = rng.normal(0.0, 1.0, (3, SENSORS)) * 3.0
    base = z @ coef + (z**2) @ quad + rng.normal(0.0, 20.0, SENSORS)  # (regimes, sensors)
    noise = rng.uniform(0.5, 1.5, SENSORS)
    gain = np.zeros(SENSORS)
    gain[:INFORMATIVE] = rng.choice([-1.0, 1.0], INFORMATIVE) * rng.uniform(3.0, 8.0, INFORMATIVE)
    return {"base": base, "noise": noise, "gain": gain * noise}


def unit(seed: int, eng: dict[str, np.ndarray]) -> dict[str, Any]:
    """One unit run to failure: settings and sensors per cycle, and its life in cycles."""
    rng = np.random.default_rng(seed)
    d0 = rng.uniform(0.0, 0.25)
    amp = rng.lognormal(math.log(0.02), 0.4)
    rate = rng.lognormal(math.log(0.017), 0.2)
    life = math.log(1.0 + (1.0 - d0) / amp) / rate
    cycles = np.arange(1, int(life) + 1, dtype=float)
    wear = d0 + amp * (np.exp(rate * cycles) - 1.0)
    regime = rng.integers(0, len(REGIMES), cycles.size)
    regime[: 2 * len(REGIMES)] = np.tile(np.arange(len(REGIMES)), 2)  # warm-up sees them all
    settings = REGIMES[regime] + rng.normal(0.0, 0.001, (cycles.size, 3))
    offset = rng.normal(0.0, 0.3, SENSORS) * eng["noise"]
    sensors = (
        eng["base"][regime]
        + offset
        + wear[:, None] * eng["gain"][None, :]
        + rng.normal(0.0, 1.0, (cycles.size, SENSORS)) * eng["noise"]
    )
    return {
        "seed": seed,
        "cycles": cycles,
        "rows": np.hstack([settings, sensors]),
        "life": life,
        "law": (d0, amp, rate),
    }


def _laws(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    """``n`` draws of the fleet's wear law (d0, A, b), as :func:`unit` draws them."""
    return (
        rng.uniform(0.0, 0.25, n),
        rng.lognormal(math.log(0.02), 0.4, n),
        rng.lognormal(math.log(0.017), 0.2, n),
    )


def bound(units: list[dict[str, Any]], eng: dict[str, np.ndarray], draws: int = 40_000) -> float:
    """Share of ``units`` an ideal estimator gets within 20 % at half life: it knows the wear
    law's family and its fleet distribution (the prior), sees the wear itself each cycle with
    the noise of the best linear combination of the sensors (no operating settings, no unit
    offsets: more than any estimator here is given) and answers the remaining life most
    likely to be within 20 % of the truth under the posterior. An upper bound on
    alpha-lambda for this fleet."""
    rng = np.random.default_rng(7)
    d0, amp, rate = _laws(rng, draws)
    lives = np.log(1.0 + (1.0 - d0) / amp) / rate
    sigma = 1.0 / math.sqrt(float(((eng["gain"] / eng["noise"]) ** 2).sum()))
    hits = 0
    for u in units:
        t = u["cycles"][: int(np.argmin(np.abs(u["cycles"] - u["life"] / 2.0))) + 1]
        ud0, uamp, urate = u["law"]
        seen = ud0 + uamp * (np.exp(urate * t) - 1.0) + rng.normal(0.0, sigma, t.size)
        alive = lives > t[-1]
        mu = d0[alive, None] + amp[alive, None] * (np.exp(rate[alive, None] * t[None, :]) - 1.0)
        loglik = -((mu - seen) ** 2).sum(axis=1) / (2.0 * sigma**2)
        w = np.exp(loglik - loglik.max())
        left = lives[alive] - t[-1]
        order = np.argsort(left)
        cum = np.cumsum(w[order]) / w.sum()
        cands = np.geomspace(max(float(left.min()), 1e-3), float(left.max()), 400)
        p = np.interp(cands / 0.8, left[order], cum) - np.interp(cands / 1.2, left[order], cum)
        best = float(cands[int(np.argmax(p))])
        truth = u["life"] - t[-1]
        hits += abs(best - truth) <= 0.2 * truth
    return hits / len(units)


def diagnose(runs: list[dict[str, list[Any]]], test: list[dict[str, Any]], name: str) -> None:
    """Per held-out unit, ``name``'s estimate over the truth at half life, by wear rate: is
    the error a bias, a spread, or tied to how fast the unit wears?"""
    ratio, rates, lives = [], [], []
    for r, u in zip(runs, test, strict=True):
        half = u["life"] / 2.0
        i = int(np.argmin([abs(x[1] - half) for x in r["truth"]]))
        ratio.append(r[name][i][0] / r["truth"][i][0])
        rates.append(u["law"][2])
        lives.append(u["life"])
    log = np.log(np.clip(ratio, 1e-6, 1e6))
    order = np.argsort(rates)
    print(
        f"  {name} at half life, estimate / truth by wear rate b (slowest first): "
        + " ".join(f"{ratio[k]:.2f}" for k in order)
    )
    print(
        f"    log(estimate / truth): median {np.median(log):+.2f}, sd {np.std(log):.2f}; "
        f"correlation with b {np.corrcoef(log, rates)[0, 1]:+.2f}, with the life "
        f"{np.corrcoef(log, lives)[0, 1]:+.2f}"
    )


def names() -> list[str]:
    return [f"set{i}" for i in range(3)] + [f"s{j}" for j in range(SENSORS)]


def health_index(u: dict[str, Any]) -> np.ndarray:
    """The detector's score over its threshold per cycle (NaN in its warm-up)."""
    cols = names()
    det = SpcDetector(cols, operating=cols[:3], warmup=WARMUP, adapt=False)
    return det.update(u["cycles"], u["rows"])


def history(units: list[dict[str, Any]]) -> tuple[list[Trajectory], tuple[float, float], float]:
    """The training units' trajectories, failure level (and spread) and mean life."""
    library, levels = [], []
    for u in units:
        h = u["index"]
        ok = np.isfinite(h)
        tr = trajectory(u["cycles"][ok], h[ok], u["life"], log=True)
        if tr is not None:
            library.append(tr)
        levels.append(float(np.median(h[ok][-3:])))
    level = (failure_level(levels), failure_spread(levels))
    return library, level, statistics.fmean(u["life"] for u in units)


def learned(units: list[dict[str, Any]]) -> tuple[LinearIndex, list[Trajectory]]:
    """The index learned on the training units and their trajectories of it."""
    fit = [(u["rows"], elapsed(u["cycles"], 0.0, u["life"])) for u in units]
    index = LinearIndex.fit(fit, names())
    library = []
    for u in units:
        tr = trajectory(u["cycles"], index.values(u["rows"]), u["life"])
        if tr is not None:
            library.append(tr)
    return index, library


def alarms(u: dict[str, Any]) -> tuple[float, float]:
    """The cycles of the first detector alarm (index above 1 on 3 cycles in a row) and of
    the onset detection (inf: none)."""
    above = np.nan_to_num(u["index"], nan=0.0) > 1.0
    runs = np.convolve(above, np.ones(3), mode="valid") >= 3
    detector = float(u["cycles"][int(np.argmax(runs)) + 2]) if runs.any() else math.inf
    onset = OnsetDetector()  # ScoreHealth's, with its defaults
    for t, h in zip(u["cycles"], u["index"], strict=True):
        if onset.update(float(t), float(h)) is not None:
            return detector, float(t)
    return detector, math.inf


def run_unit(
    u: dict[str, Any],
    library: list[Trajectory],
    level: tuple[float, float],
    mean_life: float,
    learnt: tuple[LinearIndex, SimilarityRul],
    step: int = 1,
    health: LearnedHealth | None = None,
) -> dict[str, list[float]]:
    """Every estimator's (estimate, low, high) at each ``step``-th cycle after the warm-ups
    (and at half life)."""
    half = int(np.argmin(np.abs(u["cycles"] - u["life"] / 2.0)))
    index, similar = learnt
    values = index.values(u["rows"])
    kinds = {
        "trend, default level": (ScoreHealth(), ()),
        "trend, learned level": (ScoreHealth(levels={"*": level}), ()),
        "similarity (history)": (ScoreHealth(levels={"*": level}), tuple(library)),
    }
    out: dict[str, list[Any]] = {
        k: [] for k in (*kinds, LEARNED, FLOW, FLOW_RAW, "mean life", "truth")
    }
    hv = health.rows(u["rows"]) if health is not None else None
    kept = Buffer(health.recent if health is not None else 64)
    for i, (t, h) in enumerate(zip(u["cycles"], u["index"], strict=True)):
        if hv is not None and np.isfinite(hv[i]).all():
            kept.push(float(t), hv[i])  # as the health step keeps them, from the first cycle
        if not math.isfinite(h):
            continue
        wanted = i % step == 0 or i == half
        ests = {
            k: sh.update(float(t), float(h), 1.0, library=lib if wanted else ())
            for k, (sh, lib) in kinds.items()
        }
        if any(e is None for e in ests.values()) or not wanted:
            continue
        ests[LEARNED] = similar.estimate(u["cycles"][: i + 1], values[: i + 1])
        if health is not None:
            ests[FLOW] = health.estimate(kept.times, kept.rows)
            ests[FLOW_RAW] = health.estimate(kept.times, kept.rows, raw=True)
        for k, e in ests.items():
            assert e is not None
            out[k].append((e.hours, e.low_hours, e.high_hours))
        guess = max(mean_life - t, 0.0)
        out["mean life"].append((guess, guess, guess))
        out["truth"].append((u["life"] - t, t, u["life"]))
    return out


LEARNED = "learned index, similarity"
FLOW = "learned index, whole course"
FLOW_RAW = "  same, raw interval"


def score(runs: list[dict[str, list[Any]]], name: str) -> dict[str, float]:
    sq, hits, covered, width, n = [], 0, 0, [], 0
    for r in runs:
        truth = [x[0] for x in r["truth"]]
        for (est, _, _), tr in zip(r[name], truth, strict=True):
            sq.append((min(est, CAP) - min(tr, CAP)) ** 2)
        half = r["truth"][0][2] / 2.0
        i = int(np.argmin([abs(x[1] - half) for x in r["truth"]]))
        est, low, high = r[name][i]
        tr = truth[i]
        n += 1
        hits += abs(est - tr) <= 0.2 * tr
        covered += low <= tr <= high
        width.append((high - low) / tr if math.isfinite(high - low) else math.inf)
    return {
        "rmse": math.sqrt(statistics.fmean(sq)),
        "alpha_lambda": hits / n,
        "covered": covered / n,
        "width": statistics.median(width),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=60, help="units in the history")
    ap.add_argument("--test", type=int, default=30, help="held-out units scored")
    ap.add_argument("--seed", type=int, default=0, help="first training seed")
    ap.add_argument("--step", type=int, default=1, help="estimate every n-th cycle")
    ap.add_argument(
        "--test-first",
        type=int,
        default=None,
        help="first held-out seed (default: the first training seed + 10000)",
    )
    ap.add_argument("--bound", action="store_true", help="also the ideal estimator's bound")
    args = ap.parse_args()
    t0 = time.perf_counter()
    eng = engine()
    train = [unit(args.seed + i, eng) for i in range(args.train)]
    first_test = args.seed + 10_000 if args.test_first is None else args.test_first
    test = [unit(first_test + i, eng) for i in range(args.test)]
    for u in train + test:
        u["index"] = health_index(u)
    library, level, mean_life = history(train)
    index, trajectories = learned(train)
    near = max(3, len(trajectories) // 3)
    similar = SimilarityRul(trajectories, log=False, recent=48, neighbours=near, name="learned")
    lives = [u["life"] for u in test]
    print(
        f"synthetic turbofan-style fleet (not C-MAPSS): {len(train)} training units, "
        f"{len(test)} held out; lives {min(lives):.0f}-{max(lives):.0f} cycles (median "
        f"{statistics.median(lives):.0f}; held-out seeds {first_test}-{first_test + len(test) - 1}"
        f"); learned failure index {level[0]:.1f} (log spread "
        f"{level[1]:.2f}); library {len(library)} trajectories"
    )
    first = [alarms(u) for u in test]
    for k, what in enumerate(("detector alarm (index > 1, 3 cycles)", "onset (CUSUM)")):
        early = sum(u["life"] - a[k] >= 0.2 * u["life"] for u, a in zip(test, first, strict=True))
        print(f"  first {what} >= 20 % of the life before failure: {early}/{len(test)}")
    health = learn_health([(u["cycles"], u["rows"], 0.0, u["life"]) for u in train], names())
    assert health is not None
    print(
        f"  chosen leave-one-out on the training units: recency {health.recency}, rate spread "
        f"{health.spread}, interval {health.calibration}"
    )
    runs = [
        run_unit(u, library, level, mean_life, (index, similar), args.step, health) for u in test
    ]
    print(f"  {'estimator':<24} RMSE (cycles, capped {CAP:.0f}) | alpha-lambda at half life | "
          "interval covers truth | interval width / truth (median)")  # fmt: skip
    for name in ("trend, default level", "trend, learned level", "similarity (history)",
                 LEARNED, FLOW, FLOW_RAW, "mean life"):  # fmt: skip
        s = score(runs, name)
        print(
            f"  {name:<24} {s['rmse']:6.1f} | {s['alpha_lambda']:4.0%} | "
            f"{s['covered']:4.0%} | {s['width']:.2f}"
        )
    diagnose(runs, test, FLOW)
    if args.bound:
        print(
            "  ideal estimator (knows the wear law and its fleet distribution, sees the wear "
            f"with the sensors' combined noise): alpha-lambda at half life {bound(test, eng):.0%}"
        )
    print(f"  ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
