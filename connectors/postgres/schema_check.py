"""The check a sink's connection makes first: is the database's schema the repository's?"""

from __future__ import annotations

from typing import Any

from twinflow.connectors.postgres.connection import psycopg
from twinflow.connectors.postgres.migrations import MIGRATIONS_TABLE, load_migrations
from twinflow.connectors.postgres.tables import TABLES


def schema_problem(conn: psycopg.Connection[Any], url: str) -> str | None:
    """Why the database at ``url`` (redacted) cannot take the sink's rows, or None.

    Its schema is missing or behind the repository's migrations: no retry cures that, so the
    sink stops with this message.
    """
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (MIGRATIONS_TABLE,)).fetchone()
    if row and row[0]:
        applied = {
            (version, name)
            for version, name in conn.execute(f"SELECT version, name FROM {MIGRATIONS_TABLE}")
        }
        behind = [m.label for m in load_migrations() if (m.version, m.name) not in applied]
        if behind:
            return (
                f"the database {url} has not applied {', '.join(behind)}: bring the "
                "schema up to date with `twinflow db migrate` first"
            )
    targets = sorted({m.target for t in TABLES for m in t.merges})
    row = conn.execute(
        "SELECT array_agg(t) FROM unnest(%s::text[]) AS t WHERE to_regclass(t) IS NULL",
        (["twinflow." + t for t in targets],),
    ).fetchone()
    missing = row[0] if row else None
    if missing:
        return (
            f"the database {url} lacks {', '.join(missing)}: create the schema with "
            "`twinflow db migrate` (twinflow.connectors.postgres.migrations) first"
        )
    return None


__all__ = ["schema_problem"]
