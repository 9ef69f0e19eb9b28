"""A command book restored from a recovery snapshot sends its open commands again, once.

The sinks' retries die with the process; without this, a command in flight at a crash would
never reach its device and end ``timed_out``.
"""

from __future__ import annotations

import copy
import pickle
from dataclasses import replace
from datetime import UTC, datetime

from twinflow.connectors.simulator.types import MOTOR, PUMP
from twinflow.core.records import (
    Command,
    CommandOutcome,
    CommandStatus,
    Quality,
    SignalState,
    SyncStatus,
    TwinState,
)
from twinflow.core.times import utc
from twinflow.flows.command_steps import CommandBookStep, Resend, to_actuators, transition_of
from twinflow.flows.config import FlowConfig
from twinflow.operators.command_book import CommandBook, CommandSettings

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
NOW = T0.timestamp()
S = CommandStatus


def command(cid: str, percent: float = 80.0, ttl_s: float = 300.0) -> Command:
    return Command(
        cid, "M1", "motor", "set_load", {"percent": percent}, T0, utc(NOW + ttl_s), "test"
    )


def report(status: CommandStatus, cid: str, at: float, attempt: int = 1) -> CommandOutcome:
    return CommandOutcome(cid, "M1", status, utc(at), "", attempt)


def restored(book: CommandBook) -> CommandBook:
    """The book as a resumed run gets it: pickled into the snapshot, unpickled at resume."""
    again: CommandBook = pickle.loads(pickle.dumps(copy.deepcopy(book)))
    return again


def rows(commands: list[Command]) -> list[tuple[str, str, int]]:
    return [(c.command_id, c.status.value, c.attempt) for c in commands]


def test_a_restored_book_sends_its_open_commands_again_once() -> None:
    book = CommandBook(MOTOR, CommandSettings(timeout_s=30))
    book.submit(command("queued"), NOW)
    book.submit(command("sent", 70.0), NOW)
    book.outcome(report(S.SENT, "sent", NOW + 1), NOW + 1)
    again = restored(book)
    out = again.resend(NOW + 5)
    # Both as the sinks take them (queued), the same id and parameters, one attempt more.
    assert rows(out) == [("queued", "queued", 1), ("sent", "queued", 2)]
    assert [dict(c.params) for c in out] == [{"percent": 80.0}, {"percent": 70.0}]
    assert all("sent again after a restore" in c.detail for c in out)
    assert again.resend(NOW + 6) == []
    # The book's own statuses did not move; a fresh time-out started at the re-send.
    kept = {k: e.command.status for k, e in again.open.items()}
    assert kept == {"queued": S.QUEUED, "sent": S.SENT}
    assert again.tick(NOW + 34) == [] and again.next_deadline() == NOW + 35
    # The sinks' reports then move them on, each status once, no second `queued` row.
    assert rows(again.outcome(report(S.SENT, "queued", NOW + 6), NOW + 6)) == [
        ("queued", "sent", 1)
    ]
    assert again.outcome(report(S.SENT, "sent", NOW + 6), NOW + 6) == []
    done = again.outcome(report(S.ACKNOWLEDGED, "sent", NOW + 7), NOW + 7)
    assert rows(done) == [("sent", "acknowledged", 2), ("sent", "succeeded", 2)]


def test_expired_timed_out_acknowledged_and_ended_commands_are_not_sent_again() -> None:
    book = CommandBook(PUMP, CommandSettings(timeout_s=30))
    pump = [
        Command(cid, "P1", "pump", "set_flow", {"m3h": 250.0}, T0, utc(NOW + ttl), "test")
        for cid, ttl in (("expires", 10), ("late", 300), ("acked", 300), ("done", 300))
    ]
    for c in pump[:2]:
        book.submit(c, NOW)
    for c in pump[2:]:
        book.submit(c, NOW + 20)
    # acknowledged: the device took it; set_flow waits for the reported value.
    book.outcome(CommandOutcome("acked", "P1", S.ACKNOWLEDGED, utc(NOW + 21)), NOW + 21)
    book.outcome(CommandOutcome("done", "P1", S.FAILED, utc(NOW + 21)), NOW + 21)
    again = restored(book)
    # At NOW + 31: "expires" has expired, "late" timed out (queued at NOW, 30 s).
    assert again.resend(NOW + 31) == []
    assert [c.command_id for c in again.tick(NOW + 31)] == ["expires", "late"]
    assert again.tick(NOW + 49) == []  # "acked" keeps its deadline (queued at NOW + 20)
    assert "last: acknowledged" in again.tick(NOW + 50)[0].detail
    assert set(again.ended) == {"done", "expires", "late", "acked"}


def test_a_book_that_was_not_restored_sends_nothing_again() -> None:
    book = CommandBook(MOTOR)
    book.submit(command("c1"), NOW)
    snapshot = pickle.dumps(copy.deepcopy(book))  # a snapshot leaves the running book as it is
    assert book.resend(NOW + 1) == [] and not book.resend_due
    assert copy.deepcopy(book).resend(NOW + 1) == []
    assert len(pickle.loads(snapshot).resend(NOW + 1)) == 1


def test_pickling_twice_does_not_send_twice() -> None:
    book = CommandBook(MOTOR)
    book.submit(command("c1"), NOW)
    twice = restored(restored(book))
    assert rows(twice.resend(NOW + 1)) == [("c1", "queued", 1)]
    assert twice.resend(NOW + 2) == []
    # Snapshots of the resumed book taken after it sent again do not send again in this run.
    pickle.dumps(twice)
    assert copy.deepcopy(twice).resend(NOW + 3) == [] and twice.resend(NOW + 3) == []
    # A later crash resumes from such a snapshot: then it is sent again, one attempt more.
    assert rows(restored(twice).resend(NOW + 4)) == [("c1", "queued", 2)]


def test_a_snapshot_of_the_previous_code_loads_and_sends_again() -> None:
    book = CommandBook(MOTOR)
    book.submit(command("c1"), NOW)
    # As the previous code pickled it: no flag, no `ended`, open commands without `stored`.
    book.__dict__.pop("resend_due", None)
    del book.open["c1"].stored, book.__dict__["ended"]
    old = pickle.loads(pickle.dumps(book))
    assert rows(old.resend(NOW + 1)) == [("c1", "queued", 1)]
    assert old.open["c1"].stored == {S.QUEUED}


def motor_state() -> TwinState:
    signals = {"load_pct": SignalState(75.0, NOW, Quality.GOOD)}
    return TwinState("M1", "motor", T0, SyncStatus.SYNCHRONIZED, signals)


def test_the_resumed_step_routes_the_resend_to_the_actuators_only() -> None:
    clock = iter(NOW + i for i in range(100))
    step = CommandBookStep(FlowConfig(), lambda: next(clock), None, lambda _twin: True)
    running = step(None)
    running.on_item(command("c1"))
    fresh = step(None)
    assert fresh.notify_at() is None
    resumed = step(pickle.loads(pickle.dumps(running.snapshot())))
    assert resumed.notify_at() is not None  # wakes up at once to send again
    out, _ = resumed.on_item(motor_state())
    out = list(out)
    assert [type(x).__name__ for x in out] == ["Resend"]
    actuators = to_actuators(lambda _twin: True)
    sent = [actuators(x) for x in out]
    assert [(c.command_id, c.status) for c in sent if c is not None] == [("c1", S.QUEUED)]
    assert [transition_of(x) for x in out] == [None]  # no row on the commands outputs
    again, _ = resumed.on_notify()
    assert not any(isinstance(x, Resend) for x in again)


def test_a_command_superseded_by_a_later_one_is_not_sent_again() -> None:
    """An older open set_load would undo a newer one that reached the motor; a newer one
    that never reached it (rejected) does not supersede."""
    book = CommandBook(MOTOR, CommandSettings(timeout_s=300))
    older = command("older", 70.0)
    book.submit(older, NOW)
    newer = replace(command("newer", 80.0), issued_at=utc(NOW + 10))
    book.submit(newer, NOW + 10)
    book.outcome(report(S.SENT, "newer", NOW + 11), NOW + 11)
    book.outcome(report(S.ACKNOWLEDGED, "newer", NOW + 12), NOW + 12)
    assert rows(restored(book).resend(NOW + 20)) == []  # "newer" succeeded: "older" is stale
    book2 = CommandBook(MOTOR, CommandSettings(timeout_s=300))
    book2.submit(older, NOW)
    book2.submit(replace(newer, params={"percent": 500.0}), NOW + 10)  # out of limits
    assert rows(restored(book2).resend(NOW + 20)) == [("older", "queued", 1)]
