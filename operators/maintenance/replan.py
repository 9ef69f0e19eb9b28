"""Re-planning as RUL estimates change: when a fleet's plan is worth computing again.

:class:`Replanner` is fed each twin's newest estimate (an :class:`Outlook`) in event-time
order and answers with a new :class:`MaintenancePlan` when one is due. It decides only when
event time moves on, so every estimate of a moment is in before it plans (a fleet's windows
end together). A plan is due when

- a twin's estimate *moved* since the plan before: its predicted failure time
  (``estimated_at + hours``), or an end of its interval, shifted by more than ``change`` of
  its remaining life, it gained or lost a finite estimate, or it is new (a twin that has
  failed and still has not moved); and at least
  ``min_interval_s`` passed since that plan (debounce: the estimates drift a little every
  window, a fleet's twins move one after another);
- or ``every_s`` passed since that plan (a timer of event time).

Each plan is a new version of the ``maintenance_plan`` stream: a later ``time``, a new
``plan_id``, and ``revision`` counts them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from twinflow.core.times import utc
from twinflow.operators.maintenance.plan import MaintenancePlan
from twinflow.operators.maintenance.planner import Outlook, plan_maintenance
from twinflow.operators.maintenance.settings import MaintenanceSettings

#: The solver's time limit in the flow (s): a plan found by then is emitted as ``time_limit``.
SOLVE_LIMIT_S = 10.0


def _ends(o: Outlook) -> tuple[float | None, float | None, float | None]:
    """Predicted failure time and its interval's ends, epoch seconds (``None``: no trend)."""
    t0 = o.estimated_at.timestamp()

    def at(hours: float | None) -> float | None:
        return None if hours is None or not math.isfinite(hours) else t0 + hours * 3600.0

    return at(o.hours), at(o.low_hours), at(o.high_hours)


def moved(before: Outlook | None, now: Outlook, change: float) -> bool:
    """Whether ``now`` differs from ``before`` by more than ``change`` of the remaining life.

    >>> from datetime import UTC, datetime, timedelta
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> a = Outlook("M1", "motor", t, 10.0, 8.0, 12.0)
    >>> b = Outlook("M1", "motor", t + timedelta(hours=1), 9.0, 7.0, 11.0)  # same failure time
    >>> c = Outlook("M1", "motor", t + timedelta(hours=1), 5.0, 4.0, 6.0)
    >>> moved(a, b, 0.2), moved(a, c, 0.2), moved(None, a, 0.2)
    (False, True, True)
    """
    if before is None:
        return True
    if _failed(before) and _failed(now):
        return False  # failed, and still: its "failure time" is always now
    life = max(now.hours or 0.0, 0.0) * 3600.0
    for old, new in zip(_ends(before), _ends(now), strict=True):
        if (old is None) != (new is None):
            return True
        if old is not None and new is not None and abs(new - old) > change * max(life, 60.0):
            return True
    return False


def _failed(o: Outlook) -> bool:
    return o.hours is not None and o.hours <= 0.0


@dataclass
class Replanner:
    """The fleet's newest estimates and the plan they last gave; see the module."""

    settings: MaintenanceSettings
    every_s: float
    min_interval_s: float
    change: float
    assets: Mapping[str, str] = field(default_factory=dict)
    latest: dict[str, Outlook] = field(default_factory=dict)
    planned_on: dict[str, Outlook] = field(default_factory=dict)
    clock: float | None = None
    last_plan_at: float | None = None
    revision: int = 0

    def offer(self, outlook: Outlook) -> list[MaintenancePlan]:
        """Take a twin's newest estimate; a plan when one was due before its time. Twins of
        a type without costs are left out (they would only be listed as skipped)."""
        if outlook.twin_type not in self.settings.types:
            return []
        t = outlook.estimated_at.timestamp()
        out = []
        if self.clock is not None and t > self.clock:
            out = self.decide()
        self.clock = t if self.clock is None else max(self.clock, t)
        self.latest[outlook.twin_id] = replace(outlook, asset=self.assets.get(outlook.twin_id))
        return out

    def due(self) -> bool:
        """Whether a plan is due at the current event time."""
        if self.clock is None or not self.latest:
            return False
        if self.last_plan_at is None:
            return True
        since = self.clock - self.last_plan_at
        if since >= self.every_s:
            return True
        if since < self.min_interval_s:
            return False
        return any(moved(self.planned_on.get(t), o, self.change) for t, o in self.latest.items())

    def decide(self) -> list[MaintenancePlan]:
        """The plan of the current estimates when one is due (also called at the end)."""
        if not self.due():
            return []
        assert self.clock is not None
        plan = plan_maintenance(
            sorted(self.latest.values(), key=lambda o: o.twin_id),
            self.settings,
            now=utc(self.clock),
            time_limit_s=SOLVE_LIMIT_S,
        )
        self.planned_on = dict(self.latest)
        self.last_plan_at = self.clock
        self.revision += 1
        return [plan]

    @property
    def now(self) -> datetime | None:
        return None if self.clock is None else utc(self.clock)


__all__ = ["SOLVE_LIMIT_S", "Replanner", "moved"]
