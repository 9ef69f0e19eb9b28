"""A replica of twin properties: local writes, received writes and state-based merge.

:class:`TwinReplica` holds one register per (twin, kind, property) and a hybrid logical
clock. :meth:`TwinReplica.write` makes a local write (to send to the other replicas),
:meth:`TwinReplica.apply` takes one received from them, and :meth:`TwinReplica.merge` folds in
another replica's whole state. All three end in the same join, so replicas that have seen the
same writes hold the same state whatever the order, duplication or delay of delivery.

>>> edge = TwinReplica("edge-a", now_ms=lambda: 1_000)
>>> central = TwinReplica("central", now_ms=lambda: 1_002)
>>> w1 = edge.write("pump-1", "desired", "speed_rpm", 1500)
>>> w2 = central.write("pump-1", "desired", "speed_rpm", 1400)
>>> edge.apply(w2), central.apply(w1)
(<Applied.WON: 'won'>, <Applied.LOST: 'lost'>)
>>> edge.values() == central.values() == {("pump-1", "desired", "speed_rpm"): 1400}
True
>>> [c.loser.value for c in central.conflicts()]
[1500]
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from twinflow.operators.replication.causal import (
    DEFAULT_HOLD_MS,
    DEFAULT_MAX_HELD,
    CausalBuffer,
    Deps,
    Held,
    deps_of,
    missing,
)
from twinflow.operators.replication.hlc import DEFAULT_MAX_DRIFT_MS, HybridClock, wall_clock_ms
from twinflow.operators.replication.register import (
    Conflict,
    PropertyKey,
    Write,
    conflicts,
    insert_write,
    merge_writes,
)

#: Writes each register keeps besides its value, to tell which were lost in a conflict.
DEFAULT_KEEP = 4


class Applied(enum.Enum):
    """What a received write did to the replica."""

    WON = "won"  # it is the property's new value
    LOST = "lost"  # kept in the register's history; an older or concurrent write lost
    DUPLICATE = "duplicate"  # the register already held it: nothing changed
    STALE = "stale"  # older than every kept write: forgotten, nothing changed
    HELD = "held"  # a causal write waiting for its dependencies (see ``released``)


class TwinReplica:
    """The replicated properties of many twins, as seen by replica ``replica_id``.

    ``keep`` (>= 1) bounds the writes each register holds: its value plus ``keep - 1`` older
    ones, the history from which conflicts are reported. ``now_ms`` and ``max_drift_ms``
    configure the replica's :class:`HybridClock`. ``causal(key)`` says which local writes
    are causal (they carry their dependencies; default: none); received causal writes are
    held until their dependencies are exposed, at most ``hold_ms`` and ``max_held`` of them
    (:mod:`~twinflow.operators.replication.causal`), and what is let go later is collected
    for :meth:`take_released`.
    """

    def __init__(
        self,
        replica_id: str,
        keep: int = DEFAULT_KEEP,
        now_ms: Callable[[], int] = wall_clock_ms,
        max_drift_ms: int = DEFAULT_MAX_DRIFT_MS,
        causal: Callable[[PropertyKey], bool] | None = None,
        hold_ms: int = DEFAULT_HOLD_MS,
        max_held: int = DEFAULT_MAX_HELD,
    ) -> None:
        if keep < 1:
            raise ValueError(f"replica {replica_id!r}: keep must be >= 1, got {keep}")
        self.replica_id = replica_id
        self.keep = keep
        self.now_ms = now_ms
        self.max_drift_ms = max_drift_ms
        self.clock = HybridClock(replica_id, now_ms=now_ms, max_drift_ms=max_drift_ms)
        self._registers: dict[PropertyKey, tuple[Write, ...]] = {}
        self.causal = causal
        #: Property names per (twin, kind), for a causal write's dependencies.
        self._names: dict[tuple[str, str], set[str]] = {}
        self._buffer = CausalBuffer(hold_ms, max_held)
        self._waiting = self._buffer.by_write  # truthy while a causal write is held
        #: Held writes let go since the last :meth:`take_released`, with their outcome.
        self._released: list[tuple[Write, Applied, str]] = []

    # -- writes ---------------------------------------------------------------------------

    def write(self, twin_id: str, kind: str, name: str, value: Any) -> Write:
        """Set a property locally; returns the write to send to the other replicas."""
        key = PropertyKey(twin_id, kind, name)
        held = self._registers.get(key)
        base = held[0].stamp if held else None
        deps: Deps = ()
        if self.causal is not None and self.causal(key):
            deps = deps_of(self._registers, self._names.get((twin_id, kind), ()), key)
        new = Write.make(key, value, self.clock.tick(), base, deps)
        if not held:
            self._names.setdefault((twin_id, kind), set()).add(name)
        self._registers[key] = merge_writes(held or (), (new,), self.keep)
        if self._waiting:
            self._release(key.twin_id, kind)
        return new

    def apply(self, write: Write) -> Applied:
        """Take a write received from another replica (or a duplicate of any write).

        Raises :class:`~twinflow.operators.replication.hlc.ClockDriftError` (and changes
        nothing) when the write's stamp is too far ahead of the local clock.
        """
        self.clock.observe(write.stamp)
        if write.deps or self._waiting:  # the causal path
            return self._apply_one(write)
        held = self._registers.get(write.key, ())
        merged = insert_write(held, write, self.keep)
        if merged is None:
            return Applied.DUPLICATE if write in held else Applied.STALE
        if not held:
            self._names.setdefault((write.key.twin_id, write.key.kind), set()).add(write.key.name)
        self._registers[write.key] = merged
        return Applied.WON if merged[0] is write else Applied.LOST

    def _apply_one(self, write: Write) -> Applied:
        """Merge one write whose stamp the clock has observed."""
        held = self._registers.get(write.key, ())
        merged = insert_write(held, write, self.keep)
        if merged is None:
            return Applied.DUPLICATE if write in held else Applied.STALE
        if write.deps:
            if self._waiting and write in self._waiting:
                return Applied.DUPLICATE
            gap = missing(self._registers, write)
            if gap is not None:
                for r in self._buffer.hold(write, self.now_ms(), gap):
                    self._released.append((r.write, self._expose(r.write), r.why))
                return Applied.HELD
        if not held:
            self._names.setdefault((write.key.twin_id, write.key.kind), set()).add(write.key.name)
        self._registers[write.key] = merged
        if self._waiting:
            self._release(write.key.twin_id, write.key.kind)
        return Applied.WON if merged[0] is write else Applied.LOST

    def _expose(self, write: Write) -> Applied:
        """Merge a write let go by the buffer, whatever its dependencies."""
        held = self._registers.get(write.key, ())
        merged = insert_write(held, write, self.keep)
        if merged is None:
            return Applied.DUPLICATE if write in held else Applied.STALE
        if not held:
            self._names.setdefault((write.key.twin_id, write.key.kind), set()).add(write.key.name)
        self._registers[write.key] = merged
        return Applied.WON if merged[0] is write else Applied.LOST

    def _release(self, twin_id: str, kind: str) -> None:
        """Expose the held writes of a twin and kind that are ready, until none is."""
        while True:
            ready = self._buffer.ready(twin_id, kind, self._registers)
            if not ready:
                return
            for r in ready:
                self._released.append((r.write, self._expose(r.write), r.why))

    def take_released(self) -> list[tuple[Write, Applied, str]]:
        """The held writes let go since the last call (ready, or forced out after
        ``hold_ms``, checked now, or by overflow) with their outcome and why, oldest first."""
        for r in self._buffer.expired(self.now_ms()):
            self._released.append((r.write, self._expose(r.write), r.why))
            self._release(r.write.key.twin_id, r.write.key.kind)
        out, self._released = self._released, []
        return out

    def held(self) -> list[Held]:
        """The causal writes held back now, oldest first."""
        return self._buffer.held()

    def apply_many(self, writes: Sequence[Write]) -> list[Applied]:
        """:meth:`apply` for a batch: the clock observes the batch's newest stamp once.

        Raises :class:`~twinflow.operators.replication.hlc.ClockDriftError` (and changes
        nothing) when that stamp is too far ahead; apply the writes one by one then, to
        refuse only the drifted ones."""
        if not writes:
            return []
        self.clock.observe(max(w.stamp for w in writes))
        registers, keep = self._registers, self.keep
        out = []
        for write in writes:
            if write.deps or self._waiting:  # the causal path
                out.append(self._apply_one(write))
                continue
            held = registers.get(write.key, ())
            merged = insert_write(held, write, keep)
            if merged is None:
                out.append(Applied.DUPLICATE if write in held else Applied.STALE)
                continue
            if not held:
                self._names.setdefault((write.key.twin_id, write.key.kind), set()).add(
                    write.key.name
                )
            registers[write.key] = merged
            out.append(Applied.WON if merged[0] is write else Applied.LOST)
        return out

    def merge(self, other: TwinReplica) -> None:
        """Fold in another replica's whole state (state-based replication).

        Its newest stamp is checked against the drift bound first, so a refused merge
        changes nothing."""
        stamps = [w.stamp for writes in other._registers.values() for w in writes]
        if stamps:
            self.clock.observe(max(stamps))
        for key, writes in other._registers.items():
            if key not in self._registers:
                self._names.setdefault((key.twin_id, key.kind), set()).add(key.name)
            self._registers[key] = merge_writes(self._registers.get(key, ()), writes, self.keep)
        for twin_id, kind in self._buffer.twins():
            self._release(twin_id, kind)

    def drop_twin(self, twin_id: str) -> int:
        """Forget a retired twin's properties; returns how many were dropped."""
        gone = [k for k in self._registers if k.twin_id == twin_id]
        for k in gone:
            del self._registers[k]
            self._names.pop((twin_id, k.kind), None)
        return len(gone)

    # -- reading --------------------------------------------------------------------------

    def get(self, twin_id: str, kind: str, name: str) -> Write | None:
        """The write holding a property's value, or ``None``."""
        held = self._registers.get(PropertyKey(twin_id, kind, name))
        return held[0] if held else None

    def values(self) -> dict[tuple[str, str, str], Any]:
        """Every property's value by (twin, kind, name)."""
        return {(k.twin_id, k.kind, k.name): w[0].value for k, w in self._registers.items()}

    def twin(self, twin_id: str) -> dict[str, dict[str, Any]]:
        """One twin's properties as ``{kind: {name: value}}``."""
        out: dict[str, dict[str, Any]] = {}
        for k, w in sorted(self._registers.items()):
            if k.twin_id == twin_id:
                out.setdefault(k.kind, {})[k.name] = w[0].value
        return out

    def registers(self) -> dict[PropertyKey, tuple[Write, ...]]:
        """Each register's kept writes, newest first (a copy: the full replicated state)."""
        return dict(self._registers)

    def conflicts(self, twin_id: str | None = None) -> list[Conflict]:
        """The writes lost to a concurrent write, per the registers' kept history."""
        return [
            c
            for k, w in sorted(self._registers.items())
            if twin_id is None or k.twin_id == twin_id
            for c in conflicts(w)
        ]

    def writes(self) -> Iterator[Write]:
        """Every kept write, then every held one (the whole state, e.g. to send to a
        replica that starts empty, or to save: a held write is held again when loaded)."""
        for writes in self._registers.values():
            yield from writes
        for h in self._buffer.held():
            yield h.write


def converge(replicas: Iterable[TwinReplica]) -> bool:
    """Whether the replicas hold the same registers (values and kept history)."""
    states = [r.registers() for r in replicas]
    return all(s == states[0] for s in states[1:])


__all__ = ["DEFAULT_KEEP", "DEFAULT_MAX_DRIFT_MS", "Applied", "TwinReplica", "converge"]
