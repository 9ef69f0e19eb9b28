"""What twinflow knows about a kind of machine: its signals, commands, properties and links.

A :class:`TwinType` is built by :mod:`twinflow.operators.catalog` from a DTDL v3 Interface
joined with the type's profile (:mod:`twinflow.operators.profile`); this module holds the
values only, so every layer can use them without loading a file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from twinflow.core.errors import ValidationError
from twinflow.operators.dtdl.model import Schema

#: The DTDL primitive schemas a signal may have: numbers, and booleans carried as 0/1.
SIGNAL_SCHEMAS: tuple[str, ...] = ("double", "float", "integer", "long", "boolean")


@dataclass(frozen=True, slots=True)
class SignalSpec:
    """One reported signal: unit, physically valid range and expected reporting rate.

    ``rate_hz`` is how often a reading is expected (staleness is judged against it); for a
    waveform it is the sample rate inside a burst, and ``burst_interval_s`` says how often a
    burst arrives. ``schema`` is the Telemetry's DTDL primitive schema (one of
    :data:`SIGNAL_SCHEMAS`) and ``dtdl_unit`` its DTDL unit name (``cubicMetrePerHour``),
    ``None`` when the DTDL gives none; ``unit`` is twinflow's display symbol (``m3/h``).
    """

    name: str
    unit: str
    low: float
    high: float
    rate_hz: float = 1.0
    waveform: bool = False
    burst_interval_s: float = 0.0
    schema: str = "double"
    dtdl_unit: str | None = None
    #: An optional signal is not expected from every twin: it never counts as missing.
    optional: bool = False

    @property
    def units(self) -> frozenset[str]:
        """The unit strings a device may declare for this signal: DTDL name or symbol."""
        return frozenset(u for u in (self.unit, self.dtdl_unit) if u is not None)

    @property
    def expected_interval_s(self) -> float:
        """Seconds between two arrivals of this signal when all is well."""
        if self.waveform and self.burst_interval_s > 0:
            return self.burst_interval_s
        return 1.0 / self.rate_hz


@dataclass(frozen=True, slots=True)
class ActuatorSpec:
    """A command a twin type accepts, with the allowed range of each parameter.

    ``request_schema`` is the DTDL request schema of the command (an Object with one double
    field per parameter), for :func:`twinflow.operators.dtdl.validate_payload`.
    """

    name: str
    params: Mapping[str, tuple[float, float]]
    description: str = ""
    request_schema: Schema | None = field(default=None, compare=False, repr=False)

    def check(self, params: Mapping[str, Any]) -> list[str]:
        """Every problem with ``params``: unknown or missing, not a finite number, out of range.

        >>> a = ActuatorSpec("set_flow", {"m3h": (20.0, 400.0)})
        >>> a.check({"m3h": 120.0}), a.check({"m3h": 900.0, "x": 1})
        ([], ["unknown parameter 'x' for set_flow; it takes: m3h", 'm3h=900 is outside [20, 400]'])
        """
        problems = [
            f"unknown parameter {k!r} for {self.name}; it takes: {', '.join(self.params)}"
            for k in params
            if k not in self.params
        ]
        for name, (low, high) in self.params.items():
            if name not in params:
                problems.append(f"missing parameter {name!r} for {self.name}")
                continue
            value = params[name]
            if isinstance(value, bool) or not isinstance(value, int | float):
                problems.append(f"{name} must be a number, got {type(value).__name__}")
            elif not math.isfinite(value):
                problems.append(f"{name} must be finite, got {value}")
            elif not low <= value <= high:
                problems.append(f"{name}={value:g} is outside [{low:g}, {high:g}]")
        return problems


@dataclass(frozen=True, slots=True)
class RelationshipSpec:
    """A DTDL Relationship of a twin type: twins of this type may link to others by ``name``.

    ``target`` is the DTMI of the Interface every target must have (``None``: any twin), and
    ``max_multiplicity`` the most targets one twin may name (``None``: no limit).
    """

    name: str
    target: str | None = None
    max_multiplicity: int | None = None


@dataclass(frozen=True, slots=True)
class PropertySpec:
    """A writable (desired/reported) property of a twin type and how a change reaches the device.

    Setting the property sends ``command`` with ``{param: value * scale}``; the device reports
    it back through ``reported_signal`` (when it has one), and the change counts as done when
    the report is within ``tolerance`` of the desired value.
    """

    name: str
    unit: str
    low: float
    high: float
    writable: bool = True
    command: str | None = None
    param: str | None = None
    scale: float = 1.0
    reported_signal: str | None = None
    tolerance: float = 0.0

    def check(self, value: object) -> list[str]:
        """Problems with a desired value: not a finite number, or outside [low, high]."""
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            return [f"{self.name} must be a finite number, got {value!r}"]
        if not self.low <= value <= self.high:
            return [f"{self.name}={value:g} is outside [{self.low:g}, {self.high:g}] {self.unit}"]
        return []

    def command_params(self, value: float) -> dict[str, float]:
        """The parameters of the command that sets this property to ``value``.

        >>> PropertySpec("power_limit", "kW", 0, 2000, command="derate", param="fraction",
        ...              scale=1 / 2000).command_params(1500.0)
        {'fraction': 0.75}
        """
        if self.param is None:
            raise ValidationError(f"property {self.name!r} is not set through a command")
        return {self.param: value * self.scale}


@dataclass(frozen=True, slots=True)
class TwinType:
    """Everything twinflow knows about a kind of machine."""

    name: str
    signals: tuple[SignalSpec, ...]
    actuators: tuple[ActuatorSpec, ...] = ()
    #: For waveform signals: named fault frequencies in Hz (e.g. bearing defect frequencies).
    fault_frequencies: Mapping[str, float] = field(default_factory=dict)
    #: For waveform signals: frequency bands (Hz) whose energy becomes a feature.
    bands: tuple[tuple[float, float], ...] = ()
    #: The DTMI of the DTDL Interface this type is built from.
    model_id: str = ""
    #: Writable properties (desired state) and the commands that set them.
    properties: tuple[PropertySpec, ...] = ()
    #: The DTDL Relationships (own and inherited) a twin of this type may have.
    relationships: tuple[RelationshipSpec, ...] = ()
    #: The profile file the type was read from (``None`` for a type built in code).
    profile_file: str | None = field(default=None, compare=False)
    #: Parsed profile sections beyond the core ones, by key (see ``profile.SECTIONS``).
    sections: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def signal(self, name: str) -> SignalSpec:
        for s in self.signals:
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.signals)
        raise ValidationError(
            f"twin type {self.name!r} has no signal {name!r}; known signals: {known}"
        )

    @property
    def signal_names(self) -> frozenset[str]:
        return frozenset(s.name for s in self.signals)

    @property
    def expected_signals(self) -> frozenset[str]:
        """The signals every twin of this type must send (all but the optional ones)."""
        return frozenset(s.name for s in self.signals if not s.optional)

    @property
    def scalar_signals(self) -> tuple[SignalSpec, ...]:
        return tuple(s for s in self.signals if not s.waveform)

    @property
    def waveform_signals(self) -> tuple[SignalSpec, ...]:
        return tuple(s for s in self.signals if s.waveform)

    def command_problem(self, name: str, params: Mapping[str, Any]) -> str | None:
        """Why a command ``name`` with ``params`` must not be sent to this type, or ``None``:
        the one check every actuator edge and the simulated plant apply before acting.

        >>> fan = TwinType("fan", (), (ActuatorSpec("set_flow", {"m3h": (20.0, 400.0)}),))
        >>> fan.command_problem("set_flow", {"m3h": 900.0})
        'set_flow: m3h=900 is outside [20, 400]'
        """
        try:
            spec = self.actuator(name)
        except ValidationError as exc:
            return str(exc)
        problems = spec.check(params)
        return f"{name}: {'; '.join(problems)}" if problems else None

    def actuator(self, name: str) -> ActuatorSpec:
        for a in self.actuators:
            if a.name == name:
                return a
        known = ", ".join(a.name for a in self.actuators) or "none"
        raise ValidationError(
            f"twin type {self.name!r} has no command {name!r}; it accepts: {known}"
        )

    def property(self, name: str) -> PropertySpec:
        for p in self.properties:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.properties) or "none"
        raise ValidationError(
            f"twin type {self.name!r} has no property {name!r}; its properties: {known}"
        )


__all__ = [
    "SIGNAL_SCHEMAS",
    "ActuatorSpec",
    "PropertySpec",
    "RelationshipSpec",
    "SignalSpec",
    "TwinType",
]
