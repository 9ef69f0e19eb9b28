"""Progress lines (live on a terminal, plain otherwise) and the closing summary."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np

from twinflow.connectors import connection_state
from twinflow.core.records import Alert, AlertState, Severity, TelemetryFrame
from twinflow.flows.metrics import RunStats
from twinflow.flows.observe import Observer
from twinflow.flows.progress import Progress, commands_by_status, summary_lines


def _stats() -> RunStats:
    stats = RunStats()
    stats.declare_commands(["derate"])
    stats.add_readings("pump", 1200)
    for status in ("queued", "sent", "succeeded", "queued", "rejected"):
        stats.add_command("derate", status)
    stats.add_dead_letter("decode", 0)
    return stats


def _alert(twin: str, rule: str, state: AlertState) -> tuple[str, Alert]:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    return twin, Alert(
        alert_id=f"{twin}-{rule}-{state}", twin_id=twin, twin_type="pump", rule=rule,
        state=state, severity=Severity.WARNING, time=t, raised_at=t, message="m",
    )  # fmt: skip


def test_commands_are_counted_by_status_in_lifecycle_order() -> None:
    assert commands_by_status(_stats()) == {"queued": 2, "sent": 1, "succeeded": 1, "rejected": 1}


def test_progress_line_says_rate_alarms_commands_dead_letters_and_connections() -> None:
    stats = _stats()
    observer = Observer()
    observer.alerts(
        [_alert("p1", "hot", AlertState.RAISED), _alert("p2", "hot", AlertState.RAISED)]
    )
    observer.alerts([_alert("p2", "hot", AlertState.CLEARED)])
    connection_state.up("mqtt", "source", "test-progress:1")
    connection_state.down("modbus", "source", "test-progress:2")
    try:
        line = Progress(stats, io.StringIO(), observer=observer).line()
        ups, downs = connection_state.counts()
    finally:
        connection_state.forget("mqtt", "source", "test-progress:1")
        connection_state.forget("modbus", "source", "test-progress:2")
    assert "(1,200 in all)" in line
    assert "open alarms 1" in line
    assert "commands queued 2 sent 1 succeeded 1 rejected 1" in line
    assert "dead letters 1" in line
    assert f"connections {ups} up, {downs} down" in line and downs >= 1
    assert observer.in_alarm() == {"pump": 1}


def test_plain_lines_when_not_a_terminal_and_one_rewritten_line_on_a_terminal() -> None:
    plain, live = io.StringIO(), io.StringIO()
    for stream, is_live in ((plain, False), (live, True)):
        p = Progress(_stats(), stream, every_s=0.05, live=is_live)
        p.start()
        while stream.getvalue().count("readings/s") < 3:
            p.join(0.05)
        p.finish()
    assert plain.getvalue().count("\n") >= 3 and "\r" not in plain.getvalue()
    text = live.getvalue()
    assert text.count("\r") >= 3 and text.endswith("\n") and text.count("\n") == 1


def test_summary_lines() -> None:
    observer = Observer()
    observer.alerts([_alert("p1", "hot", AlertState.RAISED)])
    lines = summary_lines("twinflow run", _stats(), 2.0, observer=observer, stopped_by="a signal")
    assert lines[0].startswith("twinflow run stopped by a signal after 2.0 s: 1,200 readings")
    assert "  commands: queued 2 sent 1 succeeded 1 rejected 1" in lines
    assert "  twins in alarm at the end: pump 1" in lines


def test_arrivals_time_the_alert_that_a_frame_completed() -> None:
    clock = iter([100.0, 100.0, 103.5])
    observer = Observer(clock=lambda: next(clock))
    t0 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    frame = TelemetryFrame("p1", "pump", np.array([t0 - 60.0, t0]), {"flow": np.ones(2)})
    observer.arrived([frame])
    assert observer.arrival_of("p1", t0) == 100.0
    assert observer.arrival_of("p1", t0 + 1) is None
    assert observer.arrival_of("p2", t0) is None
