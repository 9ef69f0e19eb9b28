"""A simulated centrifugal pump driven by a 400 V motor.

The operator's setpoint (200-300 m3/h, moved by up to ±5 % about every half hour until a
``set_flow`` command fixes it; ``derate`` scales it) is followed by the flow with a 20 s lag. Head,
pressure rise, efficiency and motor current come from the shared pump physics, so the flow's
residuals see exactly this machine. ``impeller_wear`` lowers efficiency by up to 25 % and
head by up to 15 %.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from twinflow.connectors.simulator.dynamics import lag, ou
from twinflow.connectors.simulator.machines.physics import (
    differential_pressure_bar,
    pump_current_a,
    pump_head_m,
    pump_nominal_efficiency,
)

WEAR_EFFICIENCY_LOSS = 0.25
WEAR_HEAD_LOSS = 0.15
SETPOINT_MOVE = 0.05  # largest operator move around the setpoint (share)
SETPOINT_MOVE_EVERY_S = 1800.0


@dataclass(slots=True)
class Pump:
    """State of one pump; the methods advance it one chunk or apply a command."""

    twin_type: ClassVar[str] = "pump"

    setpoint: float
    suction: float
    flow: float
    voltage_dev: float
    move: float = 0.0
    derate: float = 1.0
    commanded: bool = False

    @classmethod
    def create(cls, rng: np.random.Generator, t0: float) -> Pump:
        """A pump running steadily at its setpoint."""
        setpoint = rng.uniform(200.0, 300.0)
        return cls(
            setpoint=setpoint,
            suction=1.5 + rng.uniform(-0.2, 0.2),
            flow=setpoint,
            voltage_dev=rng.normal(0.0, 3.0),
        )

    def signals(
        self, times: np.ndarray, rng: np.random.Generator, fault: str | None, sev: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Advance one chunk at 1 Hz and return the true signal values."""
        n = len(times)
        eps = rng.standard_normal((6, n))
        moves, size = rng.random(2)
        if moves < n / SETPOINT_MOVE_EVERY_S and not self.commanded:
            self.move = (2.0 * size - 1.0) * SETPOINT_MOVE
        target = float(np.clip(self.setpoint * (1.0 + self.move) * self.derate, 0.0, 600.0))
        flow = lag(self.flow, 20.0, np.full(n, target))

        wear = sev if fault == "impeller_wear" else np.zeros(n)
        head = pump_head_m(flow) * (1.0 - WEAR_HEAD_LOSS * wear)
        dp = differential_pressure_bar(head)
        voltage = 400.0 + ou(self.voltage_dev, 600.0, 3.0, eps[0])
        efficiency = pump_nominal_efficiency(flow) * (1.0 - WEAR_EFFICIENCY_LOSS * wear)
        current = pump_current_a(flow, dp, efficiency, voltage)

        self.flow = float(flow[-1])
        self.voltage_dev = float(voltage[-1] - 400.0)
        return {
            "flow_m3h": flow + 0.8 * eps[1],
            "suction_bar": self.suction + 0.02 * eps[2],
            "discharge_bar": self.suction + dp + 0.03 * eps[3],
            "motor_current_a": current * (1.0 + 0.005 * eps[4]),
            "motor_voltage_v": voltage + 0.5 * eps[5],
            "flow_setpoint_m3h": np.full(n, target),
        }

    def command(self, name: str, params: Mapping[str, float]) -> str:
        """Apply a validated command; returns what changed."""
        if name == "set_flow":
            self.setpoint = float(params["m3h"])
            self.move = 0.0
            self.commanded = True
            return f"flow setpoint {self.setpoint:g} m3/h"
        if name == "derate":
            self.derate = float(params["fraction"])
            return f"flow setpoint scaled by {self.derate:g}"
        raise ValueError(f"pump has no command {name!r}")
