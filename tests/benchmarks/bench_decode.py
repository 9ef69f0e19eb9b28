"""Benchmark: the telemetry decoder with its orjson fast path against the standard parser.

Not a test (nothing is asserted on time); prints the median time of ``decode()`` per message,
with the fast path (what twinflow runs) and with the standard library's ``json`` alone (what
it ran before), over interleaved rounds, and their ratio, for a few message shapes (readings
per message x signals). Both sides decode the same bytes into the same frames.

Run: ``.venv/bin/python tests/benchmarks/bench_decode.py [--rounds 9] [--messages 3000]``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--messages", type=int, default=3000)
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


if __name__ == "__main__":
    main()
