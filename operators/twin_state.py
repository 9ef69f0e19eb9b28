"""The live reported state of one twin: last value, time and quality per signal, and status.

One :class:`TwinStateTracker` per twin (Bytewax keys by twin and snapshots it). Its state
is a few entries per signal of the twin's type, so it never grows with time. Staleness is
judged on event time: a signal is stale when the twin's newest reading is much newer than
the signal's own last reading.
"""

from __future__ import annotations

import math

import numpy as np

from operators.catalog import TwinType
from operators.errors import ValidationError
from operators.records import (
    Frame,
    Quality,
    SignalState,
    SyncStatus,
    TelemetryFrame,
    TwinState,
    WaveformFrame,
    utc,
)


class TwinStateTracker:
    """Folds validated frames of one twin into its reported state.

    A signal is stale when ``newest - its last time > max(min_stale_s, stale_factor ×
    expected interval)`` or when its source reports :attr:`Quality.STALE`. The status is
    INITIALIZING until every signal of the type has had a value, then ERROR if any signal's
    quality is BAD, STALE if any is stale, else SYNCHRONIZED. :meth:`update` returns a
    :class:`TwinState` when the status changes, and otherwise once every
    ``snapshot_interval_s`` of event time. Only signals of the twin's type are tracked.
    For a waveform the value is the RMS of the burst's finite samples.

    >>> from operators.catalog import PUMP
    >>> tracker = TwinStateTracker("P1", PUMP)
    >>> names = [s.name for s in PUMP.signals]
    >>> frame = TelemetryFrame("P1", "pump", np.array([0.0, 1.0]),
    ...                        {n: np.array([1.0, np.nan]) for n in names})
    >>> [s.status.value for s in tracker.update(frame)]
    ['synchronized']
    >>> late = TelemetryFrame("P1", "pump", np.array([60.0]), {"flow_m3h": np.array([2.0])})
    >>> [(s.status.value, s.signals["flow_m3h"].value) for s in tracker.update(late)]
    [('stale', 2.0)]
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
        #: Allowed silence (s) of each signal before it counts as stale.
        self._limits = {
            s.name: max(min_stale_s, stale_factor * s.expected_interval_s)
            for s in twin_type.signals
        }
        self._last: dict[str, tuple[float, float]] = {}  # name -> (value, time)
        self._quality: dict[str, tuple[Quality, float]] = {}  # name -> (quality, as of time)
        self._newest = -math.inf
        self._emitted_status: SyncStatus | None = None
        self._emitted_at = -math.inf
        self.readings = 0
        self.dead_letters = 0

    def update(self, frame: Frame) -> list[TwinState]:
        """Fold one frame in; returns the state to publish, if any (at most one)."""
        if frame.twin_id != self.twin_id:
            raise ValidationError(
                f"tracker of twin {self.twin_id!r} was given a frame of twin {frame.twin_id!r}; "
                "key the stream by twin id"
            )
        if isinstance(frame, WaveformFrame):
            end = self._observe_waveform(frame)
        else:
            end = self._observe_telemetry(frame)
        self.readings += frame.readings
        if end > self._newest:
            self._newest = end
        status = self.status()
        due = self._newest - self._emitted_at >= self.snapshot_interval_s
        if status is self._emitted_status and not due:
            return []
        return [self._publish(status)]

    def count_dead_letters(self, n: int = 1) -> None:
        """Record dead letters of this twin (reported in the next published state)."""
        self.dead_letters += n

    def snapshot_state(self) -> TwinState:
        """The current state, e.g. at the end of a run (time 1970-01-01 before any frame)."""
        return self._state(self.status())

    def status(self) -> SyncStatus:
        """The sync status as of the newest event time seen."""
        last = self._last
        if len(last) < len(self._limits):
            return SyncStatus.INITIALIZING
        qualities = [q for q, _ in self._quality.values()]
        if Quality.BAD in qualities:
            return SyncStatus.ERROR
        newest = self._newest
        if Quality.STALE in qualities or any(
            newest - last[name][1] > limit for name, limit in self._limits.items()
        ):
            return SyncStatus.STALE
        return SyncStatus.SYNCHRONIZED

    # -- internals ---------------------------------------------------------------------

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
        )


__all__ = ["TwinStateTracker"]
