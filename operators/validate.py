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
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from collections.abc import Mapping
from typing import Any, NoReturn

import numpy as np

from twinflow.core.errors import TwinflowError, ValidationError
from twinflow.core.records import (
    DeadLetter,
    Frame,
    RawMessage,
    TelemetryFrame,
    WaveformFrame,
    capped_payload,
)
from twinflow.core.times import iso, utc
from twinflow.operators.catalog import CATALOG, UNIT_SYMBOLS, SignalSpec, TwinType
from twinflow.operators.dtdl.quantities import UNIT_TYPES

#: How many offending (time, value) pairs a range dead letter quotes.
EXCERPT_PAIRS = 10
#: Characters a decode dead letter keeps of a payload: an excerpt, and for a longer one its
#: size and SHA-256.
EXCERPT_BYTES = 200

#: Every unit name twinflow knows: the DTDL units and twinflow's symbols for them.
KNOWN_UNITS: frozenset[str] = frozenset().union(*UNIT_TYPES.values(), UNIT_SYMBOLS.values())

_FLOAT_MAX = 3.4028234663852886e38
_DOUBLE_MAX = float(np.finfo(np.float64).max)
#: Values each DTDL schema can hold (inclusive, as float64).
_SCHEMA_RANGE: dict[str, tuple[float, float]] = {
    "double": (-_DOUBLE_MAX, _DOUBLE_MAX),
    "float": (-_FLOAT_MAX, _FLOAT_MAX),
    "integer": (-(2.0**31), 2.0**31 - 1),
    "long": (-(2.0**63), float(np.nextafter(2.0**63, 0.0))),
    "boolean": (0.0, 1.0),
}
#: Schemas whose values must be whole numbers.
_INTEGRAL = frozenset({"integer", "long", "boolean"})
#: What a valid value of each non-double schema is, for dead-letter reasons.
_SCHEMA_NEEDS = {
    "float": "finite numbers that fit a 32-bit float",
    "integer": "whole numbers from -2147483648 to 2147483647",
    "long": "whole numbers that fit a 64-bit integer",
    "boolean": "0 or 1 (false or true)",
}


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
        self._layouts: dict[tuple[str, tuple[str, ...]], _Layout] = {}
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
            return None, [self._reject(frame, now, str(e))]

    # -- whole frames ------------------------------------------------------------------

    def _telemetry(
        self, frame: TelemetryFrame, now: float
    ) -> tuple[Frame | None, list[DeadLetter]]:
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
        dead: list[DeadLetter] = []
        if not (
            ordered
            and math.isfinite(first)
            and math.isfinite(last)
            and first >= now - self.max_past_s
            and last <= now + self.max_future_s
        ):
            frame, times = self._drop_bad_times(frame, times, now, dead)
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
            signals = self._check_units(frame, specs, first, n, dead)
            if not signals:
                return None, dead
        arrays = [
            _numbers(raw, twin, f"signal {name!r}", specs[name].schema == "boolean")
            for name, raw in signals.items()
        ]
        for name, values in zip(signals, arrays, strict=True):
            if values.size != n:
                raise ValidationError(
                    f"twin {twin!r}: signal {name!r} has {values.size} values but the frame "
                    f"has {n} timestamps"
                )
        # One vectorised range check over all signals (the limits are the physical range
        # within what the schema can hold); details only for suspect ones.
        layout = self._layout(frame.twin_type, tuple(signals), specs)
        block = np.array(arrays)
        suspect = (np.fmin.reduce(block, axis=1) < layout.low) | (
            np.fmax.reduce(block, axis=1) > layout.high
        )
        if layout.integral.size:
            sub = block[layout.integral]
            # NaN != NaN, so "sub == sub" keeps dropouts out; infinities are range violations.
            fraction = ((sub != np.trunc(sub)) & (sub == sub)).any(axis=1)
            suspect[layout.integral] |= fraction
        converted = (
            signals is not frame.signals
            or times is not frame.times
            or any(a is not raw for a, raw in zip(arrays, signals.values(), strict=True))
        )
        if not converted and not suspect.any():
            return frame, dead
        clean = dict(zip(signals, arrays, strict=True))
        names = list(clean)
        refused: dict[str, np.ndarray] = {}
        for i in np.flatnonzero(suspect).tolist():
            name = names[i]
            clean[name] = self._clamp(
                frame, name, specs[name], times, arrays[i], now, dead, refused
            )
        if refused:  # the windows count them apart from dropouts
            out = dataclasses.replace(frame, times=times, signals=clean, out_of_range=refused)
            return out, dead
        return dataclasses.replace(frame, times=times, signals=clean), dead

    def _drop_bad_times(
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
                _bad_times(twin, times)
            self._check_span(twin, float(times[0]), float(times[-1]), now)
            _bad_times(twin, times)
        kept = times[keep]
        if kept.size > 1 and bool((kept[1:] < kept[:-1]).any()):
            _bad_times(twin, kept)
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
                dead.append(self._dropped_rows(frame, times, mask, rows, width, why, now))
        return dataclasses.replace(frame, times=kept, signals=signals), kept

    def _dropped_rows(
        self,
        frame: TelemetryFrame,
        times: np.ndarray,
        mask: np.ndarray,
        rows: int,
        width: int,
        why: str,
        now: float,
    ) -> DeadLetter:
        """The dead letter for ``rows`` rows of a frame refused for their time ``why``."""
        shown = times[mask][:EXCERPT_PAIRS]
        excerpt = {
            "twin_id": frame.twin_id,
            "twin_type": frame.twin_type,
            "signals": list(frame.signals)[:20],
            "times": [_when(float(t)) if math.isfinite(t) else repr(float(t)) for t in shown],
            "more": rows - int(shown.size),
        }
        first = float(times[mask][0])
        return DeadLetter(
            stage="validate",
            reason=(
                f"twin {frame.twin_id!r}: {rows} row(s) of the frame dropped: their time {why}; "
                "the frame's other readings go on"
            ),
            source=frame.source,
            time=utc(first if math.isfinite(first) else _event_time(frame, now)),
            twin_id=frame.twin_id,
            payload=json.dumps(excerpt, default=repr)[: DeadLetter.MAX_PAYLOAD],
            readings=rows * width,
        )

    def _layout(self, kind: str, names: tuple[str, ...], specs: dict[str, SignalSpec]) -> _Layout:
        """Limits and integral-schema rows of ``names`` (cached per signal layout)."""
        key = (kind, names)
        layout = self._layouts.get(key)
        if layout is None:
            if len(self._layouts) >= 1024:
                self._layouts.clear()
            limits = [_limits(specs[n]) for n in names]
            layout = self._layouts[key] = _Layout(
                np.array([lo for lo, _ in limits]),
                np.array([hi for _, hi in limits]),
                np.array(
                    [i for i, n in enumerate(names) if specs[n].schema in _INTEGRAL], dtype=np.intp
                ),
            )
        return layout

    def _check_units(
        self,
        frame: TelemetryFrame,
        specs: dict[str, SignalSpec],
        first: float,
        n: int,
        dead: list[DeadLetter],
    ) -> Mapping[str, Any]:
        """The frame's signals without those declared in a unit other than their model's
        (one dead letter each, dated at the frame's first time)."""
        twin, units = frame.twin_id, frame.units
        if not isinstance(units, Mapping):
            raise ValidationError(
                f"twin {twin!r}: units must map signal names to unit names, got "
                f"{type(units).__name__}; fix the decoder or connector that built the frame"
            )
        if not units:
            return frame.signals
        accepted = self._accepted[frame.twin_type]
        drop = []
        for name in frame.signals:
            declared = units.get(name, accepted)  # ``accepted``: nothing declared
            if declared is accepted or (isinstance(declared, str) and declared in accepted[name]):
                continue
            drop.append(name)
            spec = specs[name]
            if not isinstance(declared, str):
                what = f"a unit that is not a name ({_short(declared)})"
            elif declared in self._known_units:
                what = f"unit {_short(declared)}"
            else:
                what = f"unknown unit {_short(declared)}"
            if spec.dtdl_unit is not None:
                model = f"{spec.dtdl_unit!r} ({spec.unit})"
            else:
                model = repr(spec.unit) if spec.unit else "no unit"
            excerpt = {
                "twin_id": twin,
                "twin_type": frame.twin_type,
                "signal": name,
                "declared_unit": declared[:200] if isinstance(declared, str) else _short(declared),
                "model_unit": spec.dtdl_unit,
                "unit_symbol": spec.unit,
                "readings": n,
            }
            dead.append(
                DeadLetter(
                    stage="validate",
                    reason=(
                        f"twin {twin!r}: signal {name!r} is declared in {what} but the model "
                        f"of {frame.twin_type!r} gives {model}; its {n} reading(s) are "
                        "dropped; convert on the device or fix the model"
                    ),
                    source=frame.source,
                    time=utc(first),
                    twin_id=twin,
                    payload=json.dumps(excerpt, default=repr)[: DeadLetter.MAX_PAYLOAD],
                    readings=n,
                )
            )
        if not drop:
            return frame.signals
        return {k: v for k, v in frame.signals.items() if k not in drop}

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
        refused: dict[str, np.ndarray] = {}
        fixed = self._clamp(frame, frame.signal, spec, times, samples, now, dead, refused)
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
        refused: dict[str, np.ndarray],
    ) -> np.ndarray:
        """``values`` with readings invalid for the schema or out of range set to NaN (a copy
        only if any were), with one dead letter for each of the two kinds found; the mask of
        the readings out of range goes to ``refused[name]``."""
        lo, hi = _limits(spec)
        schema_bad = _schema_violations(spec.schema, values)
        if schema_bad is None:
            if not (np.fmin.reduce(values) < lo or np.fmax.reduce(values) > hi):
                return values
            bad = range_bad = (values < lo) | (values > hi)
        else:
            range_bad = ((values < lo) | (values > hi)) & ~schema_bad
            bad = schema_bad | range_bad
            if not bad.any():
                return values
            if schema_bad.any():
                needs = _SCHEMA_NEEDS[spec.schema]
                dead.append(
                    self._blanked(
                        frame,
                        name,
                        spec,
                        times,
                        values,
                        schema_bad,
                        f"are not valid DTDL {spec.schema} values (need {needs})",
                        {"schema": spec.schema},
                    )
                )
        if range_bad is bad or range_bad.any():
            dead.append(
                self._blanked(
                    frame,
                    name,
                    spec,
                    times,
                    values,
                    range_bad,
                    f"outside its valid range [{lo:g}, {hi:g}] {spec.unit}",
                    {"unit": spec.unit, "range": [lo, hi]},
                )
            )
            refused[name] = range_bad
        out = values.copy()
        out[bad] = np.nan
        return out

    def _blanked(
        self,
        frame: Frame,
        name: str,
        spec: SignalSpec,
        times: np.ndarray | _LazyTimes,
        values: np.ndarray,
        bad: np.ndarray,
        why: str,
        facts: dict[str, Any],
    ) -> DeadLetter:
        """The dead letter for readings of ``name`` blanked because they are ``why``."""
        idx = np.flatnonzero(bad)
        shown = idx[:EXCERPT_PAIRS]
        pairs = [
            [_when(float(t)), _num(float(v))]
            for t, v in zip(times[shown], values[shown], strict=True)
        ]
        excerpt = {
            "twin_id": frame.twin_id,
            "signal": name,
            **facts,
            "readings": pairs,
            "more": int(idx.size - shown.size),
        }
        return DeadLetter(
            stage="validate",
            reason=(
                f"twin {frame.twin_id!r}: {idx.size} reading(s) of {name!r} {why}; replaced by NaN"
            ),
            source=frame.source,
            time=utc(float(times[idx[:1]][0])),
            twin_id=frame.twin_id,
            payload=json.dumps(excerpt),
            readings=int(idx.size),
        )

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

#: The ``units`` of a frame that declares none (the shared default; checked by identity).
_NO_UNITS = TelemetryFrame("", "", np.empty(0), {}).units


@dataclasses.dataclass(frozen=True, slots=True)
class _Layout:
    """Per signal layout: the limits of each row and the rows with an integral schema."""

    low: np.ndarray
    high: np.ndarray
    integral: np.ndarray


def _limits(spec: SignalSpec) -> tuple[float, float]:
    """The signal's physical range narrowed to what its schema can hold."""
    lo, hi = _SCHEMA_RANGE.get(spec.schema, _SCHEMA_RANGE["double"])
    return max(spec.low, lo), min(spec.high, hi)


def _schema_violations(schema: str, values: np.ndarray) -> np.ndarray | None:
    """Mask of finite readings the DTDL ``schema`` cannot hold; ``None`` for ``double``
    (any finite number; infinities are left to the range check)."""
    if schema not in _SCHEMA_NEEDS:
        return None
    lo, hi = _SCHEMA_RANGE[schema]
    finite = np.isfinite(values)
    bad = (values < lo) | (values > hi)
    if schema in _INTEGRAL:
        bad |= values != np.trunc(values)
    out_of_range: np.ndarray = finite & bad
    return out_of_range


def _short(value: Any) -> str:
    """``repr`` of a declared unit, cut to a readable length."""
    text = repr(value[:60] if isinstance(value, str) else value)
    return text if len(text) <= 80 else text[:77] + "..."


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
        payload=capped_payload(payload, EXCERPT_BYTES),
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


def _numbers(array: Any, twin: str, what: str, booleans: bool = False) -> np.ndarray:
    """A 1-D float64 view (or converted copy) of ``array``; refuses non-numeric data
    (``booleans``: also accepts a bool array, as 0/1)."""
    if isinstance(array, np.ndarray) and array.dtype == np.float64 and array.ndim == 1:
        return array
    try:
        arr = np.asarray(array)
    except (TypeError, ValueError) as e:
        raise ValidationError(f"twin {twin!r}: {what} is not an array of numbers ({e})") from None
    if arr.ndim != 1:
        raise ValidationError(f"twin {twin!r}: {what} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind not in ("iufb" if booleans else "iuf"):
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
            if frame.units:
                out["units"] = dict(list(frame.units.items())[:20])
            if times.size and times.dtype.kind in "iuf":
                out.update(first=_when(float(times[0])), last=_when(float(times[-1])))
    except Exception as e:  # the summary of a broken frame must not fail in turn
        out["summary_error"] = repr(e)[:200]
    return json.dumps(out, default=repr)[: DeadLetter.MAX_PAYLOAD]


__all__ = ["Validator", "dead_letter_for"]
