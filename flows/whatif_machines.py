"""What-if dynamics of the bundled types: the simulator's own machines, started from a twin's
newest signals.

A machine is created with typical hidden values (seeded), then its measured state is set
from the signals (``STATE``): a motor's load and winding temperature, a pump's flow and
suction, a turbine's temperatures, wind and power limit. One unmeasured input is matched to
what was measured (``MATCH``): the ambient that makes the steady temperature, with the fault
as it is now, equal where the reading is heading (its value plus its time constant times
its slope: a first-order lag's target). Its noise comes from a fixed seed, the same in every
scenario, so scenario minus baseline is the effect of the change alone.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping

import numpy as np

from twinflow.connectors.simulator.machines import MACHINES, Machine
from twinflow.connectors.simulator.machines.physics import RATED_KW
from twinflow.connectors.simulator.twin import RANGES

#: Machine attribute <- function of the newest signals (when the signal was measured).
STATE: Mapping[str, Mapping[str, tuple[str, Callable[[float], float]]]] = {
    "motor": {
        "load": ("load_pct", float),
        "setpoint": ("load_pct", float),
        "winding_temp": ("winding_temp", float),
    },
    "pump": {
        "flow": ("flow_m3h", float),
        "setpoint": ("flow_setpoint_m3h", float),
        "suction": ("suction_bar", float),
    },
    "wind_turbine": {
        "gearbox_temp": ("gearbox_temp", float),
        "generator_temp": ("generator_temp", float),
        "mean_wind": ("wind_speed", float),
        "derate": ("power_limit_kw", lambda kw: kw / RATED_KW),
    },
}
#: The unmeasured input matched to a measured signal, per type, and the signal's time
#: constant (s): the signal heads for ``value + tau * slope``, matched at steady state.
MATCH: Mapping[str, tuple[str, str, float]] = {
    "motor": ("ambient", "winding_temp", 600.0),
    "wind_turbine": ("ambient", "generator_temp", 900.0),
}
_SETTLE_S = 4 * 3600  # long enough for the slowest thermal lag (25 min) to settle


class SimulatedDynamics:
    """A bundled type's simulated machine as :class:`~twinflow.operators.whatif.Dynamics`."""

    def __init__(self, twin_type: str, seed: int = 0) -> None:
        if twin_type not in MACHINES:
            raise KeyError(twin_type)
        self.twin_type = twin_type
        self.seed = seed
        self.machine: Machine | None = None
        self.rng = np.random.default_rng([seed, 1])

    def start(
        self, last: Mapping[str, float], time: float, fault: str | None, severity: float
    ) -> None:
        machine = MACHINES[self.twin_type].create(np.random.default_rng([self.seed, 0]), time)
        for attr, (signal, read) in STATE[self.twin_type].items():
            if signal in last and np.isfinite(last[signal]):
                setattr(machine, attr, read(last[signal]))
        self.machine = machine
        self.rng = np.random.default_rng([self.seed, 1])
        match = MATCH.get(self.twin_type)
        if match is not None and match[1] in last:
            attr, signal, tau = match
            heading = last[signal] + tau * last.get(f"{signal}.slope", 0.0)
            settled = self._settle(time, fault, severity)[signal]
            setattr(machine, attr, getattr(machine, attr) + heading - settled)

    def _settle(self, time: float, fault: str | None, severity: float) -> dict[str, float]:
        """Mean signals of a copy left to settle at ``time`` with the fault as it is now."""
        twin = copy.deepcopy(self.machine)
        assert twin is not None
        rng = np.random.default_rng([self.seed, 2])
        times = np.full(_SETTLE_S, time)
        values = twin.signals(times, rng, fault, np.full(_SETTLE_S, severity))
        return {k: float(np.mean(v[-600:])) for k, v in values.items()}

    def inputs(self) -> dict[str, float]:
        m = self._machine()
        return {
            f.name: float(getattr(m, f.name))
            for f in dataclasses.fields(m)  # type: ignore[arg-type]
            if isinstance(getattr(m, f.name), float)
        }

    def set_input(self, name: str, value: float) -> None:
        setattr(self._machine(), name, float(value))

    def command(self, name: str, params: Mapping[str, float]) -> None:
        self._machine().command(name, params)

    def advance(
        self, times: np.ndarray, fault: str | None, severity: np.ndarray
    ) -> dict[str, np.ndarray]:
        values = self._machine().signals(times, self.rng, fault, severity)
        ranges = RANGES[self.twin_type]
        return {k: np.clip(values[k], lo, hi) for k, (lo, hi) in ranges.items() if k in values}

    def _machine(self) -> Machine:
        if self.machine is None:
            raise RuntimeError("start() the dynamics before using them")
        return self.machine


__all__ = ["MATCH", "STATE", "SimulatedDynamics"]
