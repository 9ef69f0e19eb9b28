"""Telemetry rows for a whole batch at once: binary COPY built from columns.

The sink's flow thread only queues :class:`TelemetryFrame` and :class:`WaveformFrame` items;
the writer thread turns a batch of them into one binary COPY payload here. Each (twin,
signal) pair becomes a *segment* of readings; the segments' values, times and qualities are
joined into flat numpy columns, readings whose value is NaN are dropped, and the tuples are
laid out with one structured array per length of the (twin_id, signal) prefix. So the work
per batch is a few dozen numpy calls whatever the number of frames, instead of a dozen calls
per signal of every frame (:func:`twinflow.connectors.postgres.rows.frame_rows`, which
produces the same rows and stays the reference).

The tuple layout is PostgreSQL's binary COPY of ``(twin_id text, signal text, time
timestamptz, value float8, quality int2)``: a field count, then each field's byte length and
bytes. Rows come out grouped by prefix length rather than in arrival order; a table has no
order, and the unique key makes a row written twice land once either way.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable

import numpy as np

from twinflow.connectors.postgres.rows import clean_text, pg_microseconds
from twinflow.core.records import TelemetryFrame, WaveformFrame

#: What the columnar encoder takes: the telemetry items a sink stores as readings.
Readings = TelemetryFrame | WaveformFrame

_COUNT_AND_LEN = struct.Struct(">hi")
_LEN = struct.Struct(">i")


@functools.lru_cache(maxsize=65_536)
def tuple_prefix(twin_id: str, signal: str) -> bytes:
    """The first bytes of every tuple of one (twin, signal): field count, twin_id, signal."""
    twin = clean_text(twin_id).encode("utf-8")
    sig = clean_text(signal).encode("utf-8")
    return _COUNT_AND_LEN.pack(5, len(twin)) + twin + _LEN.pack(len(sig)) + sig


@functools.lru_cache(maxsize=256)
def _layout(prefix_len: int) -> np.dtype:
    """One tuple whose (twin, signal) prefix is ``prefix_len`` bytes long."""
    return np.dtype(
        [
            ("prefix", f"S{prefix_len}"),
            ("time_len", ">i4"),
            ("time", ">i8"),
            ("value_len", ">i4"),
            ("value", ">f8"),
            ("quality_len", ">i4"),
            ("quality", ">i2"),
        ]
    )


class _Columns:
    """Segments gathered from the items: one per (item, signal)."""

    __slots__ = ("ids", "lengths", "prefixes", "qualities", "times", "values")

    def __init__(self) -> None:
        self.prefixes: dict[bytes, int] = {}
        self.ids: list[int] = []
        self.lengths: list[int] = []
        self.qualities: list[int] = []
        self.values: list[np.ndarray] = []
        self.times: list[np.ndarray] = []

    def segment(
        self, twin_id: str, signal: str, times: np.ndarray, values: np.ndarray, q: int
    ) -> None:
        prefix = tuple_prefix(twin_id, signal)
        pid = self.prefixes.setdefault(prefix, len(self.prefixes))
        self.ids.append(pid)
        self.lengths.append(len(values))
        self.qualities.append(q)
        self.values.append(values)
        self.times.append(times)

    def add(self, item: Readings) -> None:
        if isinstance(item, TelemetryFrame):
            quality = item.quality
            for signal, values in item.signals.items():
                self.segment(item.twin_id, signal, item.times, values, int(quality.get(signal, 0)))
        else:
            n = len(item.samples)
            times = item.start + np.arange(n, dtype=np.float64) / item.sample_rate
            self.segment(item.twin_id, item.signal, times, item.samples, int(item.quality))


def telemetry_copy(items: Iterable[Readings]) -> tuple[bytes, int]:
    """Binary COPY tuples (no header or trailer) of every reading of ``items``, and how many
    rows they hold; readings whose value is NaN are left out."""
    cols = _Columns()
    for item in items:
        cols.add(item)
    if not cols.values:
        return b"", 0
    values = np.concatenate(cols.values).astype(np.float64, copy=False)
    times = pg_microseconds(np.concatenate(cols.times))
    lengths = np.asarray(cols.lengths, dtype=np.int64)
    pids = np.repeat(np.asarray(cols.ids, dtype=np.int32), lengths)
    quality = np.repeat(np.asarray(cols.qualities, dtype=np.int16), lengths)
    keep = ~np.isnan(values)
    if not keep.all():
        values, times, pids, quality = values[keep], times[keep], pids[keep], quality[keep]
    n = len(values)
    if n == 0:
        return b"", 0
    prefixes = list(cols.prefixes)
    table = np.array(prefixes, dtype=f"S{max(map(len, prefixes))}")
    sizes = np.fromiter(map(len, prefixes), dtype=np.int64, count=len(prefixes))
    distinct = np.unique(sizes)
    parts: list[bytes] = []
    for size in distinct.tolist():
        if len(distinct) == 1:
            g_pids, g_times, g_values, g_quality = pids, times, values, quality
        else:
            mask = sizes[pids] == size
            g_pids, g_times, g_values = pids[mask], times[mask], values[mask]
            g_quality = quality[mask]
        rows = np.empty(len(g_pids), dtype=_layout(size))
        rows["prefix"] = table[g_pids]
        rows["time_len"] = 8
        rows["time"] = g_times
        rows["value_len"] = 8
        rows["value"] = g_values
        rows["quality_len"] = 2
        rows["quality"] = g_quality
        parts.append(rows.tobytes())
    return b"".join(parts), n


__all__ = ["Readings", "telemetry_copy", "tuple_prefix"]
