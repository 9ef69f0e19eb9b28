"""Benchmark: what judging rules per reading costs, in CPU time (not a test; prints figures).

Two measurements over the same simulated plant (1 Hz signals only: vibration bursts once an
hour), rounds interleaved with the order turning, medians with min-max:

- ``steps``: the per-reading evaluator (``reading_rules``, judged inside the ``windows`` step)
  alone over every frame (given the windows the frames close, as in the flow), beside the
  window aggregator over the same frames: microseconds of CPU per frame and the ratio of the
  two; ``--steps-baseline REV`` times the evaluator of an older commit too (its
  ``reading_rules*.py`` modules) and says whether the alerts are identical;
- ``flow``: the whole telemetry flow (files only, no raw telemetry), the CPU seconds of its
  worker thread and readings per worker CPU second, with the per-reading evaluator and with it
  switched off (``without``: its rules are judged per window again, as before it existed;
  ``none``: not judged at all, the evaluator's own cost), and with ``--flow-baseline REV`` the
  evaluator of commit REV too (``at REV``), runs interleaved in one child process after a
  warm-up run, and the ratios. ``--before
  PYTHON`` runs the same child under another interpreter too (e.g. the venv of an older
  checkout), in a process of its own after the first.

CPU time, not wall time, because the machine may be shared: a busy machine stretches wall time
several-fold but CPU time far less. Run: ``.venv/bin/python tests/benchmarks/bench_reading_rules.py
[--twins 50] [--hours 1] [--rounds 3] [--message-s 60] [--steps-baseline 8c728d0]
[--flow-baseline 8c728d0] [--before /path/to/other/python] [--only steps|flow] [--batch 1]``
(``--batch``: frames per input batch, in both measurements; 1, the default, gives each step
one frame at a time).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
import types
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).absolute().parents[2]))

from twinflow.connectors.simulator import Plant, PlantConfig
from twinflow.core.records import TelemetryFrame

HERE = Path(__file__).absolute()
ROOT = HERE.parents[2]


#: Seconds of data per frame (the plant's chunk; ``--message-s``).
CHUNK_S = [60.0]


def plant(twins: int, hours: float) -> Plant:
    return Plant(PlantConfig(n_twins=twins, duration_s=hours * 3600, seed=7,
                             burst_interval_s=3600.0, chunk_s=CHUNK_S[0]))  # fmt: skip


def evaluator_at(commit: str) -> Any:
    """``operators/reading_rules.py`` as it was at ``commit``, with the ``reading_rules_plan``
    and ``reading_rules_frame`` modules of that commit if it has them (each loaded as a module
    of its own beside this checkout's, the evaluator's imports pointed at them)."""

    def show(path: str) -> str | None:
        got = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=ROOT,
                             capture_output=True, text=True)  # fmt: skip
        return got.stdout if got.returncode == 0 else None

    renames: dict[str, str] = {}
    module: Any = None
    for part in ("reading_rules_plan", "reading_rules_frame", "reading_rules"):
        text = show(f"operators/{part}.py")
        if text is None:
            continue
        for old, new in renames.items():
            text = text.replace(f"twinflow.operators.{old} ", f"{new} ")
        module = types.ModuleType(f"{part}_{commit}")
        sys.modules[module.__name__] = module  # dataclasses look their module up
        exec(compile(text, f"{commit}:operators/{part}.py", "exec"), module.__dict__)
        renames[part] = module.__name__
    return module


def steps(twins: int, hours: float, rounds: int, baseline: str | None, batch: int) -> None:
    """The evaluator (and the one of ``baseline``, a commit) and the window aggregator over
    the same frames, CPU µs per frame; the evaluators are given the windows the frames close
    (the spike rule's scale) as in the flow, and their alerts are compared. With ``batch``
    > 1 the frames come in input batches of that many, and an evaluator that has
    ``update_batch`` judges a twin's frames of a batch together, as the ``windows`` step
    does."""
    from twinflow.flows.config import FlowConfig
    from twinflow.flows.steps import TypeOf, new_window_aggregator, residuals
    from twinflow.operators.reading_rules import ReadingAlarms
    from twinflow.operators.reading_rules_run import MIN_RUN

    frames = [residuals(f) for f in plant(twins, hours).items() if isinstance(f, TelemetryFrame)]
    readings = sum(f.readings for f in frames)
    cfg = FlowConfig()
    type_of = TypeOf()
    kinds = [type_of(f.twin_id, f.twin_type) for f in frames]
    aggs: dict[str, Any] = {}
    closed = []
    for f in frames:
        agg = aggs.get(f.twin_id) or aggs.setdefault(f.twin_id, new_window_aggregator(f, cfg))
        closed.append(agg.add(f)[0])
    alerts: dict[str, list[Any]] = {}

    def rules(cls: Any, name: str) -> None:
        state: dict[str, Any] = {}
        out = alerts[name] = []
        together = hasattr(cls, "update_batch") and batch > 1
        for start in range(0, len(frames), batch):
            mine: dict[str, list[int]] = {}  # a batch's frames by twin, in order
            for i in range(start, min(start + batch, len(frames))):
                mine.setdefault(frames[i].twin_id, []).append(i)
            for twin, rows in mine.items():
                a = state.get(twin)
                if together and len(rows) >= MIN_RUN and a is not None:  # as judge_batch
                    got = a.update_batch(
                        [frames[i] for i in rows],
                        kinds[rows[0]],
                        [[w.features for w in closed[i]] for i in rows],
                    )
                    out.extend(x for alerts in got for x in alerts)  # fmt: skip
                    continue
                for i in rows:
                    f, kind = frames[i], kinds[i]
                    if a is None:
                        a = state[twin] = cls(f.twin_id, f.twin_type)
                    for w in closed[i]:
                        a.learn_window(w.features, kind)
                    out.extend(a.update(f, kind))

    def windows() -> None:
        aggs: dict[str, Any] = {}
        for f in frames:
            agg = aggs.get(f.twin_id) or aggs.setdefault(f.twin_id, new_window_aggregator(f, cfg))
            agg.add(f)

    sides = [("reading_rules", lambda: rules(ReadingAlarms, "reading_rules")),
             ("windows", windows)]  # fmt: skip
    if baseline:
        old = evaluator_at(baseline).ReadingAlarms
        sides.insert(1, (f"at {baseline}", lambda: rules(old, f"at {baseline}")))
    cpu: dict[str, list[float]] = {name: [] for name, _ in sides}
    for r in range(rounds):
        for name, fn in sides[r % len(sides) :] + sides[: r % len(sides)]:
            t0 = time.process_time()
            fn()
            cpu[name].append((time.process_time() - t0) * 1e6 / len(frames))
    print(f"steps: {len(frames):,} frames of {readings / len(frames):.0f} 1 Hz readings "
          f"({readings:,}), input batches of {batch}, {rounds} rounds, CPU µs "
          "per frame")  # fmt: skip
    for name, xs in cpu.items():
        print(f"  {name:<14} median {statistics.median(xs):7.1f} (min {min(xs):.1f}, max "
              f"{max(xs):.1f}); {statistics.median(xs) * 1e3 / (readings / len(frames)):.0f} "
              "ns per reading")  # fmt: skip
    ratio = statistics.median(cpu["reading_rules"]) / statistics.median(cpu["windows"])
    print(f"  reading_rules / windows: {ratio:.2f}x")
    if baseline:
        mine, theirs = alerts["reading_rules"], alerts[f"at {baseline}"]
        ratio = statistics.median(cpu["reading_rules"]) / statistics.median(cpu[f"at {baseline}"])
        print(
            f"  reading_rules / at {baseline}: {ratio:.2f}x; alerts {len(mine)} and "
            f"{len(theirs)}, identical: {pickle.dumps(mine) == pickle.dumps(theirs)}"
        )


def evaluator(on: bool, window_rules: bool = True) -> None:
    """Switch the per-reading evaluator on or off in this process: off, the windows step
    judges no reading and the alarms step judges every rule per window again (as before the
    evaluator existed), or with ``window_rules=False`` leaves them unjudged (the evaluator's
    own cost, nothing in its place)."""
    import twinflow.flows.steps as steps
    import twinflow.operators.rules as rules

    class NoPlan:
        names: frozenset[str] = frozenset()

    if not hasattr(evaluator, "saved"):
        evaluator.saved = (steps.judge_readings, rules.reading_plan)  # type: ignore[attr-defined]
    judge, plan = evaluator.saved  # type: ignore[attr-defined]
    steps.judge_readings = judge if on else (lambda alarms, *_: (alarms, []))
    rules.reading_plan = plan if on or not window_rules else (lambda kind: NoPlan())


def _one_by_one(cls: Any) -> Any:
    """An older evaluator class, given ``update_batch`` (which the flow's ``windows`` step
    calls with a twin's frames of a batch) as its frames one by one, as it judged them."""
    if hasattr(cls, "update_batch"):
        return cls

    class Older(cls):  # type: ignore[misc, valid-type]
        def update_batch(self, frames: Any, kind: Any, closed: Any) -> list[Any]:
            out = []
            for frame, features in zip(frames, closed, strict=True):
                for w in features:
                    self.learn_window(w, kind)
                out.append(self.update(frame, kind))
            return out

    return Older


def child(
    twins: int, hours: float, rounds: int, sides: list[str], rev: str | None, batch: int
) -> None:
    """Runs of the whole flow (files, no raw telemetry) in this process over one plant: a
    warm-up, then ``rounds`` rounds of ``sides`` (``this``: the evaluator on, ``without``:
    off, ``none``: off and its rules not judged per window either, ``at``: the evaluator of
    commit ``rev``), the order turning each round; prints one line per run: CPU s of the
    process and of the worker thread, wall s, readings, alerts."""
    import twinflow.flows.steps as flow_steps

    mine = flow_steps.ReadingAlarms
    theirs = _one_by_one(evaluator_at(rev).ReadingAlarms) if rev else mine
    from bytewax.testing import TestingSource, run_main

    from twinflow.flows.config import FlowConfig
    from twinflow.flows.metrics import RunStats
    from twinflow.flows.outputs import file_outputs
    from twinflow.flows.telemetry import build_flow

    p = plant(twins, hours)
    items = list(p.items())

    def run(side: str) -> dict[str, Any]:
        evaluator(side in ("this", "at"), window_rules=side != "none")
        flow_steps.ReadingAlarms = theirs if side == "at" else mine  # type: ignore[misc]
        with tempfile.TemporaryDirectory() as tmp:
            cfg = FlowConfig(out_dir=Path(tmp), write_telemetry=False)
            stats = RunStats()
            flow = build_flow(TestingSource(items, batch_size=batch), file_outputs(cfg), cfg,
                              clock=p.now, twins=dict(p.twins), stats=stats)  # fmt: skip
            c0, w0, t0 = time.process_time(), time.perf_counter(), time.thread_time()
            run_main(flow, epoch_interval=timedelta(seconds=1))  # the worker: this thread
            worker = time.thread_time() - t0
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            alerts = (Path(tmp) / "alerts.jsonl").read_text().count("\n")
        return {"side": side, "cpu": cpu, "worker": worker, "wall": wall,
                "readings": stats.readings, "alerts": alerts}  # fmt: skip

    run(sides[0])  # warm-up: lazy imports, caches
    for r in range(rounds):
        for side in sides[r % len(sides) :] + sides[: r % len(sides)]:
            print(json.dumps(run(side)), flush=True)


def flows(
    twins: int, hours: float, rounds: int, before: str | None, rev: str | None, batch: int
) -> None:
    """The whole flow with and without the per-reading evaluator (and with the evaluator of
    commit ``rev``), in one process, runs interleaved (and ``before``: the same under another
    interpreter, in a process of its own after that)."""
    common = ["--child", "--twins", str(twins), "--hours", str(hours), "--rounds", str(rounds),
              "--message-s", str(CHUNK_S[0]), "--batch", str(batch)]  # fmt: skip
    if rev:
        common += ["--flow-baseline", rev]
    sides = "this,without,none" + (",at" if rev else "")
    children = [(sys.executable, sides, {"this": "this checkout", "at": f"at {rev}"})]
    children += [(before, "this", {"this": "before"})] if before else []
    got: dict[str, list[dict[str, Any]]] = {}
    for python, sides, names in children:
        args = [python, str(HERE), *common, "--sides", sides]
        out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
        for line in out.strip().splitlines():
            x = json.loads(line)
            got.setdefault(names.get(x["side"], x["side"]), []).append(x)
    print(f"flow: {twins} twins, {hours:g} h in frames of {CHUNK_S[0]:g} s, files only, input "
          f"batches of {batch} frames, {rounds} rounds interleaved in one process after a "
          "warm-up run")  # fmt: skip
    rates: dict[str, float] = {}
    for name, runs in got.items():
        worker = [x["worker"] for x in runs]
        rate = [x["readings"] / x["worker"] for x in runs]
        cpu = [x["readings"] / x["cpu"] for x in runs]
        rates[name] = statistics.median(rate)
        print(f"  {name:<14} worker thread CPU {statistics.median(worker):.2f} s (min "
              f"{min(worker):.2f}, max {max(worker):.2f}); {rates[name]:,.0f} readings per "
              f"worker CPU second (min {min(rate):,.0f}, max {max(rate):,.0f}); per process CPU "
              f"second {statistics.median(cpu):,.0f}; alerts "
              f"{sorted({int(x['alerts']) for x in runs})}")  # fmt: skip
    for other in [n for n in ("without", "none", "before", f"at {rev}") if n in rates]:
        print(f"  this checkout / {other}: {rates['this checkout'] / rates[other]:.3f}x "
              "readings per worker CPU second")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--twins", type=int, default=50)
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--before", default=None, help="python of a checkout to compare with")
    ap.add_argument("--message-s", type=float, default=60.0, help="seconds of data per frame")
    ap.add_argument(
        "--steps-baseline",
        default=None,
        help="a commit whose evaluator (reading_rules*.py) the steps side times too",
    )
    ap.add_argument(
        "--flow-baseline",
        default=None,
        help="a commit whose evaluator (reading_rules*.py) the flow runs as a side too",
    )
    ap.add_argument("--only", choices=("steps", "flow"), default=None)
    ap.add_argument(
        "--batch",
        type=int,
        default=1,
        help="frames per input batch (TestingSource's batch_size; the Kafka source hands the "
        "flow up to its batch_size, 1000 by default, messages at once)",
    )
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--sides", default="this", help=argparse.SUPPRESS)
    args = ap.parse_args()
    CHUNK_S[0] = args.message_s
    if args.child:
        child(args.twins, args.hours, args.rounds, args.sides.split(","), args.flow_baseline,
              args.batch)  # fmt: skip
        return
    print(f"bench_reading_rules on {os.cpu_count()} cores (CPU time; the machine may be busy)")
    if args.only in (None, "steps"):
        steps(args.twins, args.hours, args.rounds, args.steps_baseline, args.batch)
    if args.only in (None, "flow"):
        flows(args.twins, args.hours, args.rounds, args.before, args.flow_baseline, args.batch)


if __name__ == "__main__":
    main()
