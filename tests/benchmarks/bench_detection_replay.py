"""Benchmark: out-of-the-box detection through ``twinflow replay`` on machines never seen.

Not a test: prints figures. Where ``bench_detector.py`` scores the detectors directly, this
one goes the way a user does: a twin type written as files (a DTDL Interface and a profile
giving only each signal's range and, optionally, the operating setting), synthetic recordings
written as CSV with an ``anomaly`` label column, and ``twinflow replay --labels anomaly`` with
the documented defaults. It prints what the replay's own scoring says (events detected,
event-wise and point-wise precision/recall/F1 over 5-minute windows, false alarms per day)
for long and short recordings, with the operating setting declared and not, and, for
comparison, with raw-sample scoring off (the window model alone).

The machines are ``bench_detector.machine``: 8 signals from 3 latent factors driven by a load
setting with step changes, one labelled fault each (offset, gain, broken correlation, noise,
drift); the seeds differ from those the defaults were chosen on.

Run: ``.venv/bin/python tests/benchmarks/bench_detection_replay.py [--machines 10]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_detector import Recording, machine

from twinflow.flows.cli import main as twinflow

T0 = 1_767_225_600
SIGNALS = ["load", *(f"s{j}" for j in range(8))]


def write_type(folder: Path, recordings: list[Recording], operating: bool) -> None:
    """The rig's DTDL Interface and a profile with each signal's range (from the data, with
    half its span either side, as a user reading a datasheet might give it)."""
    folder.mkdir(parents=True)
    contents = [{"@type": "Telemetry", "name": n, "schema": "double"} for n in SIGNALS]
    doc = {
        "@context": "dtmi:dtdl:context;3",
        "@id": "dtmi:example:bench:Rig;1",
        "@type": "Interface",
        "contents": contents,
    }
    (folder / "rig.json").write_text(json.dumps(doc))
    rows = np.vstack([r.rows for r in recordings])
    lines = ["name: rig", "model: dtmi:example:bench:Rig;1", "signals:"]
    for j, name in enumerate(SIGNALS):
        lo, hi = float(rows[:, j].min()), float(rows[:, j].max())
        pad = 0.5 * (hi - lo)
        lines.append(f'  {name}: {{low: {lo - pad:.4f}, high: {hi + pad:.4f}, unit: "1"}}')
    if operating:
        lines.append("anomaly: {operating: [load]}")
    (folder / "rig.yaml").write_text("\n".join(lines) + "\n")


def write_data(folder: Path, recordings: list[Recording]) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for i, rec in enumerate(recordings):
        times = pl.from_epoch(pl.Series(T0 + np.arange(len(rec.rows))), time_unit="s")
        df = pl.DataFrame({"time": times.dt.strftime("%Y-%m-%dT%H:%M:%SZ")})
        df = df.with_columns(pl.lit(f"m{i}").alias("twin_id"))
        for j, name in enumerate(rec.columns):
            df = df.with_columns(pl.Series(name, rec.rows[:, j]))
        df = df.with_columns(pl.Series("anomaly", rec.labels.astype(np.int8)))
        paths.append(folder / f"m{i}.csv")
        df.write_csv(paths[-1])
    return paths


def replay(root: Path, name: str, recordings: list[Recording], operating: bool, samples: bool):
    """The replay's scores for ``recordings`` with the defaults (and the given options)."""
    case = root / name
    write_type(case / "models", recordings, operating)
    lines = ["version: 1", "site: lab", "models: [models]"]
    if not samples:
        lines.append("flow: {sample_anomaly: false}")
    lines.append("twins:")
    lines += [f"  - {{id: m{i}, type: rig, protocol: replay}}" for i in range(len(recordings))]
    (case / "dep.yaml").write_text("\n".join(lines) + "\n")
    files = write_data(case / "data", recordings)
    argv = ["replay", str(case / "dep.yaml"), *map(str, files), "--tz", "UTC", "--quiet"]
    argv += ["--labels", "anomaly", "--out", str(case / "out")]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert twinflow(argv) == 0
    return json.loads((case / "out" / "summary.json").read_text())["scores"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--machines", type=int, default=10)
    args = ap.parse_args()
    seeds = range(500, 500 + args.machines)
    sets = {
        "2 h recordings": [machine(s, hours=2.0) for s in seeds],
        "20 min recordings": [machine(s, hours=1 / 3) for s in seeds],
    }
    print(f"twinflow replay --labels, documented defaults, {args.machines} machines per set")
    head = f"{'recordings':<18} {'setting':<12} {'samples':<8} {'events':>7} "
    print(head + f"{'ev. F1':>7} {'pt. P':>6} {'pt. R':>6} {'pt. F1':>7} {'FA/day':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, recs in sets.items():
            for operating, samples in ((True, True), (False, True), (True, False)):
                name = f"{label}-{operating}-{samples}".replace(" ", "_")
                s = replay(Path(tmp), name, recs, operating, samples)
                ev, pt = s["eventwise"], s["pointwise"]
                print(
                    f"{label:<18} {'declared' if operating else 'not given':<12} "
                    f"{'on' if samples else 'off':<8} {ev['detected']:>3}/{ev['events']:<3} "
                    f"{ev['f1'] or 0:>7.3f} {pt['precision'] or 0:>6.3f} {pt['recall'] or 0:>6.3f} "
                    f"{pt['f1'] or 0:>7.3f} {s['false_alarms_per_day']:>7.1f}"
                )


if __name__ == "__main__":
    main()
