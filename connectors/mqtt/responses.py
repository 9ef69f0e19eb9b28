"""Responses to commands, as devices publish them to their response topics.

A response is a JSON object ``{"command_id": "...", "status": ..., "detail": "..."}`` with
status ``acknowledged`` (or its synonym ``accepted``: the device took the command on),
then ``succeeded`` or ``failed`` (what came of it). The command sink turns them into
:class:`~twinflow.core.records.CommandOutcome` values (the flow's command book follows them;
``twinflow.connectors.feedback.CommandFeedback.history`` keeps them for tools and tests).

>>> r = parse_response(b'{"command_id": "c1", "status": "failed", "detail": "out of range"}',
...                    "m-1", 5.0)
>>> r.status, r.detail, r.received.isoformat()
('failed', 'out of range', '1970-01-01T00:00:05+00:00')
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from twinflow.core.records import utc

#: Statuses a device may answer with.
STATUSES = frozenset({"accepted", "acknowledged", "succeeded", "failed"})


class ResponseError(ValueError):
    """A response payload that is not a valid acknowledgement."""


@dataclass(frozen=True, slots=True)
class CommandResponse:
    """One device's answer to one command."""

    command_id: str
    twin_id: str
    status: str
    detail: str
    received: datetime


def parse_response(payload: bytes, twin_id: str, now: float) -> CommandResponse:
    """Decode a response payload; :class:`ResponseError` says what is wrong with it."""
    try:
        obj = json.loads(payload)
    except ValueError as e:
        raise ResponseError(f"response is not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ResponseError(f"response is a JSON {type(obj).__name__}, expected an object")
    cid, status, detail = obj.get("command_id"), obj.get("status"), obj.get("detail", "")
    if not isinstance(cid, str) or not cid:
        raise ResponseError("response has no command_id string")
    if status not in STATUSES:
        raise ResponseError(
            f"response status {status!r} is not one of {', '.join(sorted(STATUSES))}"
        )
    return CommandResponse(cid, twin_id, status, str(detail), utc(now))
