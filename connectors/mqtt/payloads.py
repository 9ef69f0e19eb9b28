"""JSON telemetry payloads of one twin's binding, decoded into readings.

Two shapes are accepted (``ts`` stands for the binding's ``time_field``)::

    {"ts": 1767225600.0, "wind": 7.1, "power_w": 712000}            one reading set
    {"ts": ["2026-01-01T00:00:00Z", ...], "wind": [7.1, null, ...]}  a batch: equal-length arrays

Each other field is mapped by the binding's field map (``value = raw * scale + offset``), or
taken as a signal of the twin type when it is named like one. ``null`` means no reading
(NaN). Times are epoch seconds or ISO-8601 strings with a zone. Anything else raises
:class:`PayloadError` with a reason that names the field, so the source can dead-letter it.

>>> from twinflow.connectors.bindings import FieldMap, MqttBinding
>>> b = MqttBinding("wt-1", "wind_turbine", "t", "c", "r",
...                 fields={"power_w": FieldMap("power_kw", scale=0.001)})
>>> PayloadDecoder(b).decode(b'{"ts": "2026-01-01T00:00:00Z", "power_w": 712000, "pitch_deg": 2}')
(1767225600.0, {'power_kw': 712.0, 'pitch_deg': 2.0})
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

import numpy as np

from twinflow.connectors.bindings import MqttBinding
from twinflow.connectors.sections import kind_of
from twinflow.core.errors import ConfigError
from twinflow.operators.twin_type import TwinType

#: One reading set: (time, {signal: value}); a batch: (times, {signal: values}).
Single = tuple[float, dict[str, float]]
Batch = tuple[np.ndarray, dict[str, np.ndarray]]

_NUMBER = (int, float)
#: Most JSON arrays and objects a payload may open (``[`` and ``{`` bytes, counted before
#: parsing); bounds nesting depth too. A batch opens one array per field.
MAX_CONTAINERS = 1_000
_VALUE_TYPES = frozenset({int, float, type(None)})


class PayloadError(ValueError):
    """A payload that cannot be used; ``str(err)`` is the dead-letter reason."""


def _refuse_constant(name: str) -> Any:
    raise PayloadError(f"payload contains {name}, which is not JSON; send null for no reading")


_JSON = json.JSONDecoder(parse_constant=_refuse_constant)


def parse_time(value: object, field: str) -> float:
    """Epoch seconds from epoch seconds or an ISO-8601 string with a zone.

    >>> parse_time("2026-01-01T01:00:00+01:00", "ts"), parse_time(5, "ts")
    (1767225600.0, 5.0)
    """
    kind = type(value)
    if kind is float or kind is int:
        try:
            t = float(value)  # type: ignore[arg-type]
        except OverflowError:
            raise PayloadError(f"time field {field!r} is an integer too large for a time") from None
        if not math.isfinite(t):
            raise PayloadError(f"time field {field!r} is not a finite number")
        return t
    if kind is str:
        try:
            dt = datetime.fromisoformat(value)  # type: ignore[arg-type]
        except ValueError:
            raise PayloadError(
                f"time field {field!r} = {value!r:.40} is not ISO-8601 (e.g. 2026-01-01T00:00:00Z)"
            ) from None
        if dt.tzinfo is None:
            raise PayloadError(
                f"time field {field!r} = {value!r:.40} has no time zone; add Z or an offset"
            )
        try:
            return dt.timestamp()
        except (OverflowError, ValueError):
            raise PayloadError(
                f"time field {field!r} = {value!r:.40} lies outside the years 1 to 9999 in UTC"
            ) from None
    raise PayloadError(
        f"time field {field!r} must be epoch seconds or an ISO-8601 string with a zone, "
        f"got {kind.__name__}"
    )


class PayloadDecoder:
    """Decodes the JSON payloads of one binding (checked against its twin type on creation)."""

    def __init__(self, binding: MqttBinding) -> None:
        self.binding = binding
        ttype = kind_of(binding)  # ConfigError naming the twin for an unknown type
        self.twin_type: TwinType = ttype
        self.time_field = binding.time_field
        scalar = {s.name for s in ttype.scalar_signals}
        self._waveforms = {s.name for s in ttype.waveform_signals}
        self._map: dict[str, tuple[str, float, float]] = {s: (s, 1.0, 0.0) for s in scalar}
        for name, fm in binding.fields.items():
            where = f"twin {binding.twin_id!r}: MQTT field {name!r}"
            if name == binding.time_field:
                raise ConfigError(f"{where} is the time field; it cannot carry a signal too")
            if fm.signal not in scalar:
                raise ConfigError(
                    f"{where} maps to {fm.signal!r}, which is not a scalar signal of a "
                    f"{ttype.name}; known: {', '.join(sorted(scalar))}"
                )
            if not (math.isfinite(fm.scale) and fm.scale != 0 and math.isfinite(fm.offset)):
                raise ConfigError(
                    f"{where}: scale must be a finite non-zero number and offset finite, got "
                    f"scale={fm.scale!r}, offset={fm.offset!r}"
                )
            self._map[name] = (fm.signal, float(fm.scale), float(fm.offset))
        #: Order of signals in emitted frames: the catalog's.
        self.order = {s.name: i for i, s in enumerate(ttype.signals)}

    def decode(self, payload: bytes) -> Single | Batch:
        """One reading set or a batch; raises :class:`PayloadError` with the reason."""
        containers = payload.count(b"[") + payload.count(b"{")
        if containers > MAX_CONTAINERS:
            raise PayloadError(
                f"payload opens {containers} JSON arrays/objects, more than the limit of "
                f"{MAX_CONTAINERS}: nested too deeply or too many to be telemetry"
            )
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as e:
            raise PayloadError(
                f"payload is not UTF-8 text ({e.reason} at byte {e.start})"
            ) from None
        try:
            obj = _JSON.decode(text)
        except PayloadError:
            raise
        except ValueError as e:
            raise PayloadError(f"payload is not JSON: {e}") from None
        except RecursionError:
            raise PayloadError("payload is JSON nested too deeply to be telemetry") from None
        if type(obj) is not dict:
            raise PayloadError(
                f"payload is a JSON {type(obj).__name__}, expected an object with "
                f"{self.time_field!r} and signal fields"
            )
        if self.time_field not in obj:
            raise PayloadError(f"payload has no time field {self.time_field!r}")
        stamp = obj[self.time_field]
        if type(stamp) is list:
            return self._batch(obj, stamp)
        t = parse_time(stamp, self.time_field)
        row: dict[str, float] = {}
        for name, raw in obj.items():
            if name == self.time_field:
                continue
            signal, scale, offset = self._field(name)
            kind = type(raw)
            if kind is float:
                value = raw * scale + offset
            elif kind is int:
                value = _scaled_int(raw, name, scale, offset)
            elif raw is None:
                value = math.nan
            else:
                raise PayloadError(
                    f"field {name!r} must be a number or null, got {kind.__name__} {raw!r:.40}"
                )
            if signal in row:
                raise PayloadError(f"signal {signal!r} is given twice (field {name!r})")
            row[signal] = value
        if not row:
            raise PayloadError("payload has a time but no signal field")
        return t, row

    def _field(self, name: str) -> tuple[str, float, float]:
        m = self._map.get(name)
        if m is not None:
            return m
        if name in self._waveforms:
            raise PayloadError(
                f"field {name!r} is a waveform signal; MQTT telemetry carries scalar signals"
            )
        raise PayloadError(
            f"unknown field {name!r}: not in the field map of twin {self.binding.twin_id!r} "
            f"and not a signal of a {self.twin_type.name}"
        )

    def _batch(self, obj: dict[str, Any], stamps: list[Any]) -> Batch:
        n = len(stamps)
        if n == 0:
            raise PayloadError(f"batch payload has an empty {self.time_field!r} array")
        if all(type(x) is float or type(x) is int for x in stamps):
            times = _floats(stamps, f"time field {self.time_field!r}")
            if not np.isfinite(times).all():
                raise PayloadError(f"time field {self.time_field!r} has a non-finite time")
        else:
            times = np.array([parse_time(x, self.time_field) for x in stamps], dtype=np.float64)
        cols: dict[str, np.ndarray] = {}
        for name, raw in obj.items():
            if name == self.time_field:
                continue
            signal, scale, offset = self._field(name)
            if type(raw) is not list or len(raw) != n:
                raise PayloadError(
                    f"batch payload: field {name!r} must be an array of {n} values (one per "
                    f"time), got {_describe(raw)}"
                )
            for x in raw:
                if type(x) not in _VALUE_TYPES:
                    raise PayloadError(
                        f"field {name!r} must hold numbers or null, got {type(x).__name__} "
                        f"{x!r:.40}"
                    )
            if signal in cols:
                raise PayloadError(f"signal {signal!r} is given twice (field {name!r})")
            values = _floats(raw, f"field {name!r}")  # null -> NaN
            if scale != 1.0 or offset != 0.0:
                values = values * scale + offset
            cols[signal] = values
        if not cols:
            raise PayloadError("batch payload has times but no signal field")
        return times, cols


def _scaled_int(raw: int, name: str, scale: float, offset: float) -> float:
    """``raw * scale + offset`` for a JSON integer, refusing one too large for a float."""
    try:
        return raw * scale + offset
    except OverflowError:
        raise PayloadError(f"field {name!r} holds an integer too large for a float") from None


def _floats(raw: list[Any], what: str) -> np.ndarray:
    """``raw`` as float64 (``None`` as NaN), refusing integers too large for a float."""
    try:
        return np.array(raw, dtype=np.float64)
    except OverflowError:
        raise PayloadError(f"{what} holds an integer too large for a float") from None


def _describe(raw: object) -> str:
    if type(raw) is list:
        return f"an array of {len(raw)}"
    return type(raw).__name__
