"""Sync status per twin and property: in sync, pending (with its lag), conflict, link down.

A :class:`SyncTracker` follows the replica's writes. A local write is *pending* until it is
confirmed: for ``eventual`` and ``causal`` properties once the broker has it (the link's
``sent``), for ``strong`` ones once the owning edge has accepted it through its command
loop (:meth:`SyncTracker.accepted`). A write received from another replica is in sync when
merged; its lag is the time from its stamp to the merge. A property whose register holds a
write lost to a concurrent one is in *conflict*; a pending property while the link is down
is *link_down* with the time the link went down. A received causal write the replica holds
back until its dependencies arrive makes its property *pending* too, its lag counted from
the write's stamp and ``waiting_for`` naming the dependency.

>>> t = SyncTracker("central")
>>> from twinflow.operators.replication import TwinReplica
>>> r = TwinReplica("central", now_ms=lambda: 1_000)
>>> w = r.write("pump-1", "desired", "flow_setpoint", 120.0)
>>> t.wrote(w, "strong", now_ms=1_000)
>>> t.link(True, now_ms=1_000)
>>> [(s.state.value, s.lag_ms) for s in t.status(r, now_ms=1_250)]
[('pending', 250)]
>>> t.accepted(w.key, update_id(w), now_ms=1_300)
True
>>> [(s.state.value, s.lag_ms) for s in t.status(r, now_ms=1_400)]
[('in_sync', 300)]
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass
from typing import Any

from twinflow.operators.replication.causal import Held
from twinflow.operators.replication.register import PropertyKey, Write, conflicts
from twinflow.operators.replication.replica import TwinReplica
from twinflow.operators.replication.update import update_id


class SyncState(enum.StrEnum):
    """Where one replicated property stands."""

    IN_SYNC = "in_sync"
    PENDING = "pending"
    CONFLICT = "conflict"
    LINK_DOWN = "link_down"


@dataclass(frozen=True, slots=True)
class PropertySync:
    """The sync status of one property as this replica sees it (``replication_sync.v1``).

    ``lag_ms``: while pending, how long its newest write has waited; in sync, how long that
    write took to be confirmed or to arrive. ``link_down_since_ms``: epoch ms at which the
    link went down, while it is down (else ``None``).
    """

    replica: str
    twin_id: str
    kind: str
    prop: str
    state: SyncState
    consistency: str
    lag_ms: int
    update_id: str | None
    conflicts: int = 0
    link_down_since_ms: int | None = None
    at_ms: int = 0
    #: A held causal write's missing dependency (``kind/property@stamp``), else ``None``.
    waiting_for: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The status as a ``twinflow.replication_sync`` version 1 document
        (``waiting_for`` only while a causal write is held)."""
        doc = self._doc()
        if self.waiting_for is not None:
            doc["waiting_for"] = self.waiting_for
        return doc

    def _doc(self) -> dict[str, Any]:
        return {
            "schema": "twinflow.replication_sync",
            "version": 1,
            "replica": self.replica,
            "twin_id": self.twin_id,
            "kind": self.kind,
            "property": self.prop,
            "state": self.state.value,
            "consistency": self.consistency,
            "lag_ms": self.lag_ms,
            "update_id": self.update_id,
            "conflicts": self.conflicts,
            "link_down_since_ms": self.link_down_since_ms,
            "at_ms": self.at_ms,
        }


@dataclass(slots=True)
class _Track:
    update_id: str
    consistency: str
    written_ms: int
    confirmed_ms: int | None


class SyncTracker:
    """The sync status of the properties one replica wrote or received; not thread-safe
    (its owner serialises calls)."""

    def __init__(self, replica_id: str) -> None:
        self.replica_id = replica_id
        self._tracks: dict[PropertyKey, _Track] = {}
        self._down_since: int | None = None

    def wrote(self, write: Write, consistency: str, now_ms: int) -> None:
        """A local write: pending until :meth:`sent` (or, if strong, :meth:`accepted`)."""
        self._tracks[write.key] = _Track(update_id(write), consistency, now_ms, None)

    def sent(self, key: PropertyKey, uid: str, now_ms: int) -> None:
        """The broker has write ``uid`` of ``key``: an eventual or causal write is confirmed."""
        t = self._tracks.get(key)
        if t is not None and t.update_id == uid and t.consistency != "strong":
            t.confirmed_ms = t.confirmed_ms or now_ms

    def accepted(self, key: PropertyKey, uid: str, now_ms: int) -> bool:
        """The owning edge accepted write ``uid`` of ``key``; True if it was the newest
        write of the property (then it is confirmed, whatever its consistency)."""
        t = self._tracks.get(key)
        if t is None or t.update_id != uid:
            return False
        t.confirmed_ms = t.confirmed_ms or now_ms
        return True

    def received(self, write: Write, now_ms: int, consistency: str = "eventual") -> None:
        """A write merged from another replica that became the property's value."""
        self._tracks[write.key] = _Track(
            update_id(write), consistency, write.stamp.wall_ms, max(now_ms, 0)
        )

    def pending_since(self, key: PropertyKey) -> int | None:
        """When the property's newest unconfirmed write was made (``None``: confirmed)."""
        t = self._tracks.get(key)
        return None if t is None or t.confirmed_ms is not None else t.written_ms

    def link(self, up: bool, now_ms: int) -> None:
        """The link's state now; the first time it is seen down starts ``link down since``."""
        if up:
            self._down_since = None
        elif self._down_since is None:
            self._down_since = now_ms

    @property
    def link_down_since_ms(self) -> int | None:
        """Epoch ms since which the link is down, or ``None`` while it is up."""
        return self._down_since

    def status(self, replica: TwinReplica, now_ms: int) -> list[PropertySync]:
        """Every tracked property's status, and every property with a held causal write, in
        key order."""
        registers = replica.registers()
        held = {h.write.key: h for h in replica.held()}  # oldest first: the newest stays
        out = []
        for key in sorted(self._tracks.keys() | held.keys()):
            lost = len(conflicts(registers.get(key, ())))
            h = held.get(key)
            if h is not None:
                out.append(self._held(h, lost, now_ms))
                continue
            t = self._tracks[key]
            if t.confirmed_ms is None:
                lag = now_ms - t.written_ms
                state = SyncState.PENDING if self._down_since is None else SyncState.LINK_DOWN
            else:
                lag = t.confirmed_ms - t.written_ms
                state = SyncState.CONFLICT if lost else SyncState.IN_SYNC
            out.append(
                PropertySync(
                    self.replica_id,
                    key.twin_id,
                    key.kind,
                    key.name,
                    state,
                    t.consistency,
                    max(lag, 0),
                    t.update_id,
                    lost,
                    self._down_since,
                    now_ms,
                )
            )
        return out

    def _held(self, h: Held, lost: int, now_ms: int) -> PropertySync:
        k, w = h.write.key, h.write
        return PropertySync(
            self.replica_id, k.twin_id, k.kind, k.name, SyncState.PENDING, "causal",
            max(now_ms - w.stamp.wall_ms, 0), update_id(w), lost, self._down_since, now_ms,
            h.reason(),
        )  # fmt: skip


def summary(statuses: list[PropertySync]) -> tuple[Counter[str], int]:
    """Properties per state, and the largest lag of a pending (or link-down) property."""
    counts = Counter(s.state.value for s in statuses)
    waiting = [s.lag_ms for s in statuses if s.state in (SyncState.PENDING, SyncState.LINK_DOWN)]
    return counts, max(waiting, default=0)


__all__ = ["PropertySync", "SyncState", "SyncTracker", "summary"]
