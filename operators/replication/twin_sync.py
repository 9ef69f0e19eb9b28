"""Sync status in the twin-state documents: a twin's states carry its properties' status.

The replication node takes the sync status of every property it tracks every few seconds
(:class:`~twinflow.operators.replication.status.PropertySync`, one per property);
:class:`TwinSync` folds them, per twin, into the twin's states as the ``replication`` object
of twin-state JSON (``twin_state.v3``, :func:`sync_doc`). A state is stamped with the newest
status of each property; when a property's status changes (its state, consistency, newest
write, conflicts, the link going down, what a held write waits for), the twin's newest state
is emitted again with it (same ``time``). A status whose only change is its lag re-emits
nothing: ``lag_ms`` is as of ``as_of``.

>>> from datetime import UTC, datetime
>>> from twinflow.core.records import SyncStatus
>>> from twinflow.operators.replication.status import SyncState
>>> t = TwinSync()
>>> at = datetime(2026, 1, 1, tzinfo=UTC)
>>> state = TwinState("pump-1", "pump", at, SyncStatus.SYNCHRONIZED, {})
>>> t.update(state)[0].sync is None
True
>>> s = PropertySync("edge-a", "pump-1", "desired", "speed", SyncState.PENDING, "strong",
...                  250, None, at_ms=1_767_225_600_000)
>>> [x.sync["properties"]["speed"]["state"] for x in t.update(s)]
['pending']
>>> t.update(s)  # nothing changed
[]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from twinflow.core.records import TwinState
from twinflow.core.times import iso, utc
from twinflow.operators.replication.status import PropertySync


def _name(s: PropertySync) -> str:
    """A desired property by its name, any other kind as ``kind/name``."""
    return s.prop if s.kind == "desired" else f"{s.kind}/{s.prop}"


def _when(ms: int | None) -> str | None:
    return None if ms is None else iso(utc(ms / 1000))


def sync_doc(statuses: Mapping[str, PropertySync]) -> dict[str, Any]:
    """The ``replication`` object of a twin state: the replica, as of when, since when the
    link is down (``null`` while up), and each property's status."""
    newest = max(statuses.values(), key=lambda s: s.at_ms)
    return {
        "replica": newest.replica,
        "as_of": _when(newest.at_ms),
        "link_down_since": _when(newest.link_down_since_ms),
        "properties": {
            name: {
                "kind": s.kind,
                "state": s.state.value,
                "consistency": s.consistency,
                "lag_ms": s.lag_ms,
                "update_id": s.update_id,
                "conflicts": s.conflicts,
                "waiting_for": s.waiting_for,
            }
            for name, s in sorted(statuses.items())
        },
    }


def _signature(s: PropertySync) -> tuple[Any, ...]:
    """What a change of re-emits a state for (not the lag, not the time)."""
    return (s.state, s.consistency, s.update_id, s.conflicts, s.link_down_since_ms, s.waiting_for)


@dataclass
class TwinSync:
    """One twin's newest state and its properties' newest sync status (the step's state)."""

    statuses: dict[str, PropertySync] = field(default_factory=dict)
    state: TwinState | None = None

    def update(self, item: TwinState | PropertySync) -> list[TwinState]:
        """A state, stamped; or a status, which re-emits the newest state if it changed."""
        if isinstance(item, TwinState):
            self.state = item
            return [self._stamped(item)]
        name = _name(item)
        old = self.statuses.get(name)
        self.statuses[name] = item
        if self.state is None or (old is not None and _signature(old) == _signature(item)):
            return []
        return [self._stamped(self.state)]

    def _stamped(self, state: TwinState) -> TwinState:
        return replace(state, sync=sync_doc(self.statuses) if self.statuses else None)


__all__ = ["TwinSync", "sync_doc"]
