"""The on-disk outbox of replicated updates: order, acknowledgement, crashes, overflow."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from twinflow.connectors.replication import DiskOutbox, OutboxError


def payloads(box: DiskOutbox, limit: int = 10_000) -> list[bytes]:
    return [e.payload for e in box.peek(limit)]


def test_records_come_back_in_order_across_segments_until_acknowledged(tmp_path: Path) -> None:
    box = DiskOutbox(tmp_path, segment_bytes=200, max_bytes=100_000)
    sent = [f"update-{i}".encode() * 3 for i in range(50)]
    for i, p in enumerate(sent):
        box.append(f"k{i}", p)
    assert len(list(tmp_path.glob("seg-*.out"))) > 5  # rolled into several segments
    assert payloads(box) == sent and box.pending == 50
    first = box.peek(20)
    box.ack(first)
    box.ack(first)  # a second acknowledgement changes nothing
    assert payloads(box) == sent[20:] and box.pending == 30
    box.ack(box.peek(100))
    assert box.pending == 0 and box.pending_bytes == 0 and payloads(box) == []
    box.close()  # persists the cursor: acknowledged segments are deleted
    assert len(list(tmp_path.glob("seg-*.out"))) == 1


def test_the_cursor_follows_the_fsync_policy(tmp_path: Path) -> None:
    always = DiskOutbox(tmp_path / "always", segment_bytes=64, fsync="always")
    lazy = DiskOutbox(tmp_path / "lazy", segment_bytes=64, fsync_interval_s=3600)
    for box in (always, lazy):
        for i in range(10):
            box.append("k", f"u{i}".encode())
        box.ack(box.peek(6))
    # "always" persisted the cursor and deleted the acknowledged segments at once
    assert len(list((tmp_path / "always").glob("seg-*.out"))) < 10
    assert payloads(DiskOutbox(tmp_path / "always")) == [f"u{i}".encode() for i in range(6, 10)]
    # "interval": after a crash (no close) acknowledged records come again: duplicates, no loss
    assert len(payloads(DiskOutbox(tmp_path / "lazy"))) == 10


@pytest.mark.parametrize("fsync", ["always", "interval"])
def test_reopening_resends_what_was_not_acknowledged(tmp_path: Path, fsync: str) -> None:
    box = DiskOutbox(tmp_path, segment_bytes=128, fsync=fsync)
    for i in range(10):
        box.append("k", f"u{i}".encode())
    box.ack(box.peek(4))
    box.peek(3)  # sent, but the acknowledgement never came (the process died)
    box.close()
    again = DiskOutbox(tmp_path, segment_bytes=128, fsync=fsync)
    assert payloads(again) == [f"u{i}".encode() for i in range(4, 10)]
    assert again.pending == 6
    again.append("k", b"u10")
    assert payloads(again)[-1] == b"u10"


def test_a_record_torn_by_a_crash_is_cut_off(tmp_path: Path) -> None:
    box = DiskOutbox(tmp_path)
    box.append("a", b"whole")
    box.append("b", b"torn in half")
    box.close()
    [seg] = tmp_path.glob("seg-*.out")
    seg.write_bytes(seg.read_bytes()[:-5])  # the crash cut the last write short
    again = DiskOutbox(tmp_path)
    assert payloads(again) == [b"whole"]
    again.append("c", b"after")  # appends continue after the last whole record
    assert payloads(again) == [b"whole", b"after"]
    corrupt = bytearray(seg.read_bytes())
    corrupt[12] ^= 0xFF  # a flipped bit in the first record fails its CRC: reading stops
    seg.write_bytes(bytes(corrupt))
    again.close()
    assert payloads(DiskOutbox(tmp_path)) == []


def test_overflow_compacts_to_the_newest_per_property_first(tmp_path: Path) -> None:
    box = DiskOutbox(tmp_path, segment_bytes=300, max_bytes=600)
    for i in range(40):  # 40 writes of two properties: far more than fits
        box.append(f"pump-{i % 2}/desired/speed", f"{i:04d}".encode())
    assert box.compactions >= 1 and box.dropped == 0  # nothing of the state was lost
    assert sorted(payloads(box))[-2:] == [b"0038", b"0039"]
    assert box.pending_bytes <= 600
    box.close()
    assert b"0039" in payloads(DiskOutbox(tmp_path, segment_bytes=300, max_bytes=600))


def test_overflow_of_distinct_properties_drops_the_oldest_and_counts_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    box = DiskOutbox(tmp_path, segment_bytes=300, max_bytes=600)
    with caplog.at_level(logging.WARNING, logger="twinflow.connectors.replication.outbox"):
        for i in range(40):
            box.append(f"prop-{i}", f"{i:04d}".encode())
    kept = payloads(box)
    assert box.dropped > 0 and box.dropped + len(kept) == 40
    drops = [r.getMessage() for r in caplog.records if "is full" in r.getMessage()]
    assert drops and f"{box.dropped} since it opened" in drops[-1]  # each drop is logged
    assert kept == [f"{i:04d}".encode() for i in range(40 - len(kept), 40)]  # the newest
    assert box.pending == len(kept) and box.pending_bytes <= 600


def test_bad_settings_and_oversized_records_are_refused(tmp_path: Path) -> None:
    with pytest.raises(OutboxError, match="fsync"):
        DiskOutbox(tmp_path, fsync="sometimes")
    with pytest.raises(OutboxError, match="segment_bytes <= max_bytes"):
        DiskOutbox(tmp_path, segment_bytes=10, max_bytes=5)
    box = DiskOutbox(tmp_path, segment_bytes=100, max_bytes=100)
    with pytest.raises(OutboxError, match="more than max_bytes"):
        box.append("k", b"x" * 200)
    (tmp_path / "file").write_text("")
    with pytest.raises(OutboxError, match="cannot be created"):
        DiskOutbox(tmp_path / "file" / "sub")


def test_compaction_keeps_every_append_only_record(tmp_path: Path) -> None:
    """Telemetry buckets share one key but are facts of their own: compaction merges the
    state writes around them and keeps each bucket, in order, also after a reopen."""
    box = DiskOutbox(tmp_path, segment_bytes=400, max_bytes=800)
    for i in range(24):
        box.append("pump-1/metadata/state", f"s{i:03d}".encode())
        if i % 2 == 0:
            box.append("pump-1/metadata/telemetry", f"b{i:03d}".encode(), append_only=True)
    assert box.compactions >= 1 and box.dropped == 0
    buckets = [f"b{i:03d}".encode() for i in range(0, 24, 2)]
    kept = payloads(box)
    assert [p for p in kept if p.startswith(b"b")] == buckets
    states = [p for p in kept if p.startswith(b"s")]
    assert states[-1] == b"s023" and len(states) < 24  # older state writes merged away
    box.close()
    again = DiskOutbox(tmp_path, segment_bytes=400, max_bytes=800)
    assert [e.append_only for e in again.peek(100)] == [p.startswith(b"b") for p in kept]
    again.append("pump-1/metadata/state", b"s024")  # over the cap: compacts again
    assert [p for p in payloads(again) if p.startswith(b"b")] == buckets


def test_an_outbox_full_of_facts_drops_the_oldest_facts_first_and_counts_them(
    tmp_path: Path,
) -> None:
    box = DiskOutbox(tmp_path, segment_bytes=300, max_bytes=600)
    box.append("pump-1/desired/speed", b"d000")  # the oldest record: a state write
    for i in range(60):
        box.append("pump-1/metadata/telemetry", f"b{i:03d}".encode(), append_only=True)
        box.append(f"pump-{i % 3}/metadata/state", f"s{i:03d}".encode())
    kept = payloads(box)
    facts = [p for p in kept if p.startswith(b"b")]
    assert box.dropped == 60 - len(facts) > 0  # every loss counted, buckets only
    assert facts == [f"b{i:03d}".encode() for i in range(60 - len(facts), 60)]  # the newest
    assert b"d000" in kept  # each property's newest value stays
    assert {b"s057", b"s058", b"s059"} <= set(kept)
    assert box.pending == len(kept) and box.pending_bytes <= 600
