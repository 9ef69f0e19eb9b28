"""The compact batch document, ``twinflow.twin_updates`` version 2: many writes, one JSON.

``twin_update.v1`` spends most of a receiver's time on field names, nested stamps and a
uuid5 to check per write. A link sends this instead: one document per message (MQTT) or per
twin and batch (Kafka), each write one row, the fields by position::

    {"schema": "twinflow.twin_updates", "version": 2, "updates": [
      [twin_id, kind, property, value, wall_ms, logical, replica,
       base_wall_ms, base_logical, base_replica], ...]}

(the base fields are ``null`` for a write made with no value held). A causal write's row has
an eleventh field, its dependencies ``[[property, wall_ms, logical, replica], ...]``
(:mod:`~twinflow.operators.replication.causal`); other rows stay ten. The update id is not
sent: it is derived from the row (:func:`~twinflow.operators.replication.update.update_id`)
wherever one is needed. Receivers still accept ``twin_update.v1`` lines (a peer of an older
version, an outbox written before), see :func:`decode_payload`.

>>> from twinflow.operators.replication.hlc import Stamp
>>> from twinflow.operators.replication.register import PropertyKey, Write
>>> w = Write.make(PropertyKey("pump-1", "desired", "speed"), 1500, Stamp(7, 0, "e"), None)
>>> decode_payload(batch([encode_row(w)])) == [w]
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from twinflow.operators.replication.register import KEYS, KEYS_MAX, KINDS, PropertyKey, Write
from twinflow.operators.replication.update import (
    UpdateError,
    decode_deps,
    decode_updates,
    stamp_of,
)

SCHEMA = "twinflow.twin_updates"
VERSION = 2
_HEAD = b'{"schema":"twinflow.twin_updates","version":2,"updates":['


def encode_row(write: Write) -> bytes:
    """One write as a row of the batch document (JSON array bytes)."""
    k, s, b = write.key, write.stamp, write.base
    head = orjson.dumps([k.twin_id, k.kind, k.name])[:-1]
    base = b"null,null,null" if b is None else orjson.dumps([b.wall_ms, b.logical, b.replica])[1:-1]
    stamp = orjson.dumps([s.wall_ms, s.logical, s.replica])[1:-1]
    if write.deps:
        deps = orjson.dumps([[n, d.wall_ms, d.logical, d.replica] for n, d in write.deps])
        return b"%b,%b,%b,%b,%b]" % (head, write.value_json.encode(), stamp, base, deps)
    return b"%b,%b,%b,%b]" % (head, write.value_json.encode(), stamp, base)


def batch(rows: Sequence[bytes]) -> bytes:
    """The batch document of some rows (as :func:`encode_row` made them)."""
    return _HEAD + b",".join(rows) + b"]}"


def is_batch(payload: bytes) -> bool:
    """Whether a payload is a batch document (else: ``twin_update.v1`` lines)."""
    return payload.startswith(_HEAD)


def _key(twin: Any, kind: Any, name: Any) -> PropertyKey | None:
    slot = (twin, kind, name)
    try:
        key = KEYS.get(slot)
    except TypeError:  # an unhashable field: not a valid row
        return None
    if key is not None:
        return key
    if type(twin) is not str or type(name) is not str or not twin or not name:
        return None
    if kind not in KINDS:
        return None
    if len(KEYS) >= KEYS_MAX:
        KEYS.clear()
    key = KEYS[slot] = PropertyKey(twin, kind, name)
    return key


_NO_DEPS = object()  # a ten-field row's (absent) dependencies


def decode_row(row: Any) -> Write:
    """One row's write; :class:`UpdateError` says what is wrong with it."""
    n = len(row) if type(row) is list else 0
    raw_deps: Any = _NO_DEPS
    if n == 10:
        twin, kind, name, value, wall, logical, replica, b_wall, b_logical, b_replica = row
    elif n == 11:
        twin, kind, name, value, wall, logical, replica, b_wall, b_logical, b_replica, raw_deps = (
            row
        )
    else:
        raise UpdateError(f"twin updates v2: a row must be a list of 10 or 11 fields, got {row!r}")
    key = _key(twin, kind, name)
    if key is None:
        raise UpdateError(
            f"twin updates v2: row {row[:3]!r}: twin id and property must be non-empty "
            f"strings and kind one of {', '.join(KINDS)}"
        )
    stamp = stamp_of(wall, logical, replica)
    if stamp is None:
        raise UpdateError(f"twin updates v2: row {row[:3]!r}: stamp {row[4:7]!r} is not valid")
    base = None
    if b_wall is not None or b_logical is not None or b_replica is not None:
        base = stamp_of(b_wall, b_logical, b_replica)
        if base is None or (b_wall, b_logical, b_replica) >= (wall, logical, replica):
            raise UpdateError(
                f"twin updates v2: row {row[:3]!r}: base {row[7:]!r} is not a stamp older "
                f"than {stamp.text()}"
            )
    if raw_deps is _NO_DEPS:
        return Write.make(key, value, stamp, base)
    return Write.make(key, value, stamp, base, decode_deps(raw_deps, name, stamp))


def decode_batch(payload: bytes) -> list[Write | UpdateError]:
    """Every row of a batch document, each a write or the error that refuses it; a document
    that cannot be read at all is one error."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return [UpdateError(f"twin updates v2: not JSON ({exc})")]
    rows = doc.get("updates") if type(doc) is dict else None
    if (
        type(rows) is not list
        or doc.get("schema") != SCHEMA
        or doc.get("version") != VERSION
        or len(doc) != 3
    ):
        return [UpdateError("twin updates v2: expected {schema, version: 2, updates: [rows]}")]
    out: list[Write | UpdateError] = []
    for row in rows:
        try:
            out.append(decode_row(row))
        except UpdateError as exc:
            out.append(exc)
    return out


def decode_payload(payload: bytes) -> list[Write | UpdateError]:
    """A received payload: a batch document, or ``twin_update.v1`` documents, one per line."""
    return decode_batch(payload) if is_batch(payload) else decode_updates(payload)


__all__ = ["batch", "decode_batch", "decode_payload", "decode_row", "encode_row", "is_batch"]
