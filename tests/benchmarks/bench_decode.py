"""Benchmark: the telemetry decoder with its orjson fast path against the standard parser.

Not a test (nothing is asserted on time); prints the median time of ``decode()`` per message,
with the fast path (what twinflow runs) and with the standard library's ``json`` alone (what
it ran before), over interleaved rounds, and their ratio, for a few message shapes (readings
per message x signals). Both sides decode the same bytes into the same frames.

``--baseline REV`` also times ``decode()`` of ``operators/decode.py`` as it was at a commit
(loaded beside this one), interleaved, in CPU time, checks the two give the same frames, and
prints this / REV.

Run: ``.venv/bin/python tests/benchmarks/bench_decode.py [--rounds 9] [--messages 3000]
[--baseline 8c728d0]``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import twinflow.operators.decode as decoder
from twinflow.core.records import RawMessage

SHAPES = ((10, 6), (60, 6), (60, 20))


def payload(readings: int, signals: int, rng: random.Random) -> bytes:
    """A batch message of ``readings`` times and ``signals`` signals, values like sensors'."""
    return json.dumps(
        {
            "twin_id": "wt-001",
            "twin_type": "wind_turbine",
            "times": [1_700_000_000 + i for i in range(readings)],
            "signals": {
                f"s{j}": [round(rng.gauss(50, 5), 3) for _ in range(readings)]
                for j in range(signals)
            },
        }
    ).encode()


def _standard(payload: bytes, max_bytes: int) -> dict[str, Any]:
    return decoder._load_standard(bytes(payload))


def per_message(msg: RawMessage, load: Callable[[bytes, int], dict[str, Any]], n: int) -> float:
    """Seconds per ``decode(msg)`` over ``n`` calls with ``load`` as the JSON parse."""
    fast = decoder._load
    decoder._load = load
    try:
        start = time.perf_counter()
        for _ in range(n):
            decoder.decode(msg)
        return (time.perf_counter() - start) / n
    finally:
        decoder._load = fast


def decoder_at(commit: str) -> Any:
    """``operators/decode.py`` as it was at ``commit``, loaded as a module of its own."""
    root = Path(__file__).absolute().parents[2]
    text = subprocess.run(["git", "show", f"{commit}:operators/decode.py"], cwd=root,
                          check=True, capture_output=True, text=True).stdout  # fmt: skip
    module = types.ModuleType(f"decode_{commit}")
    sys.modules[module.__name__] = module
    exec(compile(text, f"{commit}:operators/decode.py", "exec"), module.__dict__)
    return module


def cpu_per_message(decode: Callable[[RawMessage], Any], msg: RawMessage, n: int) -> float:
    """CPU seconds per ``decode(msg)`` over ``n`` calls."""
    start = time.process_time()
    for _ in range(n):
        decode(msg)
    return (time.process_time() - start) / n


def against(commit: str, rounds: int, messages: int) -> None:
    """This decoder against the one of ``commit``, CPU time, interleaved rounds."""
    old = decoder_at(commit).decode
    rng = random.Random(2)
    print(f"decode() against {commit}, CPU per message, median of {rounds} interleaved rounds")
    for readings, signals in SHAPES:
        msg = RawMessage("kafka", payload(readings, signals, rng), 0.0)
        a, b = decoder.decode(msg), old(msg)
        same = a.times.tolist() == b.times.tolist() and all(
            a.signals[k].tolist() == b.signals[k].tolist() for k in b.signals
        )
        sides: dict[str, list[float]] = {"this": [], commit: []}
        for r in range(rounds):
            for name, fn in [("this", decoder.decode), (commit, old)][:: 1 - 2 * (r % 2)]:
                sides[name].append(cpu_per_message(fn, msg, messages))
        t, o = statistics.median(sides["this"]), statistics.median(sides[commit])
        print(f"  {readings:>3} readings x {signals:>2} signals: this {t * 1e6:6.1f} us "
              f"({min(sides['this']) * 1e6:.1f}-{max(sides['this']) * 1e6:.1f}), {commit} "
              f"{o * 1e6:6.1f} us ({min(sides[commit]) * 1e6:.1f}-{max(sides[commit]) * 1e6:.1f})"
              f", this / {commit} {t / o:.2f}x; same frames: {same}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--baseline", default=None, help="a commit whose decoder is timed too")
    args = ap.parse_args()
    rng = random.Random(1)
    fast_load = decoder._load
    print(f"decode() per message, median of {args.rounds} interleaved rounds")
    for readings, signals in SHAPES:
        msg = RawMessage("kafka", payload(readings, signals, rng), 0.0)
        assert decoder.decode(msg).times.size == readings
        std, fast = [], []
        for _ in range(args.rounds):
            std.append(per_message(msg, _standard, args.messages))
            fast.append(per_message(msg, fast_load, args.messages))
        s, f = statistics.median(std), statistics.median(fast)
        print(
            f"  {readings:>3} readings x {signals:>2} signals ({len(msg.payload):>6} B): "
            f"json {s * 1e6:7.1f} us  orjson path {f * 1e6:7.1f} us  "
            f"(min-max {min(fast) * 1e6:.1f}-{max(fast) * 1e6:.1f})  speed-up {s / f:.2f}x"
        )
    if args.baseline:
        against(args.baseline, args.rounds, args.messages)


if __name__ == "__main__":
    main()
