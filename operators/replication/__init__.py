"""Replicated twin state: hybrid logical clocks, last-writer-wins registers and a twin replica.

The pieces an edge and a central twinflow instance share to keep twin properties (reported,
desired, metadata) converging however updates are delayed, duplicated or reordered; the
transports and the on-disk outbox are in :mod:`twinflow.connectors.replication`.
"""

from twinflow.operators.replication.hlc import ClockDriftError, HybridClock, Stamp
from twinflow.operators.replication.register import Conflict, PropertyKey, Write, wins
from twinflow.operators.replication.replica import Applied, TwinReplica
from twinflow.operators.replication.update import UpdateError, decode_update, encode_update

__all__ = [
    "Applied",
    "ClockDriftError",
    "Conflict",
    "HybridClock",
    "PropertyKey",
    "Stamp",
    "TwinReplica",
    "UpdateError",
    "Write",
    "decode_update",
    "encode_update",
    "wins",
]
