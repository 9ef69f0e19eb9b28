"""PostgreSQL / TimescaleDB storage: schema migrations and an idempotent Bytewax sink.

- :func:`migrate` / :func:`status`: apply and report the versioned schema
  (``infra/migrations`` plus the generated TimescaleDB layer where the extension exists);
  ``twinflow db migrate|status`` calls them.
- :class:`PostgresSink`: stores telemetry, window features, twin states, alerts, commands,
  asset roll-ups, dead letters, replication's records and a central instance's site
  summaries with COPY in batches, loses no row on a lost connection, duplicates none on a
  replay after recovery.

Needs psycopg 3 (the ``postgres`` extra).
"""

from twinflow.connectors.postgres.connection import PostgresError, PostgresUnavailable, redact
from twinflow.connectors.postgres.migrations import (
    AppliedMigration,
    Migration,
    MigrationError,
    StatusReport,
    load_migrations,
    migrate,
    status,
)
from twinflow.connectors.postgres.sink import PostgresSink, PostgresSinkPartition
from twinflow.connectors.postgres.timescale import (
    TimescaleOptions,
    TimescaleSupport,
    detect_timescaledb,
    timescale_ddl,
)
from twinflow.connectors.postgres.writer import PostgresSinkError

__all__ = [
    "AppliedMigration",
    "Migration",
    "MigrationError",
    "PostgresError",
    "PostgresSink",
    "PostgresSinkError",
    "PostgresSinkPartition",
    "PostgresUnavailable",
    "StatusReport",
    "TimescaleOptions",
    "TimescaleSupport",
    "detect_timescaledb",
    "load_migrations",
    "migrate",
    "redact",
    "status",
    "timescale_ddl",
]
