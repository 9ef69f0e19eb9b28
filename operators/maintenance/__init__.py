"""Maintenance planning from the twins' RUL estimates: settings, failure model, MILP planner."""

from twinflow.operators.maintenance.failure import FailureTime
from twinflow.operators.maintenance.plan import Choice, MaintenancePlan, Outage, PlanItem
from twinflow.operators.maintenance.planner import (
    RUN_TO_FAILURE,
    Outlook,
    PlanError,
    plan_maintenance,
)
from twinflow.operators.maintenance.settings import (
    MaintenanceSettings,
    TypeCosts,
    read_maintenance,
)

__all__ = [
    "RUN_TO_FAILURE",
    "Choice",
    "FailureTime",
    "MaintenancePlan",
    "MaintenanceSettings",
    "Outage",
    "Outlook",
    "PlanError",
    "PlanItem",
    "TypeCosts",
    "plan_maintenance",
    "read_maintenance",
]
