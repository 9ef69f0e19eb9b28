"""The live state of one twin: last value, time and quality per signal, status, and the
desired and reported side of each writable property.

One :class:`TwinStateTracker` per twin (Bytewax keys by twin and snapshots it). Its state
is a few entries per signal and per property of the twin's type, so it never grows with
time. Staleness is judged on event time: a signal is stale when the twin's newest reading
is much newer than the signal's own last reading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from twinflow.core.errors import ValidationError
from twinflow.core.records import (
    DesiredChange,
    Frame,
    PropertyState,
    Quality,
    SignalState,
    SyncStatus,
    TelemetryFrame,
    TwinState,
    WaveformFrame,
)
from twinflow.core.times import utc
from twinflow.operators.catalog import PropertySpec, TwinType
from twinflow.operators.snapshots import copy_sharing


@dataclass(slots=True)
class _Property:
    """Mutable per-property state of a tracker (a :class:`PropertyState` is built on demand)."""

    desired: float | None = None
    desired_version: int = 0
    desired_at: datetime | None = None
    #: request id of the latest applied change (a redelivered request is applied once)
    request_id: str | None = None
    reported: float | None = None
    reported_version: int = 0
    reported_at: float = -math.inf
    #: reported value when ``reported_version`` last moved (versions count moves beyond it)
    anchor: float = math.nan
    in_sync: bool = True


def _in_sync(spec: PropertySpec, desired: float | None, reported: float | None) -> bool:
    """Reported within the property's tolerance of desired (a hair of float slack)."""
    if desired is None:
        return True
    if reported is None:
        return False
    return abs(reported - desired) <= spec.tolerance + 1e-9 * max(1.0, abs(desired))


@dataclass(frozen=True, slots=True)
class _TypeFacts:
    """What a tracker derives from its type and settings alone: shared by its twins."""

    limits: dict[str, float]
    required: dict[str, float]
    specs: dict[str, PropertySpec]
    reported_by: tuple[tuple[PropertySpec, str], ...]


#: Derived tables by (type object id, stale_factor, min_stale_s); the type is kept with
#: them so its id stays its own. Cleared when it grows past a bound (types are few).
_FACTS: dict[tuple[int, float, float], tuple[TwinType, _TypeFacts]] = {}
_MAX_FACTS = 256
#: Attributes a snapshot shares with the live tracker.
_SHARED = ("twin_type", "_limits", "_required", "_specs", "_reported_by")


def _type_facts(twin_type: TwinType, stale_factor: float, min_stale_s: float) -> _TypeFacts:
    key = (id(twin_type), stale_factor, min_stale_s)
    hit = _FACTS.get(key)
    if hit is not None and hit[0] is twin_type:
        return hit[1]
    limits = {
        s.name: max(min_stale_s, stale_factor * s.expected_interval_s) for s in twin_type.signals
    }
    facts = _TypeFacts(
        limits=limits,
        required={n: limits[n] for n in twin_type.expected_signals},
        specs={p.name: p for p in twin_type.properties},
        reported_by=tuple(
            (p, p.reported_signal) for p in twin_type.properties if p.reported_signal is not None
        ),
    )
    if len(_FACTS) >= _MAX_FACTS:
        _FACTS.clear()
    _FACTS[key] = (twin_type, facts)
    return facts


class TwinStateTracker:
    """Folds validated frames and desired changes of one twin into its state.

    A signal is stale when ``newest - its last time > max(min_stale_s, stale_factor ×
    expected interval)`` or when its source reports :attr:`Quality.STALE`. The status is
    INITIALIZING until every signal of the type has had a value, then ERROR if any signal's
    quality is BAD, STALE if any is stale, else SYNCHRONIZED. :meth:`update` returns a
    :class:`TwinState` when the status changes, and otherwise once every
    ``snapshot_interval_s`` of event time. Only signals of the twin's type are tracked.
    For a waveform the value is the RMS of the burst's finite samples.

    Properties (``twin_type.properties``, one entry each): the *reported* side of a property
    with a ``reported_signal`` is that signal's newest finite reading in a telemetry frame
    (its event time is ``reported_at``; an older reading, or one of BAD or STALE quality,
    does not count). ``reported_version`` moves only when the report differs by more than
    the property's tolerance from the report that last moved it, so a steady (or slightly
    noisy) report keeps its version. The *desired* side comes from :class:`DesiredChange`
    items given to :meth:`update`: a valid change (declared writable property,
    ``PropertySpec.check(value)`` empty) sets the desired value, increments
    ``desired_version``, sets ``desired_at = change.at`` and publishes a state. An invalid
    change, one older than the current desired value, or the same request again (by
    ``request_id``) changes nothing and publishes nothing: the command book reports the
    rejection, not the twin state. A state is also published when a property's
    ``reported_version`` or ``in_sync`` changes.

    >>> from twinflow.operators.catalog import ActuatorSpec, PropertySpec, SignalSpec
    >>> fan = TwinType("fan", (SignalSpec("speed_rpm", "rpm", 0, 1500),
    ...                        SignalSpec("speed_setpoint_rpm", "rpm", 0, 1500)),
    ...                (ActuatorSpec("set_speed", {"rpm": (200.0, 1500.0)}),),
    ...                properties=(PropertySpec("speed_setpoint", "rpm", 200, 1500,
    ...                                         command="set_speed", param="rpm",
    ...                                         reported_signal="speed_setpoint_rpm"),))
    >>> tracker = TwinStateTracker("F1", fan)
    >>> frame = TelemetryFrame("F1", "fan", np.array([0.0, 1.0]),
    ...                        {s.name: np.array([1.0, np.nan]) for s in fan.signals})
    >>> [s.status.value for s in tracker.update(frame)]
    ['synchronized']
    >>> late = TelemetryFrame("F1", "fan", np.array([60.0]), {"speed_rpm": np.array([2.0])})
    >>> [(s.status.value, s.signals["speed_rpm"].value) for s in tracker.update(late)]
    [('stale', 2.0)]
    >>> from datetime import UTC, datetime
    >>> at = datetime(2026, 1, 1, tzinfo=UTC)
    >>> change = DesiredChange("F1", "fan", "speed_setpoint", 250.0, at, "r1", at)
    >>> p = tracker.update(change)[0].properties["speed_setpoint"]
    >>> p.desired, p.desired_version, p.reported, p.reported_version, p.in_sync
    (250.0, 1, 1.0, 1, False)
    """

    def __init__(
        self,
        twin_id: str,
        twin_type: TwinType,
        stale_factor: float = 3.0,
        min_stale_s: float = 5.0,
        snapshot_interval_s: float = 300.0,
    ) -> None:
        self.twin_id = twin_id
        self.twin_type = twin_type
        self.stale_factor = stale_factor
        self.min_stale_s = min_stale_s
        self.snapshot_interval_s = snapshot_interval_s
        facts = _type_facts(twin_type, stale_factor, min_stale_s)
        #: Allowed silence (s) of each signal before it counts as stale.
        self._limits: dict[str, float] = facts.limits
        #: Signals the status waits for and judges (optional ones never hold it back).
        self._required: dict[str, float] = facts.required
        self._last: dict[str, tuple[float, float]] = {}  # name -> (value, time)
        self._quality: dict[str, tuple[Quality, float]] = {}  # name -> (quality, as of time)
        #: Declared properties, and (property, signal) pairs of those the device reports.
        self._specs: dict[str, PropertySpec] = facts.specs
        self._reported_by: tuple[tuple[PropertySpec, str], ...] = facts.reported_by
        self._props = {name: _Property() for name in self._specs}
        self._newest = -math.inf
        self._emitted_status: SyncStatus | None = None
        self._emitted_at = -math.inf
        self.readings = 0
        self.dead_letters = 0

    def __deepcopy__(self, memo: dict[int, Any]) -> TwinStateTracker:
        """A snapshot shares the type and the tables derived from it (immutable)."""
        return copy_sharing(self, memo, _SHARED)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A resumed tracker shares its type's tables again (they were pickled per twin)."""
        self.__dict__.update(state)
        kind = state.get("twin_type")
        if isinstance(kind, TwinType) and "_required" in state:
            facts = _type_facts(kind, state["stale_factor"], state["min_stale_s"])
            if facts.limits == state["_limits"] and facts.required == state["_required"]:
                self._limits, self._required = facts.limits, facts.required
            if facts.specs == state.get("_specs"):
                self._specs, self._reported_by = facts.specs, facts.reported_by

    def update(self, frame: Frame | DesiredChange) -> list[TwinState]:
        """Fold one frame or desired change in; returns the state to publish, if any (at most
        one)."""
        if frame.twin_id != self.twin_id:
            kind = "desired change" if isinstance(frame, DesiredChange) else "frame"
            raise ValidationError(
                f"tracker of twin {self.twin_id!r} was given a {kind} of twin "
                f"{frame.twin_id!r}; key the stream by twin id"
            )
        if isinstance(frame, DesiredChange):
            return [self._publish(self.status())] if self._desire(frame) else []
        props_changed = False
        if isinstance(frame, WaveformFrame):
            end = self._observe_waveform(frame)
        else:
            end = self._observe_telemetry(frame)
            if self._reported_by:
                props_changed = self._observe_properties(frame)
        self.readings += frame.readings
        if end > self._newest:
            self._newest = end
        status = self.status()
        due = self._newest - self._emitted_at >= self.snapshot_interval_s
        if status is self._emitted_status and not due and not props_changed:
            return []
        return [self._publish(status)]

    def property_state(self, name: str) -> PropertyState:
        """The desired and reported side of one declared property."""
        if name not in self._props:
            known = ", ".join(self._specs) or "none"
            raise ValidationError(
                f"twin {self.twin_id!r} (type {self.twin_type.name!r}) has no property "
                f"{name!r}; its properties: {known}"
            )
        p = self._props[name]
        return PropertyState(
            desired=p.desired,
            desired_version=p.desired_version,
            desired_at=p.desired_at,
            reported=p.reported,
            reported_version=p.reported_version,
            reported_at=None if p.reported is None else utc(p.reported_at),
            in_sync=p.in_sync,
        )

    def count_dead_letters(self, n: int = 1) -> None:
        """Record dead letters of this twin (reported in the next published state)."""
        self.dead_letters += n

    def snapshot_state(self) -> TwinState:
        """The current state, e.g. at the end of a run (time 1970-01-01 before any frame)."""
        return self._state(self.status())

    def status(self) -> SyncStatus:
        """The sync status as of the newest event time seen."""
        last = self._last
        required = getattr(self, "_required", self._limits)  # trackers pickled before it
        if any(name not in last for name in required):
            return SyncStatus.INITIALIZING
        qualities = [q for q, _ in self._quality.values()]
        if Quality.BAD in qualities:
            return SyncStatus.ERROR
        newest = self._newest
        if Quality.STALE in qualities or any(
            newest - last[name][1] > limit for name, limit in required.items()
        ):
            return SyncStatus.STALE
        return SyncStatus.SYNCHRONIZED

    # -- internals ---------------------------------------------------------------------

    def _desire(self, change: DesiredChange) -> bool:
        """Apply a desired change if it is valid and new; True when the state changed."""
        spec = self._specs.get(change.prop)
        if spec is None or not spec.writable or spec.check(change.value):
            return False  # rejected: the command book reports why
        p = self._props[change.prop]
        if change.request_id == p.request_id:
            return False  # the same request delivered again
        if p.desired_at is not None and change.at < p.desired_at:
            return False  # an older request never overrides a newer desired value
        p.desired = float(change.value)
        p.desired_version += 1
        p.desired_at = change.at
        p.request_id = change.request_id
        p.in_sync = _in_sync(spec, p.desired, p.reported)
        return True

    def _observe_properties(self, frame: TelemetryFrame) -> bool:
        """Take reported values from the frame; True when a version or in_sync changed."""
        changed = False
        times = frame.times
        n = len(times)
        if n == 0:
            return False
        for spec, signal in self._reported_by:
            values = frame.signals.get(signal)
            if values is None or len(values) != n:
                continue
            quality = frame.quality.get(signal, Quality.GOOD)
            if quality == Quality.BAD or quality == Quality.STALE:
                continue
            newest = values[-1]
            if newest == newest:
                value, time = float(newest), float(times[-1])
            else:
                ok = ~np.isnan(values)
                if not ok.any():
                    continue
                i = n - 1 - int(np.argmax(ok[::-1]))
                value, time = float(values[i]), float(times[i])
            if not math.isfinite(value):
                continue
            p = self._props[spec.name]
            if time < p.reported_at:
                continue  # an older report does not roll back a newer one
            p.reported, p.reported_at = value, time
            if p.reported_version == 0 or abs(value - p.anchor) > spec.tolerance:
                p.reported_version += 1
                p.anchor = value
                changed = True
            in_sync = _in_sync(spec, p.desired, value)
            if in_sync is not p.in_sync:
                p.in_sync = in_sync
                changed = True
        return changed

    def _observe_telemetry(self, frame: TelemetryFrame) -> float:
        times = frame.times
        n = len(times)
        if n == 0:
            return -math.inf
        end = float(times[-1])
        reported = frame.quality
        for name, values in frame.signals.items():
            if name not in self._limits:
                continue
            newest = values[-1]
            if newest == newest:  # fast path: the newest reading is not NaN
                self._remember(name, float(newest), end)
            else:
                ok = ~np.isnan(values)
                if ok.any():
                    i = n - 1 - int(np.argmax(ok[::-1]))
                    self._remember(name, float(values[i]), float(times[i]))
            self._note_quality(name, reported.get(name, Quality.GOOD), end)
        for name, quality in reported.items():
            if name not in frame.signals:
                self._note_quality(name, quality, end)
        return end

    def _observe_waveform(self, frame: WaveformFrame) -> float:
        samples = np.asarray(frame.samples, dtype=np.float64)
        if samples.size == 0:
            return -math.inf
        end = frame.start + (samples.size - 1) / frame.sample_rate
        name = frame.signal
        if name not in self._limits:
            return end
        ok = np.isfinite(samples)
        if ok.all():
            last, value = end, math.sqrt(float(samples @ samples) / samples.size)
        elif ok.any():
            good = samples[ok]
            i = samples.size - 1 - int(np.argmax(ok[::-1]))
            last = frame.start + i / frame.sample_rate
            value = math.sqrt(float(good @ good) / good.size)
        else:
            last = value = math.nan
        if value == value:
            self._remember(name, value, float(last))
        self._note_quality(name, frame.quality, end)
        return end

    def _remember(self, name: str, value: float, time: float) -> None:
        prev = self._last.get(name)
        if prev is None or time >= prev[1]:
            self._last[name] = (value, time)

    def _note_quality(self, name: str, quality: Quality, time: float) -> None:
        """Quality of ``name`` as of ``time`` (an older report does not override a newer)."""
        if name not in self._limits:
            return
        prev = self._quality.get(name)
        if prev is None or time >= prev[1]:
            if type(quality) is not Quality:
                quality = Quality(quality)
            self._quality[name] = (quality, time)

    def _is_stale(self, name: str) -> bool:
        q = self._quality.get(name)
        if q is not None and q[0] is Quality.STALE:
            return True
        last = self._last.get(name)
        return last is not None and self._newest - last[1] > self._limits[name]

    def _publish(self, status: SyncStatus) -> TwinState:
        self._emitted_status = status
        self._emitted_at = self._newest
        return self._state(status)

    def _state(self, status: SyncStatus) -> TwinState:
        signals = {}
        for name in self._limits:
            last = self._last.get(name)
            q = self._quality.get(name)
            if last is None and q is None:
                continue
            value, time = last if last is not None else (math.nan, q[1])  # type: ignore[index]
            quality = q[0] if q is not None else Quality.GOOD
            signals[name] = SignalState(value, time, quality, self._is_stale(name))
        newest = self._newest if self._newest > -math.inf else 0.0
        return TwinState(
            twin_id=self.twin_id,
            twin_type=self.twin_type.name,
            time=utc(newest),
            status=status,
            signals=signals,
            readings=self.readings,
            dead_letters=self.dead_letters,
            properties={name: self.property_state(name) for name in self._props},
        )


__all__ = ["TwinStateTracker"]
