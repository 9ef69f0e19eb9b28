"""The ``maintenance_plan`` document (version 1): what to do to which twin, when, and why.

Every choice carries its expected cost and its failure risk (the probability that the twin
fails before the action, or within the horizon when nothing is done), so a reader can see
what the plan weighed. ``plan_id`` is a uuid5 of the plan's time, horizon and estimates: the
same estimates give the same id, and a store keeps one row per plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from twinflow.core.times import iso


def _num(x: float | None, digits: int = 3) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, digits)


@dataclass(frozen=True)
class Choice:
    """One option for a twin: ``action`` at ``at`` (``None`` for no action in the horizon)."""

    action: str
    at: datetime | None
    expected_cost: float
    failure_risk: float

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "at": iso(self.at),
            "expected_cost": round(self.expected_cost, 2),
            "failure_risk": round(self.failure_risk, 4),
        }


@dataclass(frozen=True)
class PlanItem:
    """A twin's decision (``chosen``) among its ``options``, and the estimate behind it."""

    twin_id: str
    twin_type: str
    outage: str
    chosen: Choice
    options: tuple[Choice, ...]
    estimated_at: datetime
    rul_hours: float | None
    rul_low_hours: float | None
    rul_high_hours: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "twin_id": self.twin_id,
            "twin_type": self.twin_type,
            "outage": self.outage,
            **self.chosen.to_json(),
            "rul": {
                "estimated_at": iso(self.estimated_at),
                "hours": _num(self.rul_hours),
                "low_hours": _num(self.rul_low_hours),
                "high_hours": _num(self.rul_high_hours),
            },
            "options": [o.to_json() for o in self.options],
        }


@dataclass(frozen=True)
class Outage:
    """One planned stop of an outage unit (a group, or a twin alone) and its downtime cost."""

    unit: str
    at: datetime
    twins: tuple[str, ...]
    downtime_cost: float

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "at": iso(self.at),
            "twins": list(self.twins),
            "downtime_cost": round(self.downtime_cost, 2),
        }


@dataclass(frozen=True)
class MaintenancePlan:
    """A plan over ``[time, horizon_end)``; ``status`` is the solver's (``optimal`` or
    ``time_limit``, the best plan found in time)."""

    SCHEMA: ClassVar[str] = "twinflow.maintenance_plan"
    VERSION: ClassVar[int] = 1

    plan_id: str
    time: datetime
    horizon_end: datetime
    slot_s: float
    status: str
    items: tuple[PlanItem, ...]
    outages: tuple[Outage, ...]
    skipped: tuple[tuple[str, str], ...]

    @property
    def expected_cost(self) -> float:
        """Expected cost of the plan within the horizon (actions, failures, downtime)."""
        return sum(i.chosen.expected_cost for i in self.items)

    @property
    def run_to_failure_cost(self) -> float:
        """Expected cost within the horizon if nothing were done."""
        return sum(i.options[0].expected_cost for i in self.items)

    @property
    def expected_failures(self) -> float:
        """Expected number of twins failing within the horizon under the plan."""
        return sum(i.chosen.failure_risk for i in self.items)

    @property
    def any_failure_risk(self) -> float:
        """Probability that at least one twin fails (failures taken as independent)."""
        return 1.0 - math.prod(1.0 - i.chosen.failure_risk for i in self.items)

    def actions(self) -> list[PlanItem]:
        """The items with a planned action, in time order."""
        acting = [i for i in self.items if i.chosen.at is not None]
        return sorted(acting, key=lambda i: (i.chosen.at, i.twin_id))

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.SCHEMA,
            "version": self.VERSION,
            "plan_id": self.plan_id,
            "time": iso(self.time),
            "horizon_end": iso(self.horizon_end),
            "slot_s": self.slot_s,
            "status": self.status,
            "expected_cost": round(self.expected_cost, 2),
            "run_to_failure_cost": round(self.run_to_failure_cost, 2),
            "expected_failures": round(self.expected_failures, 4),
            "any_failure_risk": round(self.any_failure_risk, 4),
            "items": [i.to_json() for i in self.items],
            "outages": [o.to_json() for o in self.outages],
            "skipped": [{"twin_id": t, "reason": r} for t, r in self.skipped],
        }


__all__ = ["Choice", "MaintenancePlan", "Outage", "PlanItem"]
