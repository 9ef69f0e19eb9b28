"""JSON documents of records that have no ``to_json`` of their own: twin state, version 3.

Schema ``operators/schemas/twin_state.v3.json``: version 2 (``twin_state.v2.json``: version 1
plus ``properties``, the desired and reported side of each writable property with their
versions, times and whether they agree) plus ``health``, the twin's newest remaining-useful-life
estimate with its interval (``null`` until a window has one; a new estimate re-emits the
twin's newest state with it). A twin state has no id: consumers deduplicate replays on
``(twin_id, time, status, properties, health)``; the latest ``time`` per twin wins.
"""

from __future__ import annotations

import math
from typing import Any

from twinflow.core.records import SignalState, TwinState
from twinflow.core.times import iso, utc

TWIN_STATE_SCHEMA = "twinflow.twin_state"
TWIN_STATE_VERSION = 3


def twin_state_json(state: TwinState) -> dict[str, Any]:
    """The versioned JSON of one twin state (NaN values become ``null``).

    >>> from datetime import UTC, datetime
    >>> from twinflow.core.records import PropertyState, Quality, SignalState, SyncStatus
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> s = TwinState("P1", "pump", t, SyncStatus.STALE,
    ...               {"flow_m3h": SignalState(float("nan"), 1767225590.0, Quality.GOOD, True)},
    ...               properties={"flow_setpoint": PropertyState(250.0, 1, t, in_sync=False)})
    >>> doc = twin_state_json(s)
    >>> doc["version"], doc["status"], doc["time"], doc["signals"]["flow_m3h"]
    (3, 'stale', '2026-01-01T00:00:00Z', {'value': None, 'time': '2025-12-31T23:59:50Z', \
'quality': 'good', 'stale': True})
    >>> doc["properties"]["flow_setpoint"]
    {'desired': 250.0, 'desired_version': 1, 'desired_at': '2026-01-01T00:00:00Z', \
'reported': None, 'reported_version': 0, 'reported_at': None, 'in_sync': False}
    """
    doc: dict[str, Any] = {
        "schema": TWIN_STATE_SCHEMA,
        "version": TWIN_STATE_VERSION,
        "twin_id": state.twin_id,
        "twin_type": state.twin_type,
        "time": iso(state.time),
        "status": state.status.value,
        "readings": state.readings,
        "dead_letters": state.dead_letters,
        "signals": {name: _signal(sig) for name, sig in state.signals.items()},
        "properties": {name: p.to_json() for name, p in state.properties.items()},
        "health": None if state.rul is None else state.rul.to_json(),
    }
    if state.sync is not None:  # an edge or central instance: its properties' sync status
        doc["replication"] = dict(state.sync)
    return doc


def _signal(sig: SignalState) -> dict[str, Any]:
    value = float(sig.value)
    return {
        "value": value if math.isfinite(value) else None,
        "time": iso(utc(sig.time)),
        "quality": sig.quality.name.lower(),
        "stale": bool(sig.stale),
    }


__all__ = ["TWIN_STATE_SCHEMA", "TWIN_STATE_VERSION", "twin_state_json"]
