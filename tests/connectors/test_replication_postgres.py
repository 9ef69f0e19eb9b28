"""Replication's sync status and received writes in a real PostgreSQL (migration 0008).

Statuses come from a real :class:`SyncTracker` over a :class:`TwinReplica`, received writes
from a real merge; both go through the :class:`PostgresSink` partition the flow uses.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.services.postgres import Postgres
from twinflow.connectors.postgres import PostgresSink, migrate
from twinflow.connectors.postgres.connection import psycopg
from twinflow.connectors.replication.node import Received
from twinflow.operators.replication import Applied, TwinReplica
from twinflow.operators.replication.status import SyncTracker
from twinflow.operators.replication.update import update_id

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def server() -> Iterator[Postgres]:
    with Postgres() as pg:
        yield pg


@pytest.fixture
def db(server: Postgres, request: pytest.FixtureRequest) -> str:
    url = server.create_database("r_" + re.sub(r"\W+", "_", request.node.name).lower()[:50])
    migrate(url)
    return url


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def store(url: str, *batches: list[Any]) -> None:
    """Each batch through one sink partition, a snapshot (commit) after each."""
    part = PostgresSink(url).build_part("replication", "pg-0", None)
    try:
        for batch in batches:
            part.write_batch(batch)
            assert part.snapshot() is None
    finally:
        part.close()


def test_sync_status_history_and_latest_view(db: str) -> None:
    clock = [1_000]
    central = TwinReplica("central", now_ms=lambda: clock[0])
    tracker = SyncTracker("central")
    tracker.link(True, 1_000)
    w = central.write("pump-1", "desired", "flow_setpoint", 120.0)
    tracker.wrote(w, "strong", 1_000)
    first = tracker.status(central, 1_250)  # pending, 250 ms
    tracker.link(False, 1_300)
    down = tracker.status(central, 1_400)  # link_down since 1.3 s
    tracker.link(True, 1_500)
    tracker.accepted(w.key, update_id(w), 1_600)
    done = tracker.status(central, 1_700)  # in_sync, confirmed after 600 ms
    store(db, first + down, done, first)  # the first status stored twice: one row

    rows = query(
        db,
        "SELECT state, consistency, lag_ms, extract(epoch FROM time) * 1000, "
        "extract(epoch FROM link_down_since) * 1000, update_id FROM twinflow.sync_status "
        "ORDER BY time",
    )
    assert [(r[0], r[1], r[2], int(r[3])) for r in rows] == [
        ("pending", "strong", 250, 1_250),
        ("link_down", "strong", 400, 1_400),
        ("in_sync", "strong", 600, 1_700),
    ]
    assert [None if r[4] is None else int(r[4]) for r in rows] == [None, 1_300, None]
    assert {r[5] for r in rows} == {update_id(w)}
    latest = query(
        db,
        "SELECT replica, twin_id, kind, property, state, lag_ms FROM twinflow.sync_status_latest",
    )
    assert latest == [("central", "pump-1", "desired", "flow_setpoint", "in_sync", 600)]


def test_received_writes_once_each_with_outcome_and_stamps(db: str) -> None:
    edge = TwinReplica("edge-a", now_ms=lambda: 5_000)
    central = TwinReplica("central", now_ms=lambda: 5_001)
    mine = central.write("pump-1", "desired", "speed_rpm", 1400)
    first = edge.write("pump-1", "desired", "speed_rpm", 1500)  # concurrent with ``mine``
    seen = edge.write("pump-1", "metadata", "window", {"rms": 0.4})
    later = edge.write("pump-1", "metadata", "window", {"rms": 0.5, "n": [1, 2]})
    got = [(w, central.apply(w)) for w in (first, later)]
    assert [a for _, a in got] == [Applied.LOST, Applied.WON]
    received = [Received(w, a, "central", 6_000 + i) for i, (w, a) in enumerate(got)]
    store(db, received, received[:1])  # the resent write lands on its row

    rows = query(
        db,
        "SELECT update_id, kind, property, value, stamp_wall_ms, stamp_logical, writer, base, "
        "outcome, received_by, extract(epoch FROM received_at) * 1000 "
        "FROM twinflow.replicated_writes ORDER BY received_at",
    )
    assert len(rows) == 2
    lost, won = rows
    assert lost[:7] == (update_id(first), "desired", "speed_rpm", 1500, 5_000, 0, "edge-a")
    assert lost[7] is None and lost[8:10] == ("lost", "central") and int(lost[10]) == 6_000
    assert won[0] == update_id(later) and won[3] == {"rms": 0.5, "n": [1, 2]}
    assert seen.stamp.logical == 1
    assert won[7] == {"wall_ms": 5_000, "logical": 1, "replica": "edge-a"}  # it saw ``seen``
    assert won[8] == "won"
    assert mine.value == 1400  # central's own write is not a received one: not stored
