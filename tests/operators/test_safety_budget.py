"""The flow's own safety commands have a budget external requests cannot exhaust (issue 11)."""

from __future__ import annotations

import json
import pickle
from collections import deque
from dataclasses import replace
from datetime import UTC, datetime

from twinflow.connectors.kafka.command_requests import parse_command_request
from twinflow.connectors.simulator.types import MOTOR
from twinflow.core.records import Alert, AlertState, Command, DesiredChange, Severity
from twinflow.operators.command_book import CommandBook, CommandSettings
from twinflow.operators.policy import CommandPolicy

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = T0.timestamp()


def overheating() -> Alert:
    return Alert(
        alert_id=Alert.make_id("m-1", "rule", T0),
        twin_id="m-1",
        twin_type="motor",
        rule="rule",
        state=AlertState.RAISED,
        severity=Severity.WARNING,
        time=T0,
        raised_at=T0,
        message="hot",
        diagnosis="overheating",
    )


def external(i: int) -> Command | DesiredChange:
    body = {
        "request_id": f"ops-{i}",
        "twin_id": "m-1",
        "command": "derate",
        "params": {"fraction": 0.9},
        "expires_at": "2026-01-01T00:05:00Z",
    }
    item = parse_command_request(
        json.dumps(body).encode(), source="kafka:req", issued_at=T0, twins={"m-1": "motor"}
    )
    assert isinstance(item, Command)
    return item


def test_a_policy_derate_succeeds_after_external_requests_spent_their_budget() -> None:
    book = CommandBook(MOTOR, CommandSettings(rate_limit=6, rate_window_s=60))
    spent = [book.submit(external(i), NOW + i)[0] for i in range(7)]
    assert [c.status.value for c in spent] == ["queued"] * 6 + ["rejected"]
    assert spent[-1].detail == "rate limit: 6 commands within 60 s"
    (derate,) = CommandPolicy(ttl_s=600.0).decide(overheating())
    assert derate.origin == "policy"
    (out,) = book.submit(derate, NOW + 8)
    assert (out.status.value, out.name) == ("queued", "derate")


def test_safety_commands_have_a_limit_of_their_own() -> None:
    book = CommandBook(MOTOR, CommandSettings(rate_limit=6, safety_rate_limit=1))
    (derate,) = CommandPolicy(ttl_s=600.0).decide(overheating())
    assert book.submit(derate, NOW)[0].status.value == "queued"
    again = replace(derate, command_id="other")
    (refused,) = book.submit(again, NOW + 1)
    assert refused.detail == "safety rate limit: 1 commands within 60 s"
    assert book.submit(external(1), NOW + 2)[0].status.value == "queued"


def test_a_snapshot_from_before_the_safety_budget_resumes() -> None:
    book = CommandBook(MOTOR)
    old = pickle.loads(pickle.dumps(book))
    del old.__dict__["safety_times"]
    resumed = pickle.loads(pickle.dumps(old))
    assert resumed.safety_times == deque()
    (derate,) = CommandPolicy(ttl_s=600.0).decide(overheating())
    assert resumed.submit(derate, NOW)[0].status.value == "queued"
