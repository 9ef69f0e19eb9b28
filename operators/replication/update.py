"""The replicated update document, ``twinflow.twin_update`` version 1 (JSON).

One document carries one :class:`Write` between replicas; its JSON Schema is
``operators/schemas/twin_update.v1.json``. A causal write's document has one more field,
``deps`` (its dependencies, ``[[property, wall_ms, logical, replica], ...]``); other
documents are as before. ``update_id`` is a uuid5 of the property and the
stamp, so a write sent twice (a retry after a cut link, a replay of the outbox) has the same
id, and a receiver may drop it by id or simply apply it again: applying is idempotent.

:func:`decode_update` checks every field and raises :class:`UpdateError` naming the field,
so a transport can dead-letter a bad document with the reason.

>>> from twinflow.operators.replication.hlc import Stamp
>>> key = PropertyKey("pump-1", "desired", "speed_rpm")
>>> w = Write.make(key, 1500, Stamp(1_767_225_600_000, 2, "edge-a"), base=None)
>>> decode_update(encode_update(w)) == w
True
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson

from twinflow.core.errors import DecodeError
from twinflow.operators.replication.causal import Deps
from twinflow.operators.replication.hlc import MAX_LOGICAL, Stamp
from twinflow.operators.replication.register import KINDS, PropertyKey, Write

SCHEMA = "twinflow.twin_update"
VERSION = 1

#: Namespace of the update ids (uuid5 of property and stamp).
UPDATE_NAMESPACE = uuid.UUID("6f1d8a52-3c0e-5b7a-9e4b-2d51c0a7e911")


#: The document's fields.
FIELDS = frozenset(
    [
        "schema",
        "version",
        "update_id",
        "twin_id",
        "kind",
        "property",
        "value",
        "stamp",
        "base",
        "written_at",
    ]
)


_NAMESPACE_BYTES = UPDATE_NAMESPACE.bytes


class UpdateError(DecodeError):
    """A replicated update document is malformed; the message names the field."""


def update_id(write: Write) -> str:
    """The write's deterministic id: the uuid5 of twin, kind, property and stamp (computed
    here without :func:`uuid.uuid5`'s object overhead; the same value)."""
    k = write.key
    name = f"{k.twin_id}\x1f{k.kind}\x1f{k.name}\x1f{write.stamp.text()}".encode()
    h = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name, usedforsecurity=False).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50  # version 5
    h[8] = (h[8] & 0x3F) | 0x80  # RFC 4122 variant
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def _stamp_doc(s: Stamp) -> dict[str, Any]:
    return {"wall_ms": s.wall_ms, "logical": s.logical, "replica": s.replica}


def update_doc(write: Write) -> dict[str, Any]:
    """The write as a ``twin_update.v1`` document (a dict)."""
    written = datetime.fromtimestamp(write.stamp.wall_ms / 1000, tz=UTC)
    doc = _doc(write, written)
    if write.deps:
        doc["deps"] = [[n, d.wall_ms, d.logical, d.replica] for n, d in write.deps]
    return doc


def _doc(write: Write, written: datetime) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "update_id": update_id(write),
        "twin_id": write.key.twin_id,
        "kind": write.key.kind,
        "property": write.key.name,
        "value": orjson.loads(write.value_json),
        "stamp": _stamp_doc(write.stamp),
        "base": None if write.base is None else _stamp_doc(write.base),
        "written_at": written.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


def encode_update(write: Write) -> bytes:
    """The write as ``twin_update.v1`` JSON bytes."""
    return orjson.dumps(update_doc(write))


def _text(doc: dict[str, Any], name: str) -> str:
    v = doc.get(name)
    if not isinstance(v, str) or not v:
        raise UpdateError(f"twin update: field {name!r} must be a non-empty string, got {v!r}")
    return v


def _whole(doc: dict[str, Any], name: str, where: str, top: int) -> int:
    v = doc.get(name)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= top:
        raise UpdateError(f"twin update: {where}.{name} must be an integer in 0..{top}, got {v!r}")
    return v


def _stamp(doc: Any, where: str) -> Stamp:
    if not isinstance(doc, dict):
        raise UpdateError(f"twin update: field {where!r} must be an object, got {doc!r}")
    unknown = set(doc) - {"wall_ms", "logical", "replica"}
    if unknown:
        raise UpdateError(f"twin update: unknown field(s) in {where}: {sorted(unknown)}")
    return Stamp(
        _whole(doc, "wall_ms", where, 2**53),
        _whole(doc, "logical", where, MAX_LOGICAL),
        _text(doc, "replica"),
    )


#: Dependency stamps decoded lately: the writes of one twin name the same few stamps (its
#: other properties' values) again and again, so each is built once (bounded).
_DEP_STAMPS: dict[tuple[Any, Any, Any], Stamp] = {}


def _dep_stamp(dep: list[Any]) -> Stamp | None:
    _, wall, logical, replica = dep
    try:
        hit = _DEP_STAMPS.get((wall, logical, replica))
    except TypeError:  # an unhashable field: not a stamp
        return None
    if hit is not None and type(wall) is int and type(logical) is int:
        return hit
    s = stamp_of(wall, logical, replica)
    if s is not None:
        if len(_DEP_STAMPS) >= 100_000:
            _DEP_STAMPS.clear()
        _DEP_STAMPS[(wall, logical, replica)] = s
    return s


def decode_deps(raw: Any, name: str, stamp: Stamp) -> Deps:
    """A causal write's dependencies from ``[[property, wall_ms, logical, replica], ...]``:
    other properties in name order (so none twice), each stamp older than the write's."""
    if type(raw) is not list or not raw:
        raise UpdateError(f"twin updates: {name!r}: deps must be a non-empty list, got {raw!r}")
    out = []
    last = ""
    for dep in raw:
        s = _dep_stamp(dep) if type(dep) is list and len(dep) == 4 else None
        prop = dep[0] if s is not None else None
        if s is None or type(prop) is not str or not prop or prop == name or s >= stamp:
            raise UpdateError(
                f"twin updates: {name!r}: dependency {dep!r} is not [another property, "
                f"wall_ms, logical, replica] older than {stamp.text()}"
            )
        if prop <= last:
            raise UpdateError(
                f"twin updates: {name!r}: deps {raw!r} are not in property order, or name "
                f"a property twice"
            )
        last = prop
        out.append((prop, s))
    return tuple(out)


def decode_update(payload: bytes | str) -> Write:
    """A write from a ``twin_update.v1`` document; :class:`UpdateError` says what is wrong."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise UpdateError(f"twin update: not JSON ({exc})") from exc
    return _fast(doc) or _checked(doc)


def decode_updates(payload: bytes) -> list[Write | UpdateError]:
    """Every line of a JSON Lines payload (what one MQTT message or a batch carries), each a
    write or the :class:`UpdateError` that refuses it; empty lines are skipped.

    The lines are parsed in one call as a JSON array when they all parse, which saves a
    call per line; a payload with a line that is not JSON is decoded line by line, so the
    other lines still count."""
    lines = [line for line in payload.split(b"\n") if line.strip()]
    try:
        docs = orjson.loads(b"[" + b",".join(lines) + b"]")
    except orjson.JSONDecodeError:
        return [_decode_or_error(line) for line in lines]
    if len(docs) != len(lines):  # a line held several values ("1,2"): one by one
        return [_decode_or_error(line) for line in lines]
    out: list[Write | UpdateError] = []
    for doc in docs:
        try:
            out.append(_fast(doc) or _checked(doc))
        except UpdateError as exc:
            out.append(exc)
    return out


def _decode_or_error(line: bytes) -> Write | UpdateError:
    try:
        return decode_update(line)
    except UpdateError as exc:
        return exc


_TOP_WALL = 2**53


def _fast_stamp(s: Any) -> Stamp | None:
    """A well-formed stamp object, or ``None`` (then :func:`_checked` says what is wrong)."""
    if type(s) is not dict or len(s) != 3:
        return None
    return stamp_of(s.get("wall_ms"), s.get("logical"), s.get("replica"))


def stamp_of(wall: Any, logical: Any, replica: Any) -> Stamp | None:
    """The stamp of well-formed decoded parts (exact types, in range), else ``None``."""
    if (
        type(wall) is not int
        or type(logical) is not int
        or type(replica) is not str
        or not 0 <= wall <= _TOP_WALL
        or not 0 <= logical <= MAX_LOGICAL
        or not replica
    ):
        return None
    return Stamp(wall, logical, replica)


def _fast(doc: Any) -> Write | None:
    """The common case, checked inline: a well-formed document's write, or ``None`` for
    anything unusual (then :func:`_checked` decodes it again and names the fault). What it
    accepts, :func:`_checked` accepts too, with the same write."""
    if type(doc) is not dict or doc.keys() != FIELDS:
        return None
    if doc["schema"] != SCHEMA or doc["version"] != VERSION or type(doc["version"]) is not int:
        return None
    twin, kind, name = doc["twin_id"], doc["kind"], doc["property"]
    if type(twin) is not str or type(name) is not str or not twin or not name:
        return None
    if kind not in KINDS or type(kind) is not str:
        return None
    stamp = _fast_stamp(doc["stamp"])
    raw_base = doc["base"]
    base = None if raw_base is None else _fast_stamp(raw_base)
    if stamp is None or (raw_base is not None and (base is None or base >= stamp)):
        return None
    try:
        write = Write.make(PropertyKey(twin, kind, name), doc["value"], stamp, base)
    except ValueError:
        return None
    return write if doc["update_id"] == update_id(write) else None


def _checked(doc: Any) -> Write:
    """Decode with every field checked one by one; raises :class:`UpdateError` naming the
    first field that is wrong (the slow path, for documents the fast one refused)."""
    if not isinstance(doc, dict):
        raise UpdateError(f"twin update: expected a JSON object, got {type(doc).__name__}")
    if doc.get("schema") != SCHEMA or doc.get("version") != VERSION:
        raise UpdateError(
            f"twin update: schema {doc.get('schema')!r} version {doc.get('version')!r} is not "
            f"{SCHEMA!r} version {VERSION}"
        )
    unknown = set(doc) - FIELDS - {"deps"}
    if unknown:
        raise UpdateError(f"twin update: unknown field(s) {sorted(unknown)}")
    if "value" not in doc:
        raise UpdateError("twin update: field 'value' is missing (null is a value, absent is not)")
    kind = _text(doc, "kind")
    if kind not in KINDS:
        raise UpdateError(f"twin update: kind {kind!r} is not one of {', '.join(KINDS)}")
    key = PropertyKey(_text(doc, "twin_id"), kind, _text(doc, "property"))
    base = None if doc.get("base") is None else _stamp(doc["base"], "base")
    write = Write.make(key, doc["value"], _stamp(doc.get("stamp"), "stamp"), base)
    if "deps" in doc:
        write = replace(write, deps=decode_deps(doc["deps"], key.name, write.stamp))
    if base is not None and base >= write.stamp:
        raise UpdateError(
            f"twin update {doc.get('update_id')!r}: base {base.text()} is not older than "
            f"stamp {write.stamp.text()}"
        )
    given = doc.get("update_id")
    if given != update_id(write):
        raise UpdateError(
            f"twin update: update_id {given!r} does not match its twin, property and stamp "
            f"(expected {update_id(write)}); the document was altered or built by hand"
        )
    return write
