"""The maintenance planner: hand-checkable fleets where the best plan is plain to see.

Costs are round numbers and the RUL intervals narrow (+-10 %), so a twin either surely fails
before a slot or surely does not, and the cheapest plan can be worked out by hand.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from twinflow.operators.maintenance import (
    RUN_TO_FAILURE,
    FailureTime,
    MaintenancePlan,
    MaintenanceSettings,
    Outlook,
    TypeCosts,
    plan_maintenance,
)
from twinflow.operators.maintenance.settings import Group

T0 = datetime(2026, 1, 5, tzinfo=UTC)
H = timedelta(hours=1)
MOTOR = TypeCosts("rewind", 1000.0, 4.0, 10000.0, 24.0)
SCHEMA = Path(__file__).resolve().parents[2] / "operators" / "schemas"


def settings(**kw: object) -> MaintenanceSettings:
    base: dict[str, object] = {"horizon_s": 3 * 86400.0, "slot_s": 86400.0}
    base["types"] = {"motor": kw.pop("costs", MOTOR)}
    return MaintenanceSettings(**(base | kw))  # type: ignore[arg-type]


def twin(twin_id: str, hours: float | None, *, at: datetime = T0, kind: str = "motor") -> Outlook:
    low = None if hours is None else 0.9 * hours
    high = None if hours is None else 1.1 * hours
    return Outlook(twin_id, kind, at, hours, low, high)


def chosen(plan: MaintenancePlan) -> dict[str, datetime | None]:
    return {i.twin_id: i.chosen.at for i in plan.items}


def test_failure_time_is_lognormal_through_the_estimate_and_its_interval() -> None:
    f = FailureTime.from_rul(10.0, 5.0, 20.0)
    assert f.cdf(10.0) == pytest.approx(0.5)
    assert f.cdf(5.0) == pytest.approx(0.05, abs=1e-6)
    assert f.cdf(20.0) == pytest.approx(0.95, abs=1e-6)
    assert f.quantile(0.95) == pytest.approx(20.0)
    one_sided = FailureTime.from_rul(10.0, 0.0, 20.0)  # no lower bound: the upper sets it
    assert one_sided.cdf(20.0) == pytest.approx(0.95, abs=1e-6)
    assert FailureTime.from_rul(10.0, None, None, default=0.3).sigma == 0.3
    assert FailureTime.from_rul(math.inf, 1.0, math.inf).cdf(1e9) == 0.0
    assert FailureTime.from_rul(0.0, 0.0, 1.0).cdf(0.0) == 1.0


def test_the_urgent_twin_is_maintained_now_and_the_healthy_one_left_alone() -> None:
    plan = plan_maintenance([twin("urgent", 12.0), twin("healthy", 500.0)], settings())
    assert chosen(plan) == {"urgent": T0, "healthy": None}
    urgent, healthy = plan.items[1], plan.items[0]
    assert (urgent.chosen.action, healthy.chosen.action) == ("rewind", RUN_TO_FAILURE)
    assert urgent.chosen.expected_cost == pytest.approx(1000.0)  # planned, no risk before it
    assert urgent.chosen.failure_risk == pytest.approx(0.0)
    assert urgent.options[0].expected_cost == pytest.approx(10000.0)  # left alone it fails
    assert urgent.options[0].failure_risk == pytest.approx(1.0)
    assert healthy.chosen.expected_cost == pytest.approx(0.0)
    assert plan.expected_cost == pytest.approx(1000.0)
    assert plan.run_to_failure_cost == pytest.approx(10000.0)
    assert plan.expected_failures == pytest.approx(0.0, abs=1e-9)


def test_run_to_failure_wins_when_the_planned_action_costs_more_than_a_failure() -> None:
    dear = TypeCosts("overhaul", 5000.0, 4.0, 1000.0, 1.0)
    plan = plan_maintenance([twin("m", 12.0)], settings(costs=dear))
    (item,) = plan.items
    assert (item.chosen.action, item.chosen.at) == (RUN_TO_FAILURE, None)
    assert item.chosen.expected_cost == pytest.approx(1000.0)
    assert item.chosen.failure_risk == pytest.approx(1.0)


def test_crew_capacity_moves_the_least_urgent_twin_to_the_next_day() -> None:
    # 8 crew hours a day, 4 h per rewind: two a day. 12 h and 20 h cannot wait a day, the
    # 40 h twin can (it fails after 36 h at the earliest).
    fleet = [twin("a", 12.0), twin("b", 20.0), twin("c", 40.0)]
    plan = plan_maintenance(fleet, settings(crew_hours_per_day=8.0))
    assert chosen(plan) == {"a": T0, "b": T0, "c": T0 + 24 * H}
    assert plan.expected_cost == pytest.approx(3000.0)


def test_with_room_for_one_a_day_the_crew_goes_where_it_saves_most() -> None:
    # One rewind a day: "a" today; tomorrow "b" (20 h) will have failed whatever is done,
    # "c" (40 h) is saved by it, so "c" gets the second day and "b" runs to failure.
    fleet = [twin("a", 12.0), twin("b", 20.0), twin("c", 40.0)]
    plan = plan_maintenance(fleet, settings(crew_hours_per_day=4.0))
    assert chosen(plan) == {"a": T0, "b": None, "c": T0 + 24 * H}
    assert plan.expected_cost == pytest.approx(12000.0)
    per_day: dict[object, float] = defaultdict(float)
    for item in plan.actions():
        assert item.chosen.at is not None
        per_day[item.chosen.at.date()] += 4.0
    assert max(per_day.values()) <= 4.0


def test_an_action_longer_than_a_days_crew_is_never_planned() -> None:
    plan = plan_maintenance([twin("a", 12.0)], settings(crew_hours_per_day=3.0))
    assert chosen(plan) == {"a": None}
    assert len(plan.items[0].options) == 1  # only run to failure was possible


def test_work_starts_only_inside_a_maintenance_window() -> None:
    window = (T0 + 34 * H, T0 + 38 * H)  # Tuesday 10:00-14:00
    plan = plan_maintenance([twin("later", 60.0)], settings(windows=(window,)))
    assert chosen(plan) == {"later": T0 + 34 * H}  # at the window's opening, not midnight
    (item,) = plan.items
    assert [o.at for o in item.options] == [None, T0 + 34 * H]  # the other days are closed


def test_a_twin_that_fails_before_the_first_window_is_not_saved_by_the_plan() -> None:
    window = (T0 + 34 * H, T0 + 38 * H)
    plan = plan_maintenance([twin("soon", 20.0)], settings(windows=(window,)))
    (item,) = plan.items
    assert item.chosen.failure_risk == pytest.approx(1.0)
    assert item.chosen.expected_cost == pytest.approx(10000.0)


def test_twins_that_share_an_outage_are_maintained_in_one_stop() -> None:
    # Downtime costs 1000 an hour, a rewind stops for 4 h: each stop costs 4000.
    costly = {"downtime_cost_per_hour": 1000.0}
    fleet = [twin("a", 12.0), twin("b", 40.0)]
    apart = plan_maintenance(fleet, settings(**costly))
    assert chosen(apart)["a"] == T0 and chosen(apart)["b"] is not None
    assert len(apart.outages) == 2  # each twin stops on its own
    assert apart.expected_cost == pytest.approx(2 * (1000.0 + 4000.0))
    shaft = Group("shaft", ("a", "b"))
    together = plan_maintenance(fleet, settings(groups=(shaft,), **costly))
    assert chosen(together) == {"a": T0, "b": T0}  # one stop serves both
    assert [(o.unit, o.at, o.twins, o.downtime_cost) for o in together.outages] == [
        ("shaft", T0, ("a", "b"), 4000.0)
    ]
    assert [i.chosen.expected_cost for i in together.items] == pytest.approx([3000.0, 3000.0])
    assert together.expected_cost == pytest.approx(6000.0)


def test_twins_without_costs_or_estimate_are_listed_as_skipped() -> None:
    fleet = [twin("m", 12.0), twin("p", 12.0, kind="pump"), twin("q", None), twin("r", math.inf)]
    plan = plan_maintenance(fleet, settings())
    assert dict(plan.skipped) == {
        "p": "no costs for type 'pump' under maintenance.types",
        "q": "no RUL estimate",
    }
    assert chosen(plan) == {"m": T0, "r": None}
    assert plan.items[1].chosen.failure_risk == 0.0


def test_an_older_estimate_counts_only_the_risk_still_ahead() -> None:
    # Estimated 24 h before the plan: the twin is known to run at the plan's time, so the
    # risk of an action is P(fail before it | lived 24 h), zero for one right away.
    old = Outlook("old", "motor", T0 - 24 * H, 30.0, 15.0, 60.0)
    plan = plan_maintenance([old, twin("new", 500.0)], settings(), now=T0)
    (item,) = [i for i in plan.items if i.twin_id == "old"]
    f = FailureTime.from_rul(30.0, 15.0, 60.0)
    assert f.cdf(24.0) == pytest.approx(0.298, abs=1e-3)  # what the estimate alone would say
    assert item.options[1].at == T0 and item.options[1].failure_risk == 0.0
    tomorrow = (f.cdf(48.0) - f.cdf(24.0)) / (1.0 - f.cdf(24.0))
    assert item.options[2].failure_risk == pytest.approx(tomorrow)
    assert item.chosen.at == T0


def test_the_document_follows_its_schema_and_its_id_follows_the_estimates() -> None:
    validator = Draft202012Validator(json.loads((SCHEMA / "maintenance_plan.v1.json").read_text()))
    fleet = [twin("a", 12.0), twin("b", 40.0), twin("p", 3.0, kind="pump")]
    shaft = Group("shaft", ("a", "b"))
    doc = plan_maintenance(fleet, settings(groups=(shaft,))).to_json()
    validator.validate(doc)
    assert doc["schema"] == "twinflow.maintenance_plan" and doc["version"] == 1
    assert doc["items"][0]["action"] == "rewind" and doc["items"][0]["at"] == "2026-01-05T00:00:00Z"
    again = plan_maintenance(fleet, settings(groups=(shaft,))).to_json()
    assert again == doc
    changed = plan_maintenance([twin("a", 13.0), *fleet[1:]], settings()).to_json()
    assert changed["plan_id"] != doc["plan_id"]


@given(
    st.lists(st.floats(1.0, 200.0), min_size=1, max_size=6),
    st.sampled_from([4.0, 8.0, 12.0]),
    st.sampled_from([6 * 3600.0, 86400.0]),
)
def test_any_plan_respects_the_crew_and_costs_no_more_than_doing_nothing(
    ruls: list[float], crew: float, slot: float
) -> None:
    fleet = [twin(f"t{i}", h) for i, h in enumerate(ruls)]
    plan = plan_maintenance(fleet, settings(crew_hours_per_day=crew, slot_s=slot))
    per_day: dict[object, float] = defaultdict(float)
    for item in plan.actions():
        assert item.chosen.at is not None
        per_day[item.chosen.at.date()] += MOTOR.planned_hours
    assert all(hours <= crew for hours in per_day.values())
    assert plan.expected_cost <= plan.run_to_failure_cost + 1e-6
    assert len(plan.items) == len(fleet)
