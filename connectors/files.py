"""Local file sinks: JSON Lines and Parquet (polars), both safe under Bytewax recovery.

- :class:`JsonLinesSink` appends one JSON object a line to ``<dir>/<name>.jsonl``. Its resume
  state is the byte offset after the last line written before a snapshot: on resume the file is
  cut back to that offset, so the replayed items are written exactly once.
- :class:`ParquetSink` buffers rows and writes numbered part files under
  ``<dir>/<name>/<group>=<value>/part-<partition>-<n>.parquet`` (hive layout, one folder per
  twin type so every file has one schema). A snapshot flushes the buffer; on resume, parts
  numbered at or after the snapshotted count are deleted (the replay writes them again).
  With a ``fingerprint``, an item equal to one of the last ``remember`` items of its key is
  dropped (a frame delivered twice is stored once, as PostgreSQL's unique keys do); the
  fingerprints are part of the snapshot.

Folders are created 0700 and files 0600 (only their owner reads them); see
:func:`private_dir`.

Read them back with polars: ``pl.read_parquet("out/windows/**/*.parquet")``.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import numpy as np
import polars as pl
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

X = TypeVar("X")

Columns = Mapping[str, Any]

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
ParquetState = tuple[int, dict[str, list[int]]]


class Recent:
    """The fingerprints of the last ``n`` items of each key: tells a repeated item."""

    def __init__(self, n: int, state: Mapping[str, list[int]] | None = None) -> None:
        self._n = n
        self._order: dict[str, deque[int]] = {
            k: deque(v[-n:], maxlen=n) for k, v in (state or {}).items()
        }
        self._seen: dict[str, set[int]] = {k: set(v) for k, v in self._order.items()}

    def repeated(self, key: str, fp: int) -> bool:
        """Whether ``fp`` was seen among the last items of ``key`` (and remember it if not)."""
        seen = self._seen.setdefault(key, set())
        if fp in seen:
            return True
        order = self._order.setdefault(key, deque(maxlen=self._n))
        if len(order) == self._n:
            seen.discard(order[0])
        order.append(fp)
        seen.add(fp)
        return False

    def state(self) -> dict[str, list[int]]:
        return {k: list(v) for k, v in self._order.items()}


class _ParquetPartition(StatefulSinkPartition[Any, ParquetState]):
    def __init__(self, sink: ParquetSink, part: str, resume: ParquetState | int | None):
        next_part, recent = resume if isinstance(resume, tuple) else (resume or 0, {})
        self._sink = sink
        self._part = part
        self._next = next_part
        self._recent = Recent(sink.remember, recent)
        self._buffers: dict[str, list[Columns]] = {}
        self._rows = 0
        self._oldest: float | None = None
        #: Items dropped as repeats of a recent one.
        self.duplicates = 0
        self._remove_parts_from(next_part)

    def _remove_parts_from(self, n: int) -> None:
        """Delete parts written after the snapshot we resume from (the replay rewrites them)."""
        if not self._sink.root.exists():
            return
        for f in self._sink.root.glob(f"*/part-{self._part}-*.parquet"):
            if int(f.stem.rsplit("-", 1)[1]) >= n:
                f.unlink()

    def write_batch(self, values: list[Any]) -> None:
        sink = self._sink
        for v in values:
            if sink.fingerprint is not None:
                fp = sink.fingerprint(v)
                if fp is not None and self._recent.repeated(*fp):
                    self.duplicates += 1
                    continue
            cols = sink.to_columns(v)
            if cols is None:
                continue
            group = str(sink.group_of(v))
            self._buffers.setdefault(group, []).append(cols)
            self._rows += _height(cols)
            if self._oldest is None:
                self._oldest = time.monotonic()
        too_old = self._oldest is not None and time.monotonic() - self._oldest >= sink.max_delay_s
        if self._rows >= sink.rows_per_part or too_old:
            self._flush()

    def _flush(self) -> None:
        for group, batches in self._buffers.items():
            if not batches:
                continue
            frame = pl.concat([pl.DataFrame(b) for b in batches], how="diagonal_relaxed")
            folder = self._sink.root / f"{self._sink.group_name}={group}"
            private_dir(folder)
            tmp = folder / f".part-{self._part}-{self._next:05d}.tmp"
            frame.write_parquet(tmp, compression="zstd")
            tmp.chmod(FILE_MODE)
            tmp.replace(folder / f"part-{self._part}-{self._next:05d}.parquet")
            self._next += 1
        self._buffers = {}
        self._rows = 0
        self._oldest = None

    def snapshot(self) -> ParquetState:
        self._flush()
        return self._next, self._recent.state()

    def close(self) -> None:
        self._flush()


def _height(cols: Columns) -> int:
    """Rows a batch adds: the length of its arrays, or one for a row of scalars."""
    return max(
        (len(v) for v in cols.values() if isinstance(v, np.ndarray | list | pl.Series)),
        default=1,
    )


class ParquetSink(FixedPartitionedSink[Any, ParquetState]):
    """Write items as rows of Parquet part files, one folder per group (e.g. twin type).

    ``to_columns`` turns an item into a mapping of column name to a scalar (one row) or to
    equally long arrays (many rows), or ``None`` to skip it. Items arrive as ``(key, item)``
    and are spread over ``partitions`` partitions by key. A part is written when
    ``rows_per_part`` rows are buffered or the oldest buffered row is ``max_delay_s`` old
    (checked as items arrive), at each snapshot and at the end. ``fingerprint`` gives an
    item's key and a 64-bit fingerprint, or ``None`` to always keep it: an item whose
    fingerprint is among the last ``remember`` of its key is dropped.
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

    def list_parts(self) -> list[str]:
        return [f"p{i}" for i in range(self.partitions)]

    def build_part(
        self, step_id: str, for_part: str, resume_state: ParquetState | int | None
    ) -> _ParquetPartition:
        return _ParquetPartition(self, for_part, resume_state)


def read_parquet_dir(root: Path | str) -> pl.DataFrame:
    """All parts under a sink folder as one frame (empty frame if nothing was written)."""
    files = sorted(Path(root).glob("*/*.parquet"))
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
