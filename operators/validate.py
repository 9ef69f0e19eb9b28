"""Check decoded frames against their twin type's contract before any state sees them.

A frame that breaks the contract as a whole (unknown type, twin or signal, bad times or
shapes) is rejected with one dead letter. Values outside a signal's physical range are
replaced by NaN (a dropout) and reported in one dead letter per signal, so the rest of
the frame still flows. All checks are a few numpy reductions per signal.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from collections.abc import Mapping
from typing import Any, NoReturn

import numpy as np

from operators.catalog import CATALOG, SignalSpec, TwinType
from operators.errors import TwinflowError, ValidationError
from operators.records import (
    DeadLetter,
    Frame,
    RawMessage,
    TelemetryFrame,
    WaveformFrame,
    iso,
    utc,
)

#: How many offending (time, value) pairs a range dead letter quotes.
EXCERPT_PAIRS = 10
#: How many payload bytes a decode dead letter quotes.
EXCERPT_BYTES = 200


class Validator:
    """Validates frames against ``catalog`` (and the registered ``twins``, when given).

    ``twins`` maps twin id to twin type name; ``now`` passed to :meth:`validate` is the
    reference clock (wall time for real sources, the simulator's clock for the simulated
    plant) that bounds how far in the future or past a frame's times may lie.

    >>> from operators.records import TelemetryFrame
    >>> v = Validator(twins={"P1": "pump"})
    >>> frame = TelemetryFrame("P1", "pump", np.array([100.0, 101.0]),
    ...                        {"flow_m3h": np.array([250.0, 9999.0])})
    >>> ok, dead = v.validate(frame, now=101.0)
    >>> ok.signals["flow_m3h"].tolist(), dead[0].readings
    ([250.0, nan], 1)
    >>> v.validate(TelemetryFrame("P9", "pump", frame.times, frame.signals), now=101.0)[1][0].reason
    "twin 'P9' is not registered; add it to the deployment's twins (known: P1)"
    """

    def __init__(
        self,
        catalog: Mapping[str, TwinType] = CATALOG,
        twins: Mapping[str, str] | None = None,
        max_future_s: float = 300.0,
        max_past_s: float = 7 * 86400.0,
    ) -> None:
        self.catalog = catalog
        self.twins = twins
        self.max_future_s = max_future_s
        self.max_past_s = max_past_s
        self._specs: dict[str, dict[str, SignalSpec]] = {
            name: {s.name: s for s in t.signals} for name, t in catalog.items()
        }
        self._bounds_cache: dict[tuple[str, tuple[str, ...]], tuple[np.ndarray, np.ndarray]] = {}

    def validate(self, frame: Frame, now: float) -> tuple[Frame | None, list[DeadLetter]]:
        """The frame (a cleaned copy if values were out of range) or ``None``, and dead letters."""
        try:
            if isinstance(frame, TelemetryFrame):
                return self._telemetry(frame, now)
            if isinstance(frame, WaveformFrame):
                return self._waveform(frame, now)
            raise ValidationError(f"expected a telemetry or waveform frame, got {type(frame)}")
        except ValidationError as e:
            return None, [self._reject(frame, now, str(e))]

    # -- whole frames ------------------------------------------------------------------

    def _telemetry(self, frame: TelemetryFrame, now: float) -> tuple[Frame, list[DeadLetter]]:
        twin = frame.twin_id
        specs = self._check_twin(frame)
        times = _numbers(frame.times, twin, "times")
        n = times.size
        if n == 0:
            raise ValidationError(f"twin {twin!r}: empty frame (no timestamps)")
        if not frame.signals:
            raise ValidationError(f"twin {twin!r}: empty frame (no signals)")
        first, last = float(times[0]), float(times[-1])
        # Non-decreasing with finite ends implies all finite (NaN fails every comparison).
        ordered = n == 1 or bool((times[1:] >= times[:-1]).all())
        if not (ordered and math.isfinite(first) and math.isfinite(last)):
            _bad_times(twin, times)
        self._check_span(twin, first, last, now)
        unknown = [name for name in frame.signals if name not in specs]
        if unknown:
            raise ValidationError(
                f"twin {twin!r}: unknown signal(s) {', '.join(map(repr, unknown))} for twin "
                f"type {frame.twin_type!r}; known signals: {', '.join(specs)}"
            )
        waves = [name for name in frame.signals if specs[name].waveform]
        if waves:
            raise ValidationError(
                f"twin {twin!r}: signal(s) {', '.join(map(repr, waves))} are waveforms; "
                "send them as waveform frames"
            )
        arrays = [_numbers(raw, twin, f"signal {name!r}") for name, raw in frame.signals.items()]
        for name, values in zip(frame.signals, arrays, strict=True):
            if values.size != n:
                raise ValidationError(
                    f"twin {twin!r}: signal {name!r} has {values.size} values but the frame "
                    f"has {n} timestamps"
                )
        # One vectorised range check over all signals; details only for suspect ones.
        low, high = self._bounds(frame.twin_type, tuple(frame.signals), specs)
        block = np.array(arrays)
        suspect = (np.fmin.reduce(block, axis=1) < low) | (np.fmax.reduce(block, axis=1) > high)
        converted = times is not frame.times or any(
            a is not raw for a, raw in zip(arrays, frame.signals.values(), strict=True)
        )
        if not converted and not suspect.any():
            return frame, []
        dead: list[DeadLetter] = []
        clean = dict(zip(frame.signals, arrays, strict=True))
        names = list(clean)
        for i in np.flatnonzero(suspect).tolist():
            name = names[i]
            clean[name] = self._clamp(frame, name, specs[name], times, arrays[i], now, dead)
        return dataclasses.replace(frame, times=times, signals=clean), dead

    def _bounds(
        self, kind: str, names: tuple[str, ...], specs: dict[str, SignalSpec]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Low and high limits of ``names`` as arrays (cached per signal layout)."""
        key = (kind, names)
        bounds = self._bounds_cache.get(key)
        if bounds is None:
            if len(self._bounds_cache) >= 1024:
                self._bounds_cache.clear()
            bounds = self._bounds_cache[key] = (
                np.array([specs[n].low for n in names]),
                np.array([specs[n].high for n in names]),
            )
        return bounds

    def _waveform(self, frame: WaveformFrame, now: float) -> tuple[Frame, list[DeadLetter]]:
        twin = frame.twin_id
        specs = self._check_twin(frame)
        spec = specs.get(frame.signal)
        if spec is None:
            raise ValidationError(
                f"twin {twin!r}: unknown signal {frame.signal!r} for twin type "
                f"{frame.twin_type!r}; known signals: {', '.join(specs)}"
            )
        if not spec.waveform:
            raise ValidationError(
                f"twin {twin!r}: signal {frame.signal!r} is a scalar signal, not a waveform; "
                "send it in a telemetry frame"
            )
        rate = frame.sample_rate
        if not _real(rate) or not math.isfinite(rate) or rate <= 0:
            raise ValidationError(
                f"twin {twin!r}: waveform {frame.signal!r} has sample_rate {rate!r}; "
                "it must be a positive number of samples per second"
            )
        samples = _numbers(frame.samples, twin, f"waveform {frame.signal!r}")
        if samples.size == 0:
            raise ValidationError(f"twin {twin!r}: empty waveform {frame.signal!r}")
        start = frame.start
        if not _real(start) or not math.isfinite(start):
            raise ValidationError(f"twin {twin!r}: waveform start {start!r} is not a finite time")
        self._check_span(twin, float(start), float(start + (samples.size - 1) / rate), now)
        dead: list[DeadLetter] = []
        times = _LazyTimes(float(start), float(rate))
        fixed = self._clamp(frame, frame.signal, spec, times, samples, now, dead)
        if fixed is not frame.samples:
            frame = dataclasses.replace(frame, samples=fixed)
        return frame, dead

    def _check_twin(self, frame: Frame) -> dict[str, SignalSpec]:
        twin, kind = frame.twin_id, frame.twin_type
        if not isinstance(twin, str) or not twin:
            raise ValidationError(f"frame of type {kind!r} has twin_id {twin!r}; need a name")
        specs = self._specs.get(kind)
        if specs is None:
            raise ValidationError(
                f"twin {twin!r}: unknown twin type {kind!r}; known types: "
                f"{', '.join(sorted(self._specs))}"
            )
        if self.twins is not None:
            registered = self.twins.get(twin)
            if registered is None:
                known = ", ".join(sorted(self.twins)[:20]) or "none"
                raise ValidationError(
                    f"twin {twin!r} is not registered; add it to the deployment's twins "
                    f"(known: {known})"
                )
            if registered != kind:
                raise ValidationError(
                    f"twin {twin!r} is registered as type {registered!r} but the frame says "
                    f"{kind!r}; fix the device's twin_type or the deployment file"
                )
        return specs

    def _check_span(self, twin: str, first: float, last: float, now: float) -> None:
        # The reasons name the limit, not the distance to the clock: a replay after recovery
        # must give the same dead letter as the first pass.
        if last > now + self.max_future_s:
            raise ValidationError(
                f"twin {twin!r}: time {_when(last)} is more than {self.max_future_s:g} s ahead "
                "of the reference clock; check the device's clock"
            )
        if first < now - self.max_past_s:
            raise ValidationError(
                f"twin {twin!r}: time {_when(first)} is more than {self.max_past_s:g} s behind "
                "the reference clock; replay old data in a backfill"
            )

    # -- values ------------------------------------------------------------------------

    def _clamp(
        self,
        frame: Frame,
        name: str,
        spec: SignalSpec,
        times: np.ndarray | _LazyTimes,
        values: np.ndarray,
        now: float,
        dead: list[DeadLetter],
    ) -> np.ndarray:
        """``values`` with out-of-range readings set to NaN (a copy only if any were)."""
        lo, hi = spec.low, spec.high
        if not (np.fmin.reduce(values) < lo or np.fmax.reduce(values) > hi):
            return values
        bad = (values < lo) | (values > hi)
        idx = np.flatnonzero(bad)
        shown = idx[:EXCERPT_PAIRS]
        pairs = [
            [_when(float(t)), _num(float(v))]
            for t, v in zip(times[shown], values[shown], strict=True)
        ]
        excerpt = {
            "twin_id": frame.twin_id,
            "signal": name,
            "unit": spec.unit,
            "range": [lo, hi],
            "readings": pairs,
            "more": int(idx.size - shown.size),
        }
        dead.append(
            DeadLetter(
                stage="validate",
                reason=(
                    f"twin {frame.twin_id!r}: {idx.size} reading(s) of {name!r} outside its "
                    f"valid range [{lo:g}, {hi:g}] {spec.unit}; replaced by NaN"
                ),
                source=frame.source,
                time=utc(float(times[idx[:1]][0])),
                twin_id=frame.twin_id,
                payload=json.dumps(excerpt),
                readings=int(idx.size),
            )
        )
        out = values.copy()
        out[bad] = np.nan
        return out

    def _reject(self, frame: Any, now: float, reason: str) -> DeadLetter:
        return DeadLetter(
            stage="validate",
            reason=reason,
            source=str(getattr(frame, "source", "unknown")),
            time=utc(_event_time(frame, now)),
            twin_id=getattr(frame, "twin_id", None),
            payload=_summary(frame),
            readings=_readings(frame),
        )


def _event_time(frame: Any, now: float) -> float:
    """The time a rejected frame's data claims (its first finite, representable time), so a
    replayed frame yields the same dead letter; ``now`` when it claims none."""
    if isinstance(frame, WaveformFrame):
        candidates = [frame.start]
    elif isinstance(frame, TelemetryFrame) and isinstance(frame.times, np.ndarray):
        try:
            times = frame.times.astype(np.float64, copy=False).ravel()
        except (TypeError, ValueError):
            return now
        finite = times[np.isfinite(times)]
        candidates = [float(finite[0])] if finite.size else []
    else:
        return now
    for t in candidates:
        if _MIN_EPOCH <= t <= _MAX_EPOCH:
            return float(t)
    return now


#: Times a dead letter can carry (datetime's range, with a margin).
_MIN_EPOCH, _MAX_EPOCH = -62_000_000_000.0, 253_000_000_000.0


class _LazyTimes:
    """Times of waveform samples, built only for the few indices a dead letter quotes."""

    __slots__ = ("rate", "start")

    def __init__(self, start: float, rate: float) -> None:
        self.start, self.rate = start, rate

    def __getitem__(self, idx: np.ndarray) -> np.ndarray:
        return self.start + idx / self.rate


def dead_letter_for(msg: RawMessage, error: Exception, stage: str = "decode") -> DeadLetter:
    """A dead letter for a message that failed at ``stage``, quoting its first bytes.

    >>> dl = dead_letter_for(RawMessage("mqtt", b'{"twin_id": "P1", "x": \\xff}', 5.0),
    ...                      ValueError("payload is not UTF-8"))
    >>> dl.twin_id, dl.payload, dl.time.isoformat()
    ('P1', '{"twin_id": "P1", "x": �}', '1970-01-01T00:00:05+00:00')
    """
    payload = bytes(msg.payload)
    reason = str(error) or type(error).__name__
    if not isinstance(error, TwinflowError):
        reason = f"{type(error).__name__}: {reason}"
    return DeadLetter(
        stage=stage,
        reason=reason,
        source=msg.source,
        time=utc(msg.received),
        twin_id=_sniff_twin(payload),
        payload=payload[:EXCERPT_BYTES].decode("utf-8", errors="replace"),
        readings=0,
    )


def _sniff_twin(payload: bytes) -> str | None:
    """Best-effort twin id from an undecodable payload (so the sender can be found)."""
    head = payload[:4096].decode("utf-8", errors="replace")
    key = head.find('"twin_id"')
    if key < 0:
        return None
    rest = head[key + 9 :].lstrip()
    if not rest.startswith(":"):
        return None
    rest = rest[1:].lstrip()
    if not rest.startswith('"'):
        return None
    end = rest.find('"', 1)
    if end <= 1:
        return None
    return rest[1:end][:200]


def _numbers(array: Any, twin: str, what: str) -> np.ndarray:
    """A 1-D float64 view (or converted copy) of ``array``; refuses non-numeric data."""
    if isinstance(array, np.ndarray) and array.dtype == np.float64 and array.ndim == 1:
        return array
    try:
        arr = np.asarray(array)
    except (TypeError, ValueError) as e:
        raise ValidationError(f"twin {twin!r}: {what} is not an array of numbers ({e})") from None
    if arr.ndim != 1:
        raise ValidationError(f"twin {twin!r}: {what} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind not in "iuf":
        raise ValidationError(f"twin {twin!r}: {what} must hold numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def _bad_times(twin: str, times: np.ndarray) -> NoReturn:
    """Raise the reason a time array is unusable: a non-finite time, or one going back."""
    finite = np.isfinite(times)
    if not finite.all():
        i = int(np.argmin(finite))
        raise ValidationError(f"twin {twin!r}: times[{i}] is {times[i]}, not a finite time")
    i = int(np.argmax(times[1:] < times[:-1])) + 1
    raise ValidationError(
        f"twin {twin!r}: times must be non-decreasing but times[{i}] = {times[i]} "
        f"< times[{i - 1}] = {times[i - 1]}; sort the frame at the source"
    )


def _real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool | np.bool_)


def _num(v: float) -> float | str:
    return v if math.isfinite(v) else repr(v)


def _when(t: float) -> str | float:
    try:
        return iso(utc(t)) or t
    except (OverflowError, OSError, ValueError):
        return t


def _readings(frame: Any) -> int:
    try:
        return int(frame.readings)
    except Exception:
        return 0


def _summary(frame: Any) -> str:
    """A short JSON description of a rejected frame (never the whole arrays)."""
    out: dict[str, Any] = {
        "twin_id": getattr(frame, "twin_id", None),
        "twin_type": getattr(frame, "twin_type", None),
    }
    try:
        if isinstance(frame, WaveformFrame):
            out.update(
                signal=frame.signal,
                start=_num(float(frame.start)),
                sample_rate=repr(frame.sample_rate),
                samples=len(frame.samples),
            )
        elif isinstance(frame, TelemetryFrame):
            times = np.asarray(frame.times).ravel()
            out.update(signals=list(frame.signals)[:20], times=int(times.size))
            if times.size and times.dtype.kind in "iuf":
                out.update(first=_when(float(times[0])), last=_when(float(times[-1])))
    except Exception as e:  # the summary of a broken frame must not fail in turn
        out["summary_error"] = repr(e)[:200]
    return json.dumps(out, default=repr)[: DeadLetter.MAX_PAYLOAD]


__all__ = ["Validator", "dead_letter_for"]
