"""JSON documents of records that have no ``to_json`` of their own: twin state, version 1.

Schema ``operators/schemas/twin_state.v1.json``. A twin state has no id: consumers
deduplicate replays on ``(twin_id, time, status)``; the latest ``time`` per twin wins.
"""

from __future__ import annotations

import math
from typing import Any

from operators.records import SignalState, TwinState, iso, utc

TWIN_STATE_SCHEMA = "twinflow.twin_state"
TWIN_STATE_VERSION = 1


def twin_state_json(state: TwinState) -> dict[str, Any]:
    """The versioned JSON of one twin state (NaN values become ``null``).

    >>> from datetime import UTC, datetime
    >>> from operators.records import Quality, SignalState, SyncStatus
    >>> s = TwinState("P1", "pump", datetime(2026, 1, 1, tzinfo=UTC), SyncStatus.STALE,
    ...               {"flow_m3h": SignalState(float("nan"), 1767225590.0, Quality.GOOD, True)})
    >>> doc = twin_state_json(s)
    >>> doc["status"], doc["time"], doc["signals"]["flow_m3h"]
    ('stale', '2026-01-01T00:00:00Z', {'value': None, 'time': '2025-12-31T23:59:50Z', \
'quality': 'good', 'stale': True})
    """
    return {
        "schema": TWIN_STATE_SCHEMA,
        "version": TWIN_STATE_VERSION,
        "twin_id": state.twin_id,
        "twin_type": state.twin_type,
        "time": iso(state.time),
        "status": state.status.value,
        "readings": state.readings,
        "dead_letters": state.dead_letters,
        "signals": {name: _signal(sig) for name, sig in state.signals.items()},
    }


def _signal(sig: SignalState) -> dict[str, Any]:
    value = float(sig.value)
    return {
        "value": value if math.isfinite(value) else None,
        "time": iso(utc(sig.time)),
        "quality": sig.quality.name.lower(),
        "stale": bool(sig.stale),
    }


__all__ = ["TWIN_STATE_SCHEMA", "TWIN_STATE_VERSION", "twin_state_json"]
