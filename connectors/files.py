"""Local file sinks: JSON Lines and Parquet (polars), both safe under Bytewax recovery.

- :class:`JsonLinesSink` appends one JSON object a line to ``<dir>/<name>.jsonl``. Its resume
  state is the byte offset after the last line written before a snapshot: on resume the file is
  cut back to that offset, so the replayed items are written exactly once.
- :class:`ParquetSink` buffers rows and writes numbered part files under
  ``<dir>/<name>/<group>=<value>/part-<partition>-<n>.parquet`` (hive layout, one folder per
  twin type so every file has one schema). A part is cut by size (rows) and age; a writer
  thread builds and writes it off the worker (bounded hand-off, timeouts), and builds the
  rows buffered so far into columns every few thousand rows, so memory holds a part as
  columns rather than as the items' own small arrays. Every few parts
  and at the end, consecutive parts are merged into ``part-<partition>-<first>-<last>.parquet``
  files of a target size (:mod:`twinflow.connectors.files_parts`). A snapshot that Bytewax
  keeps (recovery on) seals the buffer and waits for the disk; on resume, the rows of parts
  numbered at or after the snapshotted count are deleted, inside merged files too (the
  replay writes them again). With a ``fingerprint``, an item equal to one of the last
  ``remember`` items of its key is dropped (a frame delivered twice is stored once, as
  PostgreSQL's unique keys do; :mod:`twinflow.connectors.files_recent`); the fingerprints are
  part of the snapshot.

Folders are created 0700 and files 0600 (only their owner reads them); see
:func:`private_dir`.

Read them back with polars: ``pl.read_parquet("out/windows/**/*.parquet")``, or
:func:`read_parquet_dir`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import polars as pl
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from twinflow.connectors.files_columns import Columns as Columns
from twinflow.connectors.files_columns import build_frame, height
from twinflow.connectors.files_parts import compact, cut_from, part_name, tidy, write_frame
from twinflow.connectors.files_recent import Recent as Recent
from twinflow.connectors.files_writer import PartWriter
from twinflow.connectors.placement_keys import PlacedParts
from twinflow.core.errors import TwinflowError

X = TypeVar("X")

#: Modes of the folders and files the sinks create: their owner's alone.
DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents with mode 0700 (an existing one is kept as is)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for p in reversed(missing):
        p.mkdir(mode=DIR_MODE, exist_ok=True)
    return path


def open_private(path: Path) -> BinaryIO:
    """``path`` opened for appending bytes, created 0600 if missing."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE), "ab")


class _JsonLinesPartition(StatefulSinkPartition[Any, int]):
    def __init__(self, path: Path, to_json: Callable[[Any], Mapping[str, Any]], offset: int):
        self._path = path
        private_dir(path.parent)
        self._file = open_private(path)  # kept open for the partition's life
        self._file.truncate(offset)
        self._file.seek(offset)
        self._to_json = to_json

    def write_batch(self, values: list[Any]) -> None:
        lines = [
            json.dumps(self._to_json(v), separators=(",", ":"), allow_nan=False) + "\n"
            for v in values
        ]
        self._file.write("".join(lines).encode())
        self._file.flush()  # readers tailing the file see each batch

    def snapshot(self) -> int:
        self._file.flush()
        return self._file.tell()

    def close(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()


class JsonLinesSink(FixedPartitionedSink[Any, int]):
    """Write items as JSON Lines to one file; items arrive as ``(key, item)``.

    One partition, so one worker writes the file in order of arrival.
    """

    def __init__(self, path: Path | str, to_json: Callable[[Any], Mapping[str, Any]]):
        self.path = Path(path)
        self.to_json = to_json

    def list_parts(self) -> list[str]:
        return [self.path.name]

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _JsonLinesPartition:
        return _JsonLinesPartition(self.path, self.to_json, resume_state or 0)


#: A Parquet partition's resume state: the next part number and, per key, the fingerprints
#: of its last items (older snapshots hold the part number alone).
ParquetResume = tuple[int, dict[str, list[int]]]


class ParquetState(tuple[int, dict[str, list[int]]]):
    """A snapshot of a Parquet partition: ``(next part, fingerprints)``, made durable when
    Bytewax pickles it.

    Bytewax asks every sink for a snapshot at each epoch, with or without recovery, but pickles
    it only when recovery is on, right after asking. Pickling is therefore when the buffered
    rows must reach the disk: it seals them into a part and waits for the writer. A snapshot
    nobody pickles costs nothing, so a run without recovery writes parts by size and age only.
    Until a snapshot has gone unpickled the sink seals at each snapshot (it cannot know yet);
    a snapshot pickled after more items arrived is an error (its rows could not be told apart).
    """

    _partition: _ParquetPartition | None
    _writes: int

    def __reduce__(self) -> tuple[Any, ...]:
        part = self._partition
        if part is None:
            return (tuple, (tuple(self),))
        return (tuple, (part.durable_state(self._writes),))


def _state(resume: ParquetResume, partition: _ParquetPartition | None, writes: int) -> ParquetState:
    s = ParquetState(resume)
    s._partition, s._writes = partition, writes
    return s


class _ParquetPartition(StatefulSinkPartition[Any, ParquetResume]):
    def __init__(self, sink: ParquetSink, part: str, resume: ParquetResume | int | None) -> None:
        next_part, recent = resume if isinstance(resume, tuple) else (resume or 0, {})
        self._sink = sink
        self._part = part
        self._next = next_part
        self._recent = Recent(sink.remember, recent)
        self._buffers: dict[str, list[Columns]] = {}  # batches not handed to the writer yet
        self._buffered = 0  # rows in ``_buffers``
        self._items = 0  # items in ``_buffers``
        self._opened: dict[str, None] = {}  # groups with chunks handed over since the last seal
        self._chunks: dict[str, list[pl.DataFrame]] = {}  # the writer's: built, not yet written
        self._rows = 0  # rows since the last seal
        self._oldest: float | None = None
        self._writes = 0  # write_batch calls, to tell a snapshot pickled late
        self._durable: bool | None = None  # whether Bytewax keeps snapshots (unknown at first)
        self._plain: dict[str, int] = {}  # parts written per group since its last compaction
        self._writer = PartWriter(f"{sink.root.name}/{part}", timeout_s=sink.timeout_s)
        #: Items dropped as repeats of a recent one.
        self.duplicates = 0
        if sink.root.is_dir():
            for folder in sorted(p for p in sink.root.iterdir() if p.is_dir()):
                tidy(folder, part)
                cut_from(folder, part, next_part)  # the replay writes them again

    def write_batch(self, values: list[Any]) -> None:
        sink = self._sink
        self._writes += 1
        for v in values:
            if sink.fingerprint is not None:
                fp = sink.fingerprint(v)
                if fp is not None and self._recent.repeated(*fp):
                    self.duplicates += 1
                    continue
            cols = sink.to_columns(v)
            if cols is None:
                continue
            self._buffers.setdefault(str(sink.group_of(v)), []).append(cols)
            rows = height(cols)
            self._rows += rows
            self._buffered += rows
            self._items += 1
            if self._oldest is None:
                self._oldest = time.monotonic()
        too_old = self._oldest is not None and time.monotonic() - self._oldest >= sink.max_delay_s
        if self._rows >= sink.rows_per_part or too_old:
            self._seal()
        elif self._buffered >= sink.chunk_rows or self._items >= sink.chunk_items:
            self._hand_over()

    def _hand_over(self) -> None:
        """Give the buffered batches to the writer, which builds them into compact columns
        (a batch's small arrays and dict cost ~20x its values) kept until the part is sealed."""
        batches, self._buffers, self._buffered, self._items = self._buffers, {}, 0, 0
        self._opened.update(dict.fromkeys(batches))
        self._writer.submit(lambda: self._build(batches))

    def _build(self, batches: dict[str, list[Columns]]) -> None:
        for group, items in batches.items():
            self._chunks.setdefault(group, []).append(build_frame(items))

    def _seal(self) -> None:
        """Hand the buffer to the writer as one part per group (numbered now, written later)."""
        rest = self._buffers
        parts: list[tuple[Path, int, str]] = []
        for group in {**self._opened, **dict.fromkeys(rest)}:
            folder = self._sink.root / f"{self._sink.group_name}={group}"
            parts.append((folder, self._next, group))
            self._next += 1
        self._buffers, self._buffered, self._items, self._opened = {}, 0, 0, {}
        self._rows, self._oldest = 0, None
        if not parts:
            return
        merge = []
        for folder, _n, _g in parts:
            self._plain[folder.name] = self._plain.get(folder.name, 0) + 1
            if self._plain[folder.name] >= self._sink.compact_every:
                self._plain[folder.name] = 0
                merge.append(folder)
        self._writer.submit(lambda: self._write(parts, rest, merge))

    def _write(
        self, parts: list[tuple[Path, int, str]], rest: dict[str, list[Columns]], merge: list[Path]
    ) -> None:
        for folder, n, group in parts:
            chunks = self._chunks.pop(group, [])
            if group in rest:
                chunks.append(build_frame(rest.pop(group)))
            frame = chunks[0] if len(chunks) == 1 else _concat(chunks)
            del chunks
            private_dir(folder)
            write_frame(folder, part_name(self._part, n), frame, [(n, frame.height)])
        for folder in merge:
            compact(folder, self._part, self._sink.target_bytes)

    def snapshot(self) -> ParquetResume:
        if self._durable is False:  # nobody kept the last one: stay lazy
            return _state((self._next, {}), self, self._writes)
        if self._durable is None and self._writes > 0:
            self._durable = False  # becomes True if this snapshot is pickled
        self._seal()
        return _state((self._next, self._recent.state()), self, self._writes)

    def durable_state(self, writes: int) -> ParquetResume:
        """The state to pickle for a snapshot taken after ``writes`` batches: seals the buffer
        if the snapshot did not, and waits until every part is on disk."""
        if writes != self._writes:
            raise TwinflowError(
                f"{self._sink.root.name}: a snapshot was pickled after more items arrived; "
                "its rows cannot be told apart (recovery would duplicate them)"
            )
        self._durable = True
        self._seal()
        self._writer.wait()
        return self._next, self._recent.state()

    def close(self) -> None:
        self._seal()
        self._writer.submit(self._compact_all)
        self._writer.close()

    def _compact_all(self) -> None:
        for folder in sorted(self._sink.root.glob(f"{self._sink.group_name}=*")):
            compact(folder, self._part, self._sink.target_bytes)


def _concat(chunks: list[pl.DataFrame]) -> pl.DataFrame:
    """The chunks of one part as one frame, without copying them into one buffer first."""
    return pl.concat(chunks, how="diagonal_relaxed", rechunk=False)


class ParquetSink(PlacedParts, FixedPartitionedSink[Any, ParquetResume]):
    """Write items as rows of Parquet part files, one folder per group (e.g. twin type).

    ``to_columns`` turns an item into a mapping of column name to a scalar (one row) or to
    equally long arrays (many rows), or ``None`` to skip it. Items arrive as ``(key, item)``
    and are spread over ``partitions`` partitions by key (with a ``placement``, each key to
    a partition on the worker that holds its state: :mod:`.placement_keys`). The buffered
    rows become a part when ``rows_per_part`` rows are buffered or the oldest is
    ``max_delay_s`` old (checked as items arrive), at a snapshot that Bytewax keeps
    (recovery) and at the end; a writer thread builds and writes them (at most two jobs
    wait for it, each wait at most ``timeout_s``).
    Every ``chunk_rows`` buffered rows (or ``chunk_items`` items: a row of scalars is a dict)
    are handed over before that: the writer builds them
    into columns at once and holds those until the part is sealed, so the batches' per-item
    objects never pile up to a part's worth.
    Every ``compact_every`` parts of a group, and at the end, consecutive files are merged
    into files of up to ``target_bytes`` (see :mod:`twinflow.connectors.files_parts`).
    ``fingerprint`` gives an item's key and a 64-bit fingerprint, or ``None`` to always keep
    it: an item whose fingerprint is among the last ``remember`` of its key is dropped.
    """

    def __init__(
        self,
        root: Path | str,
        to_columns: Callable[[Any], Columns | None],
        group_of: Callable[[Any], str],
        group_name: str = "twin_type",
        partitions: int = 1,
        rows_per_part: int = 200_000,
        max_delay_s: float = 30.0,
        fingerprint: Callable[[Any], tuple[str, int] | None] | None = None,
        remember: int = 256,
        compact_every: int = 16,
        target_bytes: int = 64 * 2**20,
        timeout_s: float = 120.0,
        chunk_rows: int = 16_384,
        chunk_items: int = 1_024,
    ):
        self.root = Path(root)
        self.to_columns = to_columns
        self.group_of = group_of
        self.group_name = group_name
        self.partitions = partitions
        self.rows_per_part = rows_per_part
        self.max_delay_s = max_delay_s
        self.fingerprint = fingerprint
        self.remember = remember
        self.compact_every = compact_every
        self.target_bytes = target_bytes
        self.timeout_s = timeout_s
        self.chunk_rows = chunk_rows
        self.chunk_items = chunk_items

    def list_parts(self) -> list[str]:
        return [f"p{i}" for i in range(self.partitions)]

    def build_part(
        self, step_id: str, for_part: str, resume_state: ParquetResume | int | None
    ) -> _ParquetPartition:
        return _ParquetPartition(self, for_part, resume_state)


def read_parquet_dir(root: Path | str) -> pl.DataFrame:
    """All parts under a sink folder as one frame (empty frame if nothing was written)."""
    files = sorted(Path(root).glob("*/part-*.parquet"))
    if not files:
        return pl.DataFrame()
    frames = []
    for f in files:
        df = pl.read_parquet(f)
        key, _, value = f.parent.name.partition("=")
        frames.append(df.with_columns(pl.lit(value).alias(key)) if key not in df.columns else df)
    return pl.concat(frames, how="diagonal_relaxed")


def read_jsonl(path: Path | str) -> list[dict[str, Any]]:
    """Every object of a JSON Lines file (empty list if it does not exist)."""
    p = Path(path)
    if not p.exists():
        return []
    with p.open() as f:
        return [json.loads(line) for line in f if line.strip()]
