"""The sink's tables: staging columns and the SQL that moves staged rows into place.

Each flush COPYs a table's rows into a temporary staging table (``ON COMMIT DELETE ROWS``:
it empties itself when the flush commits) and then runs the table's *merges*, ``INSERT ...
SELECT ... FROM stage ON CONFLICT``, in the same transaction. The unique keys make a batch
written twice (a replay after recovery, or a retry after a commit whose answer was lost)
store its rows once:

- ``DO NOTHING`` for facts that never change: telemetry readings, alert and command
  transitions, dead letters;
- ``DO UPDATE`` for rows that a later record replaces: a window computed again after late
  data (the newest arrival wins), the latest twin state (never by an older one), an alarm's
  lifecycle row (raised, then cleared; cleared is final), an asset's roll-up at the same
  time and its latest roll-up (never by an older one), a site's latest summary (never by an
  older one; its history keys on the document's digest and does nothing). Updates are
  skipped when nothing would change, so the row counts tell new data from replays.

Within one batch, ``DISTINCT ON`` keeps one row per key (``seq`` is the arrival order),
because ``ON CONFLICT DO UPDATE`` may not touch a row twice in one statement.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Merge:
    """One statement that moves staged rows into ``target``; ``primary`` counts duplicates."""

    target: str
    sql: str
    primary: bool = False


@dataclass(frozen=True)
class Table:
    """A kind of record: its staging table and the merges that store it."""

    name: str
    columns: tuple[tuple[str, str], ...]
    merges: tuple[Merge, ...]

    @property
    def stage(self) -> str:
        return f"twinflow_stage_{self.name}"

    @property
    def types(self) -> list[str]:
        """PostgreSQL type names of the staging columns, for binary COPY."""
        return [t for _, t in self.columns]

    def create_stage_sql(self) -> str:
        cols = ", ".join(f"{c} {t}" for c, t in self.columns)
        return f"CREATE TEMP TABLE IF NOT EXISTS {self.stage} ({cols}) ON COMMIT DELETE ROWS"

    def copy_sql(self, into: str | None = None) -> str:
        """``COPY <stage or into> (columns) FROM STDIN (FORMAT BINARY)``."""
        cols = ", ".join(c for c, _ in self.columns)
        return f"COPY {into or self.stage} ({cols}) FROM STDIN (FORMAT BINARY)"


TELEMETRY = Table(
    "telemetry",
    (
        ("twin_id", "text"),
        ("signal", "text"),
        ("time", "timestamptz"),
        ("value", "float8"),
        ("quality", "int2"),
    ),
    (
        Merge(
            "telemetry",
            "INSERT INTO twinflow.telemetry (twin_id, signal, time, value, quality) "
            "SELECT twin_id, signal, time, value, quality FROM twinflow_stage_telemetry "
            "ON CONFLICT (twin_id, signal, time) DO NOTHING",
            primary=True,
        ),
    ),
)

#: The staged telemetry's merges when the database has the compact layout (migration 0009):
#: the pairs not seen before get series ids, then the readings go to ``telemetry_points``.
SERIES_TELEMETRY_MERGES = (
    Merge(
        "series",
        "INSERT INTO twinflow.series (twin_id, signal) "
        "SELECT DISTINCT twin_id, signal FROM twinflow_stage_telemetry ORDER BY 1, 2 "
        "ON CONFLICT (twin_id, signal) DO NOTHING",
    ),
    Merge(
        "telemetry",
        "INSERT INTO twinflow.telemetry_points (series, time, value, quality) "
        "SELECT s.series, t.time, t.value, t.quality FROM twinflow_stage_telemetry AS t "
        "JOIN twinflow.series AS s USING (twin_id, signal) "
        "ON CONFLICT (series, time) DO NOTHING",
        primary=True,
    ),
)

#: The staging table of series tuples (the compact layout's replays): its rows already carry
#: their series ids, so the merge is one insert that skips readings stored before. Not in
#: :data:`TABLES`: the writer uses it for telemetry frames on a database keyed by series.
SERIES_STAGE = Table(
    "telemetry_points",
    (("series", "int4"), ("time", "timestamptz"), ("value", "float8"), ("quality", "int2")),
    (
        Merge(
            "telemetry",
            "INSERT INTO twinflow.telemetry_points (series, time, value, quality) "
            "SELECT series, time, value, quality FROM twinflow_stage_telemetry_points "
            "ON CONFLICT (series, time) DO NOTHING",
            primary=True,
        ),
    ),
)

#: ``COPY`` of the binary tuples that ``copy_columns.series_tuples`` builds.
SERIES_COPY_SQL = (
    "COPY twinflow.telemetry_points (series, time, value, quality) FROM STDIN (FORMAT BINARY)"
)

_WINDOW_COLS = (
    "twin_id, twin_type, window_start, window_end, features, counts, late, anomaly_score, "
    "anomaly_threshold, rul_indicator, rul_hours, rul_low_hours, rul_high_hours, health"
)
_WINDOW_SET = ", ".join(
    f"{c} = EXCLUDED.{c}" for c in _WINDOW_COLS.split(", ") if c not in ("twin_id", "window_start")
)

WINDOWS = Table(
    "window_features",
    (
        ("seq", "int8"),
        ("twin_id", "text"),
        ("twin_type", "text"),
        ("window_start", "timestamptz"),
        ("window_end", "timestamptz"),
        ("features", "text"),
        ("counts", "text"),
        ("late", "int4"),
        ("anomaly_score", "float8"),
        ("anomaly_threshold", "float8"),
        ("rul_indicator", "text"),
        ("rul_hours", "float8"),
        ("rul_low_hours", "float8"),
        ("rul_high_hours", "float8"),
        ("health", "float8"),
    ),
    (
        Merge(
            "window_features",
            f"INSERT INTO twinflow.window_features AS w ({_WINDOW_COLS}) "
            "SELECT DISTINCT ON (twin_id, window_start) twin_id, twin_type, window_start, "
            "window_end, features::jsonb, counts::jsonb, late, anomaly_score, "
            "anomaly_threshold, rul_indicator, rul_hours, rul_low_hours, rul_high_hours, health "
            "FROM twinflow_stage_window_features ORDER BY twin_id, window_start, seq DESC "
            f"ON CONFLICT (twin_id, window_start) DO UPDATE SET {_WINDOW_SET} "
            "WHERE ROW(w.*) IS DISTINCT FROM ROW(EXCLUDED.*)",
            primary=True,
        ),
    ),
)

_STATE_COLS = (
    "twin_id, twin_type, time, status, signals, readings, dead_letters, properties, health"
)
_STATE_SET = (
    "twin_type = EXCLUDED.twin_type, status = EXCLUDED.status, signals = EXCLUDED.signals, "
    "readings = EXCLUDED.readings, dead_letters = EXCLUDED.dead_letters, "
    "properties = EXCLUDED.properties, health = EXCLUDED.health"
)
_STATE_SELECT = (
    "twin_id, twin_type, time, status, signals::jsonb, readings, dead_letters, "
    "properties::jsonb, health::jsonb FROM twinflow_stage_twin_state"
)

TWIN_STATES = Table(
    "twin_state",
    (
        ("seq", "int8"),
        ("twin_id", "text"),
        ("twin_type", "text"),
        ("time", "timestamptz"),
        ("status", "text"),
        ("signals", "text"),
        ("readings", "int8"),
        ("dead_letters", "int8"),
        ("properties", "text"),
        ("health", "text"),
    ),
    (
        Merge(
            "twin_state_history",
            f"INSERT INTO twinflow.twin_state_history AS h ({_STATE_COLS}) "
            f"SELECT DISTINCT ON (twin_id, time) {_STATE_SELECT} "
            "ORDER BY twin_id, time, seq DESC "
            f"ON CONFLICT (twin_id, time) DO UPDATE SET {_STATE_SET} "
            "WHERE ROW(h.*) IS DISTINCT FROM ROW(EXCLUDED.*)",
            primary=True,
        ),
        Merge(
            "twin_state",
            f"INSERT INTO twinflow.twin_state AS s ({_STATE_COLS}) "
            f"SELECT DISTINCT ON (twin_id) {_STATE_SELECT} "
            "ORDER BY twin_id, time DESC, seq DESC "
            f"ON CONFLICT (twin_id) DO UPDATE SET time = EXCLUDED.time, {_STATE_SET}, "
            "updated_at = now() "
            "WHERE EXCLUDED.time > s.time OR (EXCLUDED.time = s.time AND "
            "(s.twin_type, s.status, s.signals, s.readings, s.dead_letters, s.properties, "
            "s.health) IS DISTINCT FROM (EXCLUDED.twin_type, EXCLUDED.status, EXCLUDED.signals, "
            "EXCLUDED.readings, EXCLUDED.dead_letters, EXCLUDED.properties, EXCLUDED.health))",
        ),
    ),
)

#: An alert row changes only for a newer transition of the same state, or raised -> cleared.
_ALERT_NEWER = (
    "(EXCLUDED.state = 'cleared' AND a.state = 'raised') OR "
    "(EXCLUDED.state = a.state AND EXCLUDED.updated_at > a.updated_at)"
)

ALERTS = Table(
    "alerts",
    (
        ("seq", "int8"),
        ("alert_id", "text"),
        ("twin_id", "text"),
        ("twin_type", "text"),
        ("rule", "text"),
        ("state", "text"),
        ("severity", "text"),
        ("diagnosis", "text"),
        ("message", "text"),
        ("evidence", "text"),
        ("time", "timestamptz"),
        ("raised_at", "timestamptz"),
    ),
    (
        Merge(
            "alert_events",
            "INSERT INTO twinflow.alert_events (alert_id, state, time, twin_id, rule, "
            "severity, diagnosis, message, evidence) "
            "SELECT alert_id, state, time, twin_id, rule, severity, diagnosis, message, "
            "evidence::jsonb FROM twinflow_stage_alerts ORDER BY seq "
            "ON CONFLICT (alert_id, state, time) DO NOTHING",
            primary=True,
        ),
        Merge(
            "alerts",
            "INSERT INTO twinflow.alerts AS a (alert_id, twin_id, twin_type, rule, state, "
            "severity, diagnosis, message, evidence, raised_at, cleared_at, updated_at) "
            "SELECT DISTINCT ON (alert_id) alert_id, twin_id, twin_type, rule, state, "
            "severity, diagnosis, message, evidence::jsonb, raised_at, "
            "CASE WHEN state = 'cleared' THEN time END, time "
            "FROM twinflow_stage_alerts "
            "ORDER BY alert_id, (state = 'cleared') DESC, time DESC, seq DESC "
            "ON CONFLICT (alert_id) DO UPDATE SET state = EXCLUDED.state, "
            "severity = EXCLUDED.severity, diagnosis = EXCLUDED.diagnosis, "
            "message = EXCLUDED.message, evidence = EXCLUDED.evidence, "
            "cleared_at = EXCLUDED.cleared_at, updated_at = EXCLUDED.updated_at "
            f"WHERE {_ALERT_NEWER}",
        ),
    ),
)

COMMANDS = Table(
    "commands",
    (
        ("seq", "int8"),
        ("command_id", "text"),
        ("status", "text"),
        ("twin_id", "text"),
        ("twin_type", "text"),
        ("name", "text"),
        ("params", "text"),
        ("issued_at", "timestamptz"),
        ("expires_at", "timestamptz"),
        ("reason", "text"),
        ("detail", "text"),
        ("origin", "text"),
        ("status_at", "timestamptz"),
        ("attempt", "int4"),
    ),
    (
        Merge(
            "commands",
            "INSERT INTO twinflow.commands (command_id, status, twin_id, twin_type, name, "
            "params, issued_at, expires_at, reason, detail, origin, status_at, attempt) "
            "SELECT command_id, status, twin_id, twin_type, name, params::jsonb, issued_at, "
            "expires_at, reason, detail, origin, status_at, attempt "
            "FROM twinflow_stage_commands ORDER BY seq "
            "ON CONFLICT (command_id, status) DO NOTHING",
            primary=True,
        ),
    ),
)

_ROLLUP_COLS = (
    "asset_id, asset_type, time, twins_total, twins_in_alarm, in_alarm_info, "
    "in_alarm_warning, in_alarm_critical, worst_health, worst_twin"
)
_ROLLUP_VALUES = [c for c in _ROLLUP_COLS.split(", ") if c not in ("asset_id", "time")]
_ROLLUP_SET = ", ".join(f"{c} = EXCLUDED.{c}" for c in _ROLLUP_VALUES)
_ROLLUP_DIFFERS = (
    f"({', '.join(f'r.{c}' for c in _ROLLUP_VALUES)}) IS DISTINCT FROM "
    f"({', '.join(f'EXCLUDED.{c}' for c in _ROLLUP_VALUES)})"
)

ROLLUPS = Table(
    "asset_rollups",
    (
        ("seq", "int8"),
        ("asset_id", "text"),
        ("asset_type", "text"),
        ("time", "timestamptz"),
        ("twins_total", "int4"),
        ("twins_in_alarm", "int4"),
        ("in_alarm_info", "int4"),
        ("in_alarm_warning", "int4"),
        ("in_alarm_critical", "int4"),
        ("worst_health", "float8"),
        ("worst_twin", "text"),
    ),
    (
        Merge(
            "asset_rollups",
            f"INSERT INTO twinflow.asset_rollups AS r ({_ROLLUP_COLS}) "
            f"SELECT DISTINCT ON (asset_id, time) {_ROLLUP_COLS} "
            "FROM twinflow_stage_asset_rollups ORDER BY asset_id, time, seq DESC "
            f"ON CONFLICT (asset_id, time) DO UPDATE SET {_ROLLUP_SET} "
            f"WHERE {_ROLLUP_DIFFERS}",
            primary=True,
        ),
        Merge(
            "asset_rollups_latest",
            f"INSERT INTO twinflow.asset_rollups_latest AS r ({_ROLLUP_COLS}) "
            f"SELECT DISTINCT ON (asset_id) {_ROLLUP_COLS} "
            "FROM twinflow_stage_asset_rollups ORDER BY asset_id, time DESC, seq DESC "
            f"ON CONFLICT (asset_id) DO UPDATE SET time = EXCLUDED.time, {_ROLLUP_SET}, "
            "updated_at = now() "
            f"WHERE EXCLUDED.time > r.time OR (EXCLUDED.time = r.time AND {_ROLLUP_DIFFERS})",
        ),
    ),
)

_FLEET_COLS = (
    "site, time, sites, twins_reporting, twins_in_alarm, in_alarm_info, in_alarm_warning, "
    "in_alarm_critical, commands_in_flight, worst_health, worst_twin, lowest_rul_h, "
    "lowest_rul_twin, link, link_since, last_received, central_pending, edge_connected, "
    "edge_pending, doc"
)
_FLEET_VALUES = [c for c in _FLEET_COLS.split(", ") if c not in ("site", "time")]
_FLEET_SELECT = _FLEET_COLS.replace("doc", "doc::jsonb AS doc")
#: A site's summaries order by time, then by the central instance's last receipt (which
#: only grows); at a tie the newest arrival that differs wins, as for the asset roll-ups.
_FLEET_ORDER = "(f.time, coalesce(f.last_received, '-infinity'))"
_FLEET_NEW_ORDER = "(EXCLUDED.time, coalesce(EXCLUDED.last_received, '-infinity'))"

FLEET_STATUS = Table(
    "fleet_status",
    (
        ("seq", "int8"),
        ("site", "text"),
        ("time", "timestamptz"),
        ("sites", "int4"),
        ("twins_reporting", "int4"),
        ("twins_in_alarm", "int4"),
        ("in_alarm_info", "int4"),
        ("in_alarm_warning", "int4"),
        ("in_alarm_critical", "int4"),
        ("commands_in_flight", "int4"),
        ("worst_health", "float8"),
        ("worst_twin", "text"),
        ("lowest_rul_h", "float8"),
        ("lowest_rul_twin", "text"),
        ("link", "text"),
        ("link_since", "timestamptz"),
        ("last_received", "timestamptz"),
        ("central_pending", "int4"),
        ("edge_connected", "bool"),
        ("edge_pending", "int4"),
        ("doc", "text"),
    ),
    (
        # every distinct summary once: the key holds the document's digest (0010)
        Merge(
            "fleet_status",
            f"INSERT INTO twinflow.fleet_status ({_FLEET_COLS}) "
            f"SELECT {_FLEET_SELECT} FROM twinflow_stage_fleet_status ORDER BY seq "
            "ON CONFLICT (site, time, digest) DO NOTHING",
            primary=True,
        ),
        Merge(
            "fleet_status_latest",
            f"INSERT INTO twinflow.fleet_status_latest AS f ({_FLEET_COLS}) "
            f"SELECT DISTINCT ON (site) {_FLEET_SELECT} FROM twinflow_stage_fleet_status "
            "ORDER BY site, time DESC, last_received DESC NULLS LAST, seq DESC "
            "ON CONFLICT (site) DO UPDATE SET time = EXCLUDED.time, "
            f"{', '.join(f'{c} = EXCLUDED.{c}' for c in _FLEET_VALUES)}, updated_at = now() "
            f"WHERE {_FLEET_NEW_ORDER} > {_FLEET_ORDER} OR ({_FLEET_NEW_ORDER} = {_FLEET_ORDER} "
            "AND EXCLUDED.doc IS DISTINCT FROM f.doc)",
        ),
    ),
)

DEAD_LETTERS = Table(
    "dead_letters",
    (
        ("dead_letter_id", "text"),
        ("time", "timestamptz"),
        ("stage", "text"),
        ("reason", "text"),
        ("source", "text"),
        ("twin_id", "text"),
        ("readings", "int4"),
        ("payload", "text"),
    ),
    (
        Merge(
            "dead_letters",
            "INSERT INTO twinflow.dead_letters (dead_letter_id, time, stage, reason, source, "
            "twin_id, readings, payload) "
            "SELECT dead_letter_id, time, stage, reason, source, twin_id, readings, payload "
            "FROM twinflow_stage_dead_letters "
            "ON CONFLICT (dead_letter_id) DO NOTHING",
            primary=True,
        ),
    ),
)

SYNC_STATUS = Table(
    "sync_status",
    (
        ("replica", "text"),
        ("twin_id", "text"),
        ("kind", "text"),
        ("property", "text"),
        ("time", "timestamptz"),
        ("state", "text"),
        ("consistency", "text"),
        ("lag_ms", "int8"),
        ("update_id", "text"),
        ("conflicts", "int4"),
        ("link_down_since", "timestamptz"),
    ),
    (
        Merge(
            "sync_status",
            "INSERT INTO twinflow.sync_status (replica, twin_id, kind, property, time, state, "
            "consistency, lag_ms, update_id, conflicts, link_down_since) "
            "SELECT replica, twin_id, kind, property, time, state, consistency, lag_ms, "
            "update_id, conflicts, link_down_since FROM twinflow_stage_sync_status "
            "ON CONFLICT (replica, twin_id, kind, property, time) DO NOTHING",
            primary=True,
        ),
    ),
)

REPLICATED = Table(
    "replicated_writes",
    (
        ("received_by", "text"),
        ("update_id", "text"),
        ("twin_id", "text"),
        ("kind", "text"),
        ("property", "text"),
        ("value", "text"),
        ("stamp_wall_ms", "int8"),
        ("stamp_logical", "int4"),
        ("writer", "text"),
        ("base", "text"),
        ("outcome", "text"),
        ("received_at", "timestamptz"),
    ),
    (
        Merge(
            "replicated_writes",
            "INSERT INTO twinflow.replicated_writes (received_by, update_id, twin_id, kind, "
            "property, value, stamp_wall_ms, stamp_logical, writer, base, outcome, received_at) "
            "SELECT received_by, update_id, twin_id, kind, property, value::jsonb, "
            "stamp_wall_ms, stamp_logical, writer, base::jsonb, outcome, received_at "
            "FROM twinflow_stage_replicated_writes "
            "ON CONFLICT (received_by, update_id) DO NOTHING",
            primary=True,
        ),
    ),
)

#: Every table, in the order a flush writes them.
TABLES: tuple[Table, ...] = (
    TELEMETRY,
    WINDOWS,
    TWIN_STATES,
    ALERTS,
    COMMANDS,
    ROLLUPS,
    FLEET_STATUS,
    DEAD_LETTERS,
    SYNC_STATUS,
    REPLICATED,
)
BY_NAME = {t.name: t for t in TABLES}
