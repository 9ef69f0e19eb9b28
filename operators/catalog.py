"""Twin types: the signals each type reports, their units and valid ranges, and its actuators.

This is the contract that validation checks frames against and that the simulator produces.
(A later step loads the same facts from DTDL interfaces; this module stays the typed form.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from operators.errors import ValidationError


@dataclass(frozen=True, slots=True)
class SignalSpec:
    """One reported signal: unit, physically valid range and expected reporting rate.

    ``rate_hz`` is how often a reading is expected (staleness is judged against it); for a
    waveform it is the sample rate inside a burst, and ``burst_interval_s`` says how often a
    burst arrives.
    """

    name: str
    unit: str
    low: float
    high: float
    rate_hz: float = 1.0
    waveform: bool = False
    burst_interval_s: float = 0.0

    @property
    def expected_interval_s(self) -> float:
        """Seconds between two arrivals of this signal when all is well."""
        if self.waveform and self.burst_interval_s > 0:
            return self.burst_interval_s
        return 1.0 / self.rate_hz


@dataclass(frozen=True, slots=True)
class ActuatorSpec:
    """A command a twin type accepts, with the allowed range of each parameter."""

    name: str
    params: Mapping[str, tuple[float, float]]
    description: str = ""


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

    def actuator(self, name: str) -> ActuatorSpec:
        for a in self.actuators:
            if a.name == name:
                return a
        known = ", ".join(a.name for a in self.actuators) or "none"
        raise ValidationError(
            f"twin type {self.name!r} has no command {name!r}; it accepts: {known}"
        )


#: Shaft speed of the simulated motor at nominal load (Hz) and its bearing's geometry
#: (9 rolling elements, ball/pitch diameter ratio 0.25, zero contact angle).
MOTOR_SHAFT_HZ = 24.75
_BALLS, _RATIO = 9, 0.25
BPFO_HZ = _BALLS / 2 * (1 - _RATIO) * MOTOR_SHAFT_HZ  # outer-race defect frequency
BPFI_HZ = _BALLS / 2 * (1 + _RATIO) * MOTOR_SHAFT_HZ  # inner-race defect frequency

WIND_TURBINE = TwinType(
    name="wind_turbine",
    signals=(
        SignalSpec("wind_speed", "m/s", 0.0, 60.0),
        SignalSpec("power_kw", "kW", -100.0, 2600.0),
        SignalSpec("rotor_rpm", "rpm", 0.0, 30.0),
        SignalSpec("gearbox_temp", "degC", -40.0, 160.0),
        SignalSpec("generator_temp", "degC", -40.0, 200.0),
        SignalSpec("vibration_rms", "mm/s", 0.0, 100.0),
        SignalSpec("pitch_deg", "deg", -5.0, 95.0),
        SignalSpec("power_limit_kw", "kW", 0.0, 2000.0),
    ),
    actuators=(
        ActuatorSpec("derate", {"fraction": (0.2, 1.0)}, "limit output to a fraction of rated"),
        ActuatorSpec("set_pitch", {"degrees": (-2.0, 90.0)}, "pitch offset added to control"),
    ),
)

PUMP = TwinType(
    name="pump",
    signals=(
        SignalSpec("flow_m3h", "m3/h", 0.0, 600.0),
        SignalSpec("suction_bar", "bar", -1.0, 10.0),
        SignalSpec("discharge_bar", "bar", 0.0, 40.0),
        SignalSpec("motor_current_a", "A", 0.0, 500.0),
        SignalSpec("motor_voltage_v", "V", 0.0, 1000.0),
        SignalSpec("flow_setpoint_m3h", "m3/h", 0.0, 600.0),
    ),
    actuators=(
        ActuatorSpec("set_flow", {"m3h": (20.0, 400.0)}, "flow setpoint"),
        ActuatorSpec("derate", {"fraction": (0.2, 1.0)}, "scale the flow setpoint"),
    ),
)

MOTOR = TwinType(
    name="motor",
    signals=(
        SignalSpec("winding_temp", "degC", -40.0, 250.0),
        SignalSpec("current_a", "A", 0.0, 400.0),
        SignalSpec("speed_rpm", "rpm", 0.0, 1600.0),
        SignalSpec("load_pct", "%", 0.0, 130.0),
        SignalSpec(
            "vibration", "g", -50.0, 50.0, rate_hz=8192.0, waveform=True, burst_interval_s=60.0
        ),
    ),
    actuators=(
        ActuatorSpec("set_load", {"percent": (10.0, 110.0)}, "load setpoint"),
        ActuatorSpec("derate", {"fraction": (0.2, 1.0)}, "limit load to a fraction of rated"),
    ),
    fault_frequencies={"shaft": MOTOR_SHAFT_HZ, "bpfo": BPFO_HZ, "bpfi": BPFI_HZ},
    bands=((0.0, 50.0), (50.0, 200.0), (200.0, 1000.0), (1000.0, 4096.0)),
)

CATALOG: Mapping[str, TwinType] = MappingProxyType({t.name: t for t in (WIND_TURBINE, PUMP, MOTOR)})


def twin_type(name: str) -> TwinType:
    """Look a twin type up by name, with an error that lists the known ones."""
    try:
        return CATALOG[name]
    except KeyError:
        known = ", ".join(sorted(CATALOG))
        raise ValidationError(f"unknown twin type {name!r}; known types: {known}") from None
