"""``twinflow compact``: many small parts become few files, every row kept in order, and a
resume afterwards still cuts exactly the rows written after its snapshot."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from twinflow.connectors.files import ParquetSink, read_parquet_dir
from twinflow.connectors.files_parts import parts_in
from twinflow.flows.compact import add_compact_parser, run_compact


def rows(v: tuple[str, int]) -> dict[str, Any]:
    group, i = v
    return {"twin_id": group, "i": np.arange(i * 2, i * 2 + 2, dtype=np.int64)}


def small_parts(out: Path, n: int) -> ParquetSink:
    """A sink whose every item is a part of its own, never merged while it runs."""
    sink = ParquetSink(
        out / "windows", rows, lambda v: v[0], rows_per_part=2, compact_every=10**6, target_bytes=1
    )  # target 1 byte: close merges none
    part = sink.build_part("s", "p0", None)
    for i in range(n):
        part.write_batch([("a", i), ("b", i)])
    part.close()
    return sink


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    add_compact_parser(ap.add_subparsers(dest="command"))
    return ap.parse_args(argv)


def test_compact_merges_parts_and_keeps_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small_parts(tmp_path, 30)
    before = read_parquet_dir(tmp_path / "windows").sort("twin_id", maintain_order=True)
    assert len(list(tmp_path.glob("windows/*/*.parquet"))) == 60
    assert run_compact(parse(["compact", str(tmp_path)])) == 0
    assert capsys.readouterr().out.strip() == f"compacted {tmp_path}: 60 Parquet part files -> 2"
    after = read_parquet_dir(tmp_path / "windows").sort("twin_id", maintain_order=True)
    assert after.equals(before)
    assert run_compact(parse(["compact", str(tmp_path)])) == 0  # again: nothing to do
    assert capsys.readouterr().out.strip().endswith("2 Parquet part files -> 2")


def test_a_resume_after_compaction_cuts_inside_merged_files(tmp_path: Path) -> None:
    sink = small_parts(tmp_path, 10)  # parts 0..19, a and b alternating
    assert run_compact(parse(["compact", str(tmp_path)])) == 0
    resumed = sink.build_part("s", "p0", (8, {}))  # a snapshot taken after part 7
    resumed.close()
    got = read_parquet_dir(tmp_path / "windows")
    assert sorted(got["i"].to_list()) == sorted(2 * list(range(8)))  # items 0..3, both groups
    assert [(f.first, f.last) for f in parts_in(tmp_path / "windows" / "twin_type=a", "p0")] == [
        (0, 6)
    ]


def test_compact_refuses_what_is_not_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_compact(parse(["compact", str(tmp_path / "none")])) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert run_compact(parse(["compact", str(tmp_path), "--target-mb", "0"])) == 2
    assert "--target-mb must be positive" in capsys.readouterr().err
