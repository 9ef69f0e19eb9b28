"""What-if scenarios: the scenario files and the interface of a type's dynamics."""

from twinflow.operators.whatif.dynamics import Dynamics, load_dynamics
from twinflow.operators.whatif.scenario import (
    BASELINE,
    FaultCourse,
    Scenario,
    Step,
    WhatIf,
    read_whatif,
)

__all__ = [
    "BASELINE",
    "Dynamics",
    "FaultCourse",
    "Scenario",
    "Step",
    "WhatIf",
    "load_dynamics",
    "read_whatif",
]
