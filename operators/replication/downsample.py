"""Raw telemetry forwarded downsampled: one mean per signal per ``every_s`` seconds.

An edge with ``telemetry`` in its ``forward:`` list does not send every reading: per twin,
event time is cut into aligned buckets of ``every_s`` seconds (``[k * every_s, (k + 1) *
every_s)``), and each signal's readings in a bucket are averaged (missing readings, NaN,
skipped; the count of readings kept beside the mean). A bucket is forwarded as one
:class:`TelemetryBucket` when a reading of a later bucket arrives (readings of a bucket
already forwarded are counted as late and dropped), so its write is final. At the central
instance a bucket becomes a one-row :class:`~twinflow.core.records.TelemetryFrame` at the
bucket's start (:func:`frame_of`), stored by its telemetry sinks.

>>> import numpy as np
>>> from twinflow.core.records import TelemetryFrame
>>> f = TelemetryFrame("pump-1", "pump", np.array([0.0, 10.0, 65.0]),
...                    {"flow": np.array([1.0, 3.0, 5.0])})
>>> state, out = Downsample(60.0)(None, f)
>>> [(b.start, b.means, b.counts) for b in out]
[(0.0, {'flow': 2.0}, {'flow': 2})]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from twinflow.core.records import TelemetryFrame
from twinflow.core.times import iso, utc


@dataclass(frozen=True)
class TelemetryBucket:
    """One twin's readings over ``[start, start + every_s)`` (epoch seconds): per signal,
    the mean and how many readings it is of."""

    twin_id: str
    twin_type: str
    start: float
    every_s: float
    means: Mapping[str, float]
    counts: Mapping[str, int]

    def to_json(self) -> dict[str, Any]:
        """The ``metadata/telemetry`` write's value."""
        return {
            "twin_type": self.twin_type,
            "start": iso(utc(self.start)),
            "every_s": self.every_s,
            "mean": dict(self.means),
            "count": dict(self.counts),
        }


@dataclass
class Open:
    """A twin's bucket being filled: per signal, the sum and count of its readings."""

    twin_type: str = ""
    index: int | None = None
    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    #: readings of buckets already forwarded (dropped)
    late: int = 0


class Downsample:
    """``(state, frame) -> (state, closed buckets)``, per twin (``stateful_flat_map``)."""

    def __init__(self, every_s: float) -> None:
        if not every_s > 0:
            raise ValueError(f"telemetry_every_s must be > 0, got {every_s!r}")
        self.every_s = every_s

    def __call__(
        self, state: Open | None, frame: object
    ) -> tuple[Open | None, list[TelemetryBucket]]:
        if not isinstance(frame, TelemetryFrame) or len(frame.times) == 0:
            return state, []  # waveform bursts are summarised by the windows, not forwarded
        state = Open(frame.twin_type) if state is None else state
        out: list[TelemetryBucket] = []
        index = np.floor(frame.times / self.every_s).astype(np.int64)
        for k in np.unique(index):  # sorted
            k = int(k)
            if state.index is not None and k < state.index:
                state.late += int(np.count_nonzero(index == k))
                continue
            if state.index is not None and k > state.index:
                out.extend(self._close(state, frame.twin_id))
            state.index = k
            state.twin_type = frame.twin_type
            rows = index == k
            for name, values in frame.signals.items():
                v = np.asarray(values, dtype=np.float64)[rows]
                v = v[np.isfinite(v)]
                if len(v):
                    state.sums[name] = state.sums.get(name, 0.0) + float(v.sum())
                    state.counts[name] = state.counts.get(name, 0) + len(v)
        return state, out

    def _close(self, state: Open, twin_id: str) -> list[TelemetryBucket]:
        """The open bucket as a record (none when it held no reading); empties it."""
        sums, counts = state.sums, state.counts
        state.sums, state.counts = {}, {}
        if not counts or state.index is None:
            return []
        means = {n: sums[n] / counts[n] for n in sorted(counts)}
        start = state.index * self.every_s
        return [TelemetryBucket(twin_id, state.twin_type, start, self.every_s, means, counts)]


def frame_of(twin_id: str, doc: Mapping[str, Any], source: str) -> TelemetryFrame | None:
    """The one-row frame (at the bucket's start) of a received ``metadata/telemetry`` value;
    ``None`` for one that is not such a document."""
    means = doc.get("mean")
    start = doc.get("start")
    if not isinstance(means, dict) or not isinstance(start, str):
        return None
    signals = {
        str(n): np.array([float(v) if isinstance(v, int | float) else math.nan])
        for n, v in means.items()
    }
    times = np.array([datetime.fromisoformat(start).timestamp()])
    return TelemetryFrame(twin_id, str(doc.get("twin_type", "")), times, signals, source=source)


__all__ = ["Downsample", "Open", "TelemetryBucket", "frame_of"]
