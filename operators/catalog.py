"""Twin types: the signals each type reports, their units and valid ranges, and its actuators.

This is the contract that validation checks frames against and that the simulator produces.
The types are built from the DTDL v3 Interfaces in ``operators/dtdl/interfaces/`` (names,
units, commands and their request schemas, writable properties, relationships) joined with a
twinflow *profile* kept here for what DTDL cannot say: valid ranges, reporting rates,
waveform bursts, command parameter limits, fault frequencies, bands and which command sets
which property. Building fails with one error listing every disagreement between the two.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from twinflow.core.errors import ConfigError, ValidationError
from twinflow.operators.dtdl import INTERFACES_DIR, ModelSet, parse_files
from twinflow.operators.dtdl.model import (
    Command,
    PrimitiveSchema,
    Property,
    Relationship,
    Schema,
    Telemetry,
)


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
    def scalar_signals(self) -> tuple[SignalSpec, ...]:
        return tuple(s for s in self.signals if not s.waveform)

    @property
    def waveform_signals(self) -> tuple[SignalSpec, ...]:
        return tuple(s for s in self.signals if s.waveform)

    def command_problem(self, name: str, params: Mapping[str, Any]) -> str | None:
        """Why a command ``name`` with ``params`` must not be sent to this type, or ``None``:
        the one check every actuator edge and the simulated plant apply before acting.

        >>> PUMP.command_problem("set_flow", {"m3h": 900.0})
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


#: Shaft speed of the simulated motor at nominal load (Hz) and its bearing's geometry
#: (9 rolling elements, ball/pitch diameter ratio 0.25, zero contact angle).
MOTOR_SHAFT_HZ = 24.75
_BALLS, _RATIO = 9, 0.25
BPFO_HZ = _BALLS / 2 * (1 - _RATIO) * MOTOR_SHAFT_HZ  # outer-race defect frequency
BPFI_HZ = _BALLS / 2 * (1 + _RATIO) * MOTOR_SHAFT_HZ  # inner-race defect frequency

#: The DTDL primitive schemas a signal may have: numbers, and booleans carried as 0/1.
SIGNAL_SCHEMAS: tuple[str, ...] = ("double", "float", "integer", "long", "boolean")

# ---- the twinflow profile: what DTDL cannot say ------------------------------------------

#: twinflow's short unit symbol for each DTDL unit used by the simulator's Interfaces.
UNIT_SYMBOLS: Mapping[str, str] = MappingProxyType(
    {
        "metrePerSecond": "m/s",
        "kilowatt": "kW",
        "revolutionPerMinute": "rpm",
        "degreeCelsius": "degC",
        "degreeOfArc": "deg",
        "cubicMetrePerHour": "m3/h",
        "bar": "bar",
        "ampere": "A",
        "volt": "V",
        "gForce": "g",
    }
)


@dataclass(frozen=True, slots=True)
class SignalProfile:
    """Range and timing of one Telemetry; ``unit`` only where the DTDL has none."""

    low: float
    high: float
    rate_hz: float = 1.0
    waveform: bool = False
    burst_interval_s: float = 0.0
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class PropertyProfile:
    """Limits of a writable Property and the command (and parameter scale) that sets it."""

    low: float
    high: float
    command: str
    param: str
    scale: float = 1.0
    reported_signal: str | None = None
    tolerance: float = 0.0
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    """What twinflow adds to one DTDL Interface to make a :class:`TwinType`."""

    name: str
    model_id: str
    signals: Mapping[str, SignalProfile]
    actuators: Mapping[str, Mapping[str, tuple[float, float]]]
    properties: Mapping[str, PropertyProfile] = field(default_factory=dict)
    fault_frequencies: Mapping[str, float] = field(default_factory=dict)
    bands: tuple[tuple[float, float], ...] = ()


_S = SignalProfile
PROFILES: tuple[Profile, ...] = (
    Profile(
        name="wind_turbine",
        model_id="dtmi:twinflow:sim:WindTurbine;1",
        signals={
            "wind_speed": _S(0.0, 60.0),
            "power_kw": _S(-100.0, 2600.0),
            "rotor_rpm": _S(0.0, 30.0),
            "gearbox_temp": _S(-40.0, 160.0),
            "generator_temp": _S(-40.0, 200.0),
            "vibration_rms": _S(0.0, 100.0, unit="mm/s"),
            "pitch_deg": _S(-5.0, 95.0),
            "power_limit_kw": _S(0.0, 2000.0),
        },
        actuators={"derate": {"fraction": (0.2, 1.0)}, "set_pitch": {"degrees": (-2.0, 90.0)}},
        properties={
            "power_limit": PropertyProfile(
                0.0, 2000.0, "derate", "fraction", 1 / 2000, "power_limit_kw", tolerance=1.0
            )
        },
    ),
    Profile(
        name="pump",
        model_id="dtmi:twinflow:sim:Pump;1",
        signals={
            "flow_m3h": _S(0.0, 600.0),
            "suction_bar": _S(-1.0, 10.0),
            "discharge_bar": _S(0.0, 40.0),
            "motor_current_a": _S(0.0, 500.0),
            "motor_voltage_v": _S(0.0, 1000.0),
            "flow_setpoint_m3h": _S(0.0, 600.0),
        },
        actuators={"set_flow": {"m3h": (20.0, 400.0)}, "derate": {"fraction": (0.2, 1.0)}},
        properties={
            "flow_setpoint": PropertyProfile(
                20.0, 400.0, "set_flow", "m3h", 1.0, "flow_setpoint_m3h", tolerance=0.5
            )
        },
    ),
    Profile(
        name="motor",
        model_id="dtmi:twinflow:sim:Motor;1",
        signals={
            "winding_temp": _S(-40.0, 250.0),
            "current_a": _S(0.0, 400.0),
            "speed_rpm": _S(0.0, 1600.0),
            "load_pct": _S(0.0, 130.0, unit="%"),
            "vibration": _S(-50.0, 50.0, rate_hz=8192.0, waveform=True, burst_interval_s=60.0),
        },
        actuators={"set_load": {"percent": (10.0, 110.0)}, "derate": {"fraction": (0.2, 1.0)}},
        properties={
            "load_setpoint": PropertyProfile(
                10.0, 110.0, "set_load", "percent", 1.0, None, tolerance=0.5, unit="%"
            )
        },
        fault_frequencies={"shaft": MOTOR_SHAFT_HZ, "bpfo": BPFO_HZ, "bpfi": BPFI_HZ},
        bands=((0.0, 50.0), (50.0, 200.0), (200.0, 1000.0), (1000.0, 4096.0)),
    ),
)


def _unit(dtdl_unit: str | None, profile_unit: str | None, where: str, problems: list[str]) -> str:
    if dtdl_unit is not None and profile_unit is not None:
        problems.append(f"{where}: the DTDL gives unit {dtdl_unit!r}; drop the profile's unit")
    if dtdl_unit is not None:
        if dtdl_unit not in UNIT_SYMBOLS:
            problems.append(
                f"{where}: no symbol for DTDL unit {dtdl_unit!r}; add it to UNIT_SYMBOLS"
            )
        return UNIT_SYMBOLS.get(dtdl_unit, dtdl_unit)
    if profile_unit is None:
        problems.append(f"{where}: the DTDL has no unit, so the profile must give one")
        return ""
    return profile_unit


def _diff(kind: str, dtdl: Mapping[str, object], profile: Mapping[str, object]) -> list[str]:
    out = [f"{kind} {n!r} is in the DTDL but not in the profile" for n in dtdl if n not in profile]
    out += [f"{kind} {n!r} is in the profile but not in the DTDL" for n in profile if n not in dtdl]
    return out


def build_twin_type(profile: Profile, models: ModelSet) -> TwinType:
    """Join a DTDL Interface with its profile; raise ``ConfigError`` listing every mismatch."""
    try:
        iface = models.interface(profile.model_id)
    except ValidationError as exc:
        raise ConfigError(f"twin type {profile.name!r}: {exc}") from None
    contents = models.contents(profile.model_id)
    telemetry = {c.name: c for c in contents if isinstance(c, Telemetry)}
    commands = {c.name: c for c in contents if isinstance(c, Command)}
    props = {c.name: c for c in contents if isinstance(c, Property) and c.writable}
    relationships = tuple(
        RelationshipSpec(c.name, c.target, c.max_multiplicity)
        for c in contents
        if isinstance(c, Relationship)
    )
    problems = _diff("Telemetry", telemetry, profile.signals)
    problems += _diff("Command", commands, profile.actuators)
    problems += _diff("writable Property", props, profile.properties)

    signals = []
    for name, sp in profile.signals.items():
        if name not in telemetry:
            continue
        t = telemetry[name]
        schema = t.schema.name if isinstance(t.schema, PrimitiveSchema) else None
        if schema not in SIGNAL_SCHEMAS or (sp.waveform and schema not in ("double", "float")):
            allowed = "double or float" if sp.waveform else ", ".join(SIGNAL_SCHEMAS)
            problems.append(f"Telemetry {name!r}: schema must be {allowed}")
        unit = _unit(t.unit, sp.unit, f"Telemetry {name!r}", problems)
        signals.append(
            SignalSpec(
                name,
                unit,
                sp.low,
                sp.high,
                sp.rate_hz,
                sp.waveform,
                sp.burst_interval_s,
                schema=schema or "double",
                dtdl_unit=t.unit,
            )
        )
    actuators = []
    for name, limits in profile.actuators.items():
        if name not in commands:
            continue
        c = commands[name]
        request = c.request.schema if c.request is not None else None
        fields = {f.name for f in getattr(request, "fields", ())}
        if fields != set(limits):
            problems.append(
                f"Command {name!r}: request fields {sorted(fields)} differ from the profile's "
                f"parameters {sorted(limits)}"
            )
        description = c.description.get("en", "")
        actuators.append(ActuatorSpec(name, dict(limits), description, request))
    properties = []
    for name, pp in profile.properties.items():
        if name not in props:
            continue
        where = f"Property {name!r}"
        if pp.param not in profile.actuators.get(pp.command, {}):
            problems.append(f"{where}: command {pp.command!r} has no parameter {pp.param!r}")
        if pp.reported_signal is not None and pp.reported_signal not in profile.signals:
            problems.append(f"{where}: reported signal {pp.reported_signal!r} is not a signal")
        unit = _unit(props[name].unit, pp.unit, where, problems)
        properties.append(
            PropertySpec(
                name,
                unit,
                pp.low,
                pp.high,
                True,
                pp.command,
                pp.param,
                pp.scale,
                pp.reported_signal,
                pp.tolerance,
            )
        )
    if problems:
        raise ConfigError(
            f"twin type {profile.name!r}: the DTDL Interface {profile.model_id!r} "
            f"({iface.file}) and its profile in operators/catalog.py disagree:\n  "
            + "\n  ".join(problems)
        )
    return TwinType(
        name=profile.name,
        signals=tuple(signals),
        actuators=tuple(actuators),
        fault_frequencies=dict(profile.fault_frequencies),
        bands=profile.bands,
        model_id=profile.model_id,
        properties=tuple(properties),
        relationships=relationships,
    )


def build_catalog(
    models: ModelSet | None = None, profiles: tuple[Profile, ...] = PROFILES
) -> Mapping[str, TwinType]:
    """Every twin type, from the simulator's DTDL Interfaces (or ``models``) and profiles."""
    models = parse_files([INTERFACES_DIR]) if models is None else models
    return MappingProxyType({p.name: build_twin_type(p, models) for p in profiles})


CATALOG: Mapping[str, TwinType] = build_catalog()
WIND_TURBINE = CATALOG["wind_turbine"]
PUMP = CATALOG["pump"]
MOTOR = CATALOG["motor"]


def twin_type(name: str) -> TwinType:
    """Look a twin type up by name, with an error that lists the known ones."""
    try:
        return CATALOG[name]
    except KeyError:
        known = ", ".join(sorted(CATALOG))
        raise ValidationError(f"unknown twin type {name!r}; known types: {known}") from None
