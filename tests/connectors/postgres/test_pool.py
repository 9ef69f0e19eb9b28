"""The PostgreSQL sinks' shared connection pool, against a real server.

Bounded (never more sessions than its size, waiters wait), reused (a connection given back
serves the next writer), shared (a run's fourteen sink partitions over one pool, closed with
the last of them) and recovering (after a server restart the dead idle sessions are dropped
at the first failure, and the next unit of work gets a fresh one).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY

from tests.services.postgres import Postgres
from tests.services.waiting import came_true
from twinflow.connectors.postgres import PostgresSink, migrate
from twinflow.connectors.postgres.connection import psycopg
from twinflow.connectors.postgres.pool import ConnectionPool, leave, pool_for
from twinflow.core.records import TelemetryFrame

pytestmark = pytest.mark.timeout(60)

E0 = 1_714_564_800.0


@pytest.fixture(scope="module")
def server() -> Iterator[Postgres]:
    with Postgres() as pg:
        yield pg


@pytest.fixture
def db(server: Postgres, request: pytest.FixtureRequest) -> str:
    if not server.running:
        server.start()
    url = server.create_database("p_" + re.sub(r"\W+", "_", request.node.name).lower()[:50])
    migrate(url)
    return url


def sessions(url: str, prefix: str) -> int:
    """Sessions open on the server whose application name starts with ``prefix``."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s",
            (prefix + "%",),
        ).fetchone()
    assert row is not None
    return int(row[0])


def all_closed(url: str, prefix: str) -> bool:
    """Whether the server has no session left whose application name starts with ``prefix``.

    A backend leaves ``pg_stat_activity`` a moment after its client closes the socket, so the
    check is polled (5 s) rather than read once.
    """
    return came_true(lambda: sessions(url, prefix) == 0, 5.0, every_s=0.05)


def no_prepare(conn: Any) -> None:
    conn.execute("SELECT 1")


def frame(twin: str, start: float) -> TelemetryFrame:
    times = start + np.arange(10, dtype=np.float64)
    return TelemetryFrame(twin, "motor", times, {"a": times - E0, "b": times - E0 + 0.5})


@pytest.mark.services
def test_the_pool_is_bounded_and_reuses_its_connections(db: str) -> None:
    pool = pool_for(db, 2, no_prepare)
    busy, peak = [0], [0]
    lock = threading.Lock()
    waited_before = REGISTRY.get_sample_value("twinflow_pg_pool_wait_seconds_total") or 0.0

    def work(i: int) -> None:
        for _ in range(3):
            with pool.connection(f"pooltest {i}") as conn:
                with lock:
                    busy[0] += 1
                    peak[0] = max(peak[0], busy[0])
                conn.execute("SELECT pg_sleep(0.05)")
                with lock:
                    busy[0] -= 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    seen = 0
    while any(t.is_alive() for t in threads):
        seen = max(seen, sessions(db, "pooltest"))
        time.sleep(0.02)
    for t in threads:
        t.join()
    assert peak[0] == 2 and seen <= 2  # six threads, never more than two sessions
    assert pool.opened == 2 and pool.open_connections == 2  # 18 units of work, 2 connections
    waited = REGISTRY.get_sample_value("twinflow_pg_pool_wait_seconds_total") or 0.0
    assert waited > waited_before
    leave(pool)
    assert pool.open_connections == 0
    assert all_closed(db, "pooltest")


@pytest.mark.services
def test_a_runs_fourteen_sink_partitions_share_one_pool(db: str) -> None:
    sink = PostgresSink(db, partitions=2, batch_rows=50, max_latency_s=0.01)
    assert sink.pool_size == 4
    steps = ["telemetry", "windows", "twin_states", "alerts", "commands", "dead_letters", "rollups"]
    parts = [sink.build_part(step, p, None) for step in steps for p in sink.list_parts()]
    seen = 0
    for round_ in range(5):
        for i, part in enumerate(parts):
            part.write_batch([frame(f"M{i}", E0 + 10 * round_)])
        seen = max(seen, sessions(db, "twinflow-sink"))
        for part in parts:
            assert part.snapshot() is None
    seen = max(seen, sessions(db, "twinflow-sink"))
    assert 1 <= seen <= 4  # was one connection per partition: 14
    pools = {id(part.writer._pool) for part in parts}
    assert len(pools) == 1
    pool: ConnectionPool = parts[0].writer._pool
    assert pool.opened <= 4
    for part in parts:
        part.close()
    assert all_closed(db, "twinflow-sink")
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT count(*) FROM twinflow.telemetry").fetchone()
    assert row == (14 * 5 * 20,)


@pytest.mark.services
def test_after_a_server_restart_the_pool_drops_dead_sessions_and_reconnects(
    server: Postgres, db: str
) -> None:
    pool = pool_for(db, 3, no_prepare)
    try:
        gate = threading.Barrier(3)

        def hold() -> None:  # three connections at once, so three go back idle
            with pool.connection("restart") as conn:
                gate.wait(10)
                conn.execute("SELECT 1")

        threads = [threading.Thread(target=hold) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert pool.opened == 3 and pool.open_connections == 3
        server.restart()
        with pytest.raises(psycopg.OperationalError), pool.connection("restart") as conn:
            conn.execute("SELECT 1")  # a session the restart cut
        assert pool.open_connections == 0  # the other two idle ones went with it
        with pool.connection("restart") as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert pool.opened == 4
    finally:
        leave(pool)


@pytest.mark.services
def test_a_sink_writes_through_a_server_restart_with_its_pool(server: Postgres, db: str) -> None:
    part = PostgresSink(db, retry_initial_s=0.02, retry_max_s=0.2).build_part("r", "pg-0", None)
    try:
        part.write_batch([frame("M1", E0)])
        assert part.snapshot() is None
        server.restart()
        part.write_batch([frame("M1", E0 + 10)])
        deadline = time.monotonic() + 20
        while part.snapshot() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        part.close()
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT count(DISTINCT (signal, time)) FROM twinflow.telemetry")
        assert row.fetchone() == (40,)
