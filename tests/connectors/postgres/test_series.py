"""The compact telemetry layout (migration 0009): series ids, the view, and the sink on both
layouts, against a real server.

- series tuples hold exactly the text tuples' readings, in (series, time) order;
- the migration moves a database's stored readings, and the ``telemetry`` view keeps its
  columns, takes INSERT and COPY from other tools and refuses a reading stored twice;
- ids are created once per pair, shared by concurrent writers of different processes;
- the sink stores a batch written twice once, text tuples from an older snapshot too, and
  still writes a database whose telemetry keeps the text key (a TimescaleDB database).
"""

from __future__ import annotations

import re
import shutil
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from tests.connectors.postgres.test_copy_columns import frames, mixed_batch, parse
from tests.services.postgres import Postgres
from twinflow.connectors.postgres import PostgresSink, migrate
from twinflow.connectors.postgres.connection import psycopg
from twinflow.connectors.postgres.copy_columns import (
    gather,
    series_tuples,
    telemetry_copy,
    text_tuples,
    tuple_prefix,
)
from twinflow.connectors.postgres.migrations import (
    MIGRATIONS_DIR,
    MIGRATIONS_TABLE,
    MigrationError,
    _plan,
    load_migrations,
    status,
)
from twinflow.connectors.postgres.rows import COPY_HEADER, COPY_TRAILER
from twinflow.connectors.postgres.series import SeriesIds, series_layout
from twinflow.connectors.postgres.tables import TELEMETRY
from twinflow.connectors.postgres.timescale import TimescaleSupport
from twinflow.core.records import TelemetryFrame

pytestmark = pytest.mark.timeout(90)

_ROW = struct.Struct(">hiiiqidih")  # fields, len, series, len, time, len, value, len, quality


def series_rows(data: bytes) -> list[tuple[int, int, float, int]]:
    """(series, time, value, quality) of every 40-byte series tuple, in order."""
    assert len(data) % _ROW.size == 0
    out = []
    for fields, *rest in _ROW.iter_unpack(data):
        assert fields == 4 and rest[0] == 4 and rest[2] == 8 and rest[4] == 8 and rest[6] == 2
        out.append((rest[1], rest[3], rest[5], rest[7]))
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(frames(), max_size=8))
def test_series_tuples_hold_the_text_tuples_readings_in_key_order(items: list[Any]) -> None:
    got = gather(items)
    if got is None:
        assert telemetry_copy(items) == (b"", 0)
        return
    ids = np.arange(len(got.pairs)) * 3 + 7  # any ids
    rows = series_rows(series_tuples(got, ids))
    assert [r[:2] for r in rows] == sorted(r[:2] for r in rows)  # (series, time) order
    prefix = {int(i): tuple_prefix(*pair) for i, pair in zip(ids, got.pairs, strict=True)}
    as_text = []
    for series, time, value, quality in rows:
        raw = prefix[series]
        (twin_len,) = struct.unpack_from(">i", raw, 2)
        twin, signal = raw[6 : 6 + twin_len], raw[10 + twin_len :]
        as_text.append(
            (
                twin,
                signal,
                struct.pack(">q", time),
                struct.pack(">d", value),
                struct.pack(">h", quality),
            )
        )
    assert sorted(as_text) == parse(text_tuples(got))


# -- against a real server ----------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[Postgres]:
    with Postgres() as pg:
        yield pg


def database(
    server: Postgres, request: pytest.FixtureRequest, tmp: Path, upto: int | None = None
) -> str:
    """A new database migrated to the end, or only up to migration ``upto``."""
    name = "s_" + re.sub(r"\W+", "_", request.node.name).lower()[:45]
    url = server.create_database(name)
    if upto is None:
        migrate(url, use_timescaledb=False)
    else:
        folder = tmp / "migrations"
        folder.mkdir()
        for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
            if int(path.name[:4]) <= upto:
                shutil.copy(path, folder / path.name)
        migrate(url, directory=folder, use_timescaledb=False)
    return url


def duplicates() -> float:
    """Telemetry rows the sinks of this process found stored already."""
    value = REGISTRY.get_sample_value("twinflow_pg_rows_duplicate_total", {"table": "telemetry"})
    return value or 0.0


def query(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, args).fetchall()


def stored(url: str) -> list[tuple[Any, ...]]:
    return query(
        url, "SELECT twin_id, signal, time, value, quality FROM twinflow.telemetry ORDER BY 1, 2, 3"
    )


def same_rows(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> bool:
    """Equal rows, floats to a relative 1e-12."""
    return len(a) == len(b) and all(
        x == pytest.approx(y, rel=1e-12) if isinstance(x, float) else x == y
        for ra, rb in zip(a, b, strict=True)
        for x, y in zip(ra, rb, strict=True)
    )


def copy_text(url: str, data: bytes, into: str = "twinflow.telemetry") -> None:
    with (
        psycopg.connect(url, autocommit=True) as conn,
        conn.cursor() as cur,
        cur.copy(TELEMETRY.copy_sql(into)) as copy,
    ):
        copy.write(COPY_HEADER + data + COPY_TRAILER)


def write(
    url: str, items: list[Any], resume: list[Any] | None = None, optimistic: bool = True
) -> None:
    sink = PostgresSink(url, waveforms=True, batch_rows=200, optimistic_copy=optimistic)
    part = sink.build_part("s", "pg-0", resume)
    for i in range(0, len(items), 5):
        part.write_batch(items[i : i + 5])
    assert part.snapshot() is None
    part.close()


@pytest.mark.services
def test_the_migration_moves_stored_readings_and_the_view_keeps_the_table_s_columns(
    server: Postgres, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = database(server, request, tmp_path, upto=8)
    items = mixed_batch()
    data, n = telemetry_copy(items)
    copy_text(url, data)  # into the text-keyed table of migration 0001
    before = stored(url)
    minutes = query(url, "SELECT * FROM twinflow.telemetry_1m ORDER BY 1, 2, 3")
    assert len(before) == n > 100

    assert "telemetry keyed by" not in str(status(url))
    applied = [m.label for m in migrate(url, use_timescaledb=False)]
    assert applied[0] == "0009_series_key"  # then the later files (0010_fleet_status...)
    assert "plain PostgreSQL: telemetry keyed by series" in str(status(url))
    assert stored(url) == before
    after = query(url, "SELECT * FROM twinflow.telemetry_1m ORDER BY 1, 2, 3")
    assert same_rows(after, minutes)  # sums in another order: last digits may differ
    pairs = {(t, s) for t, s, *_ in before}
    assert query(url, "SELECT count(*) FROM twinflow.series") == [(len(pairs),)]
    assert query(url, "SELECT count(*) FROM twinflow.telemetry_points") == [(n,)]
    columns = query(
        url,
        "SELECT column_name, data_type FROM information_schema.columns WHERE "
        "table_schema = 'twinflow' AND table_name = 'telemetry' ORDER BY ordinal_position",
    )
    assert [c for c, _ in columns] == ["twin_id", "signal", "time", "value", "quality"]

    with psycopg.connect(url, autocommit=True) as conn:  # other tools write through the view
        conn.execute(
            "INSERT INTO twinflow.telemetry (twin_id, signal, time, value) "
            "VALUES ('new', 'x', '2024-05-01', 1.5), ('M1', 'x', '2024-05-01', 2.5)"
        )
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "INSERT INTO twinflow.telemetry (twin_id, signal, time, value) "
                "VALUES ('new', 'x', '2024-05-01', 9.0)"
            )
    assert query(url, "SELECT value, quality FROM twinflow.telemetry WHERE twin_id = 'new'") == [
        (1.5, 0)
    ]
    assert len(stored(url)) == n + 2


@pytest.mark.services
def test_series_ids_are_made_once_and_agree_across_processes(
    server: Postgres, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = database(server, request, tmp_path)
    pairs = [(f"T{i % 37}", f"s{i % 5}") for i in range(400)] + [("a\x00b", "x"), ("a\ufffdb", "x")]
    caches = [SeriesIds() for _ in range(4)]  # as four processes would hold
    barrier = threading.Barrier(4)

    def fill(cache: SeriesIds, shift: int) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            assert series_layout(conn) is not None
            barrier.wait(10)
            cache.ensure(conn, pairs[shift:] + pairs[:shift])

    threads = [threading.Thread(target=fill, args=(c, 97 * i)) for i, c in enumerate(caches)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    unique = sorted(set(pairs))
    first = caches[0].ids(unique)
    assert len(set(first.tolist())) == len(unique) - 1  # NUL replaced: one series
    for cache in caches[1:]:
        assert cache.ids(unique).tolist() == first.tolist()
        assert cache.lookups == 1
    with psycopg.connect(url, autocommit=True) as conn:
        caches[0].ensure(conn, pairs)  # all cached: no round trip
    assert caches[0].lookups == 1
    assert query(url, "SELECT count(*) FROM twinflow.series") == [(len(unique) - 1,)]


@pytest.mark.services
def test_the_sink_stores_a_batch_written_twice_once_and_an_old_snapshot_s_text_tuples(
    server: Postgres, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = database(server, request, tmp_path)
    items = mixed_batch()
    _, n = telemetry_copy(items)
    write(url, items[:30])
    write(url, items)  # a replay of the first 30 items, then new ones
    assert len(stored(url)) == n
    assert query(url, "SELECT count(*) FROM twinflow.telemetry_points") == [(n,)]
    before = duplicates()
    write(url, items, optimistic=False)  # all of it again, through the stage of series rows
    assert len(stored(url)) == n
    assert duplicates() - before == n

    # a snapshot taken by an earlier twinflow held text tuples: resumed, they are stored
    first = items[0]
    resumed = TelemetryFrame("resumed", "motor", first.times + 1e6, dict(first.signals))
    extra, m = telemetry_copy([resumed])
    write(url, items[:3], resume=[(TELEMETRY.name, extra, m)])
    assert len(stored(url)) == n + m
    assert query(url, "SELECT count(*) FROM twinflow.telemetry WHERE twin_id = 'resumed'") == [(m,)]


@pytest.mark.services
def test_the_sink_writes_a_database_whose_telemetry_keeps_the_text_key(
    server: Postgres, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = database(server, request, tmp_path, upto=8)
    # 0009 on a server that can use TimescaleDB changes nothing: record it as such a run does
    (series_key,) = [m for m in load_migrations() if m.version == 9]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {MIGRATIONS_TABLE} (version, name, checksum) VALUES (%s, %s, %s)",
            (series_key.version, series_key.name, series_key.checksum),
        )
    migrate(url, use_timescaledb=False)  # the files after 0009 (0010_fleet_status...)
    items = mixed_batch()
    _, n = telemetry_copy(items)
    write(url, items[:30])
    write(url, items)
    assert len(stored(url)) == n
    kind = query(url, "SELECT relkind FROM pg_class WHERE oid = 'twinflow.telemetry'::regclass")
    assert kind == [("r",)]
    assert query(url, "SELECT to_regclass('twinflow.telemetry_points')") == [(None,)]


def test_the_timescaledb_layer_is_not_planned_for_a_database_keyed_by_series() -> None:
    usable = TimescaleSupport(installed=None, available="2.14.2", preloaded=True)
    files = len(load_migrations())
    assert len(_plan(None, None, usable, {}, None, compact=False)) > files  # text key: layered
    assert len(_plan(None, None, usable, {}, None, compact=True)) == files
    with pytest.raises(MigrationError, match="already stores telemetry keyed by series"):
        _plan(None, None, usable, {}, True, compact=True)
