"""How the simulated plant judges a command before it acts on it.

A command is refused when its twin is unknown or of another type, the type has no such
actuator, or its parameters are missing, extra, not finite or outside the catalog's range.
Every decision becomes a :class:`CommandRecord` in the plant's command log.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

from operators.catalog import twin_type
from operators.errors import ValidationError
from operators.records import Command, CommandStatus

#: Statuses of a command the plant acts on (the flow's sinks send QUEUED ones); later
#: states are bookkeeping, not requests.
ACTIONABLE = frozenset({CommandStatus.ISSUED, CommandStatus.QUEUED, CommandStatus.SENT})


class CommandRecord(NamedTuple):
    """One entry of the plant's command log."""

    command_id: str
    twin_id: str
    accepted: bool
    applied_at: float  # simulated epoch seconds at which it was applied or refused
    detail: str


def rejection(command: Command, twins: dict[str, str]) -> str | None:
    """Why the plant refuses ``command``, or ``None`` if it is acceptable.

    ``twins`` maps every twin id of the plant to its type.
    """
    actual = twins.get(command.twin_id)
    if actual is None:
        return f"unknown twin {command.twin_id!r}"
    if command.twin_type != actual:
        return f"twin {command.twin_id!r} is a {actual}, not a {command.twin_type}"
    try:
        spec = twin_type(actual).actuator(command.name)
    except ValidationError as err:
        return str(err)
    missing = sorted(set(spec.params) - set(command.params))
    extra = sorted(set(command.params) - set(spec.params))
    if missing or extra:
        return (
            f"command {command.name!r} takes parameters {sorted(spec.params)}; "
            f"missing {missing}, unexpected {extra}"
        )
    for name, (low, high) in spec.params.items():
        value = command.params[name]
        ok = (
            isinstance(value, numbers.Real)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and low <= value <= high
        )
        if not ok:
            return f"{command.name}.{name}={value!r} is outside [{low:g}, {high:g}]"
    return None
