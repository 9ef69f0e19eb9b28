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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

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
    units = sorted({t.unit for t in twins})
    chosen, solved = _solve(twins, units, grid, settings, time_limit_s)
    items, outages = _report(twins, units, grid, chosen, end, settings)
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


def _unit_downtime(twins: Sequence[_Twin], unit: str, settings: MaintenanceSettings) -> float:
    members = [t for t in twins if t.unit == unit]
    group = next((g for g in settings.groups if g.name == unit), None)
    rate = max(t.rate for t in members)
    if group is not None and group.downtime_cost_per_hour is not None:
        rate = group.downtime_cost_per_hour
    return rate * max(t.costs.planned_hours for t in members)


def _solve(
    twins: Sequence[_Twin],
    units: Sequence[str],
    grid: Sequence[Slot],
    settings: MaintenanceSettings,
    time_limit_s: float,
) -> tuple[dict[str, int], str]:
    """Slot index chosen per twin id (absent: no action) and the solver's verdict."""
    from scipy.optimize import Bounds, LinearConstraint, milp  # only where a plan is made
    from scipy.sparse import lil_array

    n, k, m = len(twins), len(grid), len(units)
    if n == 0:
        return {}, "optimal"
    nx = n * k
    c = np.zeros(nx + m * k)
    upper = np.ones(nx + m * k)
    unit_index = {u: j for j, u in enumerate(units)}
    cap = settings.crew_hours_per_day
    for i, t in enumerate(twins):
        baseline = _no_action(t, _horizon_end(grid, settings))[0]
        for s in grid:
            if s.start is None or t.costs.planned_hours > cap:
                upper[i * k + s.index] = 0.0
                continue
            c[i * k + s.index] = t.planned(s.start)[0] - baseline
    for u_i, u in enumerate(units):
        c[nx + u_i * k : nx + (u_i + 1) * k] = _unit_downtime(twins, u, settings)
    rows: list[tuple[dict[int, float], float]] = []
    for i in range(n):  # at most one action per twin
        rows.append(({i * k + j: 1.0 for j in range(k)}, 1.0))
    for i, t in enumerate(twins):  # an action needs its unit's outage
        y = nx + unit_index[t.unit] * k
        for j in range(k):
            rows.append(({i * k + j: 1.0, y + j: -1.0}, 0.0))
    days = sorted({s.day for s in grid if s.day is not None})
    for day in days:  # crew hours per calendar day
        cols = {
            i * k + s.index: t.costs.planned_hours
            for i, t in enumerate(twins)
            for s in grid
            if s.day == day
        }
        rows.append((cols, cap))
    a = lil_array((len(rows), nx + m * k))
    for r, (cols, _) in enumerate(rows):
        for col, v in cols.items():
            a[r, col] = v
    limits = np.array([ub for _, ub in rows])
    res = milp(
        c,
        constraints=LinearConstraint(a.tocsr(), -np.inf, limits),
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
    units: Sequence[str],
    grid: Sequence[Slot],
    chosen: dict[str, int],
    end: datetime,
    settings: MaintenanceSettings,
) -> tuple[list[PlanItem], list[Outage]]:
    outages: list[Outage] = []
    share: dict[str, float] = {}
    for u in units:
        downtime = _unit_downtime(twins, u, settings)
        for s in grid:
            members = tuple(
                t.outlook.twin_id
                for t in twins
                if t.unit == u and chosen.get(t.outlook.twin_id) == s.index
            )
            if members and s.start is not None:
                outages.append(Outage(u, s.start, members, downtime))
                for tid in members:
                    share[tid] = downtime / len(members)
    items = []
    for t in twins:
        cost, risk = _no_action(t, end)
        rtf = Choice(RUN_TO_FAILURE, None, cost, risk)
        options = [rtf]
        alone = _unit_downtime([t], t.unit, settings)
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
