"""The Parquet writers give glibc's free heap back to the system, at most once a second."""

from __future__ import annotations

import platform

import pytest

from twinflow.connectors.files_writer import MALLOC_TRIM, HeapTrim, PartWriter


def test_heap_trim_runs_at_most_once_per_interval() -> None:
    calls: list[int] = []
    trim = HeapTrim(every_s=60.0, trim=lambda pad: calls.append(pad) or 1)
    assert trim() is True
    assert trim() is False
    assert calls == [0]
    assert HeapTrim(trim=None)() is False


def test_the_writer_asks_for_a_trim_after_each_job() -> None:
    asked: list[int] = []
    done: list[int] = []
    writer = PartWriter("t", trim=lambda: asked.append(len(done)))
    for i in range(3):
        writer.submit(lambda i=i: done.append(i))
    writer.close()
    assert done == [0, 1, 2]
    assert asked == [1, 2, 3]  # each after its job


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_glibc_malloc_trim_is_found_and_runs() -> None:
    assert MALLOC_TRIM is not None
    assert HeapTrim(every_s=0.0)() is True
