"""Bad raw messages, one of a fixed set of kinds, to exercise decoding and dead letters.

Each bad payload is built from a real frame of the twin, so it looks like the real thing
and breaks exactly one rule of telemetry wire format v1 (see :mod:`.wire`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from twinflow.connectors.simulator.wire import dumps, frame_to_wire
from twinflow.core.records import RawMessage, TelemetryFrame

BAD_KINDS = (
    "truncated_json",
    "not_json",
    "unknown_twin",
    "unknown_signal",
    "string_value",
    "future_time",
    "length_mismatch",
    "oversized",
)

SOURCE = "sim:json"
TEN_YEARS_S = 10 * 365.25 * 86400.0


def bad_message(
    kind: str, frame: TelemetryFrame, received: float, rng: np.random.Generator
) -> RawMessage:
    """A raw message of ``kind`` (one of :data:`BAD_KINDS`) derived from ``frame``."""
    return RawMessage(SOURCE, _payload(kind, frame, rng), received)


def _payload(kind: str, frame: TelemetryFrame, rng: np.random.Generator) -> bytes:
    if kind == "not_json":
        return b"\xff\xfe\x00" + rng.bytes(61)
    msg = frame_to_wire(frame)
    first = next(iter(msg["signals"]))
    if kind == "truncated_json":
        good = dumps(msg)
        return good[: int(rng.integers(1, len(good)))]
    if kind == "unknown_twin":
        msg["twin_id"] = f"ghost-{int(rng.integers(1000, 10000))}"
    elif kind == "unknown_signal":
        msg["signals"]["flux_capacitor_gw"] = [1.21] * len(msg["times"])
    elif kind == "string_value":
        msg["signals"][first][int(rng.integers(len(msg["times"])))] = "n/a"
    elif kind == "future_time":
        msg["times"] = [t + TEN_YEARS_S for t in msg["times"]]
    elif kind == "length_mismatch":
        msg["signals"][first] = msg["signals"][first][:-1]
    elif kind == "oversized":
        return _oversized(msg)
    else:
        raise ValueError(f"unknown bad message kind {kind!r}; known: {', '.join(BAD_KINDS)}")
    return dumps(msg)


def _oversized(msg: dict[str, Any]) -> bytes:
    """A well-formed message whose frame is so long that the payload exceeds 1 MiB."""
    times = np.asarray(msg["times"])
    n = 70_000  # at least 13 bytes per timestamp and 4 per value: over 1.1 MiB
    msg["times"] = (times[0] + np.arange(n, dtype=np.float64)).tolist()
    msg["signals"] = {
        name: np.resize(np.nan_to_num(np.asarray(v, dtype=float)), n).tolist()
        for name, v in list(msg["signals"].items())[:1]
    }
    return dumps(msg)
