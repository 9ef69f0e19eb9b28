"""The command book: checks before sending, lifecycle transitions, reconciliation, time-outs."""

from __future__ import annotations

import itertools
import pickle
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinflow.connectors.simulator.types import MOTOR, PUMP, WIND_TURBINE
from twinflow.core.records import (
    TERMINAL_COMMAND_STATUSES,
    Command,
    CommandOutcome,
    CommandStatus,
    DesiredChange,
    Quality,
    SignalState,
    SyncStatus,
    TwinState,
)
from twinflow.core.times import utc
from twinflow.operators.command_book import (
    CommandBook,
    CommandSettings,
    desired_command_id,
)

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
NOW = T0.timestamp()
S = CommandStatus


def command(name: str = "set_flow", twin_type: str = "pump", cid: str = "c1", **params: float):
    return Command(
        cid,
        "P1",
        twin_type,
        name,
        params or {"m3h": 250.0},
        T0,
        T0 + timedelta(minutes=5),
        "test",
    )


def report(
    status: CommandStatus, cid: str = "c1", attempt: int = 1, detail: str = "", at: float = NOW
):
    return CommandOutcome(cid, "P1", status, utc(at), detail, attempt)


def pump_state(**values: float) -> TwinState:
    signals = {k: SignalState(v, NOW, Quality.GOOD) for k, v in values.items()}
    return TwinState("P1", "pump", T0, SyncStatus.SYNCHRONIZED, signals)


def statuses(commands: list[Command]) -> list[str]:
    return [c.status.value for c in commands]


def test_a_valid_command_is_queued_and_a_reported_setpoint_ends_it_succeeded() -> None:
    book = CommandBook(PUMP)
    queued = book.submit(command(), NOW)
    assert statuses(queued) == ["queued"] and queued[0].status_at == utc(NOW)
    assert statuses(book.outcome(report(S.SENT), NOW + 1)) == ["sent"]
    # Acknowledged by the server, but set_flow has a reported counterpart: wait for it.
    assert statuses(book.outcome(report(S.ACKNOWLEDGED), NOW + 2)) == ["acknowledged"]
    assert book.observe(pump_state(flow_setpoint_m3h=180.0), NOW + 3) == []
    done = book.observe(pump_state(flow_setpoint_m3h=250.2), NOW + 4)
    assert statuses(done) == ["succeeded"] and "flow_setpoint_m3h=250.2" in done[0].detail
    assert book.open == {} and book.tick(NOW + 999) == []


def test_without_a_reported_counterpart_the_acknowledgement_is_success() -> None:
    book = CommandBook(MOTOR)
    book.submit(command("set_load", "motor", percent=80.0), NOW)
    out = book.outcome(report(S.ACKNOWLEDGED), NOW + 1)
    assert statuses(out) == ["acknowledged", "succeeded"]


def test_a_device_response_ends_it_directly_and_failures_keep_their_reason() -> None:
    book = CommandBook(PUMP)
    book.submit(command(), NOW)
    book.submit(command(cid="c2", m3h=300.0), NOW)
    assert statuses(book.outcome(report(S.SUCCEEDED), NOW + 1)) == ["succeeded"]
    failed = book.outcome(report(S.FAILED, "c2", 3, "gave up after 3 attempts"), NOW + 1)
    assert statuses(failed) == ["failed"] and failed[0].attempt == 3
    assert failed[0].detail == "gave up after 3 attempts"


@pytest.mark.parametrize(
    ("cmd", "reason"),
    [
        (command("fly"), "has no command 'fly'; it accepts: set_flow, derate"),
        (command(m3h=900.0), "m3h=900 is outside [20, 400]"),
        (command(m3h=float("nan")), "m3h"),
        (command(speed=1.0), "unknown parameter 'speed'"),
    ],
)
def test_commands_the_model_does_not_allow_are_rejected_before_sending(
    cmd: Command, reason: str
) -> None:
    book = CommandBook(PUMP)
    out = book.submit(cmd, NOW)
    assert statuses(out) == ["rejected"] and reason in out[0].detail
    assert book.open == {}


def test_an_expired_command_is_never_queued() -> None:
    book = CommandBook(PUMP)
    out = book.submit(command(), NOW + 301)
    assert statuses(out) == ["expired"] and book.open == {}


def test_the_rate_limit_rejects_the_excess_until_the_window_moves_on() -> None:
    book = CommandBook(PUMP, CommandSettings(rate_limit=2, rate_window_s=60))
    results = [book.submit(command(cid=f"c{i}"), NOW + i)[0] for i in range(3)]
    assert statuses(results) == ["queued", "queued", "rejected"]
    assert "rate limit: 2 commands within 60 s" in results[2].detail
    assert statuses(book.submit(command(cid="c9"), NOW + 61)) == ["queued"]


def test_a_silent_device_times_out_and_a_late_end_state_is_ignored() -> None:
    book = CommandBook(PUMP, CommandSettings(timeout_s=10))
    book.submit(command(), NOW)
    book.outcome(report(S.SENT), NOW + 1)
    assert book.next_deadline() == NOW + 10
    assert book.tick(NOW + 9) == []
    out = book.tick(NOW + 10)
    assert statuses(out) == ["timed_out"] and "(last: sent)" in out[0].detail
    assert book.outcome(report(S.SUCCEEDED), NOW + 11) == []
    assert book.outcome(report(S.SENT, attempt=2), NOW + 12) == []
    # An acknowledgement that comes after the time-out is history: stored, status unchanged.
    late = book.outcome(report(S.ACKNOWLEDGED, at=NOW + 11.5), NOW + 12)
    assert statuses(late) == ["acknowledged"] and late[0].status_at == utc(NOW + 11.5)
    assert book.next_deadline() is None and book.open == {}


def test_a_replayed_command_is_queued_once_and_statuses_never_go_back() -> None:
    book = CommandBook(PUMP)
    assert statuses(book.submit(command(), NOW)) == ["queued"]
    assert book.submit(command(), NOW + 1) == []
    book.outcome(report(S.ACKNOWLEDGED), NOW + 2)
    # The `sent` that comes after the acknowledgement is stored, once; the status stays.
    late = book.outcome(report(S.SENT, attempt=2, detail="PUBACK", at=NOW + 1.5), NOW + 3)
    assert statuses(late) == ["sent"] and (late[0].attempt, late[0].detail) == (2, "PUBACK")
    assert late[0].status_at == utc(NOW + 1.5)
    assert book.outcome(report(S.SENT, attempt=2), NOW + 4) == []
    assert book.open["c1"].command.status is S.ACKNOWLEDGED
    assert book.open["c1"].command.attempt == 2


def rows_of(
    twin_type: str, name: str, params: dict[str, float], order: list[CommandStatus]
) -> list[Command]:
    """What a fresh book outputs for one command whose outcomes come in ``order``."""
    book = CommandBook(PUMP if twin_type == "pump" else MOTOR)
    out = book.submit(command(name, twin_type, **params), NOW)
    for i, status in enumerate(order):
        out += book.outcome(report(status, at=NOW + 0.5 + i), NOW + 1 + i)
    return out


ORDERS = [
    list(order) + list(again)
    for order in itertools.permutations([S.SENT, S.ACKNOWLEDGED, S.SUCCEEDED])
    for again in ((), order, order[:1], order[::-1])
]


@pytest.mark.parametrize("order", ORDERS, ids=lambda o: "-".join(s.value[:3] for s in o))
@pytest.mark.parametrize(
    ("twin_type", "name", "params"),
    [("pump", "set_flow", {"m3h": 250.0}), ("motor", "set_load", {"percent": 80.0})],
)
def test_every_outcome_is_stored_once_in_any_order_and_replayed(
    twin_type: str, name: str, params: dict[str, float], order: list[CommandStatus]
) -> None:
    out = rows_of(twin_type, name, params, order)
    assert sorted(statuses(out)) == ["acknowledged", "queued", "sent", "succeeded"], out
    # The end state is output once, after which only earlier statuses learnt late come.
    end = statuses(out).index("succeeded")
    assert all(c.status in (S.SENT, S.ACKNOWLEDGED) for c in out[end + 1 :])
    # The progress rows are those of outcomes in order but for the time each was learnt (the
    # end's detail says what ended it: the acknowledgement or the device's answer).
    in_order = rows_of(twin_type, name, params, [S.SENT, S.ACKNOWLEDGED, S.SUCCEEDED])
    progress = {S.QUEUED, S.SENT, S.ACKNOWLEDGED}
    key = lambda c: (c.status.value, c.detail, c.attempt)  # noqa: E731
    assert sorted(key(c) for c in out if c.status in progress) == sorted(
        key(c) for c in in_order if c.status in progress
    )


def test_ended_commands_are_kept_for_late_outcomes_a_bounded_time() -> None:
    book = CommandBook(MOTOR, CommandSettings(timeout_s=10, max_open=2))
    for i in range(3):
        book.submit(command("set_load", "motor", f"c{i}", percent=50.0), NOW)
        book.outcome(report(S.SUCCEEDED, f"c{i}"), NOW + 1)
    assert list(book.ended) == ["c1", "c2"]  # at most max_open, oldest forgotten first
    assert book.outcome(report(S.SENT, "c0"), NOW + 2) == []
    again = pickle.loads(pickle.dumps(book))
    assert statuses(again.outcome(report(S.SENT, "c1"), NOW + 2)) == ["sent"]
    # Forgotten timeout_s after the command expired: the sinks do not send it after expiry.
    expiry = command().expires_at.timestamp()
    assert statuses(again.outcome(report(S.SENT, "c2"), expiry + 9)) == ["sent"]
    assert again.outcome(report(S.ACKNOWLEDGED, "c2"), expiry + 10) == []
    assert again.ended == {}


def test_a_snapshot_from_before_statuses_were_kept_resumes() -> None:
    book = CommandBook(PUMP)
    book.submit(command(), NOW)
    book.outcome(report(S.SENT), NOW + 1)
    # As such a snapshot holds it: an open command without `stored`, the book without `ended`.
    del book.open["c1"].stored, book.__dict__["ended"]
    old = pickle.loads(pickle.dumps(book))
    assert old.open["c1"].stored == {S.QUEUED, S.SENT} and old.ended == {}
    assert old.outcome(report(S.SENT), NOW + 2) == []
    assert statuses(old.outcome(report(S.SUCCEEDED), NOW + 3)) == ["succeeded"]
    assert statuses(old.outcome(report(S.ACKNOWLEDGED), NOW + 4)) == ["acknowledged"]


def test_a_desired_property_change_becomes_the_command_that_sets_it() -> None:
    book = CommandBook(WIND_TURBINE)
    change = DesiredChange(
        "W1", "wind_turbine", "power_limit", 1500.0, T0, "ops-1", T0 + timedelta(minutes=5)
    )
    out = book.desire(change, NOW)
    assert statuses(out) == ["queued"]
    cmd = out[0]
    assert (cmd.name, dict(cmd.params), cmd.origin) == ("derate", {"fraction": 0.75}, "desired")
    assert cmd.command_id == desired_command_id("W1", "power_limit", "ops-1")
    book.outcome(CommandOutcome(cmd.command_id, "W1", S.ACKNOWLEDGED, T0), NOW + 1)
    state = TwinState(
        "W1",
        "wind_turbine",
        T0,
        SyncStatus.SYNCHRONIZED,
        {"power_limit_kw": SignalState(1500.4, NOW, Quality.GOOD)},
    )
    assert statuses(book.observe(state, NOW + 2)) == ["succeeded"]


@pytest.mark.parametrize(
    ("prop", "value", "reason"),
    [
        ("power_limit", 2500.0, "power_limit=2500 is outside [0, 2000]"),
        ("warp", 1.0, "warp"),
    ],
)
def test_bad_desired_changes_are_rejected_with_the_reason(
    prop: str, value: float, reason: str
) -> None:
    change = DesiredChange("W1", "wind_turbine", prop, value, T0, "r", T0 + timedelta(minutes=5))
    out = CommandBook(WIND_TURBINE).desire(change, NOW)
    assert statuses(out) == ["rejected"] and reason in out[0].detail
    assert out[0].origin == "desired"


def test_twins_without_an_actuator_route_are_queued_for_an_external_executor() -> None:
    book = CommandBook(PUMP, CommandSettings(routed=False))
    out = book.submit(command(), NOW)
    assert statuses(out) == ["queued"] and "executor reading the commands" in out[0].detail
    assert book.open == {} and book.submit(command(), NOW) == []


def test_decisions_made_upstream_pass_through_and_state_pickles() -> None:
    book = CommandBook(PUMP)
    held = Command("h1", "P1", "pump", "derate", {"fraction": 0.5}, T0, T0, "x", S.REJECTED)
    assert book.submit(held, NOW) == [held]
    book.submit(command(), NOW)
    again = pickle.loads(pickle.dumps(book))
    assert statuses(again.outcome(report(S.SUCCEEDED), NOW + 1)) == ["succeeded"]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["c0", "c1", "c2"]),
            st.sampled_from([S.SENT, S.ACKNOWLEDGED, S.SUCCEEDED, S.FAILED, S.EXPIRED]),
        ),
        max_size=30,
    ),
    st.floats(min_value=0, max_value=100),
)
def test_every_command_moves_forward_and_ends_at_most_once(
    reports: list[tuple[str, CommandStatus]], tick_at: float
) -> None:
    book = CommandBook(MOTOR, CommandSettings(timeout_s=50))
    seen: dict[str, list[CommandStatus]] = {}
    out = [
        c
        for i in range(3)
        for c in book.submit(command("set_load", "motor", f"c{i}", percent=50.0), NOW)
    ]
    for i, (cid, status) in enumerate(reports):
        before = book.open[cid].command.status if cid in book.open else None
        out += book.outcome(report(status, cid), NOW + i)
        after = book.open[cid].command.status if cid in book.open else None
        # The status never goes back (an ended command is no longer open).
        assert before is None or after is None or RANK[after] >= RANK[before]
    out += book.tick(NOW + tick_at)
    for c in out:
        seen.setdefault(c.command_id, []).append(c.status)
    reported = {(cid, status) for cid, status in reports}
    for cid, history in seen.items():
        assert len(history) == len(set(history)), history  # each status stored once
        ends = [s for s in history if s in TERMINAL_COMMAND_STATUSES]
        assert len(ends) == 1 or (not ends and tick_at < 50), history
        # After the end, only earlier progress learnt late.
        after_end = history[history.index(ends[0]) + 1 :] if ends else []
        assert set(after_end) <= {S.SENT, S.ACKNOWLEDGED}, history
        # Every progress reported before the book forgets the command is stored.
        assert {s for c, s in reported if c == cid and s in RANK} <= set(history), history


RANK = {S.QUEUED: 1, S.SENT: 2, S.ACKNOWLEDGED: 3}
