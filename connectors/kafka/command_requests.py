"""Command requests from a Kafka topic: validated :class:`Command` objects or dead letters.

A request is one JSON object (other teams, operators' tools)::

    {"request_id": "ops-4711", "twin_id": "P1", "command": "set_flow",
     "params": {"m3h": 250.0}, "expires_at": "2026-01-01T00:05:00Z"}

``twin_type`` may be added; it is required when the source knows no twin registry. The
request is checked against the twin type's actuators in the catalog (command name, exact set
of parameters, each a finite number in its range) and must expire after it was issued.
``issued_at`` is the Kafka message's timestamp, so a replay of the topic yields the same
command: its ``command_id`` derives from ``request_id`` alone (a request sent twice is one
command) and its ``reason`` is ``"request:<request_id>"``. Anything wrong becomes a
:class:`DeadLetter` (stage ``decode`` for bad JSON, ``validate`` otherwise) with the reason.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, NoReturn

from confluent_kafka import OFFSET_BEGINNING, TIMESTAMP_NOT_AVAILABLE, Message

from connectors.bindings import KafkaSettings
from connectors.kafka.source import KafkaMessageSource
from operators.catalog import CATALOG, TwinType
from operators.errors import ConfigError, DecodeError, ValidationError
from operators.records import Command, DeadLetter, RawMessage, deterministic_id, epoch, utc
from operators.validate import dead_letter_for

REQUIRED = ("request_id", "twin_id", "command", "params", "expires_at")
OPTIONAL = ("twin_type",)
#: Largest request accepted (bytes); a command request is a few hundred.
MAX_BYTES = 65_536


def command_id_for(request_id: str) -> str:
    """The deterministic command id of a request (the same on every replay)."""
    return deterministic_id("command-request", request_id)


def parse_command_request(
    payload: bytes,
    *,
    source: str,
    issued_at: datetime,
    twins: Mapping[str, str] | None = None,
    catalog: Mapping[str, TwinType] = CATALOG,
) -> Command | DeadLetter:
    """Validate one request; never raises on bad input.

    ``twins`` maps known twin ids to their type (``None``: any twin, type from the request).

    >>> from datetime import UTC, datetime
    >>> at = datetime(2026, 1, 1, tzinfo=UTC)
    >>> ok = parse_command_request(b'{"request_id": "r1", "twin_id": "P1", "command": '
    ...     b'"set_flow", "params": {"m3h": 250}, "expires_at": "2026-01-01T00:05:00Z"}',
    ...     source="kafka:requests", issued_at=at, twins={"P1": "pump"})
    >>> ok.name, dict(ok.params), ok.status.value, ok.reason
    ('set_flow', {'m3h': 250.0}, 'issued', 'request:r1')
    >>> parse_command_request(b'{"request_id": "r2", "twin_id": "P1", "command": "set_flow", '
    ...     b'"params": {"m3h": 9000}, "expires_at": "2026-01-01T00:05:00Z"}',
    ...     source="kafka:requests", issued_at=at, twins={"P1": "pump"}).reason
    "request 'r2' for twin 'P1': parameter 'm3h' = 9000 is outside [20.0, 400.0] of set_flow"
    """
    msg = RawMessage(source, bytes(payload), epoch(issued_at))
    try:
        doc = _load(msg.payload)
    except DecodeError as exc:
        return dead_letter_for(msg, exc, stage="decode")
    try:
        return _command(doc, issued_at, twins, catalog)
    except ValidationError as exc:
        return dead_letter_for(msg, exc, stage="validate")


def _load(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_BYTES:
        raise DecodeError(f"command request of {len(payload)} bytes exceeds {MAX_BYTES} bytes")
    try:
        doc = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise DecodeError(f"command request is not UTF-8: byte {e.start} ({e.reason})") from None
    except json.JSONDecodeError as e:
        raise DecodeError(f"command request is not JSON: {e.msg} at column {e.colno}") from None
    if not isinstance(doc, dict):
        raise DecodeError(f"command request must be a JSON object, got {type(doc).__name__}")
    return doc


def _command(
    doc: dict[str, Any],
    issued_at: datetime,
    twins: Mapping[str, str] | None,
    catalog: Mapping[str, TwinType],
) -> Command:
    missing = [k for k in REQUIRED if k not in doc]
    where = _Where(doc)
    if missing:
        where.fail(f"missing field(s) {', '.join(missing)}; a request needs {', '.join(REQUIRED)}")
    unknown = sorted(set(doc) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        where.fail(
            f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(REQUIRED)}, "
            f"{', '.join(OPTIONAL)}"
        )
    for name in ("request_id", "twin_id", "command"):
        if not isinstance(doc[name], str) or not doc[name]:
            where.fail(f"field {name!r} must be a non-empty string, got {doc[name]!r}")
    kind = _twin_type(doc, where, twins, catalog)
    try:
        actuator = kind.actuator(doc["command"])
    except ValidationError as exc:
        where.fail(str(exc))
    params = _params(doc["params"], actuator.params, actuator.name, where)
    expires_at = _time(doc["expires_at"], where)
    if expires_at <= issued_at:
        where.fail(
            f"expires_at {doc['expires_at']} is not after the request's time "
            f"{issued_at.isoformat()}; the request expired before it arrived"
        )
    request_id = doc["request_id"]
    return Command(
        command_id=command_id_for(request_id),
        twin_id=doc["twin_id"],
        twin_type=kind.name,
        name=actuator.name,
        params=MappingProxyType(params),
        issued_at=issued_at,
        expires_at=expires_at,
        reason=f"request:{request_id}",
    )


@dataclass(frozen=True)
class _Where:
    """Prefixes errors with the request and twin they concern."""

    doc: Mapping[str, Any]

    def fail(self, reason: str) -> NoReturn:
        parts = []
        if isinstance(self.doc.get("request_id"), str):
            parts.append(f"request {self.doc['request_id']!r}")
        if isinstance(self.doc.get("twin_id"), str):
            parts.append(f"for twin {self.doc['twin_id']!r}")
        prefix = " ".join(parts) or "command request"
        raise ValidationError(f"{prefix}: {reason}")


def _twin_type(
    doc: Mapping[str, Any],
    where: _Where,
    twins: Mapping[str, str] | None,
    catalog: Mapping[str, TwinType],
) -> TwinType:
    given = doc.get("twin_type")
    if given is not None and (not isinstance(given, str) or not given):
        where.fail(f"field 'twin_type' must be a non-empty string, got {given!r}")
    if twins is not None:
        if doc["twin_id"] not in twins:
            where.fail("unknown twin; it is not in the deployment's twins")
        if given is not None and given != twins[doc["twin_id"]]:
            where.fail(
                f"twin_type {given!r} does not match the twin's type {twins[doc['twin_id']]!r}"
            )
        given = twins[doc["twin_id"]]
    if given is None:
        where.fail("field 'twin_type' is needed (this source knows no twin registry)")
    if given not in catalog:
        where.fail(f"unknown twin type {given!r}; known types: {', '.join(sorted(catalog))}")
    return catalog[given]


def _params(
    raw: Any, spec: Mapping[str, tuple[float, float]], command: str, where: _Where
) -> dict[str, float]:
    if not isinstance(raw, dict):
        where.fail(f"field 'params' must be an object, got {type(raw).__name__}")
    missing = sorted(set(spec) - set(raw))
    unknown = sorted(set(raw) - set(spec))
    if missing or unknown:
        where.fail(
            f"{command} takes parameter(s) {', '.join(sorted(spec)) or 'none'}; "
            f"missing: {', '.join(missing) or '-'}, unknown: {', '.join(unknown) or '-'}"
        )
    out = {}
    for name, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            where.fail(f"parameter {name!r} must be a number, got {value!r}")
        low, high = spec[name]
        if not math.isfinite(value) or not low <= value <= high:
            where.fail(f"parameter {name!r} = {value} is outside [{low}, {high}] of {command}")
        out[name] = float(value)
    return out


def _time(raw: Any, where: _Where) -> datetime:
    if not isinstance(raw, str):
        where.fail(f"field 'expires_at' must be an ISO-8601 string, got {raw!r}")
    try:
        dt = datetime.fromisoformat(raw)
    except ValueError:
        where.fail(f"expires_at {raw!r} is not ISO-8601")
    if dt.tzinfo is None:
        where.fail(f"expires_at {raw!r} has no zone; add 'Z' or an offset such as '+00:00'")
    return dt


@dataclass(frozen=True)
class CommandRequests:
    """The source's ``map_batch``: each message's value through :func:`parse_command_request`.

    The message timestamp (ms) is the request's ``issued_at``; the fetch time stands in when a
    message carries none.
    """

    twins: Mapping[str, str] | None = None
    catalog: Mapping[str, TwinType] = field(default_factory=lambda: CATALOG)

    def __call__(self, msgs: Sequence[Message], received: float) -> list[Command | DeadLetter]:
        out: list[Command | DeadLetter] = []
        for m in msgs:
            kind, ms = m.timestamp()
            issued = utc(received if kind == TIMESTAMP_NOT_AVAILABLE else ms / 1000)
            source, value = f"kafka:{m.topic()}", m.value()
            if value is None:
                empty = RawMessage(source, b"", epoch(issued))
                tombstone = DecodeError("command request has no value (a tombstone)")
                out.append(dead_letter_for(empty, tombstone, stage="decode"))
                continue
            out.append(
                parse_command_request(
                    value, source=source, issued_at=issued, twins=self.twins, catalog=self.catalog
                )
            )
        return out


def kafka_command_request_source(
    settings: KafkaSettings,
    *,
    twins: Mapping[str, str] | None = None,
    catalog: Mapping[str, TwinType] = CATALOG,
    tail: bool = True,
    starting_offset: int = OFFSET_BEGINNING,
) -> KafkaMessageSource:
    """Command requests from ``settings.command_requests_topic`` as Commands or DeadLetters."""
    if not settings.command_requests_topic:
        raise ConfigError(
            "kafka.command_requests_topic is not set; name the topic that carries command "
            "requests, e.g. command_requests_topic: twinflow.command-requests"
        )
    return KafkaMessageSource(
        settings,
        [settings.command_requests_topic],
        CommandRequests(twins, catalog),
        tail=tail,
        starting_offset=starting_offset,
        batch_size=100,
    )


__all__ = [
    "CommandRequests",
    "command_id_for",
    "kafka_command_request_source",
    "parse_command_request",
]
