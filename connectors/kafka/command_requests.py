"""Command requests from a Kafka topic: commands, desired-property changes or dead letters.

A request is one JSON object (other teams, operators' tools), either a command::

    {"request_id": "ops-4711", "twin_id": "P1", "command": "set_flow",
     "params": {"m3h": 250.0}, "expires_at": "2026-01-01T00:05:00Z"}

or a change of one desired property (declared writable in the twin's DTDL model)::

    {"request_id": "ops-4712", "twin_id": "P1", "desired": {"flow_setpoint": 250.0},
     "expires_at": "2026-01-01T00:05:00Z"}

``twin_type`` may be added; it is required when the source knows no twin registry. What
cannot be a request at all (bad JSON, a missing or mistyped field, an unknown twin or type,
a parameter that is not a number) becomes a :class:`DeadLetter` (stage ``decode`` for bad
JSON, ``validate`` otherwise) with the reason. Everything else becomes a
:class:`~twinflow.core.records.Command` (``origin`` ``request``) or a
:class:`~twinflow.core.records.DesiredChange`; the flow's command book then checks it against
the twin's model (command declared, payload schema, limits), its expiry and the twin's rate
limit, so a refused request still ends on the commands stream, ``rejected`` or ``expired``
with the reason. ``issued_at`` is the Kafka message's timestamp and the ids derive from
``request_id`` alone, so a replay of the topic (or a request sent twice) is one command.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any, NoReturn

from confluent_kafka import OFFSET_BEGINNING, TIMESTAMP_NOT_AVAILABLE, Message
from prometheus_client import Counter

from twinflow.connectors.bindings import KafkaSettings
from twinflow.connectors.kafka.request_auth import Headers, RequestAuth
from twinflow.connectors.kafka.request_json import (
    SHOWN,
    bounded_epoch_ms,
    bounded_time,
    load_request,
    show,
)
from twinflow.connectors.kafka.source import KafkaMessageSource
from twinflow.connectors.kafka.whatif_requests import is_whatif, read_whatif_request
from twinflow.core.errors import ConfigError, DecodeError, ValidationError
from twinflow.core.records import (
    Command,
    CommandStatus,
    DeadLetter,
    DesiredChange,
    RawMessage,
    deterministic_id,
)
from twinflow.core.times import epoch, utc
from twinflow.operators.catalog import CATALOG, TwinType
from twinflow.operators.command_book import desired_command_id
from twinflow.operators.validate import dead_letter_for
from twinflow.operators.whatif.request import WhatIfRequest, WhatIfResult

#: What a request message becomes (``whatif`` requests: the request or its rejection).
Request = Command | DesiredChange | DeadLetter | WhatIfRequest | WhatIfResult

REQUIRED = ("request_id", "twin_id", "expires_at")
#: A request is a command (``command`` and ``params``) or a desired change (``desired``).
COMMAND_FIELDS = ("command", "params")
DESIRED_FIELDS = ("desired",)
OPTIONAL = ("twin_type",)
#: Longest id or command name accepted (they end up in outputs and metric labels).
MAX_NAME = 128
#: Most parameters of one command.
MAX_PARAMS = 32


REFUSED = Counter(
    "twinflow_command_requests_refused",
    "Command requests rejected as unauthenticated or unauthorised, by reason "
    "(unsigned, unknown_issuer, bad_signature, forbidden)",
    ["reason"],
)


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
) -> Request:
    """Read one request; never raises on bad input (a ``whatif`` request:
    :mod:`twinflow.connectors.kafka.whatif_requests`).

    ``twins`` maps known twin ids to their type (``None``: any twin, type from the request).

    >>> from datetime import UTC, datetime
    >>> at = datetime(2026, 1, 1, tzinfo=UTC)
    >>> ok = parse_command_request(b'{"request_id": "r1", "twin_id": "P1", "command": '
    ...     b'"set_flow", "params": {"m3h": 250}, "expires_at": "2026-01-01T00:05:00Z"}',
    ...     source="kafka:requests", issued_at=at, twins={"P1": "pump"})
    >>> ok.name, dict(ok.params), ok.status.value, ok.reason, ok.origin
    ('set_flow', {'m3h': 250.0}, 'issued', 'request:r1', 'request')
    >>> change = parse_command_request(b'{"request_id": "r2", "twin_id": "P1", "desired": '
    ...     b'{"flow_setpoint": 250}, "expires_at": "2026-01-01T00:05:00Z"}',
    ...     source="kafka:requests", issued_at=at, twins={"P1": "pump"})
    >>> change.prop, change.value
    ('flow_setpoint', 250.0)
    >>> parse_command_request(b'{"request_id": "r3", "twin_id": "P1", "command": "set_flow", '
    ...     b'"params": {"m3h": "fast"}, "expires_at": "2026-01-01T00:05:00Z"}',
    ...     source="kafka:requests", issued_at=at, twins={"P1": "pump"}).reason
    "request 'r3' for twin 'P1': parameter 'm3h' must be a number, got 'fast'"
    """
    msg = RawMessage(source, bytes(payload), epoch(issued_at))
    try:
        doc = load_request(msg.payload)
    except DecodeError as exc:
        return dead_letter_for(msg, exc, stage="decode")
    if is_whatif(doc):
        return read_whatif_request(doc, issued_at, twins, catalog)
    try:
        return _command(doc, issued_at, twins, catalog)
    except ValidationError as exc:
        return dead_letter_for(msg, exc, stage="validate")


def _command(
    doc: dict[str, Any],
    issued_at: datetime,
    twins: Mapping[str, str] | None,
    catalog: Mapping[str, TwinType],
) -> Command | DesiredChange:
    where = _Where(doc)
    missing = [k for k in REQUIRED if k not in doc]
    is_desired = "desired" in doc
    shape = DESIRED_FIELDS if is_desired else COMMAND_FIELDS
    missing += [k for k in shape if k not in doc]
    if missing:
        where.fail(
            f"missing field(s) {', '.join(missing)}; a request needs {', '.join(REQUIRED)} and "
            "either command and params, or desired"
        )
    unknown = sorted(set(doc) - set(REQUIRED) - set(shape) - set(OPTIONAL))
    if unknown:
        other = COMMAND_FIELDS if is_desired else DESIRED_FIELDS
        hint = (
            " (a request is a command or a desired change, not both)"
            if set(unknown) & set(other)
            else ""
        )
        where.fail(
            f"unknown field(s) {', '.join(k[:SHOWN] for k in unknown[:8])}{hint}; allowed: "
            f"{', '.join((*REQUIRED, *shape, *OPTIONAL))}"
        )
    for name in ("request_id", "twin_id", *(() if is_desired else ("command",))):
        if not isinstance(doc[name], str) or not doc[name]:
            where.fail(f"field {name!r} must be a non-empty string, got {show(doc[name])}")
        if len(doc[name]) > MAX_NAME:
            where.fail(f"field {name!r} is longer than {MAX_NAME} characters")
    kind = _twin_type(doc, where, twins, catalog)
    expires_at = _time(doc["expires_at"], where)
    request_id = doc["request_id"]
    if is_desired:
        prop, value = _desired(doc["desired"], where)
        return DesiredChange(
            twin_id=doc["twin_id"],
            twin_type=kind.name,
            prop=prop,
            value=value,
            at=issued_at,
            request_id=request_id,
            expires_at=expires_at,
        )
    return Command(
        command_id=command_id_for(request_id),
        twin_id=doc["twin_id"],
        twin_type=kind.name,
        name=doc["command"],
        params=MappingProxyType(_params(doc["params"], where)),
        issued_at=issued_at,
        expires_at=expires_at,
        reason=f"request:{request_id}",
        origin="request",
    )


def _desired(raw: Any, where: _Where) -> tuple[str, float]:
    if not isinstance(raw, dict) or len(raw) != 1:
        where.fail(
            "field 'desired' must be an object with exactly one property, e.g. "
            '{"flow_setpoint": 250}; send one request per property'
        )
    ((name, value),) = raw.items()
    if isinstance(value, bool) or not isinstance(value, int | float):
        where.fail(f"desired {show(name)} must be a number, got {show(value)}")
    if len(name) > MAX_NAME:
        where.fail(f"desired property name is longer than {MAX_NAME} characters")
    return name, float(value)


@dataclass(frozen=True)
class _Where:
    """Prefixes errors with the request and twin they concern."""

    doc: Mapping[str, Any]

    def fail(self, reason: str) -> NoReturn:
        parts = []
        if isinstance(self.doc.get("request_id"), str):
            parts.append(f"request {show(self.doc['request_id'])}")
        if isinstance(self.doc.get("twin_id"), str):
            parts.append(f"for twin {show(self.doc['twin_id'])}")
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
        where.fail(f"field 'twin_type' must be a non-empty string, got {show(given)}")
    if twins is not None:
        if doc["twin_id"] not in twins:
            where.fail("unknown twin; it is not in the deployment's twins")
        if given is not None and given != twins[doc["twin_id"]]:
            where.fail(
                f"twin_type {show(given)} does not match the twin's type {twins[doc['twin_id']]!r}"
            )
        given = twins[doc["twin_id"]]
    if given is None:
        where.fail("field 'twin_type' is needed (this source knows no twin registry)")
    if given not in catalog:
        where.fail(f"unknown twin type {show(given)}; known types: {', '.join(sorted(catalog))}")
    return catalog[given]


def _params(raw: Any, where: _Where) -> dict[str, float]:
    """The parameters as numbers; whether they suit the command is the command book's call."""
    if not isinstance(raw, dict):
        where.fail(f"field 'params' must be an object, got {type(raw).__name__}")
    if len(raw) > MAX_PARAMS:
        where.fail(f"field 'params' has {len(raw)} entries (at most {MAX_PARAMS})")
    out = {}
    for name, value in raw.items():
        if len(name) > MAX_NAME:
            where.fail(f"a parameter name is longer than {MAX_NAME} characters")
        if isinstance(value, bool) or not isinstance(value, int | float):
            where.fail(f"parameter {show(name)} must be a number, got {show(value)}")
        out[name] = float(value)
    return out


def _time(raw: Any, where: _Where) -> datetime:
    try:
        return bounded_time(raw, "expires_at")
    except ValidationError as exc:
        where.fail(str(exc))


@dataclass(frozen=True)
class CommandRequests:
    """The source's ``map_batch``: each message's value through :func:`parse_command_request`.

    The message timestamp (ms) is the request's ``issued_at``; the fetch time stands in when a
    message carries none.
    """

    twins: Mapping[str, str] | None = None
    catalog: Mapping[str, TwinType] = field(default_factory=lambda: CATALOG)
    #: Authentication and grants (``None``: every well-formed request passes, insecure).
    auth: RequestAuth | None = None

    def __call__(self, msgs: Sequence[Message], received: float) -> list[Request]:
        return [
            self.item(m.value(), f"kafka:{m.topic()}", m.timestamp(), received, m.headers())
            for m in msgs
        ]

    def item(
        self,
        value: bytes | None,
        source: str,
        timestamp: tuple[int, int],
        received: float,
        headers: Headers = None,
    ) -> Request:
        """One message (value, ``kafka:<topic>``, ``(kind, ms)``) as a request or dead letter."""
        fetched = utc(received)
        kind, ms = timestamp
        issued = fetched if kind == TIMESTAMP_NOT_AVAILABLE else bounded_epoch_ms(ms)
        if value is None or issued is None:
            problem = (
                "command request has no value (a tombstone)"
                if value is None
                else f"command request's Kafka timestamp {ms} ms lies outside the accepted range"
            )
            raw = RawMessage(source, b"" if value is None else bytes(value), received)
            return dead_letter_for(raw, DecodeError(problem), stage="decode")
        try:
            item = parse_command_request(
                value, source=source, issued_at=issued, twins=self.twins, catalog=self.catalog
            )
            if self.auth is None or isinstance(item, DeadLetter | WhatIfResult):
                return item
            refusal = self.auth.refusal(bytes(value), headers, item, received)
            if refusal is None:
                return item
            REFUSED.labels(refusal[0]).inc()
            if isinstance(item, WhatIfRequest):
                return WhatIfResult.rejected(item, refusal[1])
            return _rejected(item, refusal[1], self.catalog)
        except Exception as exc:  # a last guard: a request never stops the flow
            raw = RawMessage(source, bytes(value), received)
            return dead_letter_for(raw, exc, stage="validate")


def _rejected(
    item: Command | DesiredChange, detail: str, catalog: Mapping[str, TwinType]
) -> Command:
    """A refused request as the ``rejected`` command the commands stream carries."""
    if isinstance(item, Command):
        return replace(item, status=CommandStatus.REJECTED, status_at=item.issued_at, detail=detail)
    kind = catalog.get(item.twin_type)
    spec = next((p for p in kind.properties if p.name == item.prop), None) if kind else None
    return Command(
        command_id=desired_command_id(item.twin_id, item.prop, item.request_id),
        twin_id=item.twin_id,
        twin_type=item.twin_type,
        name=spec.command if spec is not None and spec.command else f"desired:{item.prop}",
        params=MappingProxyType({}),
        issued_at=item.at,
        expires_at=item.expires_at,
        reason=f"desired:{item.prop}={item.value:g} ({item.request_id})",
        status=CommandStatus.REJECTED,
        status_at=item.at,
        detail=detail,
        origin="desired",
    )


def kafka_command_request_source(
    settings: KafkaSettings,
    *,
    twins: Mapping[str, str] | None = None,
    catalog: Mapping[str, TwinType] = CATALOG,
    auth: RequestAuth | None = None,
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
        CommandRequests(twins, catalog, auth),
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
