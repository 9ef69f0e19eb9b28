"""Benchmark: detection on a real test rig (SKAB) through ``twinflow replay``, with defaults.

Not a test: prints figures. SKAB (the Skoltech Anomaly Benchmark, github.com/waico/SKAB) is
a water-pump test rig recorded at 1 Hz with labelled faults (valve closures, cavitation,
rotor imbalance, leaks); twinflow was never tuned on it. The data set is not bundled: give a
folder of its CSV files (``;``-separated: ``datetime``, the 8 signals, ``anomaly``,
``changepoint``; searched recursively) as the argument or in ``TWINFLOW_SKAB_DIR``. Without
one the script says so and exits 0.

It goes the way a user does: a twin type written as files (a DTDL Interface with the rig's 8
signals and a profile giving each a datasheet-like range; no operating setting, no tuning),
each experiment file converted to a replay CSV (one twin per file, the file's own clock in
UTC, the label column kept) and replayed by ``twinflow replay --labels anomaly`` with the
documented defaults, one replay per file (the experiments were recorded on different days, and
a replay refuses rows more than ``max_past_s`` behind its latest). Each twin learns its own
normal from the start of its file (SKAB's experiments begin healthy).

SKAB scores points: every row is a point, flagged when an alert of its twin is open at that
row's time. Printed per file and pooled: point-wise precision, recall and F1 for the
raw-sample anomaly alarm (``anomaly_sample``) and for every alert the flow raised; event
recall (labelled spans with a flagged row); false alarms per day (alerts raised outside the
labelled spans, per day of unlabelled rows scored). Beside them, the baselines: always
anomalous, and a plain Hotelling T² + Q (SPE) on standardised PCA (90 % of the variance)
fitted on each file's first 400 rows with limits at the 99th percentile of those rows'
scores, as SKAB's own baseline protocol trains.

Run: ``.venv/bin/python tests/benchmarks/bench_skab.py [FOLDER]``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

#: SKAB column -> signal name, and the range a user would give from a datasheet.
SIGNALS: dict[str, tuple[str, float, float, str]] = {
    "Accelerometer1RMS": ("accel1", 0.0, 1.0, "g"),
    "Accelerometer2RMS": ("accel2", 0.0, 1.0, "g"),
    "Current": ("current", 0.0, 10.0, "A"),
    "Pressure": ("pressure", -2.0, 10.0, "bar"),
    "Temperature": ("temperature", 0.0, 150.0, "degC"),
    "Thermocouple": ("thermocouple", 0.0, 150.0, "degC"),
    "Voltage": ("voltage", 0.0, 400.0, "V"),
    "Volume Flow RateRMS": ("flow", 0.0, 250.0, "l/min"),
}
TRAIN_ROWS = 400  # SKAB's baselines fit on each file's first 400 rows


@dataclass
class Experiment:
    twin: str
    times: np.ndarray  # epoch seconds
    rows: np.ndarray  # the 8 signals, in SIGNALS order
    labels: np.ndarray


def read(folder: Path) -> list[Experiment]:
    out = []
    for path in sorted(folder.rglob("*.csv")):
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f, delimiter=";")
            header = next(reader)
            body = [r for r in reader if r]
        if not set(SIGNALS) <= set(header) or "datetime" not in header:
            print(f"skipped {path}: not a SKAB-style file")
            continue
        t = header.index("datetime")
        times = np.array(
            [datetime.fromisoformat(r[t]).replace(tzinfo=UTC).timestamp() for r in body]
        )
        rows = np.array([[float(r[header.index(c)]) for c in SIGNALS] for r in body])
        j = header.index("anomaly") if "anomaly" in header else None
        labels = np.array([j is not None and float(r[j]) > 0 for r in body])
        twin = "-".join(path.relative_to(folder).with_suffix("").parts).replace(" ", "_")
        out.append(Experiment(twin, times, rows, labels))
    return out


# -- twinflow replay ---------------------------------------------------------------------


def write_case(
    root: Path, exps: list[Experiment], flow: dict[str, str] | None = None
) -> tuple[Path, list[Path]]:
    models = root / "models"
    models.mkdir(parents=True)
    contents = [
        {"@type": "Telemetry", "name": name, "schema": "double"} for name, *_ in SIGNALS.values()
    ]
    doc = {
        "@context": "dtmi:dtdl:context;3",
        "@id": "dtmi:example:skab:Rig;1",
        "@type": "Interface",
        "displayName": "SKAB water-pump test rig",
        "contents": contents,
    }
    (models / "rig.json").write_text(json.dumps(doc))
    lines = ["name: skab_rig", "model: dtmi:example:skab:Rig;1", "signals:"]
    lines += [f'  {n}: {{low: {lo}, high: {hi}, unit: "{u}"}}' for n, lo, hi, u in SIGNALS.values()]
    (models / "rig.yaml").write_text("\n".join(lines) + "\n")
    dep = ["version: 1", "site: lab", "models: [models]", "twins:"]
    dep += [f"  - {{id: {e.twin}, type: skab_rig, protocol: replay}}" for e in exps]
    if flow:
        dep.append("flow: {" + ", ".join(f"{k}: {v}" for k, v in flow.items()) + "}")
    (root / "dep.yaml").write_text("\n".join(dep) + "\n")
    files = []
    for e in exps:
        path = root / "data" / f"{e.twin}.csv"
        path.parent.mkdir(exist_ok=True)
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["time", "twin_id", *(n for n, *_ in SIGNALS.values()), "anomaly"])
            for t, row, lab in zip(e.times, e.rows, e.labels, strict=True):
                stamp = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                w.writerow([stamp, e.twin, *map(repr, row.tolist()), int(lab)])
        files.append(path)
    return root / "dep.yaml", files


def replay(
    root: Path, exps: list[Experiment], flow: dict[str, str] | None = None
) -> list[dict[str, object]]:
    """The alerts of one replay of every experiment (documented defaults unless ``flow``)."""
    dep, files = write_case(root, exps, flow)
    return replay_files(dep, files, root / "out")


def replay_files(dep: Path, files: list[Path], out: Path) -> list[dict[str, object]]:
    """The alerts of ``twinflow replay --labels anomaly`` of ``files`` under ``dep`` into
    ``out`` (its ``summary.json`` is left there)."""
    from twinflow.flows.cli import main as twinflow

    argv = ["replay", str(dep), *map(str, files), "--quiet", "--labels", "anomaly"]
    argv += ["--out", str(out)]
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = twinflow(argv)
    if code != 0:
        raise SystemExit(f"twinflow replay failed ({code}): {err.getvalue()[-2000:]}")
    path = out / "alerts.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def flags_from_alerts(
    e: Experiment, alerts: list[dict[str, object]], rule: str | None
) -> tuple[np.ndarray, list[float]]:
    """Rows with an alert of the twin (of ``rule``, or any) open, and the raise times."""
    from twinflow.flows.scoring import alert_spans

    mine = [a for a in alerts if a["twin_id"] == e.twin and (rule is None or a["rule"] == rule)]
    flags = np.zeros(len(e.times), dtype=bool)
    for start, end in alert_spans(mine).get(e.twin, []):
        flags |= (e.times >= start) & (e.times < end)
    raised = [
        datetime.fromisoformat(str(a["time"]).replace("Z", "+00:00")).timestamp()
        for a in mine
        if a["state"] == "raised"
    ]
    return flags, raised


# -- baselines ---------------------------------------------------------------------------


def t2q(e: Experiment, variance: float = 0.9, q: float = 0.99) -> np.ndarray:
    """Hotelling T² + Q on a PCA of the first ``TRAIN_ROWS`` rows (standardised)."""
    train = e.rows[:TRAIN_ROWS]
    mean, sd = train.mean(axis=0), train.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    z = (train - mean) / sd
    eigval, eigvec = np.linalg.eigh(np.cov(z, rowvar=False))
    order = np.argsort(eigval)[::-1]
    eigval, eigvec = eigval[order], eigvec[:, order]
    k = int(np.searchsorted(np.cumsum(eigval) / eigval.sum(), variance) + 1)
    pcs, lam = eigvec[:, :k], eigval[:k]

    def stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = (x - mean) / sd
        t = u @ pcs
        resid = u - t @ pcs.T
        return (t * t / lam).sum(axis=1), (resid * resid).sum(axis=1)

    t2_train, q_train = stats(train)
    t2, spe = stats(e.rows)
    return np.asarray((t2 > np.quantile(t2_train, q)) | (spe > np.quantile(q_train, q)))


# -- scoring -----------------------------------------------------------------------------


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    events: int = 0
    found: int = 0
    false_alarms: int = 0
    normal_s: float = 0.0

    def add(self, e: Experiment, flags: np.ndarray, raised: list[float] | None) -> None:
        lab = e.labels
        self.tp += int((flags & lab).sum())
        self.fp += int((flags & ~lab).sum())
        self.fn += int((~flags & lab).sum())
        edges = np.flatnonzero(np.diff(np.concatenate([[0], lab.astype(int), [0]])))
        spans = list(zip(edges[::2], edges[1::2], strict=True))
        self.events += len(spans)
        self.found += sum(bool(flags[a:b].any()) for a, b in spans)
        step = float(np.median(np.diff(e.times))) if len(e.times) > 1 else 1.0
        self.normal_s += float((~lab).sum()) * step
        if raised is not None:
            inside = [(e.times[a], e.times[b - 1] + step) for a, b in spans]
            self.false_alarms += sum(not any(s <= t <= f for s, f in inside) for t in raised)

    def line(self, name: str, alarms: bool) -> str:
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0
        r = self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        days = self.normal_s / 86400.0
        fa = f"{self.false_alarms / days:9.1f}" if alarms and days else f"{'-':>9}"
        return (
            f"{name:<34} {f1:6.3f} {p:6.3f} {r:6.3f} {self.found:>3}/{self.events:<3} "
            f"{fa} {self.false_alarms if alarms else '-':>4}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", nargs="?", type=Path, default=os.environ.get("TWINFLOW_SKAB_DIR"))
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a flow setting for the replays (default: none, the documented defaults)",
    )
    args = ap.parse_args()
    flow = dict(kv.split("=", 1) for kv in args.set)
    if args.folder is None or not Path(args.folder).is_dir():
        print(
            "no SKAB data: give a folder of SKAB CSV files (github.com/waico/SKAB, data/) as "
            "the argument or in TWINFLOW_SKAB_DIR; nothing measured"
        )
        return
    exps = read(Path(args.folder))
    if not exps:
        print(f"no SKAB-style CSV files under {args.folder}; nothing measured")
        return
    hours = sum(float(e.times[-1] - e.times[0]) for e in exps) / 3600.0
    print(
        f"SKAB: {len(exps)} experiment files from {args.folder}, {hours:.2f} h, "
        f"{sum(int(e.labels.sum()) for e in exps)} of {sum(len(e.labels) for e in exps)} rows "
        "labelled anomalous"
    )
    if flow:
        print("flow settings: " + ", ".join(f"{k}={v}" for k, v in flow.items()))
    alerts = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, e in enumerate(exps):  # one replay each: the files come from different days
            alerts += replay(Path(tmp) / str(i), [e], flow)
    head = f"{'file / detector':<34} {'F1':>6} {'prec':>6} {'recall':>6} {'events':>7}"
    print(head + f" {'FA/day':>9} {'FA':>4}")
    arms = {
        "twinflow replay: anomaly_sample": lambda e: flags_from_alerts(e, alerts, "anomaly_sample"),
        "twinflow replay: every alert": lambda e: flags_from_alerts(e, alerts, None),
        "baseline: T²+Q, first 400 rows": lambda e: (t2q(e), None),
        "baseline: always anomalous": lambda e: (np.ones(len(e.labels), dtype=bool), None),
    }
    for name, run in arms.items():
        total = Score()
        for e in exps:
            one = Score()
            flags, raised = run(e)
            one.add(e, flags, raised)
            total.add(e, flags, raised)
            print(one.line(f"  {e.twin}", raised is not None))
        print(total.line(name, name.startswith("twinflow")))
    rules = sorted({str(a["rule"]) for a in alerts if a["state"] == "raised"})
    print(f"alert rules raised: {', '.join(rules) or 'none'}")


if __name__ == "__main__":
    sys.exit(main())
