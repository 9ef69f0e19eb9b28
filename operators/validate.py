"""Check decoded frames against their twin type's contract before any state sees them.

A frame that breaks the contract as a whole (unknown type, twin or signal, bad times or
shapes) is rejected with one dead letter. A signal the device declares in a unit other than
its model's (see :attr:`TelemetryFrame.units`) is dropped from the frame with one dead
letter. Values that are not valid for the signal's DTDL schema (a fraction for an
``integer``, 2 for a ``boolean``) or that lie outside its physical range are replaced by
NaN and reported in one dead letter per signal and kind, so the rest of the frame still
flows; the readings refused for their range are marked on the frame
(:attr:`TelemetryFrame.out_of_range`), so windows can tell them from dropouts. All value
checks are a few numpy reductions per signal.

Every dead letter carries the event time of the data it is about and a reason free of
wall-clock numbers, so a replay after recovery yields the identical dead letter.

This module checks frames as a whole; the checks by value are in
:mod:`~twinflow.operators.validate_values`, the declared units in
:mod:`~twinflow.operators.validate_units`, and the dead letters' wording in
:mod:`~twinflow.operators.validate_letters`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from twinflow.core.errors import ValidationError
from twinflow.core.records import DeadLetter, Frame, TelemetryFrame, WaveformFrame
from twinflow.operators.catalog import CATALOG, SignalSpec, TwinType
from twinflow.operators.validate_letters import (
    EXCERPT_BYTES,
    EXCERPT_PAIRS,
    dead_letter_for,
    dropped_rows,
    reject,
    when,
)
from twinflow.operators.validate_units import KNOWN_UNITS, check_units
from twinflow.operators.validate_values import (
    INTEGRAL,
    Layout,
    LazyTimes,
    bad_times,
    clamp,
    limits,
    numbers_of,
    real,
)


class Validator:
    """Validates frames against ``catalog`` (and the registered ``twins``, when given).

    ``twins`` maps twin id to twin type name; ``now`` passed to :meth:`validate` is the
    reference clock (wall time for real sources, the simulator's clock for the simulated
    plant) that bounds how far in the future or past a frame's times may lie.

    >>> from twinflow.operators.twin_type import SignalSpec
    >>> tank = TwinType("tank", (SignalSpec("level", "m", 0, 10),))
    >>> v = Validator({"tank": tank}, twins={"T1": "tank"})
    >>> frame = TelemetryFrame("T1", "tank", np.array([100.0, 101.0]),
    ...                        {"level": np.array([2.5, 99.0])})
    >>> ok, dead = v.validate(frame, now=101.0)
    >>> ok.signals["level"].tolist(), ok.out_of_range["level"].tolist(), dead[0].readings
    ([2.5, nan], [False, True], 1)
    >>> v.validate(TelemetryFrame("T9", "tank", frame.times, frame.signals), now=101.0)[1][0].reason
    "twin 'T9' is not registered; add it to the deployment's twins (known: T1)"

    ``bindings`` maps twin id to the protocol its binding names (``opcua``, ``mqtt``,
    ``kafka``, ...); a frame of such a twin is accepted only from a source of that protocol
    (the part of :attr:`TelemetryFrame.source` before ``:``, or ``://``):

    >>> bound = Validator({"tank": tank}, twins={"T1": "tank"}, bindings={"T1": "opcua"})
    >>> bound.validate(dataclasses.replace(frame, source="kafka:plant"), now=101.0)[1][0].reason
    "twin 'T1' is bound to opcua: telemetry from 'kafka:plant' refused"
    """

    def __init__(
        self,
        catalog: Mapping[str, TwinType] = CATALOG,
        twins: Mapping[str, str] | None = None,
        max_future_s: float = 300.0,
        max_past_s: float = 7 * 86400.0,
        bindings: Mapping[str, str] | None = None,
    ) -> None:
        self.catalog = catalog
        self.twins = twins
        self.bindings = bindings
        self._protocols: dict[str, str] = {}
        self.max_future_s = max_future_s
        self.max_past_s = max_past_s
        self._specs: dict[str, dict[str, SignalSpec]] = {
            name: {s.name: s for s in t.signals} for name, t in catalog.items()
        }
        self._layouts: dict[tuple[str, tuple[str, ...]], Layout] = {}
        self._accepted: dict[str, dict[str, frozenset[str]]] = {
            name: {s.name: s.units for s in t.signals} for name, t in catalog.items()
        }
        self._known_units = KNOWN_UNITS | {
            s.unit for t in catalog.values() for s in t.signals if s.unit
        }

    def validate(self, frame: Frame, now: float) -> tuple[Frame | None, list[DeadLetter]]:
        """The frame (a cleaned copy if values were dropped or blanked) or ``None``, and
        dead letters. ``None`` when the frame is rejected or none of its signals is left."""
        try:
            if isinstance(frame, TelemetryFrame):
                return self._telemetry(frame, now)
            if isinstance(frame, WaveformFrame):
                return self._waveform(frame, now)
            raise ValidationError(f"expected a telemetry or waveform frame, got {type(frame)}")
        except ValidationError as e:
            return None, [reject(frame, now, str(e))]

    # -- whole frames ------------------------------------------------------------------

    def _telemetry(
        self, frame: TelemetryFrame, now: float
    ) -> tuple[Frame | None, list[DeadLetter]]:
        twin = frame.twin_id
        specs = self._check_twin(frame)
        times = numbers_of(frame.times, twin, "times")
        n = times.size
        if n == 0:
            raise ValidationError(f"twin {twin!r}: empty frame (no timestamps)")
        if not frame.signals:
            raise ValidationError(f"twin {twin!r}: empty frame (no signals)")
        first, last = float(times[0]), float(times[-1])
        # Non-decreasing with finite ends implies all finite (NaN fails every comparison).
        ordered = n == 1 or bool((times[1:] >= times[:-1]).all())
        dead: list[DeadLetter] = []
        if not (
            ordered
            and math.isfinite(first)
            and math.isfinite(last)
            and first >= now - self.max_past_s
            and last <= now + self.max_future_s
        ):
            frame, times = self._dropbad_times(frame, times, now, dead)
            first, last, n = float(times[0]), float(times[-1]), times.size
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
        signals = frame.signals
        if frame.units is not _NO_UNITS:
            accepted = self._accepted[frame.twin_type]
            signals = check_units(frame, specs, accepted, self._known_units, first, n, dead)
            if not signals:
                return None, dead
        arrays = [
            numbers_of(raw, twin, f"signal {name!r}", specs[name].schema == "boolean")
            for name, raw in signals.items()
        ]
        for name, values in zip(signals, arrays, strict=True):
            if values.size != n:
                raise ValidationError(
                    f"twin {twin!r}: signal {name!r} has {values.size} values but the frame "
                    f"has {n} timestamps"
                )
        # One vectorised range check over all readings (the limits, one row per signal, are
        # the physical range within what the schema can hold; NaN compares False, so dropouts
        # pass); details only for suspect signals.
        layout = self._layout(frame.twin_type, tuple(signals), specs)
        block = np.array(arrays)
        hits = (block < layout.low) | (block > layout.high)
        converted = (
            signals is not frame.signals
            or times is not frame.times
            or any(a is not raw for a, raw in zip(arrays, signals.values(), strict=True))
        )
        if not (converted or layout.integral.size or hits.any()):
            return frame, dead  # the common case
        suspect = np.asarray(hits.any(axis=1))
        if layout.integral.size:
            sub = block[layout.integral]
            # NaN != NaN, so "sub == sub" keeps dropouts out; infinities are range violations.
            fraction = ((sub != np.trunc(sub)) & (sub == sub)).any(axis=1)
            suspect[layout.integral] |= fraction
        if not converted and not suspect.any():
            return frame, dead
        clean = dict(zip(signals, arrays, strict=True))
        names = list(clean)
        refused: dict[str, np.ndarray] = {}
        for i in np.flatnonzero(suspect).tolist():
            name = names[i]
            clean[name] = clamp(frame, name, specs[name], times, arrays[i], now, dead, refused)
        if refused:  # the windows count them apart from dropouts
            out = dataclasses.replace(frame, times=times, signals=clean, out_of_range=refused)
            return out, dead
        return dataclasses.replace(frame, times=times, signals=clean), dead

    def _dropbad_times(
        self, frame: TelemetryFrame, times: np.ndarray, now: float, dead: list[DeadLetter]
    ) -> tuple[TelemetryFrame, np.ndarray]:
        """The frame without its rows whose time is not finite or lies outside the allowed
        span (one dead letter per kind), so the other readings of a merged batch go on.

        Raises as for a whole bad frame when no row is left, or when the rows left go back
        in time."""
        twin, n = frame.twin_id, times.size
        finite = np.isfinite(times)
        late = finite & (times > now + self.max_future_s)
        early = finite & (times < now - self.max_past_s)
        keep = finite & ~late & ~early
        if not keep.any() or keep.all():  # nothing to split off: judge the frame as a whole
            if not finite.all():
                bad_times(twin, times)
            self._check_span(twin, float(times[0]), float(times[-1]), now)
            bad_times(twin, times)
        kept = times[keep]
        if kept.size > 1 and bool((kept[1:] < kept[:-1]).any()):
            bad_times(twin, kept)
        signals: dict[str, np.ndarray] = {}
        for name, raw in frame.signals.items():
            arr = np.asarray(raw)
            if arr.ndim != 1 or arr.size != n:
                raise ValidationError(
                    f"twin {twin!r}: signal {name!r} has {arr.size} values but the frame "
                    f"has {n} timestamps"
                )
            signals[name] = arr[keep]
        width = len(signals)
        for mask, why in (
            (~finite, "is not a finite time"),
            (
                late,
                f"is more than {self.max_future_s:g} s ahead of the reference clock; "
                "check the device's clock",
            ),
            (
                early,
                f"is more than {self.max_past_s:g} s behind the reference clock; "
                "replay old data in a backfill",
            ),
        ):
            rows = int(np.count_nonzero(mask))
            if rows:
                dead.append(dropped_rows(frame, times, mask, rows, width, why, now))
        return dataclasses.replace(frame, times=kept, signals=signals), kept

    def _layout(self, kind: str, names: tuple[str, ...], specs: dict[str, SignalSpec]) -> Layout:
        """Limits and integral-schema rows of ``names`` (cached per signal layout)."""
        key = (kind, names)
        layout = self._layouts.get(key)
        if layout is None:
            if len(self._layouts) >= 1024:
                self._layouts.clear()
            bounds = [limits(specs[n]) for n in names]
            layout = self._layouts[key] = Layout(
                np.array([[lo] for lo, _ in bounds]),
                np.array([[hi] for _, hi in bounds]),
                np.array(
                    [i for i, n in enumerate(names) if specs[n].schema in INTEGRAL], dtype=np.intp
                ),
            )
        return layout

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
        if not real(rate) or not math.isfinite(rate) or rate <= 0:
            raise ValidationError(
                f"twin {twin!r}: waveform {frame.signal!r} has sample_rate {rate!r}; "
                "it must be a positive number of samples per second"
            )
        samples = numbers_of(frame.samples, twin, f"waveform {frame.signal!r}")
        if samples.size == 0:
            raise ValidationError(f"twin {twin!r}: empty waveform {frame.signal!r}")
        start = frame.start
        if not real(start) or not math.isfinite(start):
            raise ValidationError(f"twin {twin!r}: waveform start {start!r} is not a finite time")
        self._check_span(twin, float(start), float(start + (samples.size - 1) / rate), now)
        dead: list[DeadLetter] = []
        times = LazyTimes(float(start), float(rate))
        refused: dict[str, np.ndarray] = {}
        fixed = clamp(frame, frame.signal, spec, times, samples, now, dead, refused)
        if fixed is not frame.samples:
            ranged = refused.get(frame.signal)
            count = int(np.count_nonzero(ranged)) if ranged is not None else 0
            frame = dataclasses.replace(frame, samples=fixed, out_of_range=count)
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
        if self.bindings is not None:
            bound = self.bindings.get(twin)
            if bound is not None and self._protocol(frame.source) != bound:
                raise ValidationError(
                    f"twin {twin!r} is bound to {bound}: telemetry from "
                    f"{str(frame.source)[:80]!r} refused"
                )
        return specs

    def _protocol(self, source: object) -> str:
        """The protocol of a frame's source: ``mqtt`` of ``mqtt:plant/p1``, ``modbus`` of
        ``modbus://host:502/1`` (cached: sources are few)."""
        text = str(source)
        proto = self._protocols.get(text)
        if proto is None:
            proto = text.split(":", 1)[0]
            if len(self._protocols) < 4096:
                self._protocols[text] = proto
        return proto

    def _check_span(self, twin: str, first: float, last: float, now: float) -> None:
        # The reasons name the limit, not the distance to the clock: a replay after recovery
        # must give the same dead letter as the first pass.
        if last > now + self.max_future_s:
            raise ValidationError(
                f"twin {twin!r}: time {when(last)} is more than {self.max_future_s:g} s ahead "
                "of the reference clock; check the device's clock"
            )
        if first < now - self.max_past_s:
            raise ValidationError(
                f"twin {twin!r}: time {when(first)} is more than {self.max_past_s:g} s behind "
                "the reference clock; replay old data in a backfill"
            )


#: The ``units`` of a frame that declares none (the shared default; checked by identity).
_NO_UNITS = TelemetryFrame("", "", np.empty(0), {}).units


__all__ = ["EXCERPT_BYTES", "EXCERPT_PAIRS", "KNOWN_UNITS", "Validator", "dead_letter_for"]
