"""A replica's state on disk, and the state transfer between replicas.

**Snapshot.** :func:`save_state` writes every kept write of a :class:`TwinReplica` (its whole
replicated state) as ``twin_update.v1`` lines to a file, replaced atomically (a temporary
file, synced, renamed), so a crash leaves the previous snapshot or the new one, never half
of one. :func:`load_state` merges such a file back: the merge is the replica's own, so
loading into a replica that already learned newer writes changes nothing they decide, and
its clock moves past every loaded stamp.

**State transfer.** A replica that starts empty asks its peers for their state with a
*state request*: a write of the reserved twin :data:`CONTROL_TWIN` that travels on the link
like any other (the outbox, the same topics and batches) but is never merged nor stored
(:func:`is_control`). A replica of the other role that receives it answers by appending
every kept write to its outbox (:func:`state_writes`): at most ``keep`` writes per property,
not the history of every write made, and safe to merge whatever the receiver holds already
(the merge is idempotent, commutative and associative).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from twinflow.operators.replication import (
    ClockDriftError,
    PropertyKey,
    TwinReplica,
    UpdateError,
    Write,
)
from twinflow.operators.replication.update import decode_update, encode_update

log = logging.getLogger(__name__)

#: The reserved twin id of control writes (state requests): never merged nor stored.
CONTROL_TWIN = "_replication"
#: The property name of a state request: ``state_request:<replica id>``.
REQUEST = "state_request"


def is_control(write: Write) -> bool:
    """Whether ``write`` is a control write (a state request), not a twin's property."""
    return write.key.twin_id == CONTROL_TWIN


def state_request(replica: TwinReplica, central: bool) -> Write:
    """A state request of ``replica`` (``central``: asked by the central replica, so the
    edges answer; else by an edge, so the central replica answers). Stamped by the replica's
    clock but not kept in it (the caller holds the replica's lock)."""
    rid = replica.replica_id
    key = PropertyKey(CONTROL_TWIN, "metadata", f"{REQUEST}:{rid}")
    return Write.make(key, {"replica": rid, "central": central}, replica.clock.tick(), None)


def answers(request: Write, replica_id: str, central: bool) -> bool:
    """Whether a replica (``central`` or an edge) answers ``request``: one of the other role
    asked, and not this replica itself."""
    value: Any = request.value
    if not request.key.name.startswith(f"{REQUEST}:") or not isinstance(value, dict):
        return False
    return value.get("replica") != replica_id and bool(value.get("central")) != central


def state_writes(replica: TwinReplica, lock: AbstractContextManager[Any]) -> list[Write]:
    """Every kept write of the replica, oldest first: copied under ``lock`` (the replica's),
    sorted after it is released, so receiving is held up only for the copy."""
    with lock:
        writes = list(replica.writes())
    writes.sort(key=Write.order)
    return writes


def save_state(writes: Iterable[Write], path: Path) -> int:
    """Write a snapshot of ``writes`` to ``path`` atomically; returns how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with tmp.open("wb") as f:
        for w in writes:
            f.write(encode_update(w) + b"\n")
            n += 1
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return n


def load_state(replica: TwinReplica, path: Path) -> int:
    """Merge the snapshot at ``path`` (if any) into ``replica``; returns the writes merged.

    A line that is not a write, or a write too far ahead of the clock (the machine's clock
    went back), is skipped and logged: a snapshot never stops a start. The caller holds the
    replica's lock (or nothing else uses the replica yet). A held causal write in the file is
    held again (its dependencies were not there when it was saved)."""
    if not path.exists():
        return 0
    writes, bad = [], 0
    for line in path.read_bytes().splitlines():
        if line.strip():
            try:
                writes.append(decode_update(line))
            except UpdateError:
                bad += 1
    try:
        replica.apply_many(writes)
    except ClockDriftError:
        kept = []
        for w in writes:
            try:
                replica.apply(w)
                kept.append(w)
            except ClockDriftError:
                bad += 1
        writes = kept
    replica.take_released()  # held causal writes the load itself let go: loaded, not received
    if bad:
        log.warning("replica %s: %d writes of %s skipped", replica.replica_id, bad, path)
    return len(writes)


__all__ = [
    "CONTROL_TWIN",
    "REQUEST",
    "answers",
    "is_control",
    "load_state",
    "save_state",
    "state_request",
    "state_writes",
]
