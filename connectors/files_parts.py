"""Parquet part files of one sink partition: names, resume cuts and compaction.

A partition numbers the parts it writes: ``part-<partition>-<n>.parquet``. Compaction merges
a run of them into ``part-<partition>-<first>-<last>.parquet``, and every file records in its
Parquet metadata (key ``twinflow.parts``) how many rows each part number contributed, in
order. So a resume from a snapshot taken before part ``n`` can drop exactly the rows of parts
``n`` and later, whether they still sit in their own file or inside a compacted one
(:func:`cut_from`), and a compaction interrupted by a crash is finished or undone by
:func:`tidy` (the merged file is renamed into place before its sources are removed).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl

#: Parquet metadata key of the ``[[part, rows], ...]`` list.
PARTS_KEY = "twinflow.parts"
FILE_MODE = 0o600

PartRows = list[tuple[int, int]]


@dataclass(frozen=True, slots=True)
class PartFile:
    """One part file: its path, partition and the part numbers it holds (``first..last``)."""

    path: Path
    partition: str
    first: int
    last: int

    @property
    def merged(self) -> bool:
        return self.path.stem.count("-") == 3


def parse(path: Path) -> PartFile | None:
    """The part file ``path`` names, or ``None`` for any other file.

    >>> parse(Path("part-p0-00003.parquet")).first
    3
    >>> f = parse(Path("part-p1-00000-00015.parquet")); (f.partition, f.first, f.last, f.merged)
    ('p1', 0, 15, True)
    >>> parse(Path("notes.parquet")) is None
    True
    """
    bits = path.stem.split("-")
    if path.suffix != ".parquet" or bits[0] != "part" or len(bits) not in (3, 4):
        return None
    try:
        numbers = [int(b) for b in bits[2:]]
    except ValueError:
        return None
    return PartFile(path, bits[1], numbers[0], numbers[-1])


def part_name(partition: str, first: int, last: int | None = None) -> str:
    """File name of part ``first`` (or of the merged parts ``first..last``)."""
    if last is None:
        return f"part-{partition}-{first:05d}.parquet"
    return f"part-{partition}-{first:05d}-{last:05d}.parquet"


def parts_in(folder: Path, partition: str) -> list[PartFile]:
    """The partition's part files in ``folder``, by first part number."""
    if not folder.is_dir():
        return []
    found = (parse(p) for p in folder.glob(f"part-{partition}-*.parquet"))
    return sorted(
        (f for f in found if f is not None and f.partition == partition),
        key=lambda f: (f.first, -f.last),
    )


def rows_of(f: PartFile) -> PartRows:
    """``[(part, rows), ...]`` of a file: from its metadata, or counted for an older plain part."""
    meta = pl.read_parquet_metadata(f.path).get(PARTS_KEY)
    if meta is not None:
        return [(int(n), int(r)) for n, r in json.loads(meta)]
    height = pl.scan_parquet(f.path, hive_partitioning=False).select(pl.len()).collect().item()
    return [(f.first, int(height))]


def write_frame(folder: Path, name: str, frame: pl.DataFrame, parts: PartRows) -> Path:
    """Write ``frame`` as ``folder/name`` atomically (a hidden temporary file, then renamed)."""
    tmp = folder / f".{name}.tmp"
    frame.write_parquet(tmp, compression="zstd", metadata={PARTS_KEY: json.dumps(parts)})
    return _into_place(tmp, folder / name)


def _into_place(tmp: Path, final: Path) -> Path:
    tmp.chmod(FILE_MODE)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    tmp.replace(final)
    return final


def tidy(folder: Path, partition: str) -> None:
    """Remove what an interrupted write or compaction left: temporary files, and files whose
    parts a merged file already holds (it was renamed into place before they were removed)."""
    if not folder.is_dir():
        return
    for tmp in folder.glob(f".part-{partition}-*.tmp"):
        tmp.unlink()
    files = parts_in(folder, partition)
    for f in files:
        if any(g is not f and g.first <= f.first and f.last <= g.last for g in files):
            f.path.unlink(missing_ok=True)


def cut_from(folder: Path, partition: str, n: int) -> None:
    """Drop the rows of parts ``n`` and later (a resume writes them again)."""
    for f in parts_in(folder, partition):
        if f.first >= n:
            f.path.unlink()
        elif f.last >= n:
            parts = rows_of(f)
            keep = [(p, r) for p, r in parts if p < n]
            frame = pl.read_parquet(f.path, hive_partitioning=False).head(sum(r for _, r in keep))
            f.path.unlink()
            write_frame(folder, part_name(partition, keep[0][0], keep[-1][0]), frame, keep)


def compact(folder: Path, partition: str, target_bytes: int) -> int:
    """Merge the partition's parts in ``folder`` into files of about ``target_bytes``.

    Runs of consecutive files are merged while their sizes add up to at most the target; a
    file already that large stays as it is, so calling it again only merges what came since.
    Returns how many files fewer there are.
    """
    tidy(folder, partition)
    groups: list[list[PartFile]] = []
    size = 0
    for f in parts_in(folder, partition):
        fsize = f.path.stat().st_size
        if not groups or size + fsize > target_bytes:
            groups.append([])
            size = 0
        groups[-1].append(f)
        size += fsize
    removed = 0
    for group in groups:
        if len(group) < 2:
            continue
        _merge(folder, partition, group)
        removed += len(group) - 1
    return removed


def _merge(folder: Path, partition: str, group: list[PartFile]) -> None:
    parts: PartRows = [pr for f in group for pr in rows_of(f)]
    name = part_name(partition, group[0].first, group[-1].last)
    tmp = folder / f".{name}.tmp"
    scans = [pl.scan_parquet(f.path, hive_partitioning=False) for f in group]
    pl.concat(scans, how="diagonal_relaxed").sink_parquet(
        tmp, compression="zstd", metadata={PARTS_KEY: json.dumps(parts)}
    )
    _into_place(tmp, folder / name)
    for f in group:
        if f.path.name != name:
            f.path.unlink(missing_ok=True)
