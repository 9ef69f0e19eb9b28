"""Re-planning: a plan when the estimates of a moment are all in, again only when a twin's
predicted failure time moved (debounced) or the event-time timer is due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from twinflow.core.config import Section
from twinflow.operators.maintenance import Outlook, read_maintenance
from twinflow.operators.maintenance.replan import Replanner, moved

T0 = datetime(2026, 1, 5, 6, tzinfo=UTC)
H = timedelta(hours=1)
SETTINGS = read_maintenance(
    Section(
        {
            "horizon": "2d",
            "slot": "12h",
            "types": {
                "motor": {
                    "action": "rewind",
                    "planned_cost": 1000,
                    "planned_duration": "4h",
                    "unplanned_cost": 10000,
                    "unplanned_duration": "1d",
                }
            },
        },
        "maintenance",
        Path("costs.yaml"),
    )
)


def outlook(twin: str, at: datetime, hours: float) -> Outlook:
    return Outlook(twin, "motor", at, hours, 0.8 * hours, 1.25 * hours)


def planner() -> Replanner:
    return Replanner(SETTINGS, every_s=6 * 3600, min_interval_s=900, change=0.2)


def test_the_first_plan_waits_for_every_estimate_of_its_moment() -> None:
    p = planner()
    assert p.offer(outlook("M1", T0, 30.0)) == []
    assert p.offer(outlook("M2", T0, float("inf"))) == []  # same moment: not yet
    (plan,) = p.offer(outlook("M1", T0 + timedelta(minutes=5), 29.9))
    assert plan.time == T0 and [i.twin_id for i in plan.items] == ["M1", "M2"]
    assert p.revision == 1


def test_estimates_that_keep_their_failure_time_do_not_replan_until_the_timer() -> None:
    p = planner()
    p.offer(outlook("M1", T0, 30.0))
    plans = []
    for k in range(1, 7 * 12 + 1):  # every 5 min for 7 h; the failure time stays at T0 + 30 h
        at = T0 + k * timedelta(minutes=5)
        plans += p.offer(outlook("M1", at, 30.0 - k / 12))
    assert [q.time for q in plans] == [T0, T0 + 6 * H]  # the first, then the 6 h timer


def test_a_moved_estimate_replans_after_the_debounce_with_a_new_plan_id() -> None:
    p = planner()
    p.offer(outlook("M1", T0, 30.0))
    (first,) = p.offer(outlook("M1", T0 + timedelta(minutes=5), 29.9))
    # at T0 + 10 min the failure moves 20 h earlier (more than 0.2 x 10 h of life left)
    assert p.offer(outlook("M1", T0 + timedelta(minutes=10), 10.0)) == []
    assert p.offer(outlook("M1", T0 + timedelta(minutes=15), 9.9)) == []  # debounced: < 15 min
    (second,) = p.offer(outlook("M1", T0 + timedelta(minutes=20), 9.8))
    assert second.time == T0 + timedelta(minutes=15)
    assert second.plan_id != first.plan_id and p.revision == 2
    (item,) = second.items
    assert item.rul_hours == 9.9
    # the earlier failure makes acting soon worth more: its risk without action is higher
    assert second.items[0].options[0].failure_risk > first.items[0].options[0].failure_risk


def test_moved_compares_predicted_failure_times() -> None:
    a = outlook("M1", T0, 10.0)
    assert not moved(a, outlook("M1", T0 + H, 9.0), 0.2)  # same failure time
    assert moved(a, outlook("M1", T0 + H, 6.0), 0.2)  # 3 h earlier, 6 h of life: 50 %
    assert moved(a, outlook("M1", T0 + H, float("inf")), 0.2)  # the trend is gone
    assert not moved(outlook("M1", T0, float("inf")), outlook("M1", T0 + H, float("inf")), 0.2)
