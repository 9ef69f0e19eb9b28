"""Responses to commands, as devices publish them to their response topics.

A response is a JSON object ``{"command_id": "...", "status": ..., "detail": "..."}`` with
status ``acknowledged`` (or its synonym ``accepted``: the device took the command on),
then ``succeeded`` or ``failed`` (what came of it). The command sink's listener hands each to
:func:`report_response`, which turns it into a :class:`~twinflow.core.records.CommandOutcome`
for the feedback hub (the flow's command book follows them;
``twinflow.connectors.feedback.CommandFeedback.history`` keeps them for tools and tests).

>>> r = parse_response(b'{"command_id": "c1", "status": "failed", "detail": "out of range"}',
...                    "m-1", 5.0)
>>> r.status, r.detail, r.received.isoformat()
('failed', 'out of range', '1970-01-01T00:00:05+00:00')
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import Counter

from twinflow.connectors.feedback import CommandFeedback
from twinflow.connectors.mqtt.topics import TopicRouter
from twinflow.core.records import CommandOutcome, CommandStatus
from twinflow.core.times import utc

log = logging.getLogger(__name__)

RESPONSES = Counter(
    "twinflow_mqtt_command_responses",
    "Command responses read from response topics: acknowledged, succeeded, failed, invalid",
    ["status"],
)

#: Statuses a device may answer with.
STATUSES = frozenset({"accepted", "acknowledged", "succeeded", "failed"})
#: What each answer means for the command.
_STATUS_OF = {
    "accepted": CommandStatus.ACKNOWLEDGED,
    "acknowledged": CommandStatus.ACKNOWLEDGED,
    "succeeded": CommandStatus.SUCCEEDED,
    "failed": CommandStatus.FAILED,
}


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


def report_response(
    topic: str, payload: bytes, router: TopicRouter, feedback: CommandFeedback | None, now: float
) -> None:
    """Hand the response on ``topic`` to ``feedback`` as an outcome of its twin's command;
    one on no twin's response topic, or not a valid response, is counted ``invalid`` and
    logged."""
    binding = router.route(topic)
    if binding is None:
        RESPONSES.labels("invalid").inc()
        log.warning("MQTT command response on %r: %s", topic, router.why_unmapped(topic))
        return
    try:
        response = parse_response(payload, binding.twin_id, now)
    except ResponseError as e:
        RESPONSES.labels("invalid").inc()
        log.warning("MQTT command response of twin %r on %r refused: %s", binding.twin_id, topic, e)
        return
    status = _STATUS_OF[response.status]
    RESPONSES.labels(status.value).inc()
    log.info(
        "command %s (%s): device answered %s: %s",
        response.command_id,
        binding.twin_id,
        response.status,
        response.detail,
    )
    if feedback is not None:
        feedback.report(
            CommandOutcome(response.command_id, binding.twin_id, status, utc(now), response.detail)
        )
