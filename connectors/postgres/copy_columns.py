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
bytes. Rows come out grouped by prefix length and, within a group, in the order of the
table's key (twin_id, signal, time) rather than in arrival order (:func:`_key_order`: the
server's btree inserts get cheaper); a table has no order, and the unique key makes a row
written twice land once either way.
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

    __slots__ = ("clocks", "ids", "layouts", "lengths", "prefixes", "qualities", "times", "values")

    def __init__(self) -> None:
        self.prefixes: dict[bytes, int] = {}
        #: (twin, its frame's signal names) -> the prefix id of each signal
        self.layouts: dict[tuple[str, tuple[str, ...]], list[int]] = {}
        self.ids: list[int] = []
        self.lengths: list[int] = []
        self.qualities: list[int] = []
        self.values: list[np.ndarray] = []
        #: the distinct time arrays (a frame's signals share one) and each segment's
        self.clocks: list[np.ndarray] = []
        self.times: list[int] = []

    def prefix_id(self, twin_id: str, signal: str) -> int:
        prefix = tuple_prefix(twin_id, signal)
        return self.prefixes.setdefault(prefix, len(self.prefixes))

    def segment(
        self, twin_id: str, signal: str, times: np.ndarray, values: np.ndarray, q: int
    ) -> None:
        self.ids.append(self.prefix_id(twin_id, signal))
        self.lengths.append(len(values))
        self.qualities.append(q)
        self.values.append(values)
        self.times.append(len(self.clocks))
        self.clocks.append(times)

    def add(self, item: Readings) -> None:
        if isinstance(item, TelemetryFrame):
            self.frame(item)
        else:
            n = len(item.samples)
            times = item.start + np.arange(n, dtype=np.float64) / item.sample_rate
            self.segment(item.twin_id, item.signal, times, item.samples, int(item.quality))

    def frame(self, item: TelemetryFrame) -> None:
        """A frame's segments, in the order of its signals (as :meth:`segment` for each,
        with the prefix ids looked up once per twin and signal layout of the batch)."""
        signals = item.signals
        key = (item.twin_id, tuple(signals))
        ids = self.layouts.get(key)
        if ids is None:
            ids = self.layouts[key] = [self.prefix_id(item.twin_id, s) for s in key[1]]
        count = len(ids)
        self.ids.extend(ids)
        self.values.extend(signals.values())
        self.lengths.extend([len(v) for v in signals.values()])
        self.times.extend([len(self.clocks)] * count)
        self.clocks.append(item.times)
        quality = item.quality
        if quality:
            self.qualities.extend(int(quality.get(s, 0)) for s in key[1])
        else:
            self.qualities.extend([0] * count)


def telemetry_copy(items: Iterable[Readings]) -> tuple[bytes, int]:
    """Binary COPY tuples (no header or trailer) of every reading of ``items``, and how many
    rows they hold; readings whose value is NaN are left out."""
    cols = _Columns()
    for item in items:
        cols.add(item)
    if not cols.values:
        return b"", 0
    values = np.concatenate(cols.values).astype(np.float64, copy=False)
    lengths = np.asarray(cols.lengths, dtype=np.int64)
    times = _segment_times(cols, lengths)
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
    order = _key_order(prefixes, pids, times)
    pids, times, values, quality = pids[order], times[order], values[order], quality[order]
    distinct = np.unique(sizes)
    ends = np.searchsorted(sizes[pids], distinct, side="right").tolist()
    parts: list[bytes] = []
    start = 0
    for size, end in zip(distinct.tolist(), ends, strict=True):
        g_pids, g_times = pids[start:end], times[start:end]
        g_values, g_quality = values[start:end], quality[start:end]
        start = end
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


def _key_order(prefixes: list[bytes], pids: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The rows' order for the COPY: by prefix length (one structured array each), then by
    the table's key (twin_id, signal, time).

    PostgreSQL inserts each row into the key's btree as it reads it; rows in key order land
    on the same few leaf pages one after another instead of jumping across the whole index
    (a twin's readings are spread over the batch's frames), which costs the server markedly
    less CPU per row. Rows of one key and time keep their arrival order (stable sort).
    """
    rank = np.empty(len(prefixes), dtype=np.int64)
    rank[sorted(range(len(prefixes)), key=lambda i: _sort_key(prefixes[i]))] = np.arange(
        len(prefixes)
    )
    first, last = int(times.min()), int(times.max())
    span = last - first + 1
    if span > 0 and span * len(prefixes) < 2**62:  # one int64 key: rank, then time
        key = rank[pids] * span + (times - first)
        order: np.ndarray = np.argsort(key, kind="stable")
    else:  # times too far apart to pack with the rank
        order = np.lexsort((times, rank[pids]))
    return order


@functools.lru_cache(maxsize=65_536)
def _sort_key(prefix: bytes) -> tuple[int, bytes, bytes]:
    """(prefix length, twin_id bytes, signal bytes) of a tuple prefix (see
    :func:`tuple_prefix`): UTF-8 byte order is the C collation's order of the text."""
    (twin_len,) = _LEN.unpack_from(prefix, 2)
    twin_end = 6 + twin_len
    return len(prefix), prefix[6:twin_end], prefix[twin_end + 4 :]


def _segment_times(cols: _Columns, lengths: np.ndarray) -> np.ndarray:
    """Each reading's PostgreSQL time: the distinct time arrays converted once (a frame's
    signals share theirs), then gathered segment by segment."""
    clocks = pg_microseconds(np.concatenate(cols.clocks))
    starts = np.zeros(len(cols.clocks), dtype=np.int64)
    np.cumsum([len(c) for c in cols.clocks[:-1]], out=starts[1:])
    offsets = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=offsets[1:])
    shift = starts[np.asarray(cols.times, dtype=np.int64)] - offsets
    out: np.ndarray = clocks[np.repeat(shift, lengths) + np.arange(int(offsets[-1] + lengths[-1]))]
    return out


__all__ = ["Readings", "telemetry_copy", "tuple_prefix"]
