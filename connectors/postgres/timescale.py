"""The TimescaleDB layer: DDL generated as text, and detection of the extension.

On a server that offers TimescaleDB, :func:`timescale_ddl` turns the base tables into
hypertables, enables compression with a policy, adds retention policies, and replaces the
plain ``twinflow.telemetry_1m`` view with a continuous aggregate of the same columns
(real-time: it includes rows not materialized yet). The text is generated here rather than
kept in a file so that tests check it even where the extension is not installable, and so
that its intervals come from one validated :class:`TimescaleOptions`.

The migration runner applies it as the optional migration ``1001_timescaledb``, after the
numbered files, only when :func:`detect_timescaledb` says the extension can be used. Tables
that later files add get layers of their own (``1002_timescaledb_rollups``: the asset
roll-up history of 0005), because an applied layer's text is history and never changes.
The replication tables of 0008 and the site summaries of 0010 stay plain tables: their
volume is that of property changes, not of telemetry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from twinflow.connectors.postgres.connection import PostgresError

#: Version and name under which the TimescaleDB layer is recorded as a migration.
TIMESCALE_VERSION = 1001
TIMESCALE_NAME = "timescaledb"
#: Version and name of the layer that makes the roll-up history (0005) a hypertable.
TIMESCALE_ROLLUPS_VERSION = 1002
TIMESCALE_ROLLUPS_NAME = "timescaledb_rollups"


def interval(td: timedelta) -> str:
    """A PostgreSQL interval literal for a positive duration, in its largest whole unit.

    >>> interval(timedelta(days=7)), interval(timedelta(minutes=90)), interval(timedelta(seconds=5))
    ("INTERVAL '7 days'", "INTERVAL '90 minutes'", "INTERVAL '5 seconds'")
    """
    seconds = td.total_seconds()
    if seconds <= 0 or seconds != int(seconds):
        raise PostgresError(f"interval {td!r} must be a positive whole number of seconds")
    whole = int(seconds)
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if whole % size == 0:
            return f"INTERVAL '{whole // size} {unit}'"
    return f"INTERVAL '{whole} seconds'"


@dataclass(frozen=True)
class TimescaleOptions:
    """Chunking, compression, retention and aggregate refresh of the TimescaleDB layer.

    A ``retain_*`` of ``None`` keeps that table's rows forever. Changing an option after the
    layer was applied is refused by the checksum check: write a new migration instead.
    """

    telemetry_chunk: timedelta = timedelta(days=1)
    windows_chunk: timedelta = timedelta(days=7)
    history_chunk: timedelta = timedelta(days=7)
    compress_after: timedelta = timedelta(days=7)
    retain_telemetry: timedelta | None = timedelta(days=365)
    retain_windows: timedelta | None = None
    retain_history: timedelta | None = timedelta(days=365)
    aggregate_refresh_every: timedelta = timedelta(minutes=1)
    aggregate_lookback: timedelta = timedelta(hours=2)

    def __post_init__(self) -> None:
        if self.aggregate_lookback <= timedelta(minutes=1):
            raise PostgresError(
                "TimescaleOptions.aggregate_lookback must exceed the 1 minute bucket, got "
                f"{self.aggregate_lookback}"
            )
        if self.retain_telemetry is not None and self.retain_telemetry <= self.aggregate_lookback:
            raise PostgresError(
                "TimescaleOptions.retain_telemetry must exceed aggregate_lookback, or the "
                "continuous aggregate would refresh over dropped chunks"
            )


#: (table, time column, chunk option, segment-by columns, retention option, its BRIN index)
_HYPERTABLES = (
    (
        "telemetry",
        "time",
        "telemetry_chunk",
        "twin_id, signal",
        "retain_telemetry",
        "telemetry_time_brin",
    ),
    (
        "window_features",
        "window_start",
        "windows_chunk",
        "twin_id",
        "retain_windows",
        "window_features_start_brin",
    ),
    (
        "twin_state_history",
        "time",
        "history_chunk",
        "twin_id",
        "retain_history",
        "twin_state_history_time_brin",
    ),
)


#: Hypertables of layer 1002: tables added after layer 1001 shipped. 1001's text never
#: changes (its checksum is recorded where it was applied); a table a later migration file
#: adds gets a new layer here, applied after the files on old and new databases alike.
_ROLLUP_HYPERTABLES = (
    (
        "asset_rollups",
        "time",
        "history_chunk",
        "asset_id",
        "retain_history",
        "asset_rollups_time_brin",
    ),
)


def _hypertable(spec: tuple[str, str, str, str, str, str], o: TimescaleOptions) -> list[str]:
    """Lines that make one table a compressed hypertable, with its retention policy."""
    table, column, chunk, segment_by, retain, brin = spec
    qualified = f"twinflow.{table}"
    out = [
        f"SELECT create_hypertable('{qualified}', '{column}',",
        f"    chunk_time_interval => {interval(getattr(o, chunk))},",
        "    migrate_data => true, if_not_exists => true);",
        # chunks are time ranges already; the hypertable's own time index replaces BRIN
        f"DROP INDEX IF EXISTS twinflow.{brin};",
        f"ALTER TABLE {qualified} SET (",
        "    timescaledb.compress,",
        f"    timescaledb.compress_segmentby = '{segment_by}',",
        f"    timescaledb.compress_orderby = '{column} DESC');",
        f"SELECT add_compression_policy('{qualified}',",
        f"    compress_after => {interval(o.compress_after)}, if_not_exists => true);",
    ]
    keep = getattr(o, retain)
    if keep is not None:
        out += [
            f"SELECT add_retention_policy('{qualified}',",
            f"    drop_after => {interval(keep)}, if_not_exists => true);",
        ]
    out.append("")
    return out


def timescale_ddl(options: TimescaleOptions | None = None) -> str:
    """The SQL of the TimescaleDB layer (runs in one transaction; idempotent where it can be).

    >>> sql = timescale_ddl()
    >>> "create_hypertable('twinflow.telemetry'" in sql and "timescaledb.continuous" in sql
    True
    """
    o = options or TimescaleOptions()
    out = [
        "-- TimescaleDB layer of the twinflow schema (generated by connectors.postgres.timescale)",
        "CREATE EXTENSION IF NOT EXISTS timescaledb;",
        "",
        "-- the plain per-minute view is replaced by a continuous aggregate below",
        "DROP VIEW IF EXISTS twinflow.telemetry_1m;",
        "",
    ]
    for spec in _HYPERTABLES:
        out += _hypertable(spec, o)
    out += [
        "CREATE MATERIALIZED VIEW twinflow.telemetry_1m",
        "WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS",
        "SELECT",
        "    time_bucket(INTERVAL '1 minute', time) AS bucket,",
        "    twin_id,",
        "    signal,",
        "    count(value) AS samples,",
        "    avg(value) AS mean,",
        "    min(value) AS min,",
        "    max(value) AS max,",
        "    stddev_samp(value) AS stddev",
        "FROM twinflow.telemetry",
        "GROUP BY bucket, twin_id, signal",
        "WITH NO DATA;",
        "SELECT add_continuous_aggregate_policy('twinflow.telemetry_1m',",
        f"    start_offset => {interval(o.aggregate_lookback)},",
        "    end_offset => INTERVAL '1 minute',",
        f"    schedule_interval => {interval(o.aggregate_refresh_every)},",
        "    if_not_exists => true);",
        "",
        "-- signal_minutes reads the continuous aggregate (same signature and columns)",
        "CREATE OR REPLACE FUNCTION twinflow.signal_minutes(",
        "    p_twin_id text, p_signal text, p_from timestamptz, p_to timestamptz)",
        "RETURNS TABLE (bucket timestamptz, samples bigint, mean double precision,",
        "    min double precision, max double precision, stddev double precision)",
        "LANGUAGE sql STABLE AS $$",
        "    SELECT a.bucket, a.samples, a.mean, a.min, a.max, a.stddev",
        "    FROM twinflow.telemetry_1m AS a",
        "    WHERE a.twin_id = p_twin_id AND a.signal = p_signal",
        "      AND a.bucket >= p_from AND a.bucket < p_to",
        "    ORDER BY a.bucket",
        "$$;",
    ]
    return "\n".join(out) + "\n"


def timescale_rollups_ddl(options: TimescaleOptions | None = None) -> str:
    """The SQL of layer 1002: ``twinflow.asset_rollups`` (migration 0005) as a hypertable.

    Chunked, compressed and retained like ``twin_state_history``, segmented by asset.

    >>> "create_hypertable('twinflow.asset_rollups', 'time'" in timescale_rollups_ddl()
    True
    """
    o = options or TimescaleOptions()
    out = [
        "-- TimescaleDB layer of the asset roll-ups (generated by connectors.postgres.timescale)",
        "CREATE EXTENSION IF NOT EXISTS timescaledb;",
        "",
    ]
    for spec in _ROLLUP_HYPERTABLES:
        out += _hypertable(spec, o)
    return "\n".join(out)


#: The generated layers, in the order they apply: (version, name, DDL of the options).
TIMESCALE_LAYERS: tuple[tuple[int, str, Callable[[TimescaleOptions | None], str]], ...] = (
    (TIMESCALE_VERSION, TIMESCALE_NAME, timescale_ddl),
    (TIMESCALE_ROLLUPS_VERSION, TIMESCALE_ROLLUPS_NAME, timescale_rollups_ddl),
)


@dataclass(frozen=True)
class TimescaleSupport:
    """What the server offers: the extension's installed and available versions, preloading."""

    installed: str | None
    available: str | None
    preloaded: bool

    @property
    def usable(self) -> bool:
        """Installed already, or available and loaded at server start (which it requires)."""
        return self.installed is not None or (self.available is not None and self.preloaded)

    def describe(self) -> str:
        if self.installed:
            return f"timescaledb {self.installed} installed"
        if self.available and self.preloaded:
            return f"timescaledb {self.available} available"
        if self.available:
            return (
                f"timescaledb {self.available} available but not in shared_preload_libraries "
                "(add it there and restart the server to use it)"
            )
        return "timescaledb not available on this server"


def detect_timescaledb(conn: Any) -> TimescaleSupport:
    """Ask the server (a psycopg connection) whether TimescaleDB is installed or can be."""
    row = conn.execute(
        "SELECT "
        "(SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'), "
        "(SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'), "
        "current_setting('shared_preload_libraries')"
    ).fetchone()
    installed, available, preload = row
    libs = {lib.strip().strip('"') for lib in (preload or "").split(",")}
    return TimescaleSupport(installed, available, "timescaledb" in libs)
