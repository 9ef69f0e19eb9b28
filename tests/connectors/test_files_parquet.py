"""The Parquet sink: column building, parts written off the worker, rolling, compaction, and
resume (cut back to a snapshot, even inside a compacted file) through real Bytewax runs."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSource, run_main
from hypothesis import given
from hypothesis import strategies as st

from twinflow.connectors.files import ParquetSink, read_parquet_dir
from twinflow.connectors.files_columns import build_frame
from twinflow.connectors.files_parts import PARTS_KEY, compact, cut_from, parts_in, rows_of, tidy
from twinflow.connectors.files_writer import PartWriter, SinkStalled
from twinflow.core.errors import TwinflowError


def rows(v: tuple[str, int]) -> dict[str, Any]:
    """Item ``(group, i)``: three rows i*3 .. i*3+2."""
    _group, i = v
    return {"twin_id": f"t{i % 3}", "i": np.arange(i * 3, i * 3 + 3, dtype=np.int64)}


def sink(root: Path, **kw: Any) -> ParquetSink:
    return ParquetSink(root, rows, lambda v: v[0], group_name="g", **kw)


@given(
    st.lists(
        st.one_of(
            st.builds(lambda n: {"a": "x", "v": np.arange(n, dtype=float)}, st.integers(1, 4)),
            st.builds(lambda k: {"a": "y", "w": k}, st.integers(0, 9)),
            st.builds(lambda k: {"a": "z", "v": float(k), "w": k}, st.integers(0, 9)),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_build_frame_holds_every_row_of_every_batch(batches: list[dict[str, Any]]) -> None:
    df = build_frame(batches)
    expected = pl.concat([pl.DataFrame(b) for b in batches], how="diagonal_relaxed")
    assert df.height == expected.height
    key = sorted(expected.columns)
    got = df.select(key).sort(key, nulls_last=True)
    assert got.equals(expected.select(key).sort(key, nulls_last=True))


def test_datetime64_columns_are_written_as_utc() -> None:
    t = (np.array([1.7e9, 1.7e9 + 1]) * 1e6).astype(np.int64).astype("datetime64[us]")
    df = build_frame([{"twin_id": "a", "time": t}, {"twin_id": "b", "time": t}])
    assert df.schema["time"] == pl.Datetime("us", "UTC") and df["twin_id"].to_list() == list("aabb")


def run(
    root: Path, items: list[Any], recovery: Path | None = None, epoch_s: float = 0, **kw: Any
) -> None:
    flow = Dataflow("files")
    stream = op.input("in", flow, TestingSource(items))
    op.output("out", op.key_on("k", stream, lambda v: v[0]), sink(root, **kw))
    rc = RecoveryConfig(str(recovery)) if recovery is not None else None
    run_main(flow, epoch_interval=timedelta(seconds=epoch_s), recovery_config=rc)


def stored(root: Path) -> list[int]:
    return sorted(read_parquet_dir(root)["i"].to_list())


def test_without_recovery_epochs_write_no_parts(tmp_path: Path) -> None:
    """Every item is its own epoch; nothing keeps the snapshots, so parts roll by size only."""
    items = [("a", i) for i in range(40)]
    run(tmp_path / "s", items, rows_per_part=30, compact_every=1000)
    (merged,) = parts_in(tmp_path / "s" / "g=a", "p0")  # merged at the end
    assert stored(tmp_path / "s") == list(range(120))
    parts = rows_of(merged)
    # 120 rows / 30 a part (the first snapshot seals too), not one part per snapshot (41)
    assert 4 <= len(parts) <= 5 and sum(r for _, r in parts) == 120


def test_with_recovery_a_resume_stores_every_row_once(tmp_path: Path) -> None:
    """A run aborted mid-stream and resumed from its snapshots (one an item): each row once,
    so every snapshot Bytewax kept had its rows on disk (parts, some merged, a row a part)."""
    rec = tmp_path / "rec"
    rec.mkdir()
    init_db_dir(rec, 1)
    items: list[Any] = [("a", i) for i in range(25)]
    items.insert(17, TestingSource.ABORT())
    root = tmp_path / "s"
    run(root, items, rec, rows_per_part=3, compact_every=4)
    assert len(stored(root)) >= 17 * 3
    run(root, items, rec, rows_per_part=3, compact_every=4)
    assert stored(root) == list(range(75))
    merged = [f for f in parts_in(root / "g=a", "p0") if f.merged]
    assert merged, "compaction ran"


def test_cut_from_trims_a_compacted_file(tmp_path: Path) -> None:
    root = tmp_path / "s"
    part = sink(root, rows_per_part=3, compact_every=1000).build_part("s", "p0", None)
    for i in range(6):
        part.write_batch([("a", i)])  # 3 rows: one part each, parts 0..5
    part.close()  # merges them into one file
    (merged,) = parts_in(root / "g=a", "p0")
    assert (merged.first, merged.last) == (0, 5)
    meta = json.loads(pl.read_parquet_metadata(merged.path)[PARTS_KEY])
    assert meta == [[n, 3] for n in range(6)]
    cut_from(root / "g=a", "p0", 4)
    (cut,) = parts_in(root / "g=a", "p0")
    assert (cut.first, cut.last) == (0, 3) and stored(root) == list(range(12))
    cut_from(root / "g=a", "p0", 0)
    assert parts_in(root / "g=a", "p0") == []


def test_tidy_finishes_an_interrupted_compaction(tmp_path: Path) -> None:
    root = tmp_path / "s"
    part = sink(root, rows_per_part=3, compact_every=1000).build_part("s", "p0", None)
    for i in range(4):
        part.write_batch([("a", i)])
    part._writer.wait()
    folder = root / "g=a"
    sources = {f.path.name: f.path.read_bytes() for f in parts_in(folder, "p0")}
    compact(folder, "p0", 2**30)
    for name, data in sources.items():  # the crash came before the sources were removed
        (folder / name).write_bytes(data)
    (folder / ".part-p0-00009.parquet.tmp").write_bytes(b"half")
    tidy(folder, "p0")
    assert [p.name for p in folder.iterdir()] == ["part-p0-00000-00003.parquet"]
    assert stored(root) == list(range(12))
    part._writer.close()


def test_compaction_keeps_files_near_the_target(tmp_path: Path) -> None:
    root = tmp_path / "s"
    part = sink(root, rows_per_part=3, compact_every=8, target_bytes=4000).build_part(
        "s", "p0", None
    )
    for i in range(200):
        part.write_batch([("a", i)])
    part.close()
    files = parts_in(root / "g=a", "p0")
    assert stored(root) == list(range(600))
    assert len(files) < 200 / 8
    assert all(f.path.stat().st_size <= 4000 or f.first == f.last for f in files)


def test_a_failed_write_is_raised_in_the_worker(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "g=a").write_text("a file where the folder goes")
    part = sink(tmp_path / "s", rows_per_part=3).build_part("s", "p0", None)
    part.write_batch([("a", 0)])
    with pytest.raises(TwinflowError, match="s/p0: writing a Parquet part failed"):
        part.close()


def test_a_stalled_writer_ends_in_a_clear_error() -> None:
    started, release = threading.Event(), threading.Event()

    def hang() -> None:
        started.set()
        release.wait()

    w = PartWriter("telemetry/p0", depth=1, timeout_s=0.2)
    w.submit(hang)
    assert started.wait(30)  # the writer took it and hangs
    with pytest.raises(SinkStalled, match=r"not written within 0\.2 s"):
        w.wait()
    w.submit(lambda: None)  # waits in the queue (depth 1)
    with pytest.raises(SinkStalled, match=r"has not taken a part for 0\.2 s"):
        w.submit(lambda: None)
    release.set()
    w.close()
    assert w.backlog == 0


def test_recent_matches_whole_fingerprints_only_and_resumes_in_order() -> None:
    import sys

    from twinflow.connectors.files import Recent

    def fp(*b: int) -> int:
        return int.from_bytes(bytes(b), sys.byteorder)

    r = Recent(3)
    a, b = fp(1, 2, 3, 4, 5, 6, 7, 8), fp(9, 10, 11, 12, 13, 14, 15, 16)
    assert not r.repeated("k", a) and not r.repeated("k", b)
    assert not r.repeated("k", fp(5, 6, 7, 8, 9, 10, 11, 12))  # the bytes across a and b
    assert r.repeated("k", b) and not r.repeated("j", b)  # keys apart
    assert not r.repeated("k", 2**64 - 1) and r.repeated("k", -1)  # modulo 2**64
    assert r.state()["k"] == [b, fp(5, 6, 7, 8, 9, 10, 11, 12), 2**64 - 1]  # oldest first
    again = Recent(2, r.state())
    assert again.state()["k"] == r.state()["k"][-2:] and again.repeated("k", 2**64 - 1)


def test_chunks_handed_to_the_writer_keep_every_row_once_in_order(tmp_path: Path) -> None:
    """Chunks of 4 rows (or 2 items) built by the writer before their part is sealed (by size,
    at the recovery snapshots, at the end): every row once, in order, also across a resume."""
    run(tmp_path / "a", [("a", i) for i in range(40)], rows_per_part=30, chunk_rows=4)
    assert read_parquet_dir(tmp_path / "a")["i"].to_list() == list(range(120))
    run(tmp_path / "c", [("a", i) for i in range(40)], rows_per_part=30, chunk_items=2)
    assert read_parquet_dir(tmp_path / "c")["i"].to_list() == list(range(120))
    rec = tmp_path / "rec"
    rec.mkdir()
    init_db_dir(rec, 1)
    items: list[Any] = [("a", i) for i in range(25)]
    items.insert(17, TestingSource.ABORT())
    run(tmp_path / "b", items, rec, rows_per_part=30, chunk_rows=4)
    run(tmp_path / "b", items, rec, rows_per_part=30, chunk_rows=4)
    assert stored(tmp_path / "b") == list(range(75))
