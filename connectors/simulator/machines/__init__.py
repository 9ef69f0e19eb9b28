"""The simulated machines, one module per twin type, all with the same small surface.

A machine is a small picklable dataclass; ``signals`` advances it one chunk of 1 Hz samples
and returns the true values of every scalar signal of its catalog type, ``command`` applies
an already validated command.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

from twinflow.connectors.simulator.machines.motor import Motor
from twinflow.connectors.simulator.machines.pump import Pump
from twinflow.connectors.simulator.machines.turbine import Turbine

#: Twin types in the order twins are assigned to them (round-robin), with id prefixes.
TYPE_ORDER: tuple[tuple[str, str], ...] = (
    ("wind_turbine", "wt"),
    ("pump", "pump"),
    ("motor", "motor"),
)


class Machine(Protocol):
    def signals(
        self, times: np.ndarray, rng: np.random.Generator, fault: str | None, sev: np.ndarray
    ) -> dict[str, np.ndarray]: ...

    def command(self, name: str, params: Mapping[str, float]) -> str: ...


MACHINES: Mapping[str, type[Turbine] | type[Pump] | type[Motor]] = {
    "wind_turbine": Turbine,
    "pump": Pump,
    "motor": Motor,
}


def create_machine(twin_type: str, rng: np.random.Generator, t0: float) -> Machine:
    """A fresh machine of ``twin_type`` in steady state at ``t0``."""
    return MACHINES[twin_type].create(rng, t0)


__all__ = ["MACHINES", "TYPE_ORDER", "Machine", "Motor", "Pump", "Turbine", "create_machine"]
