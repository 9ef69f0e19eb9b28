"""Benchmark: detection on real machines with slow sampling (NAB) through ``twinflow replay``.

Not a test: prints figures. NAB (the Numenta Anomaly Benchmark, github.com/numenta/NAB) holds
single-signal recordings with labelled anomaly windows; this script uses its two real
machine-temperature files from ``realKnownCause``: ``machine_temperature_system_failure``
(an internal component of a large industrial machine, one reading every 5 minutes over 79
days, a planned shutdown and a catastrophic failure among the labelled events) and
``ambient_temperature_system_failure`` (an office's ambient temperature, one reading an hour,
with gaps, over 11 months). twinflow was never tuned on them. The data are not bundled: give
NAB's ``data`` folder (or any folder holding those CSV files, ``timestamp,value``; searched
recursively) as the argument or in ``TWINFLOW_NAB_DIR``, with NAB's
``labels/combined_windows.json`` found in the folder, beside it or in ``../labels`` (or given
by ``--labels``). Without them the script says so and exits 0.

It goes the way a user does, like ``bench_skab.py`` (whose alert scoring it imports): a twin
type written as files (a DTDL Interface with one signal, ``temperature``, and a profile giving
it a datasheet-like range of -40 to 150; no tuning), each file converted to a replay CSV (one
twin per file, NAB's clock read as UTC, the label column kept: 1 inside a labelled window) and
replayed by ``twinflow replay --labels anomaly`` with the documented defaults, one replay per
file (the readings each replay took are printed: before session 7's fix of the replay's
batches, a file longer than ``flow.max_past_s``, 7 days, kept only its last 7 days). Rows whose
time does not move forward are dropped (the machine file repeats the hour 2014-01-07
02:00-02:55; 12 rows); the count is printed. Each twin learns its own normal from the start
of its file.

Printed per file and pooled, for the raw-sample anomaly alarm (``anomaly_sample``) and for
every alert the flow raised: event recall (labelled windows with an alarm raised inside the
window), the time from a window's start to its first alarm, alarms raised outside the windows
per day of rows outside them, and point-wise precision, recall and F1 (a row is flagged when
an alert of its twin is open at its time). Beside them, the baselines: always anomalous, and a
z-score (for one signal, Hotelling's T²) fitted on each file's first 15 % of rows (NAB's
probationary period) with the limit at the 99th percentile of those rows' scores; a
baseline's "alarms" are the rows where its flag turns on.

Run: ``.venv/bin/python tests/benchmarks/bench_nab.py [FOLDER] [--set KEY=VALUE ...]
[--files NAME ...]``
(``--files`` replays other NAB files, e.g. held-out ones, with the same one-signal type).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_skab import Experiment, flags_from_alerts, replay_files  # a sibling script

FILES = ("machine_temperature_system_failure", "ambient_temperature_system_failure")
SIGNAL = ("temperature", -40.0, 150.0, "deg")
TRAIN_FRACTION = 0.15  # NAB's probationary period: the first 15 % of each file


@dataclass
class Recording:
    exp: Experiment
    windows: list[tuple[float, float]]
    dropped: int


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "")).replace(tzinfo=UTC).timestamp()


def find_labels(folder: Path, given: Path | None) -> Path | None:
    if given is not None:
        return given
    for place in (folder, folder.parent, folder.parent / "labels", folder / "labels"):
        path = place / "combined_windows.json"
        if path.is_file():
            return path
    hits = sorted(folder.rglob("combined_windows.json"))
    return hits[0] if hits else None


def read(folder: Path, labels: Path, names: tuple[str, ...] = FILES) -> list[Recording]:
    windows = json.loads(labels.read_text())
    out = []
    for name in names:
        paths = sorted(folder.rglob(f"{name}.csv"))
        if not paths:
            print(f"skipped {name}: no {name}.csv under {folder}")
            continue
        with paths[0].open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader)
            body = [r for r in reader if r]
        t, v = header.index("timestamp"), header.index("value")
        times: list[float] = []
        values: list[float] = []
        dropped = 0
        for r in body:
            at = stamp(r[t])
            if times and at <= times[-1]:
                dropped += 1
                continue
            times.append(at)
            values.append(float(r[v]))
        spans = [
            (stamp(a), stamp(b))
            for key, ws in windows.items()
            if Path(key).stem == name
            for a, b in ws
        ]
        tt = np.array(times)
        lab = np.zeros(len(tt), dtype=bool)
        for a, b in spans:
            lab |= (tt >= a) & (tt <= b)
        exp = Experiment(name.replace("_", "-"), tt, np.array(values)[:, None], lab)
        out.append(Recording(exp, spans, dropped))
    return out


# -- twinflow replay ---------------------------------------------------------------------


def write_case(root: Path, recs: list[Recording], flow: dict[str, str]) -> tuple[Path, list[Path]]:
    name, low, high, unit = SIGNAL
    models = root / "models"
    models.mkdir(parents=True)
    doc = {
        "@context": "dtmi:dtdl:context;3",
        "@id": "dtmi:example:nab:TemperatureSensor;1",
        "@type": "Interface",
        "displayName": "temperature sensor",
        "contents": [{"@type": "Telemetry", "name": name, "schema": "double"}],
    }
    (models / "sensor.json").write_text(json.dumps(doc))
    profile = [
        "name: temperature_sensor",
        "model: dtmi:example:nab:TemperatureSensor;1",
        "signals:",
        f'  {name}: {{low: {low}, high: {high}, unit: "{unit}"}}',
    ]
    (models / "sensor.yaml").write_text("\n".join(profile) + "\n")
    dep = ["version: 1", "site: nab", "models: [models]", "twins:"]
    dep += [f"  - {{id: {r.exp.twin}, type: temperature_sensor, protocol: replay}}" for r in recs]
    if flow:
        dep.append("flow: {" + ", ".join(f"{k}: {v}" for k, v in flow.items()) + "}")
    (root / "dep.yaml").write_text("\n".join(dep) + "\n")
    files = []
    for r in recs:
        e = r.exp
        path = root / "data" / f"{e.twin}.csv"
        path.parent.mkdir(exist_ok=True)
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["time", "twin_id", name, "anomaly"])
            for t, row, lab in zip(e.times, e.rows, e.labels, strict=True):
                at = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                w.writerow([at, e.twin, repr(float(row[0])), int(lab)])
        files.append(path)
    return root / "dep.yaml", files


def replay(
    root: Path, recs: list[Recording], flow: dict[str, str]
) -> tuple[list[dict[str, object]], int]:
    """The alerts of one replay (documented defaults unless ``flow``) and the readings it
    took (the rest were refused as dead letters)."""
    dep, files = write_case(root, recs, flow)
    out = root / "out"
    alerts = replay_files(dep, files, out)
    return alerts, int(json.loads((out / "summary.json").read_text())["readings"])


# -- baselines ---------------------------------------------------------------------------


def zscore(e: Experiment, q: float = 0.99) -> np.ndarray:
    """|z| (T² for one signal) above the 99th percentile of the first 15 % of rows' scores."""
    x = e.rows[:, 0]
    train = x[: max(2, int(len(x) * TRAIN_FRACTION))]
    sd = float(train.std()) or 1.0
    score = np.abs(x - train.mean()) / sd
    return np.asarray(score > np.quantile(np.abs(train - train.mean()) / sd, q))


def onsets(e: Experiment, flags: np.ndarray) -> list[float]:
    edges = np.flatnonzero(np.diff(np.concatenate([[False], flags]).astype(int)) == 1)
    return [float(e.times[i]) for i in edges]


# -- scoring -----------------------------------------------------------------------------


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    events: int = 0
    found: int = 0
    delays_h: list[float] = field(default_factory=list)
    outside: int = 0
    normal_s: float = 0.0

    def add(self, r: Recording, flags: np.ndarray, raised: list[float]) -> None:
        e, lab = r.exp, r.exp.labels
        self.tp += int((flags & lab).sum())
        self.fp += int((flags & ~lab).sum())
        self.fn += int((~flags & lab).sum())
        for a, b in r.windows:
            inside = [t for t in raised if a <= t <= b]
            self.events += 1
            if inside:
                self.found += 1
                self.delays_h.append((min(inside) - a) / 3600.0)
        self.outside += sum(not any(a <= t <= b for a, b in r.windows) for t in raised)
        gaps = np.diff(e.times)
        step = float(np.median(gaps)) if len(gaps) else 1.0
        # time outside the windows: each row outside stands for its gap to the next row,
        # capped at 3 sampling periods (the ambient file has gaps of days)
        cover = np.minimum(np.append(gaps, step), 3 * step)
        self.normal_s += float(cover[~lab].sum())

    def line(self, name: str) -> str:
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0
        r = self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        days = self.normal_s / 86400.0
        fa = f"{self.outside / days:8.2f}" if days else f"{'-':>8}"
        d = ",".join(f"{x:.1f}" for x in self.delays_h) or "-"
        return (
            f"{name:<38} {self.found:>2}/{self.events:<2} {d:>24} {fa} {self.outside:>5} "
            f"{f1:6.3f} {p:6.3f} {r:6.3f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", nargs="?", type=Path, default=os.environ.get("TWINFLOW_NAB_DIR"))
    ap.add_argument("--labels", type=Path, default=None, help="NAB's combined_windows.json")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a flow setting for the replays (default: none, the documented defaults)",
    )
    ap.add_argument(
        "--files",
        nargs="+",
        default=list(FILES),
        metavar="NAME",
        help="NAB file names (without .csv) to replay instead of the two machine files; "
        "each gets the same one-signal type (its signal is called temperature)",
    )
    args = ap.parse_args()
    flow = dict(kv.split("=", 1) for kv in args.set)
    folder = Path(args.folder) if args.folder is not None else None
    labels = find_labels(folder, args.labels) if folder is not None and folder.is_dir() else None
    if folder is None or labels is None:
        print(
            "no NAB data: give NAB's data folder (github.com/numenta/NAB, data/, with "
            "labels/combined_windows.json beside it) as the argument or in TWINFLOW_NAB_DIR; "
            "nothing measured"
        )
        return
    recs = read(folder, labels, tuple(args.files))
    if not recs:
        print(f"none of {', '.join(args.files)} under {folder}; nothing measured")
        return
    for r in recs:
        e = r.exp
        days = float(e.times[-1] - e.times[0]) / 86400.0
        step = float(np.median(np.diff(e.times))) / 60.0
        print(
            f"NAB {e.twin}: {len(e.times)} rows over {days:.1f} days, one every {step:g} min "
            f"(median), {len(r.windows)} labelled windows, {int(e.labels.sum())} rows inside; "
            f"{r.dropped} rows dropped (time not moving forward)"
        )
    if flow:
        print("flow settings: " + ", ".join(f"{k}={v}" for k, v in flow.items()))
    alerts: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, r in enumerate(recs):  # one replay each: the files cover different periods
            got, readings = replay(Path(tmp) / str(i), [r], flow)
            alerts += got
            print(f"replayed {r.exp.twin}: {readings} of {len(r.exp.times)} readings taken")
    head = f"{'file / detector':<38} {'events':>5} {'to 1st alarm (h)':>24} {'FA/day':>8}"
    print(head + f" {'FA':>5} {'F1':>6} {'prec':>6} {'recall':>6}")

    def baseline(flags: np.ndarray, e: Experiment) -> tuple[np.ndarray, list[float]]:
        return flags, onsets(e, flags)

    arms = {
        "twinflow replay: anomaly_sample": lambda e: flags_from_alerts(e, alerts, "anomaly_sample"),
        "twinflow replay: every alert": lambda e: flags_from_alerts(e, alerts, None),
        "baseline: z-score, first 15 %": lambda e: baseline(zscore(e), e),
        "baseline: always anomalous": lambda e: baseline(np.ones(len(e.labels), bool), e),
    }
    for name, run in arms.items():
        total = Score()
        for r in recs:
            one = Score()
            flags, raised = run(r.exp)
            one.add(r, flags, raised)
            total.add(r, flags, raised)
            print(one.line(f"  {r.exp.twin}"))
        print(total.line(name))
    rules = sorted({str(a["rule"]) for a in alerts if a["state"] == "raised"})
    print(f"alert rules raised: {', '.join(rules) or 'none'}")


if __name__ == "__main__":
    main()
