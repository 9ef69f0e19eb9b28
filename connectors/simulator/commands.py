"""How the simulated plant judges a command before it acts on it.

A command is refused when its twin is unknown or of another type, the type has no such
actuator, or its parameters are missing, extra, not finite or outside the catalog's range.
Every decision becomes a :class:`CommandRecord` in the plant's command log.
"""

from __future__ import annotations

from typing import NamedTuple

from twinflow.connectors.command_sink import catalogue_problem
from twinflow.core.records import Command, CommandStatus

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
    return catalogue_problem(command, actual, "is")  # the check the protocol sinks make
