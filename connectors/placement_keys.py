"""Which worker of a Bytewax cluster holds a key's state, and which holds a sink partition.

Bytewax 0.21 places both deterministically, by two different functions (read from its Rust
source, ``src/timely.rs`` and ``src/operators.rs``, and checked against its real placement
by ``tests/flows/test_placement.py``):

- **keyed state**: a stateful step sends the item of key ``k`` to worker
  ``SipHash-1-3(k) % workers``, Rust's ``DefaultHasher`` (keys 0, 0) over the key's UTF-8
  bytes and the ``0xff`` that ends a hashed ``str`` (:func:`key_worker`);
- **partitions** of a ``FixedPartitionedSink`` (or source) that every worker lists: worker 0
  sorts the partition names and gives each, in turn, to the worker with the fewest so far
  (the lowest index on a tie), so the ``j``-th name in sorted order sits on worker
  ``j % workers`` (:func:`part_workers`); a sink's ``part_fn`` answers an index into that
  sorted list (taken modulo its length).

Worker ``i`` of process ``p`` with ``w`` workers per process is worker ``p * w + i``.

:class:`Placement` joins the two: ``part_index(key, n)`` is a sorted index of a partition
on the worker that holds ``key``'s state, so a sink with :class:`PlacedParts` writes a
twin's items where its state already is and nothing crosses to another process on the way
out. The sorted index ``j = w + workers * (adler32(key) % c)`` spreads the twins of worker
``w`` over its ``c`` partitions. Partition names do not change, only which twin goes to
which partition.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

_MASK = (1 << 64) - 1


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _MASK


def _round(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
    v0 = (v0 + v1) & _MASK
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 = (v2 + v3) & _MASK
    v3 = _rotl(v3, 16) ^ v2
    v0 = (v0 + v3) & _MASK
    v3 = _rotl(v3, 21) ^ v0
    v2 = (v2 + v1) & _MASK
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


def siphash13(data: bytes, k0: int = 0, k1: int = 0) -> int:
    """SipHash-1-3 of ``data`` as an unsigned 64-bit integer (one compression round per
    8-byte word, three finalisation rounds), as Rust's ``DefaultHasher`` and CPython compute it.

    >>> hex(siphash13(b""))
    '0xd1fba762150c532c'
    """
    v0 = k0 ^ 0x736F6D6570736575
    v1 = k1 ^ 0x646F72616E646F6D
    v2 = k0 ^ 0x6C7967656E657261
    v3 = k1 ^ 0x7465646279746573
    end = len(data) - len(data) % 8
    for i in range(0, end, 8):
        m = int.from_bytes(data[i : i + 8], "little")
        v3 ^= m
        v0, v1, v2, v3 = _round(v0, v1, v2, v3)
        v0 ^= m
    last = ((len(data) & 0xFF) << 56) | int.from_bytes(data[end:], "little")
    v3 ^= last
    v0, v1, v2, v3 = _round(v0, v1, v2, v3)
    v0 ^= last
    v2 ^= 0xFF
    for _ in range(3):
        v0, v1, v2, v3 = _round(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


@lru_cache(maxsize=65_536)
def key_worker(key: str, workers: int) -> int:
    """The worker whose stateful steps hold ``key``'s state in a cluster of ``workers``.

    >>> [key_worker(k, 2) for k in ("pump-001", "pump-002", "fan-7")]
    [0, 0, 1]
    """
    if workers < 1:
        raise ValueError(f"a cluster has at least one worker, got {workers}")
    return siphash13(key.encode() + b"\xff") % workers


def part_workers(parts: Sequence[str], workers: int) -> dict[str, int]:
    """The worker that builds each partition of a sink (or source) that every worker lists.

    >>> part_workers(["p0", "p1", "p10", "p2"], 2)
    {'p0': 0, 'p1': 1, 'p10': 0, 'p2': 1}
    """
    return {p: j % workers for j, p in enumerate(sorted(set(parts)))}


@dataclass(frozen=True)
class Placement:
    """Partitions on the worker of a key's state, in a cluster of ``workers`` workers.

    >>> p = Placement(2)
    >>> p.partitions(1), p.partitions(3)
    (2, 4)
    >>> key_worker("fan-7", 2), p.part_index("fan-7", 2), p.part_index("fan-7", 6) % 2
    (1, 1, 1)
    """

    workers: int

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"a cluster has at least one worker, got {self.workers}")

    def partitions(self, wanted: int) -> int:
        """``wanted`` partitions rounded up to a multiple of the workers (each gets some)."""
        return -(-max(wanted, 1) // self.workers) * self.workers

    def part_index(self, key: str, partitions: int) -> int:
        """The sorted index of a partition (of ``partitions``) placed on ``key``'s worker;
        when that worker has none (fewer partitions than workers), any partition by hash."""
        spread = zlib.adler32(key.encode())
        w = key_worker(key, self.workers)
        if w >= partitions:
            return spread % partitions
        mine = len(range(w, partitions, self.workers))
        return w + self.workers * (spread % mine)


class PlacedParts:
    """For a ``FixedPartitionedSink`` with ``partitions`` partitions that every worker lists:
    with ``placement`` set, ``part_fn`` sends a key's items to a partition on the worker that
    holds the key's state; without (the default), Bytewax's own ``adler32`` spreading."""

    placement: Placement | None = None
    partitions: int

    def part_fn(self, item_key: str) -> int:
        if self.placement is None:
            return zlib.adler32(item_key.encode())
        return self.placement.part_index(item_key, self.partitions)


def place(sink: object, placement: Placement | None) -> None:
    """Give a :class:`PlacedParts` sink ``placement`` and enough partitions for every worker
    to hold some; any other sink (and ``placement=None``) is left as it is."""
    if placement is None or not isinstance(sink, PlacedParts):
        return
    sink.placement = placement
    sink.partitions = placement.partitions(sink.partitions)


__all__ = ["PlacedParts", "Placement", "key_worker", "part_workers", "place", "siphash13"]
