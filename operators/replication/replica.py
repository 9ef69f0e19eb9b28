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


class TwinReplica:
    """The replicated properties of many twins, as seen by replica ``replica_id``.

    ``keep`` (>= 1) bounds the writes each register holds: its value plus ``keep - 1`` older
    ones, the history from which conflicts are reported. ``now_ms`` and ``max_drift_ms``
    configure the replica's :class:`HybridClock`.
    """

    def __init__(
        self,
        replica_id: str,
        keep: int = DEFAULT_KEEP,
        now_ms: Callable[[], int] = wall_clock_ms,
        max_drift_ms: int = DEFAULT_MAX_DRIFT_MS,
    ) -> None:
        if keep < 1:
            raise ValueError(f"replica {replica_id!r}: keep must be >= 1, got {keep}")
        self.replica_id = replica_id
        self.keep = keep
        self.now_ms = now_ms
        self.max_drift_ms = max_drift_ms
        self.clock = HybridClock(replica_id, now_ms=now_ms, max_drift_ms=max_drift_ms)
        self._registers: dict[PropertyKey, tuple[Write, ...]] = {}

    # -- writes ---------------------------------------------------------------------------

    def write(self, twin_id: str, kind: str, name: str, value: Any) -> Write:
        """Set a property locally; returns the write to send to the other replicas."""
        key = PropertyKey(twin_id, kind, name)
        held = self._registers.get(key)
        base = held[0].stamp if held else None
        new = Write.make(key, value, self.clock.tick(), base)
        self._registers[key] = merge_writes(held or (), (new,), self.keep)
        return new

    def apply(self, write: Write) -> Applied:
        """Take a write received from another replica (or a duplicate of any write).

        Raises :class:`~twinflow.operators.replication.hlc.ClockDriftError` (and changes
        nothing) when the write's stamp is too far ahead of the local clock.
        """
        self.clock.observe(write.stamp)
        held = self._registers.get(write.key, ())
        merged = insert_write(held, write, self.keep)
        if merged is None:
            return Applied.DUPLICATE if write in held else Applied.STALE
        self._registers[write.key] = merged
        return Applied.WON if merged[0] is write else Applied.LOST

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
            held = registers.get(write.key, ())
            merged = insert_write(held, write, keep)
            if merged is None:
                out.append(Applied.DUPLICATE if write in held else Applied.STALE)
                continue
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
            self._registers[key] = merge_writes(self._registers.get(key, ()), writes, self.keep)

    def drop_twin(self, twin_id: str) -> int:
        """Forget a retired twin's properties; returns how many were dropped."""
        gone = [k for k in self._registers if k.twin_id == twin_id]
        for k in gone:
            del self._registers[k]
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
        """Every kept write (to send a whole state, e.g. to a replica that starts empty)."""
        for writes in self._registers.values():
            yield from writes


def converge(replicas: Iterable[TwinReplica]) -> bool:
    """Whether the replicas hold the same registers (values and kept history)."""
    states = [r.registers() for r in replicas]
    return all(s == states[0] for s in states[1:])


__all__ = ["DEFAULT_KEEP", "DEFAULT_MAX_DRIFT_MS", "Applied", "TwinReplica", "converge"]
