"""Last-writer-wins registers for twin properties, keeping a few recent writes.

A :class:`Write` sets one property (:class:`PropertyKey`: twin, kind, name) to a JSON value
at a :class:`Stamp`, and remembers ``base``, the stamp of the value its writer held for the
property when it wrote (``None`` if none). A register is the set of the ``keep`` newest
writes it has seen; its value is the newest of them. Taking the ``keep`` newest of a union is
commutative, associative and idempotent, so registers that saw the same writes in any order,
with any duplicates, hold the same set.

The kept writes also say which writes were lost to a concurrent one: a write older than the
winner whose stamp the winner's writer had not seen (``loser.stamp > winner.base``) is a
:class:`Conflict`. Because the conflicts are derived from the kept set alone, every replica
reports the same ones; a losing write pushed out by ``keep`` newer writes is forgotten.

>>> k = PropertyKey("pump-1", "desired", "speed_rpm")
>>> a = Write.make(k, 1500, Stamp(10, 0, "edge-a"), base=None)
>>> c = Write.make(k, 1400, Stamp(11, 0, "central"), base=None)
>>> reg = merge_writes(merge_writes((), (a,), 4), (c,), 4)
>>> winner(reg).value, [x.loser.value for x in conflicts(reg)]
(1400, [1500])
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from twinflow.operators.replication.hlc import Stamp

#: The kinds of replicated property.
KINDS = ("reported", "desired", "metadata")


@dataclass(frozen=True, order=True, slots=True)
class PropertyKey:
    """Which property of which twin: ``kind`` is reported, desired or metadata."""

    twin_id: str
    kind: str
    name: str
    #: The hash, computed once: a key is looked up in a register dict per merged write.
    _hash: int = field(init=False, repr=False, compare=False, default=0)

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[PropertyKey], tuple[str, str, str]]:
        """Pickled without the hash: string hashes differ between processes."""
        return (PropertyKey, (self.twin_id, self.kind, self.name))

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.twin_id, self.kind, self.name)))
        if not self.twin_id or not self.name:
            raise ValueError(f"a property key needs a twin id and a name, got {self}")
        if self.kind not in KINDS:
            raise ValueError(
                f"twin {self.twin_id!r} property {self.name!r}: kind {self.kind!r} is not one "
                f"of {', '.join(KINDS)}"
            )


#: Property keys seen lately by (twin, kind, name), shared by the decoders and the causal
#: check, so a key that comes again is found, not built, and compares by identity (bounded).
KEYS: dict[tuple[str, str, str], PropertyKey] = {}
KEYS_MAX = 200_000


def cached_key(twin_id: str, kind: str, name: str) -> PropertyKey:
    """The property key, from :data:`KEYS` when it is there (raises as PropertyKey does)."""
    slot = (twin_id, kind, name)
    key = KEYS.get(slot)
    if key is None:
        if len(KEYS) >= KEYS_MAX:
            KEYS.clear()
        key = KEYS[slot] = PropertyKey(twin_id, kind, name)
    return key


def canonical(value: Any) -> str:
    """The value as compact JSON with sorted keys (equal values give equal text)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError as exc:
        raise ValueError(f"a property value must be JSON (got {type(value).__name__})") from exc


@dataclass(frozen=True, slots=True)
class Write:
    """One write of one property; the value is held as canonical JSON text so that writes
    hash, compare and order deterministically."""

    key: PropertyKey
    stamp: Stamp
    value_json: str
    base: Stamp | None = None
    #: A causal write's dependencies: ``(property name, stamp)`` of the value each other
    #: property of the same twin and kind held at its writer when it wrote (empty for an
    #: eventual or strong write; see :mod:`~twinflow.operators.replication.causal`).
    deps: tuple[tuple[str, Stamp], ...] = ()
    #: :meth:`order` as one flat tuple, built once: merging compares writes many times, and
    #: a flat tuple compares in C where a (Stamp, str) pair calls Stamp's generated methods.
    _order: tuple[int, int, str, str] = field(
        init=False, repr=False, compare=False, hash=False, default=(0, 0, "", "")
    )

    def __post_init__(self) -> None:
        s = self.stamp
        object.__setattr__(self, "_order", (s.wall_ms, s.logical, s.replica, self.value_json))

    @classmethod
    def make(
        cls,
        key: PropertyKey,
        value: Any,
        stamp: Stamp,
        base: Stamp | None,
        deps: tuple[tuple[str, Stamp], ...] = (),
    ) -> Write:
        """A write of ``value`` (any JSON value)."""
        return cls(key, stamp, canonical(value), base, deps)

    @property
    def value(self) -> Any:
        """The written value, parsed from its JSON text."""
        return orjson.loads(self.value_json)

    def order(self) -> tuple[int, int, str, str]:
        """Sort key: the stamp's fields, then the value text (a tie only a faulty replica
        makes)."""
        return self._order


@dataclass(frozen=True, slots=True)
class Conflict:
    """A write that lost to a concurrent one: its writer had not seen the loser."""

    key: PropertyKey
    winner: Write
    loser: Write


def wins(a: Write, b: Write) -> bool:
    """Whether ``a`` beats ``b``: the larger (stamp, value) wins."""
    return a._order > b._order


def merge_writes(kept: Iterable[Write], new: Iterable[Write], keep: int) -> tuple[Write, ...]:
    """The ``keep`` newest distinct writes of both, newest first."""
    return tuple(sorted(set(kept) | set(new), key=Write.order, reverse=True)[:keep])


def insert_write(kept: tuple[Write, ...], new: Write, keep: int) -> tuple[Write, ...] | None:
    """``merge_writes(kept, (new,), keep)`` for one write, or ``None`` when it changes
    nothing (already kept, or older than the ``keep`` kept ones): the per-update fast path."""
    order = new._order
    for i, w in enumerate(kept):
        held = w._order
        if order == held:
            return None
        if order > held:
            return (*kept[:i], new, *kept[i : keep - 1])
    return (*kept, new) if len(kept) < keep else None


def winner(kept: tuple[Write, ...]) -> Write:
    """The register's value: its newest write (``kept`` is newest first and not empty)."""
    return kept[0]


def conflicts(kept: tuple[Write, ...]) -> list[Conflict]:
    """The kept writes that lost to the winner without its writer having seen them."""
    if not kept:
        return []
    top = kept[0]
    return [Conflict(top.key, top, w) for w in kept[1:] if top.base is None or w.stamp > top.base]
