"""A bounded on-disk outbox: replicated updates wait here while the link is down.

Records are appended to segment files (``seg-<n>.out``) in one folder; each record is a
frame: length, CRC-32, the property key and the payload. A cursor file (``cursor``, replaced
atomically) holds the position up to which the receiver acknowledged. The sender reads from
the cursor with :meth:`DiskOutbox.peek`, sends, and calls :meth:`DiskOutbox.ack` once the
broker acknowledged; segments wholly before the cursor are deleted. After a crash the outbox
opens where the cursor was: a record sent but not yet acknowledged is sent again (the
receiver's merge is idempotent, so a resend changes nothing), and a record torn by the crash
at the end of the last segment is cut off.

**fsync policy.** ``fsync="always"`` syncs the segment after every append, so an update
:meth:`DiskOutbox.append` returned for survives a power loss; ``"interval"`` (the default)
syncs at most every ``fsync_interval_s`` and at close, so a power loss (not a process crash:
the data is in the OS page cache) may lose the updates of the last interval. The cursor
follows the same policy: written and synced at every acknowledgement with ``"always"``, at
most every ``fsync_interval_s`` (and at close) with ``"interval"``; a cursor left behind by a
crash only makes the outbox send some acknowledged records again, which the receivers merge
as duplicates.

**Overflow policy.** ``max_bytes`` caps the pending records. When an append would exceed
it, the outbox first *compacts*: it rewrites the pending records keeping only the newest per
property key, which loses no state (a last-writer-wins register only needs its newest write;
an older write of the same property by this replica is not sent, and so never reported as a
conflict). A record appended with ``append_only=True`` is a fact of its own, not a newer
value of a state (a telemetry bucket: each is a reading that no later bucket replaces), so
compaction keeps every such record. The flag is stored in the record's frame (the key
length's top bit), so the outbox needs no configuration to honour it after a reopen, and
whoever appends a record, who knows what it is, decides.

If the compacted records still exceed the cap, it drops records until the new one fits with
a twentieth of the cap to spare (so that a full outbox does not rewrite itself at every
append), and counts them in :attr:`DiskOutbox.dropped` (an exported metric): the edge keeps
working and the loss is visible. It drops the **oldest append-only records first**, then
the oldest state records. After compaction the state records are at most one per property,
a set bounded by the twins' properties that cannot be what keeps growing during a long cut;
the append-only records are. Dropping state first would free little, lose each property's
newest value (a raised alarm, a desired change, the answer a strong change waits for, a
state request: nothing sends these again until the property is written anew, some never),
and the oldest facts would go right after anyway. Dropping the oldest facts keeps the
current state whole and loses the oldest history, counted.

>>> import tempfile
>>> box = DiskOutbox(tempfile.mkdtemp())
>>> box.append("pump-1/desired/speed", b'{"v": 1}')
>>> [e.payload for e in box.peek(10)]
[b'{"v": 1}']
>>> box.ack(box.peek(10)); box.pending
0
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from twinflow.core.errors import TwinflowError

log = logging.getLogger(__name__)

#: Frame header: payload length, CRC-32 of key length + key + payload, key length (its top
#: bit: an append-only record).
HEADER = struct.Struct(">IIH")
APPEND_ONLY_BIT = 0x8000
MAX_KEY = APPEND_ONLY_BIT - 1
FSYNC_POLICIES = ("always", "interval")


class OutboxError(TwinflowError):
    """The outbox cannot be used: a bad setting, a record too large, a broken folder."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One pending record; ``end`` is the position (segment, offset) just after it;
    ``append_only``: compaction keeps it beside newer records of its key."""

    key: str
    payload: bytes
    end: tuple[int, int]
    append_only: bool = False

    @property
    def size(self) -> int:
        """Its frame's bytes."""
        return HEADER.size + len(self.key.encode()) + len(self.payload)


def _segment_name(n: int) -> str:
    return f"seg-{n:08d}.out"


def _read_frames(path: Path, offset: int, limit: int = -1) -> tuple[list[Entry], int]:
    """Up to ``limit`` (-1: all) whole frames of a segment from ``offset``, and where the
    last of them ends; a frame cut short or failing its CRC ends the reading."""
    n = int(path.stem.split("-")[1])
    out: list[Entry] = []
    pos = offset
    with path.open("rb") as f:
        f.seek(offset)
        while limit < 0 or len(out) < limit:
            head = f.read(HEADER.size)
            if len(head) < HEADER.size:
                break
            length, crc, flagged = HEADER.unpack(head)
            klen = flagged & MAX_KEY
            body = f.read(klen + length)
            if len(body) < klen + length or zlib.crc32(head[-2:] + body) != crc:
                break
            pos += HEADER.size + len(body)
            key = body[:klen].decode()
            out.append(Entry(key, body[klen:], (n, pos), bool(flagged & APPEND_ONLY_BIT)))
    return out, pos


def _frame(key: bytes, payload: bytes, append_only: bool = False) -> bytes:
    flagged = len(key) | (APPEND_ONLY_BIT if append_only else 0)
    klen = flagged.to_bytes(2, "big")
    return HEADER.pack(len(payload), zlib.crc32(klen + key + payload), flagged) + key + payload


class DiskOutbox:
    """Append-only segments in ``directory`` with an acknowledged cursor; thread-safe.

    ``segment_bytes`` is the size at which a new segment starts; ``max_bytes`` caps the
    pending records (the overflow policy is in the module docstring); ``fsync`` is
    ``"always"`` or ``"interval"`` (every ``fsync_interval_s`` seconds at most).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        segment_bytes: int = 4 * 1024 * 1024,
        max_bytes: int = 256 * 1024 * 1024,
        fsync: str = "interval",
        fsync_interval_s: float = 1.0,
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise OutboxError(f"outbox fsync must be one of {FSYNC_POLICIES}, got {fsync!r}")
        if not 0 < segment_bytes <= max_bytes:
            raise OutboxError(
                f"outbox needs 0 < segment_bytes <= max_bytes, got {segment_bytes} and {max_bytes}"
            )
        if fsync_interval_s < 0:
            raise OutboxError(f"outbox fsync_interval_s must be >= 0, got {fsync_interval_s}")
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.fsync_interval_s = fsync_interval_s
        #: Records dropped by the overflow policy since this outbox was opened.
        self.dropped = 0
        #: Compactions run by the overflow policy since this outbox was opened.
        self.compactions = 0
        self._lock = threading.Lock()
        self._last_sync = self._cursor_synced = time.monotonic()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutboxError(f"outbox folder {self.directory} cannot be created: {exc}") from exc
        self._open()

    # -- opening ----------------------------------------------------------------------------

    def _segments(self) -> list[int]:
        return sorted(int(p.stem.split("-")[1]) for p in self.directory.glob("seg-*.out"))

    def _open(self) -> None:
        cursor_file = self.directory / "cursor"
        segments = self._segments()
        if cursor_file.exists():
            seg, off = (int(x) for x in cursor_file.read_text().split())
        else:
            seg, off = (segments[0] if segments else 1), 0
        for n in segments:
            if n < seg:
                (self.directory / _segment_name(n)).unlink(missing_ok=True)
        self._cursor = (seg, off)
        self._pending = 0
        self._pending_bytes = 0
        live = [n for n in self._segments() if n >= seg] or [seg]
        for n in live:
            path = self.directory / _segment_name(n)
            path.touch()
            start = off if n == seg else 0
            frames, good_end = _read_frames(path, start)
            if good_end < path.stat().st_size:  # a record torn by a crash: cut it off
                with path.open("r+b") as f:
                    f.truncate(good_end)
                    os.fsync(f.fileno())
            self._pending += len(frames)
            self._pending_bytes += good_end - start
        self._tail = live[-1]
        self._file = (self.directory / _segment_name(self._tail)).open("ab")

    # -- writing ----------------------------------------------------------------------------

    def append(self, key: str, payload: bytes, *, append_only: bool = False) -> None:
        """Keep one record for sending; returns once it is written (and synced, per policy).
        ``append_only``: a fact that compaction keeps (see the module docstring)."""
        k = key.encode()
        frame_len = HEADER.size + len(k) + len(payload)
        if len(k) > MAX_KEY or frame_len > self.max_bytes:
            raise OutboxError(
                f"outbox record for {key!r} is {frame_len} bytes, more than max_bytes "
                f"({self.max_bytes}) or a key of over {MAX_KEY} bytes"
            )
        with self._lock:
            if self._pending_bytes + frame_len > self.max_bytes:
                self._make_room(frame_len)
            if self._file.tell() + frame_len > self.segment_bytes and self._file.tell() > 0:
                self._roll()
            self._file.write(_frame(k, payload, append_only))
            self._file.flush()
            self._pending += 1
            self._pending_bytes += frame_len
            now = time.monotonic()
            if self.fsync == "always" or now - self._last_sync >= self.fsync_interval_s:
                os.fsync(self._file.fileno())
                self._last_sync = now

    def _roll(self) -> None:
        os.fsync(self._file.fileno())
        self._file.close()
        self._tail += 1
        self._file = (self.directory / _segment_name(self._tail)).open("ab")

    def _all_pending(self) -> list[Entry]:
        out: list[Entry] = []
        seg, off = self._cursor
        for n in self._segments():
            if n >= seg:
                out += _read_frames(self.directory / _segment_name(n), off if n == seg else 0)[0]
        return out

    def _make_room(self, need: int) -> None:
        """The overflow policy: compact to every append-only record and the newest other
        record per key; then, if that is not enough, drop the oldest append-only records,
        then the oldest others, down to a twentieth of the cap to spare."""
        entries = self._all_pending()
        newest: dict[str, int] = {e.key: i for i, e in enumerate(entries) if not e.append_only}
        kept = [e for i, e in enumerate(entries) if e.append_only or newest[e.key] == i]
        self.compactions += 1
        size = sum(e.size for e in kept)
        if size + need > self.max_bytes:
            limit = self.max_bytes - self.max_bytes // 20
            order = [e for e in kept if e.append_only] + [e for e in kept if not e.append_only]
            gone: set[int] = set()
            for e in order:
                if size + need <= limit:
                    break
                gone.add(id(e))
                size -= e.size
            self.dropped += len(gone)
            facts = sum(1 for e in kept if e.append_only and id(e) in gone)
            log.warning(
                "replication outbox %s is full (%d bytes): dropped the %d oldest records "
                "(%d append-only, e.g. telemetry buckets; %d state writes), %d since it opened",
                self.directory,
                self.max_bytes,
                len(gone),
                facts,
                len(gone) - facts,
                self.dropped,
            )
            kept = [e for e in kept if id(e) not in gone]
        self._rewrite(kept)

    def _rewrite(self, kept: list[Entry]) -> None:
        """Replace the pending records by ``kept`` in a new segment, crash-safely: the new
        segment is complete before the cursor moves to it (a crash in between resends)."""
        self._file.close()
        old = self._segments()
        self._tail = old[-1] + 1 if old else self._tail + 1
        tmp = self.directory / "compact.tmp"
        with tmp.open("wb") as f:
            for e in kept:
                f.write(_frame(e.key.encode(), e.payload, e.append_only))
            f.flush()
            os.fsync(f.fileno())
        tmp.rename(self.directory / _segment_name(self._tail))
        self._write_cursor((self._tail, 0))
        for n in old:
            (self.directory / _segment_name(n)).unlink(missing_ok=True)
        self._file = (self.directory / _segment_name(self._tail)).open("ab")
        self._pending = len(kept)
        self._pending_bytes = self._file.tell()

    # -- reading and acknowledging ---------------------------------------------------------

    def peek(self, limit: int) -> list[Entry]:
        """Up to ``limit`` pending records, oldest first (they stay until acknowledged)."""
        with self._lock:
            self._file.flush()
            out: list[Entry] = []
            seg, off = self._cursor
            for n in self._segments():
                if n < seg or len(out) >= limit:
                    continue
                path = self.directory / _segment_name(n)
                out += _read_frames(path, off if n == seg else 0, limit - len(out))[0]
            return out

    def ack(self, entries: Sequence[Entry]) -> None:
        """The receiver has these records, as :meth:`peek` returned them (a prefix of the
        pending ones, oldest first): forget them. Records already forgotten are skipped."""
        with self._lock:
            fresh = [e for e in entries if e.end > self._cursor]
            if not fresh:
                return
            self._cursor = fresh[-1].end
            self._pending -= len(fresh)
            self._pending_bytes -= sum(e.size for e in fresh)
            now = time.monotonic()
            if self.fsync == "always" or now - self._cursor_synced >= self.fsync_interval_s:
                self._write_cursor(self._cursor)

    def _write_cursor(self, cursor: tuple[int, int]) -> None:
        """Persist the cursor (synced) and delete the segments wholly before it."""
        tmp = self.directory / "cursor.tmp"
        with tmp.open("w") as f:
            f.write(f"{cursor[0]} {cursor[1]}\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.directory / "cursor")
        self._cursor = cursor
        self._cursor_synced = time.monotonic()
        for n in self._segments():
            if n < cursor[0]:
                (self.directory / _segment_name(n)).unlink(missing_ok=True)

    # -- state ------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Records not yet acknowledged."""
        return self._pending

    @property
    def pending_bytes(self) -> int:
        """Bytes of the records not yet acknowledged (frames included)."""
        return self._pending_bytes

    def close(self) -> None:
        """Sync and close the tail segment."""
        with self._lock:
            if not self._file.closed:
                self._write_cursor(self._cursor)
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
