"""What an edge forwards: the flow's records as replicated property writes.

Each record becomes the writes of a few registers of its twin, so the central replica holds
each twin's newest state, window, alert per rule and command per name, and every write on
the way is stored as it arrives (the registers' history is for conflicts, not storage):

- twin state: ``reported/<property>`` for each reported property, ``metadata/state`` (status,
  time, readings and each signal's value);
- window features: ``metadata/window`` (with the window's RUL estimate, ``rul``, when it has
  one: what the central roll-ups across sites take the twin's health from);
- alerts: ``metadata/alert:<rule>``;
- raw telemetry (``telemetry``, not forwarded unless named): ``metadata/telemetry``, one
  :class:`~twinflow.operators.replication.downsample.TelemetryBucket` per twin and
  ``telemetry_every_s`` (each signal's mean over the bucket). Its writes are
  *append-only* (:func:`append_only`): each bucket is a fact of its own, not a newer value
  of the register, so the outbox keeps every one through compaction, and the central
  instance stores them but does not relay them to the edges, which have no use for them;
- command transitions (``command_outcomes``): ``metadata/command:<name>``, each command's
  furthest status only (a ``sent`` the command book learnt after the answer, in a cluster,
  is a history row and does not overwrite the end state; :class:`CommandProgress`); a command that
  carried a desired change received from the link also answers it with
  ``metadata/accepted:<property>`` (the update id and the status), which is what a strong
  desired change waits for.

>>> from twinflow.core.records import Alert, AlertState, Severity
>>> from twinflow.core.times import utc
>>> a = Alert("a1", "pump-1", "pump", "overheat", AlertState.RAISED, Severity.WARNING,
...           utc(0), utc(0), "hot")
>>> [(kind, name) for kind, name, _ in writes_of(a, FORWARDS)]
[('metadata', 'alert:overheat')]
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from twinflow.core.records import (
    TERMINAL_COMMAND_STATUSES,
    Alert,
    Command,
    CommandStatus,
    TwinState,
    WindowFeatures,
)
from twinflow.core.times import iso
from twinflow.operators.replication import PropertyKey
from twinflow.operators.replication.downsample import TelemetryBucket

#: The streams an edge forwards by default, by their name in the ``forward:`` setting.
FORWARDS = ("twin_state", "windows", "alerts", "command_outcomes")
#: Every stream an edge may forward: the default ones and raw telemetry, downsampled.
ALL_FORWARDS = (*FORWARDS, "telemetry")

#: Command statuses that answer a desired change: accepted, or refused for good.
ANSWERS = frozenset(
    {
        CommandStatus.ACKNOWLEDGED,
        CommandStatus.SUCCEEDED,
        CommandStatus.FAILED,
        CommandStatus.REJECTED,
        CommandStatus.EXPIRED,
        CommandStatus.TIMED_OUT,
    }
)
#: The answers that mean the edge accepted the change.
ACCEPTED = frozenset({CommandStatus.ACKNOWLEDGED, CommandStatus.SUCCEEDED})

Triple = tuple[str, str, Any]

#: The (kind, name) of properties whose every write is a fact of its own (a telemetry
#: bucket): not merged away by the outbox's compaction, not relayed to the edges.
APPEND_ONLY = frozenset({("metadata", "telemetry")})


def append_only(key: PropertyKey) -> bool:
    """Whether the writes of ``key`` are append-only facts (:data:`APPEND_ONLY`): each must
    reach the central instance, none replaces another, and only the central one stores them."""
    return (key.kind, key.name) in APPEND_ONLY


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _state(s: TwinState) -> list[Triple]:
    out: list[Triple] = [
        ("reported", name, _num(p.reported))
        for name, p in s.properties.items()
        if p.reported is not None
    ]
    signals = {n: _num(v.value) for n, v in s.signals.items()}
    doc = {"status": s.status.value, "time": iso(s.time), "readings": s.readings}
    out.append(("metadata", "state", {**doc, "signals": signals}))
    return out


def _window(w: WindowFeatures) -> list[Triple]:
    score = None if w.anomaly_score is None else _num(w.anomaly_score)
    doc: dict[str, Any] = {
        "start": iso(w.start),
        "end": iso(w.end),
        "features": {k: _num(v) for k, v in w.features.items()},
        "anomaly_score": score,
    }
    if w.rul is not None:
        doc["rul"] = w.rul.to_json()
    return [("metadata", "window", doc)]


def writes_of(record: object, forward: Iterable[str]) -> list[Triple]:
    """The (kind, name, value) writes that forward ``record`` when its stream is in
    ``forward`` (nothing for other records)."""
    wanted = set(forward)
    if isinstance(record, TwinState) and "twin_state" in wanted:
        return _state(record)
    if isinstance(record, WindowFeatures) and "windows" in wanted:
        return _window(record)
    if isinstance(record, Alert) and "alerts" in wanted:
        return [("metadata", f"alert:{record.rule}", record.to_json())]
    if isinstance(record, Command) and "command_outcomes" in wanted:
        return [("metadata", f"command:{record.name}", record.to_json())]
    if isinstance(record, TelemetryBucket) and "telemetry" in wanted:
        return [("metadata", "telemetry", record.to_json())]
    return []


_PROGRESS = {CommandStatus.ISSUED: 0, CommandStatus.QUEUED: 1, CommandStatus.SENT: 2}


def _rank(command: Command) -> int:
    if command.status in TERMINAL_COMMAND_STATUSES:
        return 4
    return 3 if command.status is CommandStatus.ACKNOWLEDGED else _PROGRESS.get(command.status, 0)


class CommandProgress:
    """The furthest status forwarded per command (the newest ``keep`` commands): a row that
    is not further is history, not news, and is not forwarded over the register.

    >>> from dataclasses import replace
    >>> from twinflow.core.times import utc
    >>> c = Command("c1", "pump-1", "pump", "derate", {}, "r", utc(0), utc(60),
    ...             CommandStatus.SUCCEEDED)
    >>> p = CommandProgress()
    >>> p.is_news(c), p.is_news(replace(c, status=CommandStatus.SENT))
    (True, False)
    """

    def __init__(self, keep: int = 100_000) -> None:
        self.keep = keep
        self._furthest: dict[str, int] = {}

    def is_news(self, command: Command) -> bool:
        rank = _rank(command)
        if self._furthest.get(command.command_id, -1) >= rank:
            return False
        self._furthest[command.command_id] = rank
        if len(self._furthest) > self.keep:
            del self._furthest[next(iter(self._furthest))]
        return True


__all__ = [
    "ACCEPTED",
    "ALL_FORWARDS",
    "ANSWERS",
    "APPEND_ONLY",
    "FORWARDS",
    "CommandProgress",
    "append_only",
    "writes_of",
]
