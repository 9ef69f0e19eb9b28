"""The interface a twin type's physics implements to be run forward in what-if scenarios.

The bundled types use the simulator's machines (:mod:`twinflow.flows.whatif_machines`); a
type of your own declares its class by import path in its profile's ``whatif:`` section
(``whatif: {dynamics: package.module:Class}``, read by :func:`read_whatif_profile`, imported
and checked when the profile loads), which every what-if of the type uses: ``twinflow
whatif``, the Python API and requests answered in the flow. A what-if file may still name
one (``dynamics:``) for ``twinflow whatif``, and it wins over the profile's. The class is
built with no arguments, then:

1. ``start(last, time, fault, severity)`` takes the twin's newest value of each signal (and
   its trend per second as ``<signal>.slope`` where known), the
   time (epoch seconds) and the fault it carries (kind or ``None``, severity 0..1 now) and
   sets its state from them (unmeasured state from typical values, or by matching what was
   measured);
2. ``inputs()`` names what a scenario may ``set`` or ``change`` (a setpoint, a load, the
   ambient...) with current values; ``set_input(name, value)`` changes one;
3. ``command(name, params)`` applies a command of the type (already checked against the
   type's command limits);
4. ``advance(times, fault, severity)`` moves the state over ``times`` (1 Hz epoch seconds)
   and returns each signal's values there; ``fault`` is the fault's kind (or ``None``) and
   ``severity`` its value (0..1) at each time.

Any randomness must come from a seed fixed in ``start``: the baseline and each scenario then
see the same disturbances, and their differences are the scenario's effect.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from twinflow.core.config import OptionalText, Schema, Section
from twinflow.core.errors import ConfigError

IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@runtime_checkable
class Dynamics(Protocol):
    """A twin type's physics, run forward from the twin's latest state."""

    def start(
        self, last: Mapping[str, float], time: float, fault: str | None, severity: float
    ) -> None: ...

    def inputs(self) -> Mapping[str, float]: ...

    def set_input(self, name: str, value: float) -> None: ...

    def command(self, name: str, params: Mapping[str, float]) -> None: ...

    def advance(
        self, times: np.ndarray, fault: str | None, severity: np.ndarray
    ) -> Mapping[str, np.ndarray]: ...


def load_dynamics(path: str, where: str) -> type[Dynamics]:
    """The class at ``path`` (``package.module:Class``); errors name ``where``."""
    if not IMPORT_PATH.match(path):
        raise ConfigError(f"{where} = {path!r}: expected an import path 'package.module:Class'")
    module, _, name = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{where} = {path!r}: cannot import it ({exc})") from None
    missing = [
        m for m in ("start", "inputs", "set_input", "command", "advance") if not hasattr(cls, m)
    ]
    if not isinstance(cls, type) or missing:
        raise ConfigError(
            f"{where} = {path!r} is not a dynamics class (missing: {', '.join(missing) or '-'})"
        )
    dynamics: type[Dynamics] = cls
    return dynamics


#: The ``whatif:`` section of a type's profile.
WHATIF_PROFILE = Schema(
    "whatif",
    "How what-ifs run a twin of this type forward.",
    (
        OptionalText(
            "dynamics",
            "Import path `package.module:Class` of the type's what-if dynamics (the interface "
            "in the what-if guide); imported when the profile loads. The bundled types use "
            "the simulator's.",
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class WhatIfProfile:
    """A type's what-if settings: the import path of its dynamics (``None``: none declared)."""

    dynamics: str | None = None


def read_whatif_profile(s: Section) -> WhatIfProfile:
    """``whatif:``: the dynamics class, imported and checked now so that a deployment with a
    class that cannot be imported fails when it loads, naming the file and field."""
    s.check_keys(WHATIF_PROFILE)
    path = s.get(WHATIF_PROFILE["dynamics"])
    if path is not None:
        load_dynamics(path, f"{s.file}: {s.path('dynamics')}")
    return WhatIfProfile(path)


__all__ = [
    "IMPORT_PATH",
    "WHATIF_PROFILE",
    "Dynamics",
    "WhatIfProfile",
    "load_dynamics",
    "read_whatif_profile",
]
