"""Telemetry rows for a whole batch at once: binary COPY built from columns.

The sink's flow thread only queues :class:`TelemetryFrame` and :class:`WaveformFrame` items;
the writer thread turns a batch of them into one binary COPY payload here. Each (twin,
signal) pair becomes a *segment* of readings; :func:`gather` joins the segments' values,
times and qualities into flat numpy columns and drops readings whose value is NaN. So the
work per batch is a few dozen numpy calls whatever the number of frames, instead of a dozen
calls per signal of every frame (:func:`twinflow.connectors.postgres.rows.frame_rows`, which
produces the same text-layout rows and stays the reference).

Two layouts of PostgreSQL's binary COPY (a field count, then each field's byte length and
bytes), rows in the order of the target's key rather than in arrival order (the server's
btree inserts get cheaper; a table has no order, and the unique key makes a row written twice
land once either way):

- :func:`series_tuples`: ``telemetry_points (series int4, time, value float8, quality int2)``
  of the compact layout (migration 0009), 40 bytes a row, sorted by (series, time);
- :func:`text_tuples`: ``telemetry (twin_id text, signal text, time timestamptz, value
  float8, quality int2)``, the layout of a TimescaleDB database and of the staging table,
  grouped by prefix length and sorted by (twin_id, signal, time) within a group.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from twinflow.connectors.postgres.rows import READING_FIELDS, clean_text, pg_microseconds
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
    return np.dtype([("prefix", f"S{prefix_len}"), *READING_FIELDS])


class _Segments:
    """Segments gathered from the items: one per (item, signal)."""

    __slots__ = ("clocks", "ids", "layouts", "lengths", "pairs", "qualities", "times", "values")

    def __init__(self) -> None:
        #: (twin_id, signal) -> its id within this batch
        self.pairs: dict[tuple[str, str], int] = {}
        #: (twin, its frame's signal names) -> the pair id of each signal
        self.layouts: dict[tuple[str, tuple[str, ...]], list[int]] = {}
        self.ids: list[int] = []
        self.lengths: list[int] = []
        self.qualities: list[int] = []
        self.values: list[np.ndarray] = []
        #: the distinct time arrays (a frame's signals share one) and each segment's
        self.clocks: list[np.ndarray] = []
        self.times: list[int] = []

    def pair_id(self, twin_id: str, signal: str) -> int:
        return self.pairs.setdefault((twin_id, signal), len(self.pairs))

    def segment(
        self, twin_id: str, signal: str, times: np.ndarray, values: np.ndarray, q: int
    ) -> None:
        self.ids.append(self.pair_id(twin_id, signal))
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
        with the pair ids looked up once per twin and signal layout of the batch)."""
        signals = item.signals
        key = (item.twin_id, tuple(signals))
        ids = self.layouts.get(key)
        if ids is None:
            ids = self.layouts[key] = [self.pair_id(item.twin_id, s) for s in key[1]]
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


@dataclass(frozen=True)
class Columns:
    """A batch's readings as flat columns, NaN values left out: ``pids`` index ``pairs``."""

    pairs: list[tuple[str, str]]
    pids: np.ndarray
    times: np.ndarray  # PostgreSQL microseconds
    values: np.ndarray
    quality: np.ndarray

    def __len__(self) -> int:
        return len(self.values)


def gather(items: Iterable[Readings]) -> Columns | None:
    """Every reading of ``items`` as columns (None: no reading with a value)."""
    cols = _Segments()
    for item in items:
        cols.add(item)
    if not cols.values:
        return None
    values = np.concatenate(cols.values).astype(np.float64, copy=False)
    lengths = np.asarray(cols.lengths, dtype=np.int64)
    times = _segment_times(cols, lengths)
    pids = np.repeat(np.asarray(cols.ids, dtype=np.int32), lengths)
    quality = np.repeat(np.asarray(cols.qualities, dtype=np.int16), lengths)
    keep = ~np.isnan(values)
    if not keep.all():
        values, times, pids, quality = values[keep], times[keep], pids[keep], quality[keep]
    if len(values) == 0:
        return None
    return Columns(list(cols.pairs), pids, times, values, quality)


def telemetry_copy(items: Iterable[Readings]) -> tuple[bytes, int]:
    """Binary COPY tuples (no header or trailer) of every reading of ``items`` for the text
    layout ``(twin_id, signal, time, value, quality)``, and how many rows they hold; readings
    whose value is NaN are left out."""
    got = gather(items)
    return (text_tuples(got), len(got)) if got is not None else (b"", 0)


def text_tuples(got: Columns) -> bytes:
    """The readings as ``(twin_id, signal, time, value, quality)`` tuples, grouped by the
    length of their (twin_id, signal) prefix and in the key's order within a group."""
    prefixes = [tuple_prefix(t, s) for t, s in got.pairs]
    table = np.array(prefixes, dtype=f"S{max(map(len, prefixes))}")
    sizes = np.fromiter(map(len, prefixes), dtype=np.int64, count=len(prefixes))
    order = _key_order(prefixes, got.pids, got.times)
    pids, times = got.pids[order], got.times[order]
    values, quality = got.values[order], got.quality[order]
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
    return b"".join(parts)


#: One tuple of ``telemetry_points (series int4, time timestamptz, value float8, quality int2)``.
_SERIES_ROW = np.dtype(
    [("fields", ">i2"), ("series_len", ">i4"), ("series", ">i4"), *READING_FIELDS]
)


def series_tuples(got: Columns, series: np.ndarray) -> bytes:
    """The readings as ``(series, time, value, quality)`` tuples in the key's order (series,
    then time; a stable sort keeps repeats in arrival order). ``series`` holds the series id
    of each of ``got.pairs``. Every tuple has the same 40 bytes, so it is one array."""
    ids = np.asarray(series, dtype=np.int64)[got.pids]
    first, last = int(got.times.min()), int(got.times.max())
    span = last - first + 1
    if span * (int(ids.max()) + 1) < 2**62:  # one int64 key: series, then time
        order: np.ndarray = np.argsort(ids * span + (got.times - first), kind="stable")
    else:  # times too far apart to pack with the id
        order = np.lexsort((got.times, ids))
    rows = np.empty(len(got), dtype=_SERIES_ROW)
    rows["fields"] = 4
    rows["series_len"] = 4
    rows["series"] = ids[order]
    rows["time_len"] = 8
    rows["time"] = got.times[order]
    rows["value_len"] = 8
    rows["value"] = got.values[order]
    rows["quality_len"] = 2
    rows["quality"] = got.quality[order]
    return rows.tobytes()


def _key_order(prefixes: list[bytes], pids: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The rows' order for the text COPY: by prefix length (one structured array each), then
    by the table's key (twin_id, signal, time).

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


def _segment_times(cols: _Segments, lengths: np.ndarray) -> np.ndarray:
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


__all__ = [
    "Columns",
    "Readings",
    "gather",
    "series_tuples",
    "telemetry_copy",
    "text_tuples",
    "tuple_prefix",
]
