"""Records to rows: what the PostgreSQL sink stores of each record type.

Telemetry is the bulk of the volume, so a :class:`TelemetryFrame` becomes a block of
PostgreSQL binary COPY tuples built with numpy, one structured array per signal, without a
Python loop over readings. Readings whose value is NaN (no reading at that time) are not
stored. Times become whole microseconds (PostgreSQL's resolution), the same on every replay.

The other records are few and become tuples for psycopg's binary COPY: JSON columns as text
(cast to jsonb by the merge), with NaN and infinities as ``null`` (JSON has neither), and
every text cleaned of what PostgreSQL refuses (NUL characters, lone surrogates) so that one
odd payload cannot stop the sink.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from twinflow.core.records import (
    Alert,
    AssetRollup,
    Command,
    DeadLetter,
    Severity,
    TelemetryFrame,
    TwinState,
    WaveformFrame,
    WindowFeatures,
)
from twinflow.core.times import iso, utc

if TYPE_CHECKING:
    from twinflow.connectors.replication.node import Received
    from twinflow.operators.replication.fleet_status import SiteStatus
    from twinflow.operators.replication.status import PropertySync

#: Header of a binary COPY stream: signature, flags, header-extension length.
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
#: Trailer of a binary COPY stream: a tuple with field count -1.
COPY_TRAILER = b"\xff\xff"

#: PostgreSQL's timestamp epoch (2000-01-01 UTC) in Unix microseconds.
_PG_EPOCH_US = 946_684_800 * 1_000_000


def clean_text(text: str) -> str:
    """``text`` without what PostgreSQL's text type refuses: NUL, lone surrogates.

    >>> clean_text("a\\x00b")
    'a\\ufffdb'
    """
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _finite(value: Any) -> float | None:
    f = float(value)
    return f if math.isfinite(f) else None


def _jsonable(value: Any) -> Any:
    """Numbers as finite floats or null, strings cleaned, containers recursively."""
    if type(value) is float:  # the most common value by far (window features): first
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return clean_text(value)  # jsonb refuses \u0000 as text does NUL
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return _finite(value)
    if isinstance(value, Mapping):
        return {str(_jsonable(str(k))): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return _jsonable(str(value))


def to_json_text(value: Any) -> str:
    """Compact JSON that jsonb accepts (no NaN, no NUL).

    orjson writes it (a non-finite float is null there too, numpy scalars go through
    :func:`_orjson_default`); what orjson refuses or would write unacceptably (a lone
    surrogate, a key that is not text, a NUL) takes the slower :func:`_jsonable` path, whose
    JSON means the same.

    >>> to_json_text({"a": float("nan"), "b": 1.5})
    '{"a":null,"b":1.5}'
    """
    try:
        out = orjson.dumps(value, default=_orjson_default)
    except TypeError:
        return _json_text(value)
    if b"\\u0000" in out:  # jsonb refuses \u0000
        return _json_text(value)
    return out.decode("utf-8")


def _orjson_default(value: Any) -> Any:
    """What orjson does not serialise itself: numpy scalars, then as :func:`_jsonable`."""
    if isinstance(value, np.floating):
        return _finite(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return _jsonable(value)


def _json_text(value: Any) -> str:
    """:func:`to_json_text` by the standard library, every value made acceptable first."""
    return json.dumps(_jsonable(value), separators=(",", ":"), allow_nan=False)


def _float_or_none(value: float | None) -> float | None:
    return None if value is None else float(value)


def _text(value: str) -> bytes:
    return clean_text(value).encode("utf-8")


#: The last fields of every telemetry COPY tuple, whatever identifies its series: the time
#: (timestamptz), the value (float8) and the quality (int2), each after its byte length.
READING_FIELDS = (
    ("time_len", ">i4"),
    ("time", ">i8"),
    ("value_len", ">i4"),
    ("value", ">f8"),
    ("quality_len", ">i4"),
    ("quality", ">i2"),
)


@functools.lru_cache(maxsize=4096)
def _tuple_layout(twin_len: int, signal_len: int) -> np.dtype:
    """numpy layout of one binary COPY tuple (twin_id, signal, time, value, quality)."""
    return np.dtype(
        [
            ("fields", ">i2"),
            ("twin_len", ">i4"),
            ("twin", f"S{twin_len}"),
            ("signal_len", ">i4"),
            ("signal", f"S{signal_len}"),
            *READING_FIELDS,
        ]
    )


def pg_microseconds(times: np.ndarray) -> np.ndarray:
    """Epoch seconds (float64) to PostgreSQL timestamps: int64 microseconds since 2000-01-01."""
    return np.rint(np.asarray(times, dtype=np.float64) * 1e6).astype(np.int64) - _PG_EPOCH_US


def telemetry_block(
    twin_id: str,
    signal: str,
    pg_times: np.ndarray,
    values: np.ndarray,
    quality: int,
) -> tuple[bytes, int]:
    """Binary COPY tuples (twin_id, signal, time, value, quality) of one signal's readings.

    ``pg_times`` comes from :func:`pg_microseconds`. Returns the bytes (no header or
    trailer) and how many rows they hold.
    """
    values = np.asarray(values, dtype=np.float64)
    keep = ~np.isnan(values)
    n = int(np.count_nonzero(keep))
    if n == 0:
        return b"", 0
    if n != len(values):
        values, pg_times = values[keep], pg_times[keep]
    twin, sig = _text(twin_id), _text(signal)
    rows = np.empty(n, dtype=_tuple_layout(len(twin), len(sig)))
    rows["fields"] = 5
    rows["twin_len"] = len(twin)
    rows["twin"] = twin
    rows["signal_len"] = len(sig)
    rows["signal"] = sig
    rows["time_len"] = 8
    rows["time"] = pg_times
    rows["value_len"] = 8
    rows["value"] = values
    rows["quality_len"] = 2
    rows["quality"] = quality
    return rows.tobytes(), n


def frame_rows(frame: TelemetryFrame) -> tuple[bytes, int]:
    """Every reading of a telemetry frame as binary COPY tuples."""
    parts: list[bytes] = []
    total = 0
    pg_times = pg_microseconds(frame.times)
    for signal, values in frame.signals.items():
        quality = int(frame.quality.get(signal, 0))
        data, n = telemetry_block(frame.twin_id, signal, pg_times, values, quality)
        if n:
            parts.append(data)
            total += n
    return b"".join(parts), total


def waveform_rows(frame: WaveformFrame) -> tuple[bytes, int]:
    """Every sample of a waveform chunk as binary COPY tuples (one row per sample)."""
    times = frame.start + np.arange(len(frame.samples), dtype=np.float64) / frame.sample_rate
    return telemetry_block(
        frame.twin_id, frame.signal, pg_microseconds(times), frame.samples, int(frame.quality)
    )


def window_row(seq: int, w: WindowFeatures) -> tuple[Any, ...]:
    rul = w.rul
    return (
        seq,
        clean_text(w.twin_id),
        clean_text(w.twin_type),
        w.start,
        w.end,
        to_json_text(w.features),
        to_json_text(w.counts),
        int(w.late),
        _float_or_none(w.anomaly_score),
        _float_or_none(w.anomaly_threshold),
        None if rul is None else clean_text(rul.indicator),
        None if rul is None else float(rul.hours),
        None if rul is None else float(rul.low_hours),
        None if rul is None else float(rul.high_hours),
        None if rul is None else float(rul.health),
    )


def state_row(seq: int, s: TwinState) -> tuple[Any, ...]:
    """Columns of ``TWIN_STATES``; ``properties`` and ``health`` as in twin-state JSON
    version 3 (``health`` NULL until the twin has an estimate)."""
    signals = {
        name: {
            "value": sig.value,
            "time": iso(utc(sig.time)),
            "quality": sig.quality.name.lower(),
            "stale": bool(sig.stale),
        }
        for name, sig in s.signals.items()
    }
    return (
        seq,
        clean_text(s.twin_id),
        clean_text(s.twin_type),
        s.time,
        s.status.value,
        to_json_text(signals),
        int(s.readings),
        int(s.dead_letters),
        to_json_text({name: p.to_json() for name, p in s.properties.items()}),
        None if s.rul is None else to_json_text(s.rul.to_json()),
    )


def alert_row(seq: int, a: Alert) -> tuple[Any, ...]:
    return (
        seq,
        clean_text(a.alert_id),
        clean_text(a.twin_id),
        clean_text(a.twin_type),
        clean_text(a.rule),
        a.state.value,
        a.severity.value,
        None if a.diagnosis is None else clean_text(a.diagnosis),
        clean_text(a.message),
        to_json_text(a.evidence),
        a.time,
        a.raised_at,
    )


def command_row(seq: int, c: Command) -> tuple[Any, ...]:
    return (
        seq,
        clean_text(c.command_id),
        c.status.value,
        clean_text(c.twin_id),
        clean_text(c.twin_type),
        clean_text(c.name),
        to_json_text(c.params),
        c.issued_at,
        c.expires_at,
        clean_text(c.reason),
        clean_text(c.detail),
        clean_text(c.origin),
        c.status_at,
        c.attempt,
    )


def rollup_row(seq: int, r: AssetRollup) -> tuple[Any, ...]:
    """Columns of ``ROLLUPS``: the severity counts as columns (a severity missing counts 0)."""
    by_severity = r.in_alarm_by_severity
    return (
        seq,
        clean_text(r.asset_id),
        clean_text(r.asset_type),
        r.time,
        int(r.twins_total),
        int(r.twins_in_alarm),
        int(by_severity.get(Severity.INFO.value, 0)),
        int(by_severity.get(Severity.WARNING.value, 0)),
        int(by_severity.get(Severity.CRITICAL.value, 0)),
        None if r.worst_health is None else _finite(r.worst_health),
        None if r.worst_twin is None else clean_text(r.worst_twin),
    )


def _count(value: int | None) -> int | None:
    return None if value is None else int(value)


def fleet_status_row(seq: int, s: SiteStatus) -> tuple[Any, ...]:
    """Columns of ``FLEET_STATUS``: a site's (or the fleet's) summary, the figures an
    operator queries as columns (epoch ms as times) and the whole document as JSON."""
    by_severity = s.in_alarm_by_severity
    return (
        seq,
        clean_text(s.site),
        s.time,
        int(s.sites),
        int(s.twins_reporting),
        int(s.twins_in_alarm),
        int(by_severity.get(Severity.INFO.value, 0)),
        int(by_severity.get(Severity.WARNING.value, 0)),
        int(by_severity.get(Severity.CRITICAL.value, 0)),
        int(s.commands_in_flight),
        None if s.worst_health is None else _finite(s.worst_health),
        None if s.worst_twin is None else clean_text(s.worst_twin),
        None if s.lowest_rul_h is None else _finite(s.lowest_rul_h),
        None if s.lowest_rul_twin is None else clean_text(s.lowest_rul_twin),
        clean_text(s.link),
        _ms_time(s.link_since_ms),
        _ms_time(s.last_received_ms),
        int(s.central_pending),
        None if s.edge_connected is None else bool(s.edge_connected),
        _count(s.edge_pending),
        to_json_text(s.to_json()),
    )


def dead_letter_id(d: DeadLetter) -> str:
    """Deterministic key of a dead letter: a hash of its JSON (a replay gives the same key)."""
    canonical = json.dumps(d.to_json(), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:32]


def dead_letter_row(d: DeadLetter) -> tuple[Any, ...]:
    return (
        dead_letter_id(d),
        d.time,
        clean_text(d.stage),
        clean_text(d.reason),
        clean_text(d.source),
        None if d.twin_id is None else clean_text(d.twin_id),
        int(d.readings),
        clean_text(d.payload[: DeadLetter.MAX_PAYLOAD]),
    )


def _ms_time(ms: int | None) -> Any:
    return None if ms is None else utc(ms / 1000)


def sync_status_row(s: PropertySync) -> tuple[Any, ...]:
    """Columns of ``SYNC_STATUS``: one replication property's status when it was taken."""
    return (
        clean_text(s.replica),
        clean_text(s.twin_id),
        clean_text(s.kind),
        clean_text(s.prop),
        _ms_time(s.at_ms),
        s.state.value,
        clean_text(s.consistency),
        int(s.lag_ms),
        None if s.update_id is None else clean_text(s.update_id),
        int(s.conflicts),
        _ms_time(s.link_down_since_ms),
    )


def replicated_row(r: Received) -> tuple[Any, ...]:
    """Columns of ``REPLICATED``: a received write as in ``replicated.jsonl``."""
    doc = r.to_json()
    stamp = doc["stamp"]
    return (
        clean_text(r.replica),
        doc["update_id"],
        clean_text(doc["twin_id"]),
        clean_text(doc["kind"]),
        clean_text(doc["property"]),
        to_json_text(doc["value"]),
        int(stamp["wall_ms"]),
        int(stamp["logical"]),
        clean_text(stamp["replica"]),
        None if doc["base"] is None else to_json_text(doc["base"]),
        doc["outcome"],
        _ms_time(r.at_ms),
    )
