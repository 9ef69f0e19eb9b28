"""Snapshots of per-twin state (what Bytewax takes with ``copy.deepcopy`` at every epoch):
they share the twin type and its derived tables, stay independent of the live state, and
resume with the same results; twins of one type share those tables in memory."""

from __future__ import annotations

import copy
import pickle
from collections import deque
from datetime import UTC, datetime, timedelta

import numpy as np

from twinflow.connectors.simulator.types import MOTOR, PUMP
from twinflow.core.records import Command, CommandStatus, TelemetryFrame
from twinflow.operators.command_book import CommandBook
from twinflow.operators.twin_state import TwinStateTracker
from twinflow.operators.windows import WindowAggregator

T0 = 1_700_000_000.0


def pump_frame(start: float, n: int = 30, value: float = 1.0) -> TelemetryFrame:
    times = T0 + start + np.arange(n, dtype=float)
    signals = {s.name: np.full(n, value) + np.arange(n) * 0.01 for s in PUMP.signals}
    return TelemetryFrame("P1", "pump", times, signals)


def test_tracker_snapshot_shares_the_type_and_resumes_alike() -> None:
    live = TwinStateTracker("P1", PUMP)
    live.update(pump_frame(0))
    snap = copy.deepcopy(live)
    assert snap.twin_type is PUMP
    assert snap._limits is live._limits and snap._specs is live._specs
    assert snap._last is not live._last
    later = [pump_frame(30 * i, value=float(i)) for i in range(1, 15)]
    from_live = [s for f in later for s in live.update(f)]
    assert snap.snapshot_state().readings < live.snapshot_state().readings  # independent
    from_snap = [s for f in later for s in snap.update(f)]
    assert from_snap == from_live and from_live
    resumed = pickle.loads(pickle.dumps(snap))
    assert resumed._limits == live._limits
    assert resumed.snapshot_state() == live.snapshot_state()


def test_trackers_of_one_type_share_their_tables() -> None:
    a, b = TwinStateTracker("P1", PUMP), TwinStateTracker("P2", PUMP)
    assert a._limits is b._limits and a._required is b._required
    other = TwinStateTracker("P3", PUMP, stale_factor=10.0)
    assert other._limits is not a._limits
    assert other._limits != a._limits
    assert TwinStateTracker("M1", MOTOR)._limits.keys() != a._limits.keys()


def test_window_snapshot_shares_the_type_and_closes_the_same_windows() -> None:
    live = WindowAggregator("P1", PUMP, length_s=60.0, lateness_s=0.0)
    live.add(pump_frame(0))
    snap = copy.deepcopy(live)
    assert snap.twin_type is PUMP
    later = [pump_frame(30 * i, value=float(i)) for i in range(1, 8)]
    from_live = [w for f in later for w in live.add(f)[0]] + live.flush()
    assert snap.open_windows == 1  # the live aggregator's windows are not the snapshot's
    from_snap = [w for f in later for w in snap.add(f)[0]] + snap.flush()
    assert len(from_live) >= 4
    assert from_snap == from_live


def test_command_book_snapshot_shares_type_and_settings() -> None:
    book = CommandBook(PUMP)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    cmd = Command(
        "c1", "P1", "pump", "set_flow", {"m3h": 250.0}, at, at + timedelta(minutes=5), "t"
    )
    [queued] = book.submit(cmd, at.timestamp())
    assert queued.status is CommandStatus.QUEUED
    snap = copy.deepcopy(book)
    assert snap.twin_type is book.twin_type and snap.settings is book.settings
    assert snap.open.keys() == book.open.keys() and snap.open is not book.open
    book.tick(at.timestamp() + 60)
    assert "c1" not in book.open and "c1" in snap.open


def test_command_book_resumes_a_snapshot_that_held_deques() -> None:
    """Snapshots from before the lists keep working (rate limit and forgetting)."""
    book = CommandBook(PUMP)
    state = dict(book.__dict__)
    state.update(finished=deque(), queued_times=deque(), safety_times=deque())
    old = CommandBook.__new__(CommandBook)
    old.__setstate__(state)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    statuses = []
    for i in range(8):
        cmd = Command(
            f"c{i}", "P1", "pump", "set_flow", {"m3h": 250.0}, at, at + timedelta(hours=1), "t"
        )
        statuses += [c.status for c in old.submit(cmd, at.timestamp() + i)]
    assert statuses.count(CommandStatus.QUEUED) == old.settings.rate_limit
    assert statuses.count(CommandStatus.REJECTED) == 8 - old.settings.rate_limit
    later = at.timestamp() + old.settings.rate_window_s + 10
    cmd = Command(
        "late", "P1", "pump", "set_flow", {"m3h": 250.0}, at, at + timedelta(hours=1), "t"
    )
    assert [c.status for c in old.submit(cmd, later)] == [CommandStatus.QUEUED]
