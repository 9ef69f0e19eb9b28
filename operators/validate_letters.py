"""Validation's dead letters: what each says and quotes of the data it refuses.

Every dead letter carries the event time of the data it is about and a reason free of
wall-clock numbers, so a replay after recovery yields the identical dead letter.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from twinflow.core.errors import TwinflowError
from twinflow.core.records import (
    DeadLetter,
    Frame,
    RawMessage,
    TelemetryFrame,
    WaveformFrame,
    capped_payload,
)
from twinflow.core.times import iso, utc
from twinflow.operators.catalog import SignalSpec

#: How many offending (time, value) pairs a range dead letter quotes.
EXCERPT_PAIRS = 10
#: Characters a decode dead letter keeps of a payload: an excerpt, and for a longer one its
#: size and SHA-256.
EXCERPT_BYTES = 200


def dropped_rows(
    frame: TelemetryFrame,
    times: np.ndarray,
    mask: np.ndarray,
    rows: int,
    width: int,
    why: str,
    now: float,
) -> DeadLetter:
    """The dead letter for ``rows`` rows of a frame refused for their time ``why``."""
    shown = times[mask][:EXCERPT_PAIRS]
    excerpt = {
        "twin_id": frame.twin_id,
        "twin_type": frame.twin_type,
        "signals": list(frame.signals)[:20],
        "times": [when(float(t)) if math.isfinite(t) else repr(float(t)) for t in shown],
        "more": rows - int(shown.size),
    }
    first = float(times[mask][0])
    return DeadLetter(
        stage="validate",
        reason=(
            f"twin {frame.twin_id!r}: {rows} row(s) of the frame dropped: their time {why}; "
            "the frame's other readings go on"
        ),
        source=frame.source,
        time=utc(first if math.isfinite(first) else event_time(frame, now)),
        twin_id=frame.twin_id,
        payload=json.dumps(excerpt, default=repr)[: DeadLetter.MAX_PAYLOAD],
        readings=rows * width,
    )


def blanked(
    frame: Frame,
    name: str,
    spec: SignalSpec,
    times: Any,  # an array, or the lazy times of a waveform's samples
    values: np.ndarray,
    bad: np.ndarray,
    why: str,
    facts: dict[str, Any],
) -> DeadLetter:
    """The dead letter for readings of ``name`` blanked because they are ``why``."""
    idx = np.flatnonzero(bad)
    shown = idx[:EXCERPT_PAIRS]
    pairs = [
        [when(float(t)), _num(float(v))] for t, v in zip(times[shown], values[shown], strict=True)
    ]
    excerpt = {
        "twin_id": frame.twin_id,
        "signal": name,
        **facts,
        "readings": pairs,
        "more": int(idx.size - shown.size),
    }
    return DeadLetter(
        stage="validate",
        reason=(
            f"twin {frame.twin_id!r}: {idx.size} reading(s) of {name!r} {why}; replaced by NaN"
        ),
        source=frame.source,
        time=utc(float(times[idx[:1]][0])),
        twin_id=frame.twin_id,
        payload=json.dumps(excerpt),
        readings=int(idx.size),
    )


def reject(frame: Any, now: float, reason: str) -> DeadLetter:
    """The one dead letter of a frame refused as a whole."""
    return DeadLetter(
        stage="validate",
        reason=reason,
        source=str(getattr(frame, "source", "unknown")),
        time=utc(event_time(frame, now)),
        twin_id=getattr(frame, "twin_id", None),
        payload=summary(frame),
        readings=readings_of(frame),
    )


def event_time(frame: Any, now: float) -> float:
    """The time a rejected frame's data claims (its first finite, representable time), so a
    replayed frame yields the same dead letter; ``now`` when it claims none."""
    if isinstance(frame, WaveformFrame):
        candidates = [frame.start]
    elif isinstance(frame, TelemetryFrame) and isinstance(frame.times, np.ndarray):
        try:
            times = frame.times.astype(np.float64, copy=False).ravel()
        except (TypeError, ValueError):
            return now
        finite = times[np.isfinite(times)]
        candidates = [float(finite[0])] if finite.size else []
    else:
        return now
    for t in candidates:
        if _MIN_EPOCH <= t <= _MAX_EPOCH:
            return float(t)
    return now


#: Times a dead letter can carry (datetime's range, with a margin).
_MIN_EPOCH, _MAX_EPOCH = -62_000_000_000.0, 253_000_000_000.0


def short(value: Any) -> str:
    """``repr`` of a declared unit, cut to a readable length."""
    text = repr(value[:60] if isinstance(value, str) else value)
    return text if len(text) <= 80 else text[:77] + "..."


def dead_letter_for(msg: RawMessage, error: Exception, stage: str = "decode") -> DeadLetter:
    """A dead letter for a message that failed at ``stage``, quoting its first bytes.

    >>> dl = dead_letter_for(RawMessage("mqtt", b'{"twin_id": "P1", "x": \\xff}', 5.0),
    ...                      ValueError("payload is not UTF-8"))
    >>> dl.twin_id, dl.payload, dl.time.isoformat()
    ('P1', '{"twin_id": "P1", "x": �}', '1970-01-01T00:00:05+00:00')
    """
    payload = bytes(msg.payload)
    reason = str(error) or type(error).__name__
    if not isinstance(error, TwinflowError):
        reason = f"{type(error).__name__}: {reason}"
    return DeadLetter(
        stage=stage,
        reason=reason,
        source=msg.source,
        time=utc(msg.received),
        twin_id=sniff_twin(payload),
        payload=capped_payload(payload, EXCERPT_BYTES),
        readings=0,
    )


def sniff_twin(payload: bytes) -> str | None:
    """Best-effort twin id from an undecodable payload (so the sender can be found)."""
    head = payload[:4096].decode("utf-8", errors="replace")
    key = head.find('"twin_id"')
    if key < 0:
        return None
    rest = head[key + 9 :].lstrip()
    if not rest.startswith(":"):
        return None
    rest = rest[1:].lstrip()
    if not rest.startswith('"'):
        return None
    end = rest.find('"', 1)
    if end <= 1:
        return None
    return rest[1:end][:200]


def _num(v: float) -> float | str:
    return v if math.isfinite(v) else repr(v)


def when(t: float) -> str | float:
    try:
        return iso(utc(t)) or t
    except (OverflowError, OSError, ValueError):
        return t


def readings_of(frame: Any) -> int:
    try:
        return int(frame.readings)
    except Exception:
        return 0


def summary(frame: Any) -> str:
    """A short JSON description of a rejected frame (never the whole arrays)."""
    out: dict[str, Any] = {
        "twin_id": getattr(frame, "twin_id", None),
        "twin_type": getattr(frame, "twin_type", None),
    }
    try:
        if isinstance(frame, WaveformFrame):
            out.update(
                signal=frame.signal,
                start=_num(float(frame.start)),
                sample_rate=repr(frame.sample_rate),
                samples=len(frame.samples),
            )
        elif isinstance(frame, TelemetryFrame):
            times = np.asarray(frame.times).ravel()
            out.update(signals=list(frame.signals)[:20], times=int(times.size))
            if frame.units:
                out["units"] = dict(list(frame.units.items())[:20])
            if times.size and times.dtype.kind in "iuf":
                out.update(first=when(float(times[0])), last=when(float(times[-1])))
    except Exception as e:  # the summary of a broken frame must not fail in turn
        out["summary_error"] = repr(e)[:200]
    return json.dumps(out, default=repr)[: DeadLetter.MAX_PAYLOAD]


__all__ = [
    "EXCERPT_BYTES",
    "EXCERPT_PAIRS",
    "blanked",
    "dead_letter_for",
    "dropped_rows",
    "event_time",
    "reject",
    "short",
    "when",
]
