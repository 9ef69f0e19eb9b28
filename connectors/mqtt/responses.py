"""Responses to commands, as devices publish them to their response topics.

A response is a JSON object ``{"command_id": "...", "status": ..., "detail": "..."}`` with
status ``acknowledged`` (or its synonym ``accepted``: the device took the command on),
then ``succeeded`` or ``failed`` (what came of it). The command sink turns them into
:class:`~operators.records.CommandOutcome` values; :class:`ResponseBook` keeps the latest
response per command id for tools that listen to a response topic themselves.

>>> r = parse_response(b'{"command_id": "c1", "status": "failed", "detail": "out of range"}',
...                    "m-1", 5.0)
>>> r.status, r.detail, r.received.isoformat()
('failed', 'out of range', '1970-01-01T00:00:05+00:00')
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from operators.records import utc

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


class ResponseBook(Mapping[str, CommandResponse]):
    """Latest response per command id; thread-safe; :meth:`wait` blocks until one arrives."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._data: dict[str, CommandResponse] = {}

    def add(self, response: CommandResponse) -> None:
        with self._cond:
            self._data[response.command_id] = response
            self._cond.notify_all()

    def wait(self, command_id: str, timeout_s: float) -> CommandResponse | None:
        """The response to ``command_id``, waiting up to ``timeout_s``; ``None`` if none came."""
        with self._cond:
            self._cond.wait_for(lambda: command_id in self._data, timeout_s)
            return self._data.get(command_id)

    def __getitem__(self, command_id: str) -> CommandResponse:
        with self._cond:
            return self._data[command_id]

    def __iter__(self) -> Iterator[str]:
        with self._cond:
            return iter(list(self._data))

    def __len__(self) -> int:
        with self._cond:
            return len(self._data)
