"""The records that cross dataflow stages.

A handful of frozen dataclasses, shared by connectors, operators, models and flows:

- :class:`TelemetryFrame`: one twin, many timestamps, several signals (numpy arrays).
- :class:`WaveformFrame`: one twin, one high-rate signal, a chunk of evenly spaced samples.
- :class:`RawMessage`: an undecoded payload as a protocol delivered it.
- :class:`TwinState`: the live state of one twin (last value, time and quality per signal).
- :class:`WindowFeatures`: statistics and spectra of one twin over one event-time window,
  enriched downstream with physics residuals, anomaly score and remaining useful life.
- :class:`Alert`, :class:`Command`: what leaves the system; versioned JSON (see ``to_json``
  and the JSON Schemas in ``operators/schemas``), with deterministic ids.
- :class:`DeadLetter`: anything that failed to decode or validate, with the reason.

Time convention (helpers in :mod:`twinflow.core.times`): scalar timestamps are
timezone-aware UTC ``datetime``; time arrays inside frames are ``float64`` seconds since the
Unix epoch (UTC), which keeps windowing and regression arithmetic in plain numpy.
"""

from __future__ import annotations

import copyreg
import hashlib
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import Any

import numpy as np

from twinflow.core.times import iso


def read_only(mapping: Mapping[Any, Any]) -> MappingProxyType[Any, Any]:
    """A read-only view of a copy of ``mapping`` (how records hold their mappings)."""
    return MappingProxyType(dict(mapping))


def _reduce_mappingproxy(m: MappingProxyType[Any, Any]) -> tuple[Any, tuple[dict[Any, Any]]]:
    return read_only, (dict(m),)


# Records keep their mappings read-only (MappingProxyType), which pickle cannot handle by
# itself; Bytewax pickles items that cross workers and state it snapshots for recovery.
copyreg.pickle(MappingProxyType, _reduce_mappingproxy)

#: Namespace of every deterministic id twinflow derives (uuid5).
ID_NAMESPACE = uuid.UUID("6f3b0c1e-8a52-4c1e-9d57-2f0e5b7c9a10")


def deterministic_id(*parts: object) -> str:
    """A stable id for the given parts: the same parts give the same id on every replay.

    >>> deterministic_id("T1", "overheating", 1) == deterministic_id("T1", "overheating", 1)
    True
    """
    return str(uuid.uuid5(ID_NAMESPACE, "|".join(str(p) for p in parts)))


_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _empty() -> Mapping[str, Any]:
    """Default for mapping fields: a shared read-only empty mapping."""
    return _EMPTY


class Quality(IntEnum):
    """Quality that travels with a value (a coarse image of OPC UA status codes)."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2
    STALE = 3
    SUBSTITUTED = 4


class SyncStatus(StrEnum):
    """How well a twin mirrors its machine right now."""

    INITIALIZING = "initializing"
    SYNCHRONIZED = "synchronized"
    STALE = "stale"
    ERROR = "error"


@dataclass(frozen=True, slots=True, eq=False)
class TelemetryFrame:
    """Readings of several signals of one twin at ``len(times)`` timestamps.

    ``times`` is float64 epoch seconds (UTC), non-decreasing; each ``signals`` array has the
    same length. A ``NaN`` value means "no reading at this time" (a dropout).
    ``quality`` holds a per-signal quality for the whole frame; a missing entry means GOOD.
    ``units`` holds the unit a device declared for a signal (a DTDL unit name such as
    ``cubicMetrePerHour`` or twinflow's symbol such as ``m3/h``); validation checks it
    against the model. A missing entry means "not declared" (no check).
    ``out_of_range`` is set by validation: for a signal some of whose readings lay outside
    its declared range (and are now NaN), a boolean mask of those readings.
    """

    twin_id: str
    twin_type: str
    times: np.ndarray
    signals: Mapping[str, np.ndarray]
    quality: Mapping[str, Quality] = field(default_factory=_empty)
    source: str = "simulator"
    units: Mapping[str, str] = field(default_factory=_empty)
    out_of_range: Mapping[str, np.ndarray] = field(default_factory=_empty)

    @property
    def readings(self) -> int:
        """How many values the frame carries (timestamps × signals)."""
        return len(self.times) * len(self.signals)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled with its times and float64 signals as the bytes of one array: frames cross
        between the processes of a cluster, and one buffer pickles several times faster than
        an array per signal (empty mappings travel as ``None``)."""
        arrays = (self.times, *self.signals.values())
        shape = self.times.shape
        if not all(a.dtype == np.float64 and a.shape == shape for a in arrays) or len(shape) != 1:
            return TelemetryFrame, tuple(getattr(self, f.name) for f in fields(self))
        return _unpack_frame, (
            self.twin_id,
            self.twin_type,
            tuple(self.signals),
            b"".join(a.tobytes() for a in arrays),
            self.quality or None,
            self.source,
            self.units or None,
            self.out_of_range or None,
        )

    @property
    def start(self) -> float:
        return float(self.times[0])

    @property
    def end(self) -> float:
        return float(self.times[-1])


def _unpack_frame(
    twin_id: str,
    twin_type: str,
    names: tuple[str, ...],
    raw: bytes,
    quality: Mapping[str, Quality] | None,
    source: str,
    units: Mapping[str, str] | None,
    out_of_range: Mapping[str, np.ndarray] | None,
) -> TelemetryFrame:
    """A frame from :meth:`TelemetryFrame.__reduce__`: its arrays are writable rows of one."""
    rows = np.frombuffer(bytearray(raw), np.float64).reshape(len(names) + 1, -1)
    signals = read_only(dict(zip(names, rows[1:], strict=True)))
    return TelemetryFrame(
        twin_id, twin_type, rows[0], signals, quality or _EMPTY, source, units or _EMPTY,
        out_of_range or _EMPTY,
    )  # fmt: skip


@dataclass(frozen=True, slots=True, eq=False)
class WaveformFrame:
    """A chunk of one high-rate signal: ``samples[i]`` was taken at ``start + i / sample_rate``.

    ``out_of_range`` is set by validation: how many samples lay outside the declared range
    (and are now NaN)."""

    twin_id: str
    twin_type: str
    signal: str
    start: float
    sample_rate: float
    samples: np.ndarray
    quality: Quality = Quality.GOOD
    source: str = "simulator"
    out_of_range: int = 0

    @property
    def readings(self) -> int:
        return len(self.samples)

    @property
    def end(self) -> float:
        """Time just after the last sample (epoch seconds)."""
        return self.start + len(self.samples) / self.sample_rate


@dataclass(frozen=True, slots=True)
class RawMessage:
    """An undecoded payload, exactly as a protocol delivered it."""

    source: str
    payload: bytes
    received: float

    @property
    def readings(self) -> int:
        return 0


Frame = TelemetryFrame | WaveformFrame
Incoming = TelemetryFrame | WaveformFrame | RawMessage


@dataclass(frozen=True, slots=True)
class SignalState:
    """Last known value of one signal, with its source time and quality."""

    value: float
    time: float
    quality: Quality
    stale: bool = False

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled by its constructor: several per twin state cross between processes, and
        the dataclass default looks its fields up each time."""
        return SignalState, (self.value, self.time, self.quality, self.stale)


@dataclass(frozen=True, slots=True)
class PropertyState:
    """Desired and reported side of one writable property of a twin, each with a version.

    ``desired`` is what the twin is being steered to (``None`` until a valid desired change
    arrived); ``desired_version`` counts the changes applied, ``desired_at`` is the time of
    the latest. ``reported`` is the device's latest report of the property (``None`` until
    one arrived, and always for a property without a reported signal); ``reported_version``
    counts reports that moved by more than the property's tolerance, ``reported_at`` is the
    event time of the latest report. ``in_sync``: the reported value is within the tolerance
    of the desired one (``True`` while nothing is desired, ``False`` while a desired value
    has no report yet).

    >>> PropertyState().in_sync, PropertyState(desired=250.0, desired_version=1).in_sync
    (True, True)
    """

    desired: float | None = None
    desired_version: int = 0
    desired_at: datetime | None = None
    reported: float | None = None
    reported_version: int = 0
    reported_at: datetime | None = None
    in_sync: bool = True

    def to_json(self) -> dict[str, Any]:
        """The property's entry in twin-state JSON (schema twin_state.v3.json; NaN -> null)."""
        return {
            "desired": None if self.desired is None else _finite(self.desired),
            "desired_version": int(self.desired_version),
            "desired_at": iso(self.desired_at),
            "reported": None if self.reported is None else _finite(self.reported),
            "reported_version": int(self.reported_version),
            "reported_at": iso(self.reported_at),
            "in_sync": bool(self.in_sync),
        }


@dataclass(frozen=True, slots=True)
class TwinState:
    """The state of one twin at ``time`` (event time of its newest reading).

    ``signals`` holds the reported value of each signal; ``properties`` the desired and
    reported side of each writable property the twin's type declares (read-only; empty for
    a type without writable properties).
    """

    twin_id: str
    twin_type: str
    time: datetime
    status: SyncStatus
    signals: Mapping[str, SignalState]
    readings: int = 0
    dead_letters: int = 0
    properties: Mapping[str, PropertyState] = field(default_factory=_empty)
    #: The twin's newest remaining-useful-life estimate (from its windows), if any.
    rul: RulEstimate | None = None
    #: Replication sync status of its properties, as twin-state JSON's ``replication``
    #: object (``None`` in an instance without replication).
    sync: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if type(self.properties) is not MappingProxyType:
            object.__setattr__(self, "properties", read_only(self.properties))

    def __getstate__(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        """Also a state pickled before ``rul`` or ``sync`` existed (a recovery snapshot)."""
        names = [f.name for f in fields(self)]
        values = dict(zip(names, state, strict=False))
        values.setdefault("rul", None)
        values.setdefault("sync", None)
        for name in names:
            object.__setattr__(self, name, values[name])

    def to_row(self) -> dict[str, Any]:
        """Flat row for tabular sinks: one column per signal value/quality, and per property
        ``<prop>__desired``, ``<prop>__reported`` (NaN when unknown) and ``<prop>__in_sync``."""
        row: dict[str, Any] = {
            "twin_id": self.twin_id,
            "twin_type": self.twin_type,
            "time": self.time,
            "status": self.status.value,
            "readings": self.readings,
            "dead_letters": self.dead_letters,
        }
        for name, sig in self.signals.items():
            row[name] = sig.value
            row[f"{name}__age_s"] = self.time.timestamp() - sig.time
            row[f"{name}__quality"] = sig.quality.name.lower()
            row[f"{name}__stale"] = sig.stale
        for name, prop in self.properties.items():
            row[f"{name}__desired"] = math.nan if prop.desired is None else prop.desired
            row[f"{name}__reported"] = math.nan if prop.reported is None else prop.reported
            row[f"{name}__in_sync"] = prop.in_sync
        rul = self.rul
        row["rul_hours"] = None if rul is None else rul.hours
        row["rul_low_hours"] = None if rul is None else rul.low_hours
        row["rul_high_hours"] = None if rul is None else rul.high_hours
        row["health"] = None if rul is None else rul.health
        return row


@dataclass(frozen=True, slots=True)
class RulEstimate:
    """Remaining useful life from a health indicator's trend, with an interval.

    ``hours`` is the central estimate; ``low_hours``/``high_hours`` bound it (about 90 %).
    ``math.inf`` means no degradation trend is visible.
    """

    indicator: str
    health: float
    hours: float
    low_hours: float
    high_hours: float

    def to_json(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return None if math.isinf(x) or math.isnan(x) else round(x, 3)

        return {
            "indicator": self.indicator,
            "health": round(self.health, 4),
            "hours": num(self.hours),
            "low_hours": num(self.low_hours),
            "high_hours": num(self.high_hours),
        }


@dataclass(frozen=True, slots=True)
class WindowFeatures:
    """Features of one twin over the event-time window ``[start, end)``.

    ``features`` keys are ``"<signal>.<feature>"``, e.g. ``"power_kw.mean"``,
    ``"vibration.dominant_hz"``, ``"vibration.fault.bpfo"``. Later stages fill in
    ``anomaly_score``/``anomaly_threshold`` and ``rul`` with :func:`dataclasses.replace`.
    """

    twin_id: str
    twin_type: str
    start: datetime
    end: datetime
    features: Mapping[str, float]
    counts: Mapping[str, int] = field(default_factory=_empty)
    late: int = 0
    anomaly_score: float | None = None
    anomaly_threshold: float | None = None
    rul: RulEstimate | None = None

    @property
    def is_anomalous(self) -> bool:
        return (
            self.anomaly_score is not None
            and self.anomaly_threshold is not None
            and self.anomaly_score > self.anomaly_threshold
        )

    def to_row(self) -> dict[str, Any]:
        """Flat row for tabular sinks (feature names become columns)."""
        row: dict[str, Any] = {
            "twin_id": self.twin_id,
            "twin_type": self.twin_type,
            "start": self.start,
            "end": self.end,
            "late": self.late,
            "anomaly_score": self.anomaly_score,
            "anomaly_threshold": self.anomaly_threshold,
            "rul_hours": None if self.rul is None else self.rul.hours,
            "rul_low_hours": None if self.rul is None else self.rul.low_hours,
            "rul_high_hours": None if self.rul is None else self.rul.high_hours,
            "health": None if self.rul is None else self.rul.health,
        }
        row.update(self.features)
        return row


class AlertState(StrEnum):
    RAISED = "raised"
    CLEARED = "cleared"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


#: Diagnoses an alert may carry (``None`` when the evidence supports none).
DIAGNOSES = (
    "bearing",
    "overheating",
    "underperformance",
    "impeller_wear",
    "sensor_fault",
)


@dataclass(frozen=True, slots=True)
class Alert:
    """One transition (raised or cleared) of one alarm of one twin.

    ``alert_id`` identifies the alarm across its lifecycle (raise and clear share it) and is
    derived from twin, rule and the event time it was raised, so a replay yields the same id.
    """

    SCHEMA = "twinflow.alert"
    VERSION = 1

    alert_id: str
    twin_id: str
    twin_type: str
    rule: str
    state: AlertState
    severity: Severity
    time: datetime
    raised_at: datetime
    message: str
    diagnosis: str | None = None
    evidence: Mapping[str, float] = field(default_factory=_empty)

    @staticmethod
    def make_id(twin_id: str, rule: str, raised_at: datetime) -> str:
        return deterministic_id("alert", twin_id, rule, iso(raised_at))

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.SCHEMA,
            "version": self.VERSION,
            "alert_id": self.alert_id,
            "twin_id": self.twin_id,
            "twin_type": self.twin_type,
            "rule": self.rule,
            "state": self.state.value,
            "severity": self.severity.value,
            "time": iso(self.time),
            "raised_at": iso(self.raised_at),
            "message": self.message,
            "diagnosis": self.diagnosis,
            "evidence": {k: _finite(v) for k, v in self.evidence.items()},
        }


class CommandStatus(StrEnum):
    """Where a command is in its lifecycle.

    ``issued`` (decided by a policy, a request or a desired-property change) -> ``queued``
    (checked against the twin's model and rate limit, handed to the actuator) -> ``sent`` (on
    the wire) -> ``acknowledged`` (the device or its server accepted it) -> ``succeeded`` /
    ``failed`` / ``timed_out``. ``rejected`` (refused before sending) and ``expired`` (its
    ``expires_at`` passed before it could be sent) end a command that never left.
    """

    ISSUED = "issued"
    QUEUED = "queued"
    SENT = "sent"
    ACKNOWLEDGED = "acknowledged"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    EXPIRED = "expired"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Command:
    """A command to one twin's actuator, e.g. ``derate`` with ``{"fraction": 0.7}``.

    ``command_id`` derives from twin, command name and the event time it was issued, so a
    replay yields the same id; ``reason`` names the alert (or request) that caused it.
    """

    SCHEMA = "twinflow.command"
    VERSION = 2

    command_id: str
    twin_id: str
    twin_type: str
    name: str
    params: Mapping[str, float]
    issued_at: datetime
    expires_at: datetime
    reason: str
    status: CommandStatus = CommandStatus.ISSUED
    detail: str = ""
    #: Who decided it: ``policy`` (the flow's own reactions), ``request`` (from outside, e.g. a
    #: Kafka command request) or ``desired`` (a change of a desired property).
    origin: str = "policy"
    #: When this status was reached (the flow's reference clock); ``None`` while issued.
    status_at: datetime | None = None
    #: Delivery attempts so far (from the protocol edge's reports).
    attempt: int = 0

    @staticmethod
    def make_id(twin_id: str, name: str, issued_at: datetime) -> str:
        return deterministic_id("command", twin_id, name, iso(issued_at))

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.SCHEMA,
            "version": self.VERSION,
            "command_id": self.command_id,
            "twin_id": self.twin_id,
            "twin_type": self.twin_type,
            "name": self.name,
            "params": {k: _finite(v) for k, v in self.params.items()},
            "issued_at": iso(self.issued_at),
            "expires_at": iso(self.expires_at),
            "reason": self.reason,
            "status": self.status.value,
            "detail": self.detail,
            "origin": self.origin,
            "status_at": iso(self.status_at) if self.status_at is not None else None,
            "attempt": self.attempt,
        }


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """What a protocol edge learned about a command it was handed.

    Sinks report ``sent``, ``acknowledged``, ``succeeded`` and ``failed`` as they observe them
    (``expired`` when a command's ``expires_at`` passed before it could be sent, ``rejected``
    when the edge refuses it before sending); the flow's command book turns them into status
    transitions on the commands stream and decides time-outs itself.
    """

    command_id: str
    twin_id: str
    status: CommandStatus
    at: datetime
    detail: str = ""
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class DesiredChange:
    """A request to steer a writable property of a twin (declared in its DTDL model) to ``value``.

    It reaches both the twin's state (the desired side of the property, with a new version)
    and its command book (which turns it into the property's command and tracks it until the
    reported value matches within the property's tolerance). ``request_id`` makes the command
    id deterministic, so a replayed request is the same command.
    """

    twin_id: str
    twin_type: str
    prop: str
    value: float
    at: datetime
    request_id: str
    expires_at: datetime
    source: str = "request"


TERMINAL_COMMAND_STATUSES = frozenset(
    {
        CommandStatus.SUCCEEDED,
        CommandStatus.FAILED,
        CommandStatus.TIMED_OUT,
        CommandStatus.EXPIRED,
        CommandStatus.REJECTED,
    }
)


def capped_payload(payload: str | bytes, limit: int = 2048) -> str:
    """At most ``limit`` characters of ``payload``; a longer one keeps its start and ends with
    its size and SHA-256, so the whole input can still be recognised.

    >>> capped_payload("short")
    'short'
    >>> p = capped_payload("x" * 10_000, 120)
    >>> len(p), p[-87:]
    (120, '…[10000 bytes, sha256 e4ee97ec252749d2096447e849628d0d7734f51700416eefbb33574bf0b3ee75]')
    """
    raw = payload if isinstance(payload, bytes) else payload.encode("utf-8", "surrogatepass")
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    if len(text) <= limit and (isinstance(payload, str) or len(raw) <= limit):
        return text
    mark = f"…[{len(raw)} bytes, sha256 {hashlib.sha256(raw).hexdigest()}]"
    return text[: max(limit - len(mark), 0)] + mark


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An input that could not be used, with the stage and the reason why.

    The payload is capped when the dead letter is made (:func:`capped_payload`: an excerpt,
    the size and the SHA-256 of the whole), and so is the reason, so a huge input cannot
    make a huge dead letter. Give the whole input: the hash is taken of what is given.
    """

    stage: str
    reason: str
    source: str
    time: datetime
    twin_id: str | None = None
    payload: str = ""
    readings: int = 0

    #: Longest payload excerpt kept (dead letters must stay small).
    MAX_PAYLOAD = 2048
    #: Longest reason kept.
    MAX_REASON = 1024

    def __post_init__(self) -> None:
        if len(self.payload) > self.MAX_PAYLOAD:
            object.__setattr__(self, "payload", capped_payload(self.payload, self.MAX_PAYLOAD))
        if len(self.reason) > self.MAX_REASON:
            object.__setattr__(self, "reason", self.reason[: self.MAX_REASON - 1] + "…")

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "twinflow.deadletter",
            "version": 1,
            "stage": self.stage,
            "reason": self.reason,
            "source": self.source,
            "time": iso(self.time),
            "twin_id": self.twin_id,
            "readings": self.readings,
            "payload": self.payload[: self.MAX_PAYLOAD],
        }


@dataclass(frozen=True, slots=True)
class FaultTruth:
    """Ground truth of one injected fault: which twin, what kind, when it starts and fails."""

    twin_id: str
    kind: str
    onset: datetime
    failure: datetime
    #: For sensor faults: the signal whose sensor fails.
    signal: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "twin_id": self.twin_id,
            "kind": self.kind,
            "signal": self.signal,
            "onset": iso(self.onset),
            "failure": iso(self.failure),
        }


def _finite(v: float) -> float | None:
    """JSON has no NaN/Infinity: map them to null."""
    f = float(v)
    return f if math.isfinite(f) else None


__all__ = [
    "DIAGNOSES",
    "Alert",
    "AlertState",
    "Command",
    "CommandStatus",
    "DeadLetter",
    "FaultTruth",
    "Frame",
    "Incoming",
    "PropertyState",
    "Quality",
    "RawMessage",
    "RulEstimate",
    "Severity",
    "SignalState",
    "SyncStatus",
    "TelemetryFrame",
    "TwinState",
    "WaveformFrame",
    "WindowFeatures",
    "capped_payload",
    "deterministic_id",
]


@dataclass(frozen=True, slots=True)
class AssetRollup:
    """Alarm and health summary of one asset's parts (see ``operators/rollups.py``).

    ``twins_in_alarm`` counts the telemetry twins of the asset's subtree with an open alarm;
    ``in_alarm_by_severity`` splits them by the worst severity each has open (every severity
    is a key). ``worst_health`` is the lowest RUL health (1 healthy .. 0 failed) among them,
    ``worst_twin`` the twin that has it (``None`` until some twin has a health estimate).
    """

    SCHEMA = "twinflow.asset_rollup"
    VERSION = 1

    asset_id: str
    asset_type: str
    time: datetime
    twins_total: int
    twins_in_alarm: int
    in_alarm_by_severity: Mapping[str, int]
    worst_health: float | None = None
    worst_twin: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.SCHEMA,
            "version": self.VERSION,
            "asset_id": self.asset_id,
            "asset_type": self.asset_type,
            "time": iso(self.time),
            "twins_total": self.twins_total,
            "twins_in_alarm": self.twins_in_alarm,
            "in_alarm_by_severity": {
                s.value: self.in_alarm_by_severity.get(s.value, 0) for s in Severity
            },
            "worst_health": self.worst_health,
            "worst_twin": self.worst_twin,
        }


__all__ += ["AssetRollup"]
