"""PostgreSQL storage against a real server: migrations, the sink's guarantees, the views.

A hermetic PostgreSQL (tests/services/postgres.py) is started once for the module; tests
that stop the server get a second one of their own. If no server can be started the tests
fail with what to install: they never skip. CI exercises the plain-PostgreSQL path (the
TimescaleDB layer is checked as generated SQL, and applied when the server offers it).
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
import numpy as np
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from tests.services.postgres import Postgres
from twinflow.connectors.postgres import (
    MigrationError,
    PostgresSink,
    PostgresSinkError,
    load_migrations,
    migrate,
    status,
    timescale_ddl,
)
from twinflow.connectors.postgres.connection import psycopg
from twinflow.connectors.postgres.migrations import (
    MIGRATIONS_DIR,
    MIGRATIONS_TABLE,
    timescale_migration,
    timescale_migrations,
)
from twinflow.connectors.postgres.rows import (
    _json_text,
    clean_text,
    dead_letter_id,
    to_json_text,
)
from twinflow.connectors.postgres.timescale import TimescaleOptions, timescale_rollups_ddl
from twinflow.core.records import (
    Alert,
    AlertState,
    AssetRollup,
    Command,
    CommandStatus,
    DeadLetter,
    PropertyState,
    Quality,
    RulEstimate,
    Severity,
    SignalState,
    SyncStatus,
    TelemetryFrame,
    TwinState,
    WaveformFrame,
    WindowFeatures,
)

pytestmark = pytest.mark.timeout(60)

#: The repository's migrations, in order.
ALL_MIGRATIONS = (
    "0001_base",
    "0002_views",
    "0003_properties",
    "0004_command_lifecycle",
    "0005_asset_rollups",
    "0006_twin_health",
    "0007_maintenance_plan",
    "0008_replication",
    "0009_series_key",
    "0010_fleet_status",
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
E0 = T0.timestamp()
SIGNALS = ("power_kw", "temp_c")


# -- servers and databases ----------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[Postgres]:
    with Postgres() as pg:
        yield pg


@pytest.fixture(scope="module")
def fragile() -> Iterator[Postgres]:
    """A server of their own for the tests that stop it."""
    with Postgres() as pg:
        yield pg


def _db_name(request: pytest.FixtureRequest) -> str:
    return "t_" + re.sub(r"\W+", "_", request.node.name).lower()[:50]


@pytest.fixture
def fresh(server: Postgres, request: pytest.FixtureRequest) -> str:
    """URL of an empty database."""
    return server.create_database(_db_name(request))


@pytest.fixture
def db(fresh: str) -> str:
    """URL of a database with the twinflow schema."""
    migrate(fresh)
    return fresh


def _fragile_db(fragile: Postgres, request: pytest.FixtureRequest) -> str:
    if not fragile.running:
        fragile.start()
    url = fragile.create_database(_db_name(request))
    migrate(url)
    return url


def query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def count(url: str, table: str) -> int:
    return int(query(url, f"SELECT count(*) FROM twinflow.{table}")[0][0])


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def retries_total() -> float:
    total = 0.0
    for family in REGISTRY.collect():
        if family.name == "twinflow_pg_retries":
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


# -- records ------------------------------------------------------------------------------


def frame(twin: str, start: float, n: int = 10, nan_at: int | None = None) -> TelemetryFrame:
    """``n`` readings a second of two signals; values derive from twin, signal and time."""
    times = start + np.arange(n, dtype=np.float64)
    signals = {}
    for k, name in enumerate(SIGNALS):
        values = (times - E0) * 10.0 + k + int(twin[1:]) * 1000.0
        if nan_at is not None:
            values[nan_at] = np.nan
        signals[name] = values
    return TelemetryFrame(twin, "motor", times, signals, {"temp_c": Quality.UNCERTAIN})


def expected_readings(frames: list[TelemetryFrame]) -> list[tuple[str, str, int, float]]:
    out = []
    for f in frames:
        for name, values in f.signals.items():
            for t, v in zip(f.times, values, strict=True):
                if not np.isnan(v):
                    out.append((f.twin_id, name, round(float(t) * 1e6), float(v)))
    return sorted(out)


def stored_readings(url: str) -> list[tuple[str, str, int, float]]:
    rows = query(
        url,
        "SELECT twin_id, signal, (extract(epoch FROM time) * 1000000)::bigint, value "
        "FROM twinflow.telemetry ORDER BY 1, 2, 3",
    )
    return [(a, b, int(c), float(d)) for a, b, c, d in rows]


def window(twin: str, minute: int, mean: float = 1.0) -> WindowFeatures:
    start = T0 + timedelta(minutes=minute)
    return WindowFeatures(
        twin,
        "motor",
        start,
        start + timedelta(minutes=1),
        {"power_kw.mean": mean, "temp_c.max": float("nan")},
        {"power_kw": 60},
        0,
        0.2,
        0.9,
        RulEstimate("temp_c", 0.8, 120.0, 90.0, float("inf")),
    )


def state(twin: str, second: int, status: SyncStatus = SyncStatus.SYNCHRONIZED) -> TwinState:
    t = E0 + second
    return TwinState(
        twin,
        "motor",
        T0 + timedelta(seconds=second),
        status,
        {
            "power_kw": SignalState(float(second), t, Quality.GOOD),
            "temp_c": SignalState(40.0, t - 1, Quality.UNCERTAIN, stale=True),
        },
        readings=second * 2,
    )


def alert(twin: str, state_: AlertState, minute: int, raised_minute: int = 0) -> Alert:
    raised = T0 + timedelta(minutes=raised_minute)
    return Alert(
        Alert.make_id(twin, "overheating", raised),
        twin,
        "motor",
        "overheating",
        state_,
        Severity.WARNING if state_ is AlertState.RAISED else Severity.INFO,
        T0 + timedelta(minutes=minute),
        raised,
        f"{twin} {state_.value}",
        "overheating",
        {"temp_c": 95.5, "margin": float("inf")},
    )


def command(twin: str, status_: CommandStatus, minute: int = 1) -> Command:
    issued = T0 + timedelta(minutes=minute)
    return Command(
        Command.make_id(twin, "derate", issued),
        twin,
        "motor",
        "derate",
        {"fraction": 0.7},
        issued,
        issued + timedelta(minutes=5),
        "alert",
        status_,
        status_at=issued + timedelta(seconds=30),
        attempt=2,
    )


def dead_letter(i: int) -> DeadLetter:
    return DeadLetter("decode", "not JSON", "mqtt:plant/x", T0, None, f"\x00bad\udcff{i}")


def one_of_each(twin: str = "M1") -> list[Any]:
    return [
        frame(twin, E0, 5, nan_at=2),
        window(twin, 0),
        state(twin, 5),
        alert(twin, AlertState.RAISED, 1),
        command(twin, CommandStatus.ISSUED),
        dead_letter(1),
        WaveformFrame(twin, "motor", "vibration", E0, 1000.0, np.zeros(500)),
    ]


def write(sink: PostgresSink, *batches: list[Any], part: str = "pg-0") -> None:
    """Write batches through one partition, a snapshot after each, then close it."""
    p = sink.build_part("test", part, None)
    try:
        for b in batches:
            p.write_batch(b)
            p.snapshot()
    finally:
        p.close()


# -- migrations ---------------------------------------------------------------------------


@pytest.mark.services
def test_migrate_is_idempotent_and_status_tells_the_path(fresh: str, server: Postgres) -> None:
    before = status(fresh)
    assert not before.applied and before.pending == ALL_MIGRATIONS
    assert "not created" in str(before) and "run `twinflow db migrate`" in str(before)

    applied = migrate(fresh)
    assert tuple(m.label for m in applied)[: len(ALL_MIGRATIONS)] == ALL_MIGRATIONS
    assert migrate(fresh) == []

    report = status(fresh)
    assert report.up_to_date
    text = str(report)
    assert "0001_base" in text and "0002_views" in text and "up to date" in text
    if server.timescaledb_available():
        assert report.uses_timescaledb and "TimescaleDB" in text
    else:
        assert report.storage == "postgresql"
        assert "plain PostgreSQL" in text and "timescaledb not available" in text
        assert len(applied) == len(ALL_MIGRATIONS)


@pytest.mark.services
def test_changed_migration_is_refused_naming_it(fresh: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    migrate(fresh, directory=folder, use_timescaledb=False)
    views = folder / "0002_views.sql"
    views.write_text(views.read_text() + "\n-- an edit\n")
    with pytest.raises(MigrationError, match=r"0002_views .*0002_views\.sql.* changed"):
        migrate(fresh, directory=folder, use_timescaledb=False)
    report = status(fresh, directory=folder)
    assert report.changed == ("0002_views",) and not report.up_to_date
    assert "CHANGED" in str(report)


@pytest.mark.services
def test_new_migration_applies_alone_and_a_failing_one_rolls_back(
    fresh: str, tmp_path: Path
) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    migrate(fresh, directory=folder, use_timescaledb=False)
    (folder / "0901_extra.sql").write_text("CREATE TABLE twinflow.extra (x int);\n")
    assert [m.label for m in migrate(fresh, directory=folder)] == ["0901_extra"]

    (folder / "0902_broken.sql").write_text(
        "CREATE TABLE twinflow.half_done (x int);\nSELECT 1 / 0;\n"
    )
    with pytest.raises(MigrationError, match=r"0902_broken .*rolled back.*division by zero"):
        migrate(fresh, directory=folder)
    assert query(fresh, "SELECT to_regclass('twinflow.half_done')") == [(None,)]
    assert status(fresh, directory=folder).pending == ("0902_broken",)


def test_badly_named_migration_file_is_an_error(tmp_path: Path) -> None:
    shutil.copytree(MIGRATIONS_DIR, tmp_path / "m")
    (tmp_path / "m" / "5_oops.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"5_oops\.sql is not named NNNN_name\.sql"):
        load_migrations(tmp_path / "m")


@pytest.mark.services
def test_timescale_layer_sql_and_when_it_applies(fresh: str, server: Postgres) -> None:
    sql = timescale_ddl(TimescaleOptions(retain_telemetry=timedelta(days=30)))
    for table, column in (
        ("telemetry", "time"),
        ("window_features", "window_start"),
        ("twin_state_history", "time"),
    ):
        assert f"SELECT create_hypertable('twinflow.{table}', '{column}'," in sql
        assert f"ALTER TABLE twinflow.{table} SET (" in sql
        assert f"SELECT add_compression_policy('twinflow.{table}'," in sql
    assert "timescaledb.compress_segmentby = 'twin_id, signal'" in sql
    assert (
        "SELECT add_retention_policy('twinflow.telemetry',\n    drop_after => INTERVAL '30 days'"
        in sql
    )
    assert "add_retention_policy('twinflow.window_features'" not in sql  # kept forever
    assert "CREATE MATERIALIZED VIEW twinflow.telemetry_1m" in sql
    assert "WITH (timescaledb.continuous, timescaledb.materialized_only = false)" in sql
    assert "time_bucket(INTERVAL '1 minute', time) AS bucket" in sql
    assert "SELECT add_continuous_aggregate_policy('twinflow.telemetry_1m'," in sql
    assert sql.index("DROP VIEW IF EXISTS twinflow.telemetry_1m") < sql.index("create_hypertable")

    # PostgreSQL's own parser checks every statement's syntax, even without the extension:
    # what fails may fail for a missing function or option namespace, never for syntax.
    migrate(fresh, use_timescaledb=False)
    with psycopg.connect(fresh) as conn:
        for statement in filter(str.strip, sql.split(";\n")):
            try:
                with conn.transaction():
                    conn.execute(statement)
                    raise psycopg.Rollback
            except psycopg.errors.SyntaxError as exc:
                pytest.fail(f"syntax error in the TimescaleDB layer: {exc}\n{statement}")
            except psycopg.Error:
                pass  # e.g. function create_hypertable(...) does not exist
        conn.rollback()

    fresh = server.create_database("t_timescale_layer_applied")
    if server.timescaledb_available():
        migrate(fresh)
        assert status(fresh).uses_timescaledb
        hypertables = query(
            fresh,
            "SELECT hypertable_name FROM timescaledb_information.hypertables "
            "WHERE hypertable_schema = 'twinflow' ORDER BY 1",
        )
        assert [h for (h,) in hypertables] == [
            "asset_rollups",
            "telemetry",
            "twin_state_history",
            "window_features",
        ]
    else:
        with pytest.raises(MigrationError, match="TimescaleDB was asked for but cannot be used"):
            migrate(fresh, use_timescaledb=True)
        assert tuple(m.label for m in migrate(fresh)) == ALL_MIGRATIONS
        assert not status(fresh).uses_timescaledb


# -- the sink -----------------------------------------------------------------------------


@pytest.mark.services
def test_each_record_type_lands_in_its_table_through_a_flow(db: str) -> None:
    items = one_of_each("M1") + one_of_each("M2")
    flow = Dataflow("pg_each_type")
    stream = op.input("in", flow, TestingSource(items, batch_size=3))
    keyed = op.key_on("key", stream, lambda x: getattr(x, "twin_id", None) or x.source)
    op.output("out", keyed, PostgresSink(db, partitions=2, batch_rows=4, max_latency_s=0.05))
    run_main(flow)

    frames = [x for x in items if isinstance(x, TelemetryFrame)]
    assert stored_readings(db) == expected_readings(frames)  # NaN readings are not stored
    assert count(db, "telemetry") == 2 * 2 * (5 - 1)  # waveforms skipped by default
    assert query(db, "SELECT DISTINCT quality FROM twinflow.telemetry WHERE signal = 'temp_c'") == [
        (int(Quality.UNCERTAIN),)
    ]
    for table in ("window_features", "twin_state", "twin_state_history", "alerts", "commands"):
        assert count(db, table) == 2, table
    assert count(db, "alert_events") == 2
    assert count(db, "dead_letters") == 1  # the same dead letter twice is one dead letter

    features, rul_high = query(
        db, "SELECT features, rul_high_hours FROM twinflow.window_features WHERE twin_id = 'M1'"
    )[0]
    assert features == {"power_kw.mean": 1.0, "temp_c.max": None} and rul_high == float("inf")
    (payload, key) = query(db, "SELECT payload, dead_letter_id FROM twinflow.dead_letters")[0]
    assert payload == "\ufffdbad?1" and key == dead_letter_id(dead_letter(1))
    (signals,) = query(db, "SELECT signals FROM twinflow.twin_state WHERE twin_id = 'M2'")[0]
    assert signals["temp_c"] == {
        "value": 40.0,
        "time": "2024-05-01T12:00:04Z",
        "quality": "uncertain",
        "stale": True,
    }


@pytest.mark.services
def test_the_same_batch_written_twice_stores_each_row_once(db: str) -> None:
    batch = [*one_of_each("M1"), frame("M1", E0 + 5, 20), window("M1", 1), state("M1", 9)]
    before = metric("twinflow_pg_rows_duplicate_total", table="telemetry")
    write(PostgresSink(db), batch)
    counts = {t: count(db, t) for t in ("telemetry", "window_features", "twin_state_history")}
    write(PostgresSink(db), batch, batch)  # a replay, twice
    assert {t: count(db, t) for t in counts} == counts
    readings = expected_readings([f for f in batch if isinstance(f, TelemetryFrame)])
    assert stored_readings(db) == readings
    duplicates = metric("twinflow_pg_rows_duplicate_total", table="telemetry") - before
    assert duplicates == 2 * len(readings)
    # the staging path (no optimistic COPY) is just as idempotent
    write(PostgresSink(db, optimistic_copy=False), batch)
    assert {t: count(db, t) for t in counts} == counts


@pytest.mark.services
def test_a_replay_overlapping_new_rows_inserts_only_the_new(db: str) -> None:
    first = [frame("M1", E0 + 10 * i) for i in range(3)]
    later = [frame("M1", E0 + 10 * i) for i in range(3, 6)]
    write(PostgresSink(db), first)
    write(PostgresSink(db), first[1:] + later)  # replay since an older snapshot, then new
    assert stored_readings(db) == expected_readings(first + later)


@pytest.mark.services
def test_alert_raise_then_clear_updates_its_lifecycle_row(db: str) -> None:
    raised, cleared = alert("M1", AlertState.RAISED, 1), alert("M1", AlertState.CLEARED, 7)
    write(PostgresSink(db), [raised])
    assert query(db, "SELECT state, cleared_at FROM twinflow.alerts") == [("raised", None)]
    assert [r[0] for r in query(db, "SELECT alert_id FROM twinflow.alerts_open")] == [
        raised.alert_id
    ]

    write(PostgresSink(db), [cleared])
    write(PostgresSink(db), [raised])  # a replayed raise does not reopen it
    row = query(
        db,
        "SELECT state, raised_at, cleared_at, severity, message, updated_at FROM twinflow.alerts",
    )
    assert row == [("cleared", T0, cleared.time, "info", "M1 cleared", cleared.time)]
    assert query(db, "SELECT count(*) FROM twinflow.alerts_open") == [(0,)]
    assert query(db, "SELECT state FROM twinflow.alert_events ORDER BY time") == [
        ("raised",),
        ("cleared",),
    ]

    # raised and cleared in one batch, in either order: one cleared row
    again_raised = alert("M2", AlertState.RAISED, 3, raised_minute=3)
    again_cleared = alert("M2", AlertState.CLEARED, 4, raised_minute=3)
    write(PostgresSink(db), [again_cleared, again_raised])
    assert query(db, "SELECT state, cleared_at FROM twinflow.alerts WHERE twin_id = 'M2'") == [
        ("cleared", again_cleared.time)
    ]


@pytest.mark.services
def test_recomputed_window_replaces_and_older_state_never_wins(db: str) -> None:
    write(PostgresSink(db), [window("M1", 0, mean=1.0), state("M1", 20)])
    write(PostgresSink(db), [window("M1", 0, mean=2.0), state("M1", 10)])  # late data; older
    assert query(db, "SELECT features->>'power_kw.mean' FROM twinflow.window_features") == [
        ("2.0",)
    ]
    assert query(db, "SELECT extract(second FROM time) FROM twinflow.twin_state") == [(20,)]
    assert count(db, "twin_state_history") == 2
    # one batch with several versions of a key: the last to arrive wins
    write(PostgresSink(db), [window("M1", 5, 1.0), window("M1", 5, 3.0), state("M1", 30)])
    assert query(
        db,
        "SELECT features->>'power_kw.mean' FROM twinflow.window_features WHERE late = 0 "
        "ORDER BY window_start",
    ) == [("2.0",), ("3.0",)]


def with_properties(
    s: TwinState, desired: float, version: int, reported: float | None = 250.0
) -> TwinState:
    """``s`` with a desired and reported property (desired set 3 s before the state)."""
    prop = PropertyState(
        desired=desired,
        desired_version=version,
        desired_at=s.time - timedelta(seconds=3),
        reported=reported,
        reported_version=0 if reported is None else 2,
        reported_at=None if reported is None else s.time,
        in_sync=reported is not None and abs(reported - desired) <= 0.5,
    )
    no_report = PropertyState(desired=float("nan"))  # NaN is stored as null
    return replace(s, properties={"flow_setpoint": prop, "load_setpoint": no_report})


@pytest.mark.services
def test_twin_state_properties_round_trip_and_view(db: str) -> None:
    first = with_properties(state("M1", 20), 300.0, 1)
    write(PostgresSink(db), [first, state("M2", 20)])
    expected = {name: p.to_json() for name, p in first.properties.items()}
    assert expected["flow_setpoint"]["desired_at"] == "2024-05-01T12:00:17Z"
    assert expected["load_setpoint"]["desired"] is None
    for table in ("twin_state", "twin_state_history"):
        rows = query(db, f"SELECT twin_id, properties FROM twinflow.{table} ORDER BY twin_id")
        assert rows == [("M1", expected), ("M2", {})], table  # no properties: '{}'
    view = query(
        db,
        "SELECT twin_id, property, desired, desired_version, desired_at, reported, "
        "reported_version, reported_at, in_sync FROM twinflow.twin_properties_latest "
        "ORDER BY twin_id, property",
    )
    t = T0 + timedelta(seconds=20)
    assert view == [
        ("M1", "flow_setpoint", 300.0, 1, t - timedelta(seconds=3), 250.0, 2, t, False),
        ("M1", "load_setpoint", None, 0, None, None, 0, None, True),
    ]


@pytest.mark.services
def test_twin_state_health_round_trips_with_its_interval_and_view(db: str) -> None:
    rul = RulEstimate("bearing_ratio", 0.42, 31.5, 20.25, float("inf"))
    write(PostgresSink(db), [replace(state("H1", 20), rul=rul), state("H2", 20)])
    expected = rul.to_json()
    for table in ("twin_state", "twin_state_history"):
        rows = query(db, f"SELECT twin_id, health FROM twinflow.{table} ORDER BY twin_id")
        assert rows == [("H1", expected), ("H2", None)], table
    view = query(
        db,
        "SELECT twin_id, indicator, health, rul_hours, rul_low_hours, rul_high_hours "
        "FROM twinflow.twin_health_latest ORDER BY twin_id",
    )
    assert view == [("H1", "bearing_ratio", 0.42, 31.5, 20.25, None)]


@pytest.mark.services
def test_desired_change_without_new_readings_updates_and_older_state_never_wins(
    db: str,
) -> None:
    """A desired change publishes a state at the same event time: it replaces the stored
    state (and its history row); an older state does not, whatever its properties."""
    write(PostgresSink(db), [with_properties(state("M1", 20), 300.0, 1)])
    newer = with_properties(state("M1", 20), 280.0, 2)
    write(PostgresSink(db), [newer])
    desired = "SELECT properties->'flow_setpoint'->>'desired_version' FROM twinflow.{}"
    assert query(db, desired.format("twin_state")) == [("2",)]
    assert query(db, desired.format("twin_state_history")) == [("2",)]
    write(PostgresSink(db), [with_properties(state("M1", 10), 100.0, 3)])  # older: late
    assert query(db, desired.format("twin_state")) == [("2",)]
    assert count(db, "twin_state_history") == 2
    # several versions of the same time in one batch: the last to arrive wins
    write(
        PostgresSink(db),
        [with_properties(state("M1", 30), 270.0, 4), with_properties(state("M1", 30), 269.5, 5)],
    )
    assert query(db, desired.format("twin_state")) == [("5",)]
    # a replay stores nothing new
    counts = {t: count(db, t) for t in ("twin_state", "twin_state_history")}
    write(PostgresSink(db), [newer, with_properties(state("M1", 30), 269.5, 5)])
    assert {t: count(db, t) for t in counts} == counts
    assert query(db, desired.format("twin_state")) == [("5",)]


@pytest.mark.services
def test_properties_migration_upgrades_stored_states_and_runs_once(
    fresh: str, tmp_path: Path
) -> None:
    folder = tmp_path / "before"
    folder.mkdir()
    for name in ("0001_base.sql", "0002_views.sql"):
        shutil.copy(MIGRATIONS_DIR / name, folder / name)
    migrate(fresh, directory=folder, use_timescaledb=False)
    with psycopg.connect(fresh) as conn:
        conn.execute(
            "INSERT INTO twinflow.twin_state (twin_id, twin_type, time, status, signals) "
            "VALUES ('M1', 'motor', %s, 'synchronized', '{}')",
            (T0,),
        )
    assert [m.label for m in migrate(fresh, use_timescaledb=False)] == list(ALL_MIGRATIONS[2:])
    assert migrate(fresh, use_timescaledb=False) == []
    assert query(fresh, "SELECT properties FROM twinflow.twin_state") == [({},)]
    write(PostgresSink(fresh), [with_properties(state("M1", 5), 300.0, 1)])
    assert query(fresh, "SELECT property FROM twinflow.twin_properties_latest ORDER BY 1") == [
        ("flow_setpoint",),
        ("load_setpoint",),
    ]


# -- asset roll-ups ------------------------------------------------------------------------


def rollup(
    asset: str,
    minute: int,
    alarms: tuple[int, int, int] = (0, 1, 0),
    health: float | None = None,
) -> AssetRollup:
    """A roll-up of ``asset`` at ``minute``: ``alarms`` twins in alarm (info, warning, critical)."""
    return AssetRollup(
        asset_id=asset,
        asset_type="site" if asset == "site1" else "pump_skid",
        time=T0 + timedelta(minutes=minute),
        twins_total=4,
        twins_in_alarm=sum(alarms),
        in_alarm_by_severity=dict(zip(("info", "warning", "critical"), alarms, strict=True)),
        worst_health=health,
        worst_twin=None if health is None else "pump-002",
    )


ROLLUP_COLUMNS = (
    "asset_id, asset_type, time, twins_total, twins_in_alarm, in_alarm_info, in_alarm_warning, "
    "in_alarm_critical, worst_health, worst_twin"
)


def rollup_columns(r: AssetRollup) -> tuple[Any, ...]:
    """What the tables should hold of ``r`` (the columns of ``ROLLUP_COLUMNS``)."""
    doc = r.to_json()
    by_severity = doc["in_alarm_by_severity"]
    return (
        r.asset_id,
        r.asset_type,
        r.time,
        r.twins_total,
        r.twins_in_alarm,
        by_severity["info"],
        by_severity["warning"],
        by_severity["critical"],
        r.worst_health,
        r.worst_twin,
    )


@pytest.mark.services
def test_rollups_land_through_a_flow_and_a_replay_stores_them_once(db: str) -> None:
    items: list[Any] = []
    for minute in range(4):
        health = None if minute == 0 else 0.9 - 0.1 * minute
        items.append(rollup("site1", minute, (minute % 2, 1, minute // 2), health))
        items.append(rollup("skid-1", minute, (0, minute % 2, 0), health))
    items.insert(3, alert("M1", AlertState.RAISED, 1))  # roll-ups share the sink with others

    def run_once() -> None:
        flow = Dataflow("pg_rollups")
        stream = op.input("in", flow, TestingSource(items, batch_size=3))
        keyed = op.key_on("key", stream, lambda x: getattr(x, "asset_id", None) or x.twin_id)
        op.output("out", keyed, PostgresSink(db, partitions=2, batch_rows=4, max_latency_s=0.05))
        run_main(flow)

    rollups = [x for x in items if isinstance(x, AssetRollup)]
    run_once()
    history = query(
        db, f"SELECT {ROLLUP_COLUMNS} FROM twinflow.asset_rollups ORDER BY asset_id, time"
    )
    assert history == sorted(rollup_columns(r) for r in rollups)
    assert count(db, "alerts") == 1

    before = metric("twinflow_pg_rows_duplicate_total", table="asset_rollups")
    stamps = query(db, "SELECT asset_id, updated_at FROM twinflow.asset_rollups_latest")
    run_once()  # a replay after recovery
    assert (
        query(db, f"SELECT {ROLLUP_COLUMNS} FROM twinflow.asset_rollups ORDER BY asset_id, time")
        == history
    )
    assert metric("twinflow_pg_rows_duplicate_total", table="asset_rollups") - before == len(
        rollups
    )
    # the latest roll-up of each asset, untouched by the replay (no update: same updated_at)
    latest = query(
        db, f"SELECT {ROLLUP_COLUMNS} FROM twinflow.asset_rollups_latest ORDER BY asset_id"
    )
    assert latest == [rollup_columns(rollups[-2]), rollup_columns(rollups[-1])]
    assert query(db, "SELECT asset_id, updated_at FROM twinflow.asset_rollups_latest") == stamps

    # the README's example: which assets have twins in alarm, the worst first
    answer = query(
        db,
        "SELECT asset_id, twins_in_alarm, in_alarm_critical, worst_twin, worst_health "
        "FROM twinflow.asset_rollups_latest WHERE twins_in_alarm > 0 "
        "ORDER BY in_alarm_critical DESC, twins_in_alarm DESC, worst_health",
    )
    assert answer == [
        ("site1", 3, 1, "pump-002", pytest.approx(0.6)),
        ("skid-1", 1, 0, "pump-002", pytest.approx(0.6)),
    ]


@pytest.mark.services
def test_an_older_rollup_never_wins_and_one_at_the_same_time_replaces(db: str) -> None:
    write(PostgresSink(db), [rollup("skid-1", 5, (0, 1, 0), 0.7)])
    write(PostgresSink(db), [rollup("skid-1", 2, (0, 0, 2), 0.2)])  # older, arriving late
    latest = "SELECT time, in_alarm_critical, worst_health FROM twinflow.asset_rollups_latest"
    at = T0 + timedelta(minutes=5)
    assert query(db, latest) == [(at, 0, 0.7)]
    assert count(db, "asset_rollups") == 2  # the history keeps both

    # a changed roll-up at the same time (another alert at that event time) replaces it
    write(PostgresSink(db), [rollup("skid-1", 5, (0, 1, 1), 0.7)])
    assert query(db, latest) == [(at, 1, 0.7)]
    assert query(
        db, "SELECT in_alarm_critical FROM twinflow.asset_rollups WHERE time = %s", (at,)
    ) == [(1,)]
    # several versions of one key in one batch: the last to arrive wins, in both tables
    write(
        PostgresSink(db),
        [rollup("skid-1", 9, (1, 0, 0), 0.5), rollup("skid-1", 9, (0, 0, 0), None)],
    )
    at = T0 + timedelta(minutes=9)
    assert query(
        db, "SELECT time, twins_in_alarm, worst_twin FROM twinflow.asset_rollups_latest"
    ) == [(at, 0, None)]
    assert query(
        db, "SELECT twins_in_alarm, worst_health FROM twinflow.asset_rollups WHERE time = %s", (at,)
    ) == [(0, None)]
    assert count(db, "asset_rollups") == 3


@pytest.mark.services
def test_rollups_migration_upgrades_a_database_at_0004_and_runs_once(
    fresh: str, tmp_path: Path
) -> None:
    folder = tmp_path / "before"
    folder.mkdir()
    for label in ALL_MIGRATIONS[:4]:
        shutil.copy(MIGRATIONS_DIR / f"{label}.sql", folder / f"{label}.sql")
    migrate(fresh, directory=folder, use_timescaledb=False)
    p = PostgresSink(fresh, retry_initial_s=0.01).build_part("test", "pg-0", None)
    p.write_batch([rollup("site1", 1)])
    with pytest.raises(
        PostgresSinkError,
        match=r"has not applied " + ", ".join(ALL_MIGRATIONS[4:]) + ": ",
    ):
        p.snapshot()  # the sink refuses a schema without the roll-up tables
    with pytest.raises(PostgresSinkError):
        p.close()

    assert tuple(m.label for m in migrate(fresh, use_timescaledb=False)) == ALL_MIGRATIONS[4:]
    assert migrate(fresh, use_timescaledb=False) == []
    assert status(fresh).up_to_date
    write(PostgresSink(fresh), [rollup("site1", 1)])
    assert count(fresh, "asset_rollups_latest") == 1


@pytest.mark.services
def test_timescale_rollups_layer_is_a_layer_of_its_own(fresh: str) -> None:
    sql = timescale_rollups_ddl(TimescaleOptions(retain_history=None))
    assert "SELECT create_hypertable('twinflow.asset_rollups', 'time'," in sql
    assert "chunk_time_interval => INTERVAL '7 days'" in sql
    assert "DROP INDEX IF EXISTS twinflow.asset_rollups_time_brin;" in sql
    assert "timescaledb.compress_segmentby = 'asset_id'" in sql
    assert "SELECT add_compression_policy('twinflow.asset_rollups'," in sql
    assert "add_retention_policy" not in sql  # retain_history=None: kept forever
    assert (
        "SELECT add_retention_policy('twinflow.asset_rollups',\n"
        "    drop_after => INTERVAL '365 days'"
    ) in timescale_rollups_ddl()
    # layer 1001 is history where it was applied: its text (checksum) must never change
    assert "asset_rollups" not in timescale_ddl()
    assert timescale_migration().checksum == (
        "7c1cdc51c31ae638e852af8f2f75349f4a2fd345762fba02882e6461cdaab24e"
    )
    layers = timescale_migrations()
    assert [m.label for m in layers] == ["1001_timescaledb", "1002_timescaledb_rollups"]
    assert all(m.optional for m in layers) and layers[1].sql == timescale_rollups_ddl()

    migrate(fresh, use_timescaledb=False)
    with psycopg.connect(fresh) as conn:  # syntax checked by PostgreSQL's parser
        for statement in filter(str.strip, sql.split(";\n")):
            try:
                with conn.transaction():
                    conn.execute(statement)
                    raise psycopg.Rollback
            except psycopg.errors.SyntaxError as exc:
                pytest.fail(f"syntax error in the roll-up TimescaleDB layer: {exc}\n{statement}")
            except psycopg.Error:
                pass  # e.g. function create_hypertable(...) does not exist
        # a database that applied 1001 before 0005 existed (recorded as such here) is planned
        # the new layer, and its 1001 is not reported as changed
        conn.execute(
            f"INSERT INTO {MIGRATIONS_TABLE} (version, name, checksum) VALUES (%s, %s, %s)",
            (1001, "timescaledb", timescale_migration().checksum),
        )
    report = status(fresh)
    assert report.pending == ("1002_timescaledb_rollups",)
    assert not report.changed and not report.unknown


@pytest.mark.services
def test_waveforms_are_stored_only_when_asked(db: str) -> None:
    wave = WaveformFrame("M1", "motor", "vibration", E0, 1000.0, np.arange(250, dtype=float))
    write(PostgresSink(db), [wave])
    assert count(db, "telemetry") == 0
    write(PostgresSink(db, waveforms=True), [wave])
    assert query(
        db, "SELECT count(*), max(value), max(time) - min(time) FROM twinflow.telemetry"
    ) == [(250, 249.0, timedelta(microseconds=249_000))]


@pytest.mark.services
def test_views_answer_example_queries(db: str) -> None:
    frames = [frame("M1", E0 + 10 * i) for i in range(12)]  # 120 s: two minutes
    write(
        PostgresSink(db),
        [
            *frames,
            state("M1", 119),
            alert("M1", AlertState.RAISED, 1),
            alert("M2", AlertState.RAISED, 1),
            alert("M2", AlertState.CLEARED, 2),
            command("M1", CommandStatus.QUEUED),
            command("M1", CommandStatus.SENT),
            command("M1", CommandStatus.SUCCEEDED),
            command("M1", CommandStatus.REJECTED, minute=3),
            command("M1", CommandStatus.QUEUED, minute=4),
            command("M1", CommandStatus.ACKNOWLEDGED, minute=4),
        ],
    )
    latest = query(
        db,
        "SELECT signal, value, quality, stale, signal_time FROM twinflow.twin_latest "
        "WHERE twin_id = 'M1' ORDER BY signal",
    )
    assert latest == [
        ("power_kw", 119.0, "good", False, T0 + timedelta(seconds=119)),
        ("temp_c", 40.0, "uncertain", True, T0 + timedelta(seconds=118)),
    ]
    assert query(db, "SELECT twin_id, rule FROM twinflow.alerts_open") == [("M1", "overheating")]

    minutes = query(
        db,
        "SELECT bucket, samples, mean, min, max FROM twinflow.signal_minutes("
        "'M1', 'power_kw', %s, %s)",
        (T0, T0 + timedelta(hours=1)),
    )
    base = 1000.0  # twin M1's offset in frame()
    assert minutes == [
        (T0, 60, base + 295.0, base, base + 590.0),
        (T0 + timedelta(minutes=1), 60, base + 895.0, base + 600.0, base + 1190.0),
    ]
    view = query(
        db,
        "SELECT bucket, samples, mean FROM twinflow.telemetry_1m "
        "WHERE twin_id = 'M1' AND signal = 'power_kw' ORDER BY bucket",
    )
    assert view == [(b, n, m) for b, n, m, _, _ in minutes]

    history = query(
        db,
        "SELECT name, status, step FROM twinflow.command_history WHERE twin_id = 'M1' "
        "ORDER BY issued_at, step",
    )
    assert history == [
        ("derate", "queued", 2),
        ("derate", "sent", 3),
        ("derate", "succeeded", 5),
        ("derate", "rejected", 5),
        ("derate", "queued", 2),
        ("derate", "acknowledged", 4),
    ]
    assert query(
        db, "SELECT status, origin, attempt FROM twinflow.commands_latest ORDER BY issued_at"
    ) == [("succeeded", "policy", 2), ("rejected", "policy", 2), ("acknowledged", "policy", 2)]


@pytest.mark.services
def test_unmigrated_database_and_wrong_items_are_clear_errors(
    server: Postgres, db: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    empty = server.create_database(_db_name(request)[:40] + "_empty")
    p = PostgresSink(empty, retry_initial_s=0.01).build_part("test", "pg-0", None)
    p.write_batch([frame("M1", E0)])
    with pytest.raises(PostgresSinkError, match=r"lacks twinflow\..*twinflow db migrate"):
        p.snapshot()
    with pytest.raises(PostgresSinkError):
        p.close()

    behind = server.create_database(_db_name(request)[:40] + "_behind")
    folder = tmp_path / "only-base"
    folder.mkdir()
    shutil.copy(MIGRATIONS_DIR / "0001_base.sql", folder / "0001_base.sql")
    migrate(behind, directory=folder, use_timescaledb=False)
    p = PostgresSink(behind, retry_initial_s=0.01).build_part("test", "pg-0", None)
    p.write_batch([frame("M1", E0)])
    with pytest.raises(
        PostgresSinkError, match=r"has not applied 0002_views, .*twinflow db migrate"
    ):
        p.snapshot()
    with pytest.raises(PostgresSinkError):
        p.close()

    p = PostgresSink(server.url_for("no_such_db")).build_part("test", "pg-0", None)
    p.write_batch([frame("M1", E0)])
    with pytest.raises(PostgresSinkError, match='database "no_such_db" does not exist'):
        p.snapshot()  # no retry can cure it: fail at once

    p = PostgresSink(db).build_part("test", "pg-0", None)
    with pytest.raises(PostgresSinkError, match="cannot store a str: it takes TelemetryFrame"):
        p.write_batch(["not a record"])
    p.close()
    with pytest.raises(PostgresSinkError, match="batch_rows <= max_buffer_rows"):
        PostgresSink(db, batch_rows=10, max_buffer_rows=5)


@pytest.mark.services
def test_batches_flush_on_latency_without_a_snapshot(db: str) -> None:
    p = PostgresSink(db, batch_rows=10_000, max_latency_s=0.1).build_part("t", "pg-0", None)
    try:
        p.write_batch([frame("M1", E0)])
        deadline = time.monotonic() + 10
        while count(db, "telemetry") < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert count(db, "telemetry") == 20
    finally:
        p.close()


# -- losing the server --------------------------------------------------------------------


def _wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.01)


@pytest.mark.services
def test_a_terminated_session_is_replaced_without_losing_the_batch(db: str) -> None:
    part = PostgresSink(db, retry_initial_s=0.01).build_part("kill", "pg-0", None)
    frames = [frame("M1", E0), frame("M1", E0 + 10)]
    part.write_batch(frames[:1])
    part.snapshot()
    before = retries_total()
    killed = query(
        db,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'twinflow-sink kill/pg-0'",
    )
    assert killed == [(True,)]
    part.write_batch(frames[1:])
    part.snapshot()
    part.close()
    assert retries_total() > before
    assert stored_readings(db) == expected_readings(frames)


@pytest.mark.services
def test_postgres_restarted_mid_stream_loses_and_duplicates_nothing(
    fragile: Postgres, request: pytest.FixtureRequest
) -> None:
    url = _fragile_db(fragile, request)
    twins = [f"M{i}" for i in range(1, 7)]
    frames = [frame(twins[i % 6], E0 + 10 * (i // 6)) for i in range(600)]
    states = [state(twins[k % 6], k) for k in range(100)]
    alerts = [alert(t, AlertState.RAISED, 1) for t in twins] + [
        alert(t, AlertState.CLEARED, 50) for t in twins
    ]
    items: list[Any] = []
    for i, f in enumerate(frames):
        items.append(f)
        if i % 6 == 0:
            items.append(states[i // 6])
        if i in (100, 500):
            items.extend(alerts[:6] if i == 100 else alerts[6:])
    progress = {"sent": 0}

    def paced() -> Iterator[Any]:
        for item in items:
            progress["sent"] += 1
            time.sleep(0.003)  # a stream that lasts ~2.5 s, so restarts land in the middle
            yield item

    def saboteur() -> None:
        _wait_for(lambda: progress["sent"] > len(items) // 4, 20, "a quarter of the stream")
        fragile.restart()  # fast shutdown: sessions are cut, as by an operator's restart
        _wait_for(lambda: progress["sent"] > len(items) // 2, 20, "half of the stream")
        fragile.crash()  # immediate: no checkpoint, WAL recovery at the next start
        time.sleep(0.3)  # down for a while: the flow keeps writing into the buffer
        fragile.start()

    retries_before = retries_total()
    flow = Dataflow("pg_restart")
    stream = op.input("in", flow, TestingSource(paced(), batch_size=4))
    sink = PostgresSink(
        url,
        partitions=2,
        batch_rows=300,
        max_latency_s=0.05,
        max_buffer_rows=3000,
        retry_initial_s=0.05,
        retry_max_s=0.3,
    )
    op.output("out", op.key_on("key", stream, lambda x: x.twin_id), sink)
    thread = threading.Thread(target=saboteur)
    thread.start()
    try:
        run_main(flow, epoch_interval=timedelta(milliseconds=200))
    finally:
        thread.join(timeout=30)
    assert not thread.is_alive()

    assert retries_total() > retries_before  # the restarts did hit the sink's writes
    assert stored_readings(url) == expected_readings(frames)
    assert count(url, "twin_state_history") == len(states)
    assert count(url, "alert_events") == len(alerts)
    assert query(url, "SELECT DISTINCT state FROM twinflow.alerts") == [("cleared",)]
    assert count(url, "twin_state") == 6


@pytest.mark.services
def test_backpressure_bounds_the_buffer_while_the_server_is_down(
    fragile: Postgres, request: pytest.FixtureRequest
) -> None:
    url = _fragile_db(fragile, request)
    sink = PostgresSink(
        url, batch_rows=100, max_buffer_rows=400, max_latency_s=0.02, retry_max_s=0.2
    )
    part = sink.build_part("bp", "pg-0", None)
    frames = [frame("M1", E0 + 10 * i) for i in range(60)]  # 20 rows each
    part.write_batch(frames[:1])
    part.snapshot()  # connected, and working
    fragile.stop()
    done = {"frames": 1}
    peak = {"rows": 0}

    def producer() -> None:
        for f in frames[1:]:
            part.write_batch([f])
            done["frames"] += 1

    thread = threading.Thread(target=producer, daemon=True)
    try:
        thread.start()
        # the producer blocks once the buffer is full; it never gets past the limit
        _wait_for(lambda: part.writer.buffered_rows >= 400, 10, "the buffer to fill")
        time.sleep(0.05)  # let the producer count its last accepted frame
        blocked_at = done["frames"]
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            peak["rows"] = max(peak["rows"], part.writer.buffered_rows)
            time.sleep(0.01)
        assert thread.is_alive() and done["frames"] == blocked_at < len(frames)
        assert peak["rows"] <= 400 + 20
    finally:
        fragile.start()
    thread.join(timeout=20)
    assert not thread.is_alive()
    part.close()
    assert stored_readings(url) == expected_readings(frames)


@pytest.mark.services
def test_giving_up_fails_the_flow_instead_of_dropping_rows(
    fragile: Postgres, request: pytest.FixtureRequest
) -> None:
    url = _fragile_db(fragile, request)
    part = PostgresSink(url, give_up_after_s=0.3, retry_initial_s=0.05).build_part(
        "gu", "pg-0", None
    )
    fragile.stop()
    try:
        part.write_batch([frame("M1", E0)])
        # a snapshot does not wait for a database that is down: it holds the rows as state
        assert sum(rows for _table, _payload, rows in part.snapshot() or []) == 20
        with pytest.raises(PostgresSinkError, match=r"gave up after 0\.3 s"):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # the next snapshot after giving up fails
                part.snapshot()
                time.sleep(0.05)
    finally:
        fragile.start()


@pytest.mark.services
def test_rows_held_while_the_server_is_down_are_snapshot_state_a_resume_writes(
    fragile: Postgres, request: pytest.FixtureRequest
) -> None:
    """The server is down: writes go on, the output reports down, a snapshot returns the
    uncommitted rows at once and closing gives them up after close_wait_s; a partition built
    from that state (a resumed run) writes them, once."""
    from prometheus_client import REGISTRY

    url = _fragile_db(fragile, request)
    sink = PostgresSink(url, retry_initial_s=0.05, retry_max_s=0.2, close_wait_s=0.5)
    part = sink.build_part("held", "pg-0", None)
    frames = [frame("M1", E0 + 10 * i) for i in range(3)]
    part.write_batch(frames[:1])
    assert part.snapshot() is None  # committed
    fragile.stop()
    try:
        part.write_batch(frames[1:])

        def down() -> bool:
            labels = {"output": "postgres:held/pg-0"}
            return REGISTRY.get_sample_value("twinflow_output_up", labels) == 0

        _wait_for(down, 10, "the output to be reported down")
        state = pickle.loads(pickle.dumps(part.snapshot()))  # as Bytewax keeps it
        assert state is not None and sum(rows for _t, _p, rows in state) == 40
        part.close()  # gives up waiting; logs the rows it leaves
    finally:
        fragile.start()
    resumed = sink.build_part("held", "pg-0", state)
    assert resumed.snapshot() is None
    resumed.close()
    assert stored_readings(url) == expected_readings(frames)


# -- pure helpers -------------------------------------------------------------------------


ODD_TEXT = st.text() | st.text(alphabet=["\x00", "\udcff", "a", "é", "\\", '"'])


@given(ODD_TEXT)
def test_clean_text_is_always_storable(text: str) -> None:
    cleaned = clean_text(text)
    assert "\x00" not in cleaned
    cleaned.encode("utf-8")
    if "\x00" not in text:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return
        assert cleaned == text


def _no_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" not in value
    if isinstance(value, dict):
        return all(_no_nul(k) and _no_nul(v) for k, v in value.items())
    return True


@given(
    st.dictionaries(
        ODD_TEXT,
        st.floats(allow_nan=True, allow_infinity=True) | st.integers() | ODD_TEXT | st.none(),
    )
)
def test_json_text_is_always_valid_jsonb_input(value: dict[str, Any]) -> None:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    parsed = json.loads(to_json_text(value), parse_constant=refuse)
    assert _no_nul(parsed) and len(parsed) <= len(value)


_SCALARS = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers()
    | ODD_TEXT
    | st.none()
    | st.booleans()
    | st.floats(allow_nan=True, allow_infinity=True).map(np.float64)
    | st.floats(width=32, allow_nan=True, allow_infinity=True).map(np.float32)
    | st.integers(-(2**63), 2**63 - 1).map(np.int64)
    | st.booleans().map(np.bool_)
)


@given(
    st.recursive(
        _SCALARS,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ODD_TEXT, inner, max_size=4),
        max_leaves=12,
    )
)
def test_json_text_means_what_the_standard_library_path_means(value: Any) -> None:
    """orjson writes the common case; its JSON parses to what the slow path's parses to."""
    assert json.loads(to_json_text(value)) == json.loads(_json_text(value))
