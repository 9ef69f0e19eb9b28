"""Benchmark: point-wise F1 and false alarms per day of the anomaly detectors on raw samples.

Not a test: prints figures. Each recording is scored from scratch, one row per second, by

- ``spc``: :class:`~twinflow.models.spc.SpcDetector` with the flow's documented defaults
  (``FlowConfig().sample_*``; ``--set KEY=VALUE``, repeatable, replaces a flow setting, as
  ``bench_skab.py`` does), told which columns are operating settings when known;
- ``spc-frozen``: the same with ``anomaly_adapt`` off (learning ends with the warm-up);
- ``spc-unconditioned``: the same, not told about operating settings (synthetic data);
- ``old``: the previous detector (:class:`~twinflow.models.anomaly.WindowAnomalyDetector`,
  max |z| with its fixed floors) fed each row, with the same warm-up length;
- ``always``: the baseline that calls every point anomalous.

Warm-up points count as "normal" predictions. F1 is over all labelled points; false alarms
per day count alarm episodes (flagged runs at least a minute apart) on healthy data.

Data: a folder of SKAB-style CSVs (``;``-separated: ``datetime``, signals, ``anomaly``,
``changepoint``; a file without anomalies counts as healthy data) given by argument, or, by
default, synthetic machines with known answers: random correlated signals driven by an
operating setting with step changes, and one labelled fault each (offset, gain, broken
correlation, noise, slow drift). The seeds differ from those the tests use.
``--flow`` also times the telemetry flow on the simulated plant with raw-sample scoring off
and on (interleaved rounds, medians, ratio) and prints the per-twin state with 8 signals.

Run: ``.venv/bin/python tests/benchmarks/bench_detector.py [FOLDER ...] [--operating COLUMN
...] [--set KEY=VALUE ...] [--flow]``.
"""

from __future__ import annotations

import argparse
import csv
import pickle
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy.signal import lfilter

from twinflow.flows.anomaly_steps import sample_settings
from twinflow.flows.config import FlowConfig
from twinflow.models.anomaly import WindowAnomalyDetector
from twinflow.models.spc import SpcDetector

CHUNK = 60  # rows handed to the detector at once, as a 1 Hz frame of a minute


@dataclass
class Recording:
    name: str
    columns: list[str]
    operating: list[str]
    rows: np.ndarray
    labels: np.ndarray


#: Flow settings replacing the documented defaults (``--set``; the flow's own checks apply).
SETTINGS: dict[str, Any] = {}


def flow_config() -> FlowConfig:
    """The flow settings the detectors are built with: the defaults and ``--set``."""
    return FlowConfig(**SETTINGS)


def spc(rec: Recording, adapt: bool = True, conditioned: bool = True) -> SpcDetector:
    """The flow's sample model (:func:`~twinflow.flows.anomaly_steps.sample_settings`) for
    ``rec``'s columns, learning after warm-up only with ``adapt``."""
    settings = sample_settings(flow_config())
    settings = replace(settings, adapt=adapt and settings.adapt)
    return settings.detector(rec.columns, rec.operating if conditioned else ())


def run_spc(det: SpcDetector, rec: Recording) -> np.ndarray:
    order = [rec.columns.index(c) for c in det.columns]
    rows = rec.rows[:, order]
    t = np.arange(len(rows), dtype=float)
    out = [det.update(t[i : i + CHUNK], rows[i : i + CHUNK]) for i in range(0, len(rows), CHUNK)]
    return np.concatenate(out) > 1.0


def run_old(rec: Recording) -> np.ndarray:
    det = WindowAnomalyDetector(warmup=flow_config().sample_warmup)
    flags = np.zeros(len(rec.rows), dtype=bool)
    for i, row in enumerate(rec.rows):
        x = dict(zip(rec.columns, row.tolist(), strict=True))
        flags[i] = det.threshold is not None and det.score_one(x) > det.threshold
        det.learn_one(x)
    return flags


DETECTORS: dict[str, Callable[[Recording], np.ndarray]] = {
    "spc": lambda r: run_spc(spc(r), r),
    "spc-frozen": lambda r: run_spc(spc(r, adapt=False), r),
    "spc-unconditioned": lambda r: run_spc(spc(r, conditioned=False), r),
    "old": run_old,
    "always": lambda r: np.ones(len(r.rows), dtype=bool),
}


def episodes(flags: np.ndarray, gap: int = 60) -> int:
    """Alarm episodes: flagged runs separated by at least ``gap`` unflagged rows."""
    idx = np.flatnonzero(flags)
    return 0 if idx.size == 0 else 1 + int((np.diff(idx) > gap).sum())


# -- data ----------------------------------------------------------------------------------


def read_skab(folder: Path, operating: tuple[str, ...] = ()) -> Iterator[Recording]:
    for path in sorted(folder.rglob("*.csv")):
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f, delimiter=";")
            header = next(reader)
            body = [r for r in reader if r]
        skip = {"datetime", "anomaly", "changepoint"}
        cols = [c for c in header if c not in skip]
        idx = [header.index(c) for c in cols]
        rows = np.array([[float(r[i]) for i in idx] for r in body])
        if "anomaly" in header:
            j = header.index("anomaly")
            labels = np.array([float(r[j]) > 0 for r in body])
        else:
            labels = np.zeros(len(rows), dtype=bool)
        settings = [c for c in operating if c in cols]
        yield Recording(str(path.relative_to(folder)), cols, settings, rows, labels)


def machine(seed: int, hours: float = 2.0, fault: str | None = "random") -> Recording:
    """A synthetic machine at 1 Hz: 8 signals from 3 latent factors and a load setting (with
    step changes and a nonlinear effect), plus one labelled fault in the second half."""
    rng = np.random.default_rng(seed)
    n, p = int(hours * 3600), 8
    steps = np.repeat(rng.uniform(30, 90, size=n // 900 + 1), 900)[:n]
    load = np.convolve(steps, np.ones(60) / 60, mode="same") + rng.normal(0, 0.3, n)
    # latent factors: fast noise plus a slow wander (an Ornstein-Uhlenbeck process with a
    # time constant of an hour and a spread of 0.3), as a healthy machine's state drifts
    tau = 3600.0
    kick = rng.normal(0, 0.3 * np.sqrt(2.0 / tau), (n, 3))
    slow = lfilter([1.0], [1.0, -(1.0 - 1.0 / tau)], kick, axis=0)
    latent = slow + rng.normal(0, 1, (n, 3))
    mix = rng.normal(0, 1, (3, p))
    gain = rng.uniform(-1.0, 2.0, p)
    curve = rng.uniform(-0.5, 0.5, p)
    x = (load - 60) / 30
    scale = rng.uniform(0.5, 50.0, p)  # units differ wildly between signals
    offset = rng.uniform(-100, 1000, p)
    y = latent @ mix + np.outer(x, gain) * 3 + np.outer(x * x, curve) * 3
    y += rng.normal(0, 0.3, (n, p))
    labels = np.zeros(n, dtype=bool)
    kinds = ["offset", "gain", "decouple", "noise", "drift"]
    kind = kinds[seed % len(kinds)] if fault == "random" else fault
    if kind is not None:
        start = int(rng.uniform(0.5, 0.7) * n)
        length = int(rng.uniform(0.1, 0.2) * n)
        sl = slice(start, start + length)
        j = int(rng.integers(p))
        sd = float(y[:, j].std())
        if kind == "offset":
            y[sl, j] += 1.0 * sd
        elif kind == "gain":
            y[sl, j] *= 1.6
        elif kind == "decouple":
            y[sl, j] = rng.permutation(y[sl, j])
        elif kind == "noise":
            y[sl, j] += rng.normal(0, 1.0 * sd, length)
        elif kind == "drift":
            y[sl, j] += np.linspace(0, 2.0 * sd, length)
        labels[sl] = True
    y = y * scale + offset
    cols = ["load", *(f"s{j}" for j in range(p))]
    name = f"machine {seed} ({kind or 'healthy'})"
    return Recording(name, cols, ["load"], np.column_stack([load, y]), labels)


# -- scoring -------------------------------------------------------------------------------


def report(labelled: list[Recording], healthy: list[Recording]) -> None:
    print(f"{len(labelled)} labelled recordings, {len(healthy)} healthy ones")
    print(f"{'detector':<18} {'F1':>6} {'prec':>6} {'recall':>6} {'false alarms/day':>17}")
    for name, run in DETECTORS.items():
        if name == "spc-unconditioned" and not any(r.operating for r in labelled + healthy):
            continue
        tp = fp = fn = 0
        for rec in labelled:
            flags = run(rec)
            tp += int((flags & rec.labels).sum())
            fp += int((flags & ~rec.labels).sum())
            fn += int((~flags & rec.labels).sum())
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec_ = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec_ / (prec + rec_) if prec + rec_ else 0.0
        alarms = sum(episodes(run(r)) for r in healthy)
        days = sum(len(r.rows) for r in healthy) / 86400
        per_day = f"{alarms / days:.2f}" if days else "n/a"
        print(f"{name:<18} {f1:6.3f} {prec:6.3f} {rec_:6.3f} {per_day:>17}")


def flow_throughput(rounds: int) -> None:
    """Readings/s of the flow on the simulated plant: the previous defaults (``zscore``
    window model), the new ones (``spc``), and the new ones with raw-sample scoring on."""
    from bytewax.testing import TestingSource, run_main

    from twinflow.connectors.simulator import Plant, PlantConfig
    from twinflow.flows.metrics import RunStats
    from twinflow.flows.outputs import file_outputs
    from twinflow.flows.telemetry import build_flow

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_flow import generate

    plant = Plant(PlantConfig(n_twins=20, duration_s=2 * 3600, seed=7, burst_interval_s=3600.0))
    items, _ = generate(plant)
    arms = {
        "previous (zscore)": {"anomaly_detector": "zscore"},
        "new defaults (spc)": {},
        "spc + raw samples": {"sample_anomaly": True},
    }
    rates: dict[str, list[float]] = {k: [] for k in arms}
    for _ in range(rounds):
        for name, overrides in arms.items():
            with tempfile.TemporaryDirectory() as tmp:
                cfg = FlowConfig(out_dir=Path(tmp), write_telemetry=False, **overrides)  # type: ignore[arg-type]
                stats = RunStats()
                flow = build_flow(
                    TestingSource(items), file_outputs(cfg), cfg, clock=plant.now, stats=stats
                )
                t0 = time.perf_counter()
                run_main(flow)
                rates[name].append(stats.readings / (time.perf_counter() - t0))
    base = statistics.median(rates["previous (zscore)"])
    print(
        f"flow on the simulated plant (20 twins, 2 h, 1 Hz signals), medians of {rounds} "
        "interleaved rounds:"
    )
    for name, got in rates.items():
        med = statistics.median(got)
        print(f"  {name:<20} {med:12,.0f} readings/s  ratio to previous {med / base:.2f}")


def state_size() -> None:
    """Pickled size of warmed models with 8 signals (plus one setting)."""
    rec = machine(101, hours=1.0, fault=None)
    det = spc(rec)
    run_spc(det, rec)
    print(f"sample model state with 8 signals + 1 setting: {len(pickle.dumps(det)):,} bytes")
    # a window model over the means of 8 signals and 8 derived ones, after 100 windows
    names = [f"s{i}.mean" for i in range(16)]
    window = SpcDetector(names, warmup=flow_config().anomaly_warmup, hold=1, refit_every=1)
    rng = np.random.default_rng(0)
    for k in range(100):
        window.learn_one(dict(zip(names, rng.normal(0, 1, 16).tolist(), strict=True)), 300.0 * k)
    print(f"window model state over 16 window means: {len(pickle.dumps(window)):,} bytes")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="*", type=Path, help="folders of SKAB-style CSV files")
    ap.add_argument("--machines", type=int, default=20, help="synthetic labelled machines")
    ap.add_argument(
        "--operating", nargs="*", default=(), help="CSV columns that are operating settings"
    )
    ap.add_argument("--flow", action="store_true", help="also time the flow on the plant")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a flow setting for the detectors (default: none, the documented defaults)",
    )
    args = ap.parse_args()
    SETTINGS.update({k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in args.set)})
    unknown = sorted(set(SETTINGS) - set(FlowConfig.field_names()))
    if unknown:
        ap.error(f"not flow settings: {', '.join(unknown)}")
    flow_config()  # a bad value fails here (the flow's own check), before any scoring
    if SETTINGS:
        print("flow settings: " + ", ".join(f"{k}={v}" for k, v in SETTINGS.items()))
    if args.folders:
        recs = [r for f in args.folders for r in read_skab(f, tuple(args.operating))]
        print(f"SKAB-style CSVs from {', '.join(map(str, args.folders))}")
        report([r for r in recs if r.labels.any()], [r for r in recs if not r.labels.any()])
    else:
        print("synthetic machines (seeds 1000+, faults: offset, gain, decouple, noise, drift)")
        labelled = [machine(1000 + i) for i in range(args.machines)]
        healthy = [machine(2000 + i, hours=24.0, fault=None) for i in range(3)]
        report(labelled, healthy)
    state_size()
    if args.flow:
        flow_throughput(args.rounds)


if __name__ == "__main__":
    main()
