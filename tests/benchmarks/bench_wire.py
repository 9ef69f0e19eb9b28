"""Benchmark: wire format b1 (binary) against JSON v1, decode alone and decode + validate.

Not a test (nothing is asserted on time). Frames of the built-in simulated plant's three
types (1 Hz signals with sensor-like values, a dropout here and there) are encoded once in
each format; then, in interleaved rounds, every message is decoded by ``decode()`` (which
picks the format by the payload's first bytes) and, separately, passed through the flow's
decode-and-validate step (``check_item``). Prints per shape the median and range of 1 Hz
readings per second of each format, and the median ratio b1 / JSON, plus the bytes per
reading of each format. A waveform chunk (vibration, 2,560 samples) is decoded in b1 only:
JSON v1 cannot carry waveforms.

Run: ``.venv/bin/python tests/benchmarks/bench_wire.py [--rounds 7] [--messages 2000]``.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Callable

import numpy as np

from twinflow.connectors.simulator.types import CATALOG
from twinflow.connectors.simulator.wire import encode_frame
from twinflow.core.records import RawMessage, TelemetryFrame, WaveformFrame
from twinflow.operators.decode import decode
from twinflow.operators.pipeline import check_item
from twinflow.operators.validate import Validator
from twinflow.operators.wire_binary import encode_binary

T0 = 1_767_225_600.0
SECONDS = (1, 10, 60)


def frames(n_messages: int, seconds: int, rng: np.random.Generator) -> list[TelemetryFrame]:
    """``n_messages`` frames of ``seconds`` readings each, cycling over the catalogue's types."""
    out = []
    types = sorted(CATALOG)
    for i in range(n_messages):
        kind = CATALOG[types[i % len(types)]]
        times = T0 + 60 * (i // len(types)) + np.arange(seconds, dtype=np.float64)
        signals = {}
        for s in kind.signals:
            if s.waveform:
                continue
            mid, spread = (s.low + s.high) / 2, (s.high - s.low) / 20
            values = np.round(rng.normal(mid, spread, seconds), 3)
            values[rng.random(seconds) < 0.01] = np.nan
            signals[s.name] = values
        out.append(TelemetryFrame(f"{kind.name}-{i % 50:03d}", kind.name, times, signals))
    return out


def _checked(msg: RawMessage, validator: Validator, now: float) -> object:
    return check_item(msg, validator, now)


def timed(messages: list[RawMessage], step: Callable[[RawMessage], object]) -> float:
    start = time.perf_counter()
    for msg in messages:
        step(msg)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--messages", type=int, default=2000)
    args = ap.parse_args()
    rng = np.random.default_rng(7)
    print(f"load average {os.getloadavg()[0]:.1f}; {args.rounds} interleaved rounds; medians")
    print(
        "seconds/msg  step             JSON v1 readings/s        b1 readings/s             b1/JSON"
    )
    for seconds in SECONDS:
        batch = frames(args.messages, seconds, rng)
        twins = {f.twin_id: f.twin_type for f in batch}
        validator = Validator(twins=twins)
        now = T0 + 60 * args.messages
        readings = sum(f.readings for f in batch)
        encoded = {
            "json": [RawMessage("bench", encode_frame(f), now) for f in batch],
            "b1": [RawMessage("bench", encode_binary(f), now) for f in batch],
        }
        steps: dict[str, Callable[[RawMessage], object]] = {
            "decode": decode,
            "decode+validate": functools.partial(_checked, validator=validator, now=now),
        }
        for name, step in steps.items():
            rates: dict[str, list[float]] = {"json": [], "b1": []}
            for _ in range(args.rounds):
                for fmt in ("json", "b1"):
                    rates[fmt].append(readings / timed(encoded[fmt], step))
            ratio = statistics.median(
                b / j for b, j in zip(rates["b1"], rates["json"], strict=True)
            )
            cells = [
                f"{statistics.median(r):>10,.0f} ({min(r):,.0f}-{max(r):,.0f})"
                for r in rates.values()
            ]
            print(f"{seconds:>11}  {name:<15}  {cells[0]:<24}  {cells[1]:<24}  {ratio:5.2f}x")
        size = {fmt: sum(len(m.payload) for m in msgs) / readings for fmt, msgs in encoded.items()}
        print(f"{'':>11}  bytes/reading    {size['json']:<24.1f}  {size['b1']:<24.1f}")
    wave = WaveformFrame("motor-000", "motor", "vibration", T0, 2560.0, rng.normal(0, 1, 2560))
    msg = RawMessage("bench", encode_binary(wave), T0)
    per = statistics.median(timed([msg] * args.messages, decode) for _ in range(args.rounds))
    print(
        f"waveform chunk of 2,560 samples, b1 decode: {2560 * args.messages / per:,.0f} samples/s"
    )


if __name__ == "__main__":
    main()
