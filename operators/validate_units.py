"""Validation of declared units: a signal sent in a unit other than its model's is dropped.

A device may declare the unit of each signal (:attr:`TelemetryFrame.units`); a declared unit
that is not one the model accepts for that signal drops the signal from the frame, with one
dead letter that names both units.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from twinflow.core.errors import ValidationError
from twinflow.core.records import DeadLetter, TelemetryFrame
from twinflow.core.times import utc
from twinflow.operators.catalog import UNIT_SYMBOLS, SignalSpec
from twinflow.operators.dtdl.quantities import UNIT_TYPES
from twinflow.operators.validate_letters import short

#: Every unit name twinflow knows: the DTDL units and twinflow's symbols for them.
KNOWN_UNITS: frozenset[str] = frozenset().union(*UNIT_TYPES.values(), UNIT_SYMBOLS.values())


def check_units(
    frame: TelemetryFrame,
    specs: dict[str, SignalSpec],
    accepted: dict[str, frozenset[str]],
    known_units: frozenset[str],
    first: float,
    n: int,
    dead: list[DeadLetter],
) -> Mapping[str, Any]:
    """The frame's signals without those declared in a unit other than their model's
    (one dead letter each, dated at the frame's first time)."""
    twin, units = frame.twin_id, frame.units
    if not isinstance(units, Mapping):
        raise ValidationError(
            f"twin {twin!r}: units must map signal names to unit names, got "
            f"{type(units).__name__}; fix the decoder or connector that built the frame"
        )
    if not units:
        return frame.signals
    drop = []
    for name in frame.signals:
        declared = units.get(name, accepted)  # ``accepted``: nothing declared
        if declared is accepted or (isinstance(declared, str) and declared in accepted[name]):
            continue
        drop.append(name)
        spec = specs[name]
        if not isinstance(declared, str):
            what = f"a unit that is not a name ({short(declared)})"
        elif declared in known_units:
            what = f"unit {short(declared)}"
        else:
            what = f"unknown unit {short(declared)}"
        if spec.dtdl_unit is not None:
            model = f"{spec.dtdl_unit!r} ({spec.unit})"
        else:
            model = repr(spec.unit) if spec.unit else "no unit"
        excerpt = {
            "twin_id": twin,
            "twin_type": frame.twin_type,
            "signal": name,
            "declared_unit": declared[:200] if isinstance(declared, str) else short(declared),
            "model_unit": spec.dtdl_unit,
            "unit_symbol": spec.unit,
            "readings": n,
        }
        dead.append(
            DeadLetter(
                stage="validate",
                reason=(
                    f"twin {twin!r}: signal {name!r} is declared in {what} but the model "
                    f"of {frame.twin_type!r} gives {model}; its {n} reading(s) are "
                    "dropped; convert on the device or fix the model"
                ),
                source=frame.source,
                time=utc(first),
                twin_id=twin,
                payload=json.dumps(excerpt, default=repr)[: DeadLetter.MAX_PAYLOAD],
                readings=n,
            )
        )
    if not drop:
        return frame.signals
    return {k: v for k, v in frame.signals.items() if k not in drop}


__all__ = ["KNOWN_UNITS", "check_units"]
