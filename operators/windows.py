"""Event-time tumbling windows per twin: statistics and vibration spectra of each window.

Windows are ``[k × length_s, (k + 1) × length_s)`` in epoch seconds. A frame's arrays are
split at window boundaries with ``np.searchsorted`` and each part is folded into the
window's per-signal :class:`~twinflow.operators.features.Moments`; a waveform burst goes to the
window of its start time, adding to the moments and to running sums of its spectrum
features; readings validation refused for their declared range are counted apart from
dropouts (``<signal>.out_of_range``). The watermark trails the newest event time by
``lateness_s``; windows that end at or before it are emitted. Readings that arrive for an
already closed window are late: they are counted and returned as dead letters, never
dropped silently.

State is the open windows (at most ``lateness_s / length_s + 2`` of them), each a few
accumulators per signal, so it stays bounded however long the stream runs.

A reading far ahead of the twin's data does not move its windows on. Telemetry whose time
jumps ahead of the newest time by more than ``lateness_s`` plus four times the twin's
recent median step (the gap from one frame to the next, over its last 8 frames) is held
(at most 16 chunks) and folded only when the twin's data reaches it, when it no longer
stands out (the twin's steps grew, e.g. a device that really jumped), when the hold is full,
or at the end of the stream. So one reading with a clock error inside the validator's
``max_future_s`` no longer closes the windows its twin's next good readings belong to,
while a twin whose data really resumes after a pause waits at most until the jump is its
usual step. Waveform bursts are not held.

What an open window holds, the features it emits and the dead letter of late readings are in
:mod:`twinflow.operators.windows_open`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from twinflow.core.errors import ConfigError, ValidationError
from twinflow.core.records import DeadLetter, Frame, TelemetryFrame, WaveformFrame, WindowFeatures
from twinflow.operators.catalog import TwinType
from twinflow.operators.features import Moments, batch_stats, spectrum_features
from twinflow.operators.snapshots import copy_sharing
from twinflow.operators.windows_open import OpenWindow, late_letter

#: The open window's old name: snapshots taken before the split unpickle through it.
_Window = OpenWindow


#: Recent steps (gap from the newest time to a frame's first time) a twin remembers.
STEPS = 8
#: Telemetry chunks held back at most (then the oldest is folded).
MAX_HELD = 16
#: How many median steps beyond ``lateness_s`` a jump must be to be held.
JUMP_STEPS = 4.0


class WindowAggregator:
    """Tumbling event-time windows of one twin, with a bounded wait for late data.

    >>> from twinflow.operators.twin_type import SignalSpec, TwinType
    >>> tank = TwinType("tank", (SignalSpec("level", "m", 0, 10), SignalSpec("temp", "C", 0, 90)))
    >>> agg = WindowAggregator("T1", tank, length_s=60.0, lateness_s=10.0)
    >>> frame = TelemetryFrame("T1", "tank", np.arange(0.0, 80.0, 10.0),
    ...                        {"level": np.arange(8.0)})
    >>> windows, dead = agg.add(frame)
    >>> [(w.start.isoformat(), w.features["level.mean"]) for w in windows]
    [('1970-01-01T00:00:00+00:00', 2.5)]
    >>> windows[0].features["temp.missing"], windows[0].counts["level"]
    (1.0, 6)
    >>> late = TelemetryFrame("T1", "tank", np.array([30.0]), {"level": np.array([1.0])})
    >>> agg.add(late)[1][0].reason.split(":")[0]
    'late by 40 s'
    >>> [(w.end.isoformat(), w.late) for w in agg.flush()]
    [('1970-01-01T00:02:00+00:00', 1)]

    Readings validation refused for their declared range (``out_of_range``, now NaN) are
    their own feature, not a dropout:

    >>> refused = np.array([False, True, False, False])
    >>> _ = agg.add(TelemetryFrame("T1", "tank", np.arange(180.0, 220.0, 10.0),
    ...                            {"level": np.array([1.0, np.nan, 2.0, np.nan])},
    ...                            out_of_range={"level": refused}))
    >>> (w,) = agg.flush()
    >>> w.features["level.out_of_range"], w.features["level.missing"]
    (0.25, 0.25)
    """

    def __init__(
        self,
        twin_id: str,
        twin_type: TwinType,
        length_s: float = 300.0,
        lateness_s: float = 60.0,
        hold_ahead: bool = True,
    ) -> None:
        if not (math.isfinite(length_s) and length_s > 0):
            raise ConfigError(f"twin {twin_id!r}: window length_s must be > 0, got {length_s}")
        if not (math.isfinite(lateness_s) and lateness_s >= 0):
            raise ConfigError(f"twin {twin_id!r}: lateness_s must be >= 0, got {lateness_s}")
        self.twin_id = twin_id
        self.twin_type = twin_type
        self.length_s = float(length_s)
        self.lateness_s = float(lateness_s)
        # optional signals are summarised when they come and never reported missing
        self._expected = tuple(s.name for s in twin_type.signals if not s.optional)
        self._open: dict[int, OpenWindow] = {}
        self._newest = -math.inf
        #: End of the newest closed window: readings before it are late.
        self._closed_until = -math.inf
        self._pending_late = 0
        #: Late readings seen so far (all of them were also returned as dead letters).
        self.late_total = 0
        #: Hold telemetry that jumps ahead (see the module docstring); ``False`` gives the
        #: plain watermark of the newest time.
        self.hold_ahead = hold_ahead
        self._steps: list[float] = []
        self._held: list[TelemetryFrame] = []

    def __deepcopy__(self, memo: dict[int, Any]) -> WindowAggregator:
        """A snapshot shares the twin type and the expected signal names (immutable)."""
        return copy_sharing(self, memo, ("twin_type", "_expected"))

    def __setstate__(self, state: dict[str, object]) -> None:
        """Resume snapshots taken before the hold existed."""
        state.setdefault("_steps", [])
        state.setdefault("_held", [])
        state.setdefault("hold_ahead", True)
        self.__dict__.update(state)

    # -- public ------------------------------------------------------------------------

    def add(self, frame: Frame) -> tuple[list[WindowFeatures], list[DeadLetter]]:
        """Fold a frame in; returns the windows it closed and dead letters for late data."""
        if frame.twin_id != self.twin_id:
            raise ValidationError(
                f"windows of twin {self.twin_id!r} were given a frame of twin "
                f"{frame.twin_id!r}; key the stream by twin id"
            )
        dead: list[DeadLetter] = []
        if isinstance(frame, WaveformFrame):
            self._add_waveform(frame, dead)
        else:
            self._add_telemetry(self._admit(frame), dead)
            if self._held:
                self._release(self._newest + self._jump(), dead)
        return self._close(self._newest - self.lateness_s), dead

    def flush(self) -> list[WindowFeatures]:
        """Close every open window (end of stream); later data for them counts as late."""
        self._release(math.inf, [])
        return self._close(math.inf)

    @property
    def held(self) -> int:
        """Telemetry chunks held back because they jumped ahead of the twin's data."""
        return len(self._held)

    def advance(self, watermark: float) -> list[WindowFeatures]:
        """Close the windows that end at or before ``watermark`` without new data.

        For a twin that fell silent: the flow moves its watermark on with wall time, as
        Bytewax's event clock does, so its last windows still close (and held chunks the
        watermark reached are folded first).
        """
        if self._held:
            self._release(watermark + self.lateness_s, [])
        return self._close(watermark)

    @property
    def watermark(self) -> float:
        """Newest event time seen minus the allowed lateness (epoch seconds)."""
        return self._newest - self.lateness_s

    @property
    def open_windows(self) -> int:
        return len(self._open)

    @property
    def pending_late(self) -> int:
        """Late readings not yet reported in an emitted window's ``late`` count."""
        return self._pending_late

    # -- folding -----------------------------------------------------------------------

    def _index(self, t: float) -> int:
        """Window number of time ``t``, consistent with boundaries computed as ``k × L``."""
        length = self.length_s
        k = math.floor(t / length)
        if t < k * length:
            k -= 1
        elif t >= (k + 1) * length:
            k += 1
        return k

    def _window(self, k: int) -> OpenWindow:
        win = self._open.get(k)
        if win is None:
            win = self._open[k] = OpenWindow()
        return win

    # -- holding jumps ahead ------------------------------------------------------------

    def _jump(self) -> float:
        """How far ahead of the newest time a chunk must start to be held."""
        steps = self._steps
        if len(steps) < 3:
            return math.inf  # too little history to tell a jump from the usual step
        ordered = sorted(steps)
        return self.lateness_s + JUMP_STEPS * max(ordered[len(ordered) // 2], 0.0)

    def _step(self, gap: float) -> None:
        self._steps.append(gap)
        if len(self._steps) > STEPS:
            del self._steps[0]

    def _admit(self, frame: TelemetryFrame) -> TelemetryFrame | None:
        """The part of ``frame`` to fold now; a part that jumps ahead is held."""
        times = frame.times
        n = len(times)
        if n == 0 or self._newest == -math.inf or not self.hold_ahead:
            return frame
        jump = self._jump()
        gap = float(times[0]) - self._newest
        self._step(gap)
        if jump == math.inf:
            return frame
        if gap > jump:
            cut = 0
        else:
            if float(times[-1]) - float(times[0]) <= jump:  # no step inside can be a jump
                return frame
            inner = np.flatnonzero(np.diff(times) > jump)
            if inner.size == 0:
                return frame
            cut = int(inner[0]) + 1
            self._step(float(times[cut] - times[cut - 1]))
        self._hold(_rows(frame, cut, n))
        return _rows(frame, 0, cut) if cut else None

    def _hold(self, chunk: TelemetryFrame) -> None:
        self._held.append(chunk)
        self._held.sort(key=lambda f: float(f.times[0]))

    def _release(self, reach: float, dead: list[DeadLetter]) -> None:
        """Fold the held chunks that start at or before ``reach`` (and the oldest ones while
        the hold is over its size)."""
        held = self._held
        while held and (float(held[0].times[0]) <= reach or len(held) > MAX_HELD):
            self._add_telemetry(held.pop(0), dead)
            reach = max(reach, self._newest + self._jump())

    def _add_telemetry(self, frame: TelemetryFrame | None, dead: list[DeadLetter]) -> None:
        if frame is None:
            return
        times = np.asarray(frame.times, dtype=np.float64)
        n = times.size
        if n == 0 or not frame.signals:
            return
        names = list(frame.signals)
        cut = 0
        if times[0] < self._closed_until:
            cut = int(np.searchsorted(times, self._closed_until, side="left"))
            self._late(frame, float(times[0]), float(times[cut - 1]), cut * len(names), dead)
            if cut == n:
                return
            times = times[cut:]
        try:
            values = np.array([frame.signals[k] for k in names], dtype=np.float64)
        except ValueError:
            values = np.empty(0)
        if values.shape != (len(names), n):
            raise ValidationError(
                f"twin {self.twin_id!r}: signal arrays do not match the {n} timestamps; "
                "validate frames before windowing"
            )
        if cut:
            values = values[:, cut:]
        refused = frame.out_of_range
        first, last = self._index(float(times[0])), self._index(float(times[-1]))
        if first == last and not refused:  # the common frame: one window, nothing refused
            rows = batch_stats(times - first * self.length_s, values)
            self._fold(self._window(first).moments, names, rows)
            self._newest = max(self._newest, float(times[-1]))
            return
        if first == last:
            parts = [(first, 0, times.size)]
        else:
            edges = np.arange(first + 1, last + 1) * self.length_s
            bounds = np.concatenate(([0], np.searchsorted(times, edges, side="left"), [n - cut]))
            filled = np.flatnonzero(bounds[1:] > bounds[:-1]).tolist()
            parts = [(first + i, int(bounds[i]), int(bounds[i + 1])) for i in filled]
        for k, a, b in parts:
            win = self._window(k)
            # Window-relative times keep the trend sums precise (epoch seconds have a
            # resolution of only ~0.2 µs); a slope does not depend on the time origin.
            self._fold(win.moments, names, batch_stats(times[a:b] - k * self.length_s,
                                                       values[:, a:b]))  # fmt: skip
            for name, mask in refused.items():
                count = int(np.count_nonzero(mask[cut + a : cut + b]))
                if count:
                    win.refuse(name, count)
        self._newest = max(self._newest, float(times[-1]))

    @staticmethod
    def _fold(moments: dict[str, Moments], names: list[str], rows: list[list[float]]) -> None:
        """Each signal's :func:`batch_stats` row into its moments (``OpenWindow.fold`` for
        all signals of a frame part at once)."""
        for name, row in zip(names, rows, strict=True):
            acc = moments.get(name)
            if acc is None:
                acc = moments[name] = Moments()
            acc.merge_row(row)

    def _add_waveform(self, frame: WaveformFrame, dead: list[DeadLetter]) -> None:
        samples = np.asarray(frame.samples, dtype=np.float64)
        n = samples.size
        if n == 0:
            return
        start, rate = float(frame.start), float(frame.sample_rate)
        end = start + (n - 1) / rate
        if start < self._closed_until:
            self._late(frame, start, end, n, dead)
            return
        k = self._index(start)
        win = self._window(k)
        times = (start - k * self.length_s) + np.arange(n) / rate
        win.fold(frame.signal, batch_stats(times, samples[None, :])[0])
        if frame.out_of_range:
            win.refuse(frame.signal, frame.out_of_range)
        spectrum = spectrum_features(
            samples, rate, self.twin_type.bands, self.twin_type.fault_frequencies
        )
        if spectrum:
            win.fold_spectrum(frame.signal, spectrum)
        self._newest = max(self._newest, end)

    # -- late data and closing ---------------------------------------------------------

    def _late(
        self, frame: Frame, first: float, last: float, readings: int, dead: list[DeadLetter]
    ) -> None:
        self._pending_late += readings
        self.late_total += readings
        windows = (self._index(first), self._index(last))
        dead.append(late_letter(frame, first, last, readings, windows, self.length_s,
                                self.lateness_s, self._newest))  # fmt: skip

    def _close(self, watermark: float) -> list[WindowFeatures]:
        if watermark == math.inf:
            if not self._open:
                return []
            boundary = (max(self._open) + 1) * self.length_s
        elif watermark > -math.inf:
            boundary = self._index(watermark) * self.length_s
        else:
            return []
        if boundary <= self._closed_until:
            return []  # every open window ends after it (data before it is late, never folded)
        self._closed_until = boundary
        ready = sorted(k for k in self._open if (k + 1) * self.length_s <= boundary)
        return [self._emit(k, self._open.pop(k)) for k in ready]

    def _emit(self, k: int, win: OpenWindow) -> WindowFeatures:
        late, self._pending_late = self._pending_late, 0
        return win.features(self.twin_id, self.twin_type.name, k, self.length_s,
                            self._expected, late)  # fmt: skip


def _rows(frame: TelemetryFrame, a: int, b: int) -> TelemetryFrame:
    """Rows ``a:b`` of a frame (its signals and out-of-range masks sliced alike)."""
    return dataclasses.replace(
        frame,
        times=frame.times[a:b],
        signals={k: np.asarray(v)[a:b] for k, v in frame.signals.items()},
        out_of_range={k: np.asarray(m)[a:b] for k, m in frame.out_of_range.items()},
    )


__all__ = ["WindowAggregator"]
