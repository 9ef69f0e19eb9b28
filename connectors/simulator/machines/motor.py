"""A simulated 4-pole induction motor driving a steady load.

Load follows its setpoint (75-85 %, or ``set_load``; ``derate`` caps it at fraction x 100 %)
with a 10 s lag plus a slow wander. Speed drops with slip (1500 rpm at no load, 1485 rpm at
full load), current grows with load, and the winding temperature lags 10 min behind ambient
plus a rise with the square of load (80-95 °C at 80 % load). An ``overheating`` fault adds
up to +60 °C that also scales with load squared, so derating cools it clearly. The vibration
waveform lives in :mod:`twinflow.connectors.simulator.machines.vibration`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from twinflow.connectors.simulator.dynamics import daily, lag, ou
from twinflow.connectors.simulator.machines.vibration import vibration_burst

OVERHEAT_RISE = 60.0  # degC at 80 % load when the fault is fully developed
WINDING_RISE_FULL_LOAD = 97.0  # degC above ambient at 100 % load


@dataclass(slots=True)
class Motor:
    """State of one motor; the methods advance it one chunk or apply a command."""

    twin_type: ClassVar[str] = "motor"

    setpoint: float
    ambient: float
    load: float
    load_dev: float
    winding_temp: float
    derate: float = 1.0

    @classmethod
    def create(cls, rng: np.random.Generator, t0: float) -> Motor:
        """A motor in thermal equilibrium at its setpoint."""
        setpoint = rng.uniform(75.0, 85.0)
        ambient = rng.uniform(22.0, 28.0)
        amb = ambient + float(daily(np.array([t0]))[0])
        return cls(
            setpoint=setpoint,
            ambient=ambient,
            load=setpoint,
            load_dev=rng.normal(0.0, 1.5),
            winding_temp=float(amb + _winding_rise(setpoint)),
        )

    @property
    def load_target(self) -> float:
        """Load the motor is driven toward: its setpoint, capped by the derate."""
        return min(self.setpoint, 100.0 * self.derate)

    def signals(
        self, times: np.ndarray, rng: np.random.Generator, fault: str | None, sev: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Advance one chunk at 1 Hz and return the true signal values."""
        n = len(times)
        eps = rng.standard_normal((5, n))
        load_dev = ou(self.load_dev, 120.0, 1.5, eps[0])
        load = lag(self.load, 10.0, np.maximum(self.load_target + load_dev, 0.0))
        heat = self.ambient + daily(times) + _winding_rise(load)
        if fault == "overheating":
            heat = heat + OVERHEAT_RISE * sev * np.minimum((load / 80.0) ** 2, 1.0)
        winding = lag(self.winding_temp, 600.0, heat)

        self.load_dev = float(load_dev[-1])
        self.load = float(load[-1])
        self.winding_temp = float(winding[-1])
        return {
            "winding_temp": winding + 0.2 * eps[1],
            "current_a": 60.0 + 1.4 * load + 0.5 * eps[2],
            "speed_rpm": 1500.0 - 0.15 * load + 0.3 * eps[3],
            "load_pct": load + 0.3 * eps[4],
        }

    def vibration(
        self, n: int, rate: float, fault: str | None, sev: float, rng: np.random.Generator
    ) -> np.ndarray:
        """One vibration burst; only a ``bearing`` fault changes it."""
        return vibration_burst(n, rate, sev if fault == "bearing" else 0.0, rng)

    def command(self, name: str, params: Mapping[str, float]) -> str:
        """Apply a validated command; returns what changed."""
        if name == "set_load":
            self.setpoint = float(params["percent"])
            return f"load setpoint {self.setpoint:g} %"
        if name == "derate":
            self.derate = float(params["fraction"])
            return f"load limited to {100.0 * self.derate:g} %"
        raise ValueError(f"motor has no command {name!r}")


def _winding_rise(load_pct: np.ndarray | float) -> np.ndarray | float:
    return WINDING_RISE_FULL_LOAD * (np.asarray(load_pct) / 100.0) ** 2
