"""The simulated machines' twin types, looked up in the bundled catalogue by name.

The simulator generates data for the bundled types (``operators/types/``); its physics
takes the motor's shaft and bearing defect frequencies from the motor's profile.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from twinflow.operators.catalog import CATALOG

WIND_TURBINE = CATALOG["wind_turbine"]
PUMP = CATALOG["pump"]
MOTOR = CATALOG["motor"]

#: Shaft speed of the simulated motor at nominal load (Hz) and its bearing's defect
#: frequencies, as the bundled motor profile declares them.
MOTOR_SHAFT_HZ = MOTOR.fault_frequencies["shaft"]
BPFO_HZ = MOTOR.fault_frequencies["bpfo"]  # outer-race defect frequency
BPFI_HZ = MOTOR.fault_frequencies["bpfi"]  # inner-race defect frequency

#: The signal whose level shows whether a command had an effect on a simulated machine (the
#: demo's evaluation compares it with the same plant simulated without the command).
EFFECT_SIGNAL: Mapping[str, str] = MappingProxyType(
    {"motor": "winding_temp", "wind_turbine": "generator_temp", "pump": "flow_m3h"}
)

__all__ = [
    "BPFI_HZ",
    "BPFO_HZ",
    "EFFECT_SIGNAL",
    "MOTOR",
    "MOTOR_SHAFT_HZ",
    "PUMP",
    "WIND_TURBINE",
]
