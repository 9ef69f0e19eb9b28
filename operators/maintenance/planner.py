"""A maintenance plan that minimises expected cost over a horizon, solved as a MILP (HiGHS).

For each twin with an RUL estimate and a cost table, the choices are its planned action in
one of the open slots, or no action (run to failure within the horizon). With ``F`` the
probability that the twin fails before a moment (:mod:`~twinflow.operators.maintenance.failure`,
conditioned on it running at the estimate's age), and ``U`` a failure's cost (repair plus
downtime for the unplanned duration):

- action at slot k: ``F(t_k) * U + (1 - F(t_k)) * planned_cost``, plus the outage's downtime;
- no action: ``F(horizon) * U``.

Binary ``x[i, k]`` picks twin i's action in slot k (at most one per twin), binary
``y[u, k]`` stops outage unit u (a group, or a twin alone) in slot k, costing its downtime
once (hourly rate x the longest planned duration of its twins); ``x[i, k] <= y[u(i), k]``.
Planned hours per UTC day stay within ``crew_hours_per_day``. Costs after the horizon are
not counted: "no action" means not within this horizon. SciPy's ``milp`` (HiGHS) solves it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np

from twinflow.core.errors import TwinflowError
from twinflow.core.records import deterministic_id
from twinflow.core.times import iso
from twinflow.operators.maintenance.failure import FailureTime
from twinflow.operators.maintenance.plan import Choice, MaintenancePlan, Outage, PlanItem
from twinflow.operators.maintenance.settings import MaintenanceSettings, TypeCosts
from twinflow.operators.maintenance.slots import Slot, slots

RUN_TO_FAILURE = "run_to_failure"


class PlanError(TwinflowError):
    """The solver found no plan (it should always find one: doing nothing is feasible)."""


@dataclass(frozen=True)
class Outlook:
    """What the planner knows of one twin: its latest RUL estimate and where it sits."""

    twin_id: str
    twin_type: str
    estimated_at: datetime
    hours: float | None
    low_hours: float | None = None
    high_hours: float | None = None
    asset: str | None = None


@dataclass(frozen=True)
class _Twin:
    outlook: Outlook
    costs: TypeCosts
    failure: FailureTime
    unit: str
    rate: float
    now: datetime

    @property
    def failure_cost(self) -> float:
        return self.costs.unplanned_cost + self.rate * self.costs.unplanned_hours

    def risk(self, at: datetime) -> float:
        """Probability of failing before ``at``, given it still runs at the plan's time."""
        since = self.outlook.estimated_at
        lived = self.failure.cdf((self.now - since).total_seconds() / 3600.0)
        if lived >= 1.0:
            return 1.0
        failed = self.failure.cdf((at - since).total_seconds() / 3600.0)
        return max(0.0, (failed - lived) / (1.0 - lived))

    def planned(self, at: datetime) -> tuple[float, float]:
        """Expected cost (without downtime) and risk of the action at ``at``."""
        r = self.risk(at)
        return r * self.failure_cost + (1.0 - r) * self.costs.planned_cost, r


def plan_maintenance(
    outlooks: Sequence[Outlook],
    settings: MaintenanceSettings,
    now: datetime | None = None,
    time_limit_s: float = 60.0,
) -> MaintenancePlan:
    """The plan of least expected cost for ``outlooks`` from ``now`` (default: the newest
    estimate's time)."""
    if now is None:
        now = max((o.estimated_at for o in outlooks), default=None)
        if now is None:
            raise PlanError("no RUL estimates to plan from")
    twins, skipped = _twins(outlooks, settings, now)
    grid = slots(now, settings.horizon_s, settings.slot_s, settings.windows)
    end = _horizon_end(grid, settings)
    downtime = _downtimes(twins, settings)
    chosen, solved = _solve(twins, downtime, grid, settings, time_limit_s)
    items, outages = _report(twins, downtime, grid, chosen, end, settings)
    plan_id = deterministic_id(
        "maintenance_plan",
        iso(now),
        settings.horizon_s,
        *sorted((o.twin_id, o.hours, o.low_hours, o.high_hours) for o in outlooks),
    )
    return MaintenancePlan(
        plan_id=plan_id,
        time=now,
        horizon_end=end,
        slot_s=settings.slot_s,
        status=solved,
        items=tuple(items),
        outages=tuple(outages),
        skipped=tuple(skipped),
    )


def _twins(
    outlooks: Sequence[Outlook], settings: MaintenanceSettings, now: datetime
) -> tuple[list[_Twin], list[tuple[str, str]]]:
    unit_of = {t: g.name for g in settings.groups for t in g.twins}
    twins: list[_Twin] = []
    skipped: list[tuple[str, str]] = []
    for o in sorted(outlooks, key=lambda o: o.twin_id):
        costs = settings.types.get(o.twin_type)
        if costs is None:
            skipped.append(
                (o.twin_id, f"no costs for type {o.twin_type!r} under maintenance.types")
            )
            continue
        if o.hours is None or math.isnan(o.hours):
            skipped.append((o.twin_id, "no RUL estimate"))
            continue
        failure = FailureTime.from_rul(o.hours, o.low_hours, o.high_hours, settings.default_spread)
        rate = settings.downtime_rate(o.twin_id, o.asset)
        twins.append(_Twin(o, costs, failure, unit_of.get(o.twin_id, o.twin_id), rate, now))
    return twins, skipped


def _downtimes(twins: Sequence[_Twin], settings: MaintenanceSettings) -> dict[str, float]:
    """Each outage unit's downtime cost per stop: its rate (the group's, else its twins'
    highest) times the longest planned duration of its twins."""
    members: dict[str, list[_Twin]] = {}
    for t in twins:
        members.setdefault(t.unit, []).append(t)
    rates = {g.name: g.downtime_cost_per_hour for g in settings.groups}
    out = {}
    for unit, ts in sorted(members.items()):
        rate = rates.get(unit)
        if rate is None:
            rate = max(t.rate for t in ts)
        out[unit] = rate * max(t.costs.planned_hours for t in ts)
    return out


def _solve(
    twins: Sequence[_Twin],
    downtime: Mapping[str, float],
    grid: Sequence[Slot],
    settings: MaintenanceSettings,
    time_limit_s: float,
) -> tuple[dict[str, int], str]:
    """Slot index chosen per twin id (absent: no action) and the solver's verdict."""
    from scipy.optimize import Bounds, LinearConstraint, milp  # only where a plan is made
    from scipy.sparse import coo_array

    n, k, m = len(twins), len(grid), len(downtime)
    if n == 0:
        return {}, "optimal"
    nx = n * k
    c = np.zeros(nx + m * k)
    upper = np.ones(nx + m * k)
    unit_index = {u: j for j, u in enumerate(downtime)}
    cap = settings.crew_hours_per_day
    end = _horizon_end(grid, settings)
    for i, t in enumerate(twins):
        baseline = _no_action(t, end)[0]
        for s in grid:
            if s.start is None or t.costs.planned_hours > cap:
                upper[i * k + s.index] = 0.0
                continue
            c[i * k + s.index] = t.planned(s.start)[0] - baseline
    for j, cost in enumerate(downtime.values()):
        c[nx + j * k : nx + (j + 1) * k] = cost
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    limits: list[float] = []

    def row(entries: Sequence[tuple[int, float]], limit: float) -> None:
        for col, v in entries:
            rows.append(len(limits))
            cols.append(col)
            vals.append(v)
        limits.append(limit)

    for i in range(n):  # at most one action per twin
        row([(i * k + j, 1.0) for j in range(k)], 1.0)
    for i, t in enumerate(twins):  # an action needs its unit's outage
        y = nx + unit_index[t.unit] * k
        for j in range(k):
            row([(i * k + j, 1.0), (y + j, -1.0)], 0.0)
    days: dict[date, list[int]] = {}
    for s in grid:
        if s.day is not None:
            days.setdefault(s.day, []).append(s.index)
    for day_slots in days.values():  # crew hours per calendar day
        row([(i * k + j, t.costs.planned_hours) for i, t in enumerate(twins) for j in day_slots],
            cap)  # fmt: skip
    a = coo_array((vals, (rows, cols)), shape=(len(limits), nx + m * k)).tocsr()
    res = milp(
        c,
        constraints=LinearConstraint(a, -np.inf, np.array(limits)),
        integrality=np.ones_like(c),
        bounds=Bounds(np.zeros_like(c), upper),
        options={"time_limit": time_limit_s},
    )
    if res.x is None:
        raise PlanError(f"the solver found no plan: {res.message}")
    x = np.round(res.x[:nx]).reshape(n, k)
    chosen = {
        t.outlook.twin_id: int(np.argmax(x[i])) for i, t in enumerate(twins) if x[i].max() > 0.5
    }
    return chosen, "optimal" if res.status == 0 else "time_limit"


def _horizon_end(grid: Sequence[Slot], settings: MaintenanceSettings) -> datetime:
    """The end of the horizon."""
    return grid[0].begin + timedelta(seconds=settings.horizon_s)


def _no_action(t: _Twin, end: datetime) -> tuple[float, float]:
    """Expected cost and risk of no action within the horizon."""
    r = t.risk(end)
    return r * t.failure_cost, r


def _report(
    twins: Sequence[_Twin],
    downtime: Mapping[str, float],
    grid: Sequence[Slot],
    chosen: dict[str, int],
    end: datetime,
    settings: MaintenanceSettings,
) -> tuple[list[PlanItem], list[Outage]]:
    stops: dict[tuple[str, int], list[str]] = {}
    for t in twins:
        k = chosen.get(t.outlook.twin_id)
        if k is not None:
            stops.setdefault((t.unit, k), []).append(t.outlook.twin_id)
    outages: list[Outage] = []
    share: dict[str, float] = {}
    for (unit, k), members in sorted(stops.items(), key=lambda e: (e[0][1], e[0][0])):
        start = grid[k].start
        assert start is not None
        outages.append(Outage(unit, start, tuple(members), downtime[unit]))
        for tid in members:
            share[tid] = downtime[unit] / len(members)
    items = []
    for t in twins:
        cost, risk = _no_action(t, end)
        rtf = Choice(RUN_TO_FAILURE, None, cost, risk)
        options = [rtf]
        alone = _downtimes([t], settings)[t.unit]
        for s in grid:
            if s.start is not None and t.costs.planned_hours <= settings.crew_hours_per_day:
                e, r = t.planned(s.start)
                options.append(Choice(t.costs.action, s.start, e + alone, r))
        k = chosen.get(t.outlook.twin_id)
        if k is None:
            pick = rtf
        else:
            start = grid[k].start
            assert start is not None
            e, r = t.planned(start)
            pick = Choice(t.costs.action, start, e + share[t.outlook.twin_id], r)
        o = t.outlook
        items.append(
            PlanItem(
                o.twin_id,
                o.twin_type,
                t.unit,
                pick,
                tuple(options),
                o.estimated_at,
                o.hours,
                o.low_hours,
                o.high_hours,
            )
        )
    return items, outages


__all__ = ["RUN_TO_FAILURE", "Outlook", "PlanError", "plan_maintenance"]
