"""What-if scenarios as data: a YAML or JSON file, checked field by field.

A file names the twin (or the command line does), the horizon, optionally the dynamics of a
user's type (``package.module:Class``, see :mod:`twinflow.operators.whatif.dynamics`) and the
fault the twin carries with its progression, then the scenarios. Each scenario is a list of
steps at offsets from now: a ``command`` with ``params`` (checked against the twin type's
command limits when it runs), ``set`` (inputs of the dynamics to a value: a setpoint, a
load, the ambient) or ``change`` (inputs by an amount). "No change" (no steps) is always
compared as the baseline.

>>> from pathlib import Path
>>> read_whatif({"horizon": "2h", "scenarios": [{"name": "x", "steps": [{"at": -1}]}]},
...             Path("s.yaml"))
Traceback (most recent call last):
...
twinflow.core.errors.ConfigError: s.yaml: scenarios[0].steps[0].at: must be positive, got -1
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from twinflow.core.config import Duration, Number, OptionalText, Part, Schema, Section, Text
from twinflow.core.errors import ConfigError

#: Name of the scenario every file is compared against.
BASELINE = "no change"
#: Seconds of predicted signals per frame (the simulator's chunk).
CHUNK_S = 60

WHATIF = Schema(
    "",
    "A what-if file (`twinflow whatif`).",
    (
        OptionalText("twin", "The twin to run forward (`--twin` overrides)."),
        Duration("horizon", "How far ahead to run.", 7200.0, shown="`2h`"),
        OptionalText(
            "dynamics",
            "Import path `package.module:Class` of the dynamics of a type of your own; the "
            "bundled types use the simulator's.",
        ),
        Part("fault", "The fault the twin carries and its course (all scenarios).", see="fault"),
        Part("scenarios", "The scenarios (at least one).", kind="list", see="scenarios[]"),
    ),
)
FAULT = Schema(
    "fault",
    "A fault and its progression: severity grows (as the simulator's faults do) from its "
    "value now to 1 at failure.",
    (
        Text(
            "kind",
            "The fault's kind, as the dynamics know it (e.g. `overheating`).",
            "",
            required=True,
        ),
        Number("severity", "Severity now, 0 (none) to 1 (failed).", 0.0, low=0, high=1),
        Duration(
            "failure_in", "Time from now until the fault reaches failure.", 0.0, required=True
        ),
    ),
)
SCENARIO = Schema(
    "scenarios[]",
    "One scenario: what changes, and when.",
    (
        Text("name", "Its name in the report.", "", required=True),
        Part("steps", "The changes, at offsets from now.", kind="list", see="steps[]"),
        Part("fault", "A fault for this scenario alone (`none`: without the file's).", see="fault"),
    ),
)
STEP = Schema(
    "steps[]",
    "One change: exactly one of `command`, `set` or `change`.",
    (
        Duration("at", "Offset from now (`0s`: now).", 0.0, shown="`0s`"),
        OptionalText("command", "A command of the twin's type, e.g. `derate`."),
        Part("params", "The command's parameters: name -> number.", kind="mapping"),
        Part("set", "Inputs of the dynamics set to a value: name -> number.", kind="mapping"),
        Part(
            "change", "Inputs of the dynamics changed by an amount: name -> number.", kind="mapping"
        ),
    ),
)
SCHEMAS = (WHATIF, FAULT, SCENARIO, STEP)


@dataclass(frozen=True)
class FaultCourse:
    """A fault's kind and course: ``severity`` now, 1 at ``failure_in_s`` from now.

    Severity follows the simulator's curve ``expm1(3 x) / expm1(3)`` of the fault's progress x.
    """

    kind: str
    severity: float
    failure_in_s: float

    def severity_at(self, offsets_s: np.ndarray) -> np.ndarray:
        """Severity at ``offsets_s`` seconds from now."""
        e3 = math.expm1(3.0)
        x0 = math.log1p(self.severity * e3) / 3.0
        x = x0 + (1.0 - x0) * np.asarray(offsets_s, dtype=np.float64) / self.failure_in_s
        return np.asarray(np.expm1(3.0 * np.clip(x, 0.0, 1.0)) / e3)


@dataclass(frozen=True)
class Step:
    """One change at ``at_s`` seconds from now."""

    at_s: float
    where: str
    command: str | None = None
    params: Mapping[str, float] = field(default_factory=dict)
    set: Mapping[str, float] = field(default_factory=dict)
    change: Mapping[str, float] = field(default_factory=dict)


#: A scenario's fault when it keeps the file's.
INHERIT = "inherit"


@dataclass(frozen=True)
class Scenario:
    name: str
    steps: tuple[Step, ...] = ()
    fault: FaultCourse | str | None = INHERIT


@dataclass(frozen=True)
class WhatIf:
    """A checked what-if file; the baseline comes first in :attr:`all_scenarios`."""

    file: Path
    twin: str | None
    horizon_s: float
    dynamics: str | None
    fault: FaultCourse | None
    scenarios: tuple[Scenario, ...]

    @property
    def all_scenarios(self) -> tuple[Scenario, ...]:
        return (Scenario(BASELINE), *(s for s in self.scenarios if s.name != BASELINE))

    def fault_of(self, s: Scenario) -> FaultCourse | None:
        return self.fault if s.fault == INHERIT else s.fault  # type: ignore[return-value]


def read_whatif(data: object, file: Path) -> WhatIf:
    """A what-if file's content (already parsed YAML or JSON), checked."""
    top = Section(data, "", file)
    top.check_keys(WHATIF)
    raw = top.data.get("scenarios")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{file}: scenarios must be a non-empty list of scenarios")
    scenarios = [_scenario(Section(s, f"scenarios[{i}]", file)) for i, s in enumerate(raw)]
    names = [s.name for s in scenarios]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise ConfigError(f"{file}: scenarios[{i}].name {n!r} appears twice")
    return WhatIf(
        file=file,
        twin=top.get(WHATIF["twin"]),
        horizon_s=top.get(WHATIF["horizon"]),
        dynamics=top.get(WHATIF["dynamics"]),
        fault=_fault(top, "fault"),
        scenarios=tuple(scenarios),
    )


def _fault(s: Section, key: str) -> FaultCourse | None:
    if s.data.get(key) is None:
        return None
    e = s.section(key)
    e.check_keys(FAULT)
    return FaultCourse(e.get(FAULT["kind"]), e.get(FAULT["severity"]), e.get(FAULT["failure_in"]))


def _scenario(s: Section) -> Scenario:
    s.check_keys(SCENARIO)
    fault: FaultCourse | str | None = INHERIT
    if s.data.get("fault") == "none":
        fault = None
    elif "fault" in s.data:
        fault = _fault(s, "fault")
    raw = s.data.get("steps", [])
    if not isinstance(raw, list):
        raise s.fail("steps", "a list of steps")
    steps = [_step(Section(e, f"{s.path('steps')}[{i}]", s.file)) for i, e in enumerate(raw)]
    return Scenario(s.get(SCENARIO["name"]), tuple(sorted(steps, key=lambda x: x.at_s)), fault)


def _numbers(s: Section, key: str) -> dict[str, float]:
    part = s.section(key)
    out = {}
    for k in part.data:
        out[str(k)] = part.get(Number(str(k), "", 0.0, finite=True, required=True))
    return out


def _zero(raw: object) -> bool:
    """``at: 0``, ``0s``, ``0m``...: now (a duration field refuses zero)."""
    if isinstance(raw, bool):
        return False
    if isinstance(raw, int | float):
        return raw == 0
    return isinstance(raw, str) and re.fullmatch(r"\s*0+(\.0*)?\s*[a-z]*\s*", raw) is not None


def _step(s: Section) -> Step:
    s.check_keys(STEP)
    at = 0.0 if _zero(s.data.get("at")) else s.get(STEP["at"])
    kinds = [k for k in ("command", "set", "change") if s.data.get(k) is not None]
    if len(kinds) != 1:
        raise ConfigError(
            f"{s.file}: {s.where}: give exactly one of command, set or change (got "
            f"{', '.join(kinds) or 'none'})"
        )
    if "params" in s.data and kinds != ["command"]:
        raise s.error("params", ": only a command takes params")
    return Step(
        at_s=at,
        where=s.where,
        command=s.get(STEP["command"]),
        params=_numbers(s, "params"),
        set=_numbers(s, "set"),
        change=_numbers(s, "change"),
    )


__all__ = [
    "BASELINE",
    "CHUNK_S",
    "FAULT",
    "INHERIT",
    "SCENARIO",
    "SCHEMAS",
    "STEP",
    "WHATIF",
    "FaultCourse",
    "Scenario",
    "Step",
    "WhatIf",
    "read_whatif",
]
