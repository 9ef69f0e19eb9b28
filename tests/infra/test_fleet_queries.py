"""The fleet dashboard's SQL runs on a real PostgreSQL with twinflow's migrations applied."""

from __future__ import annotations

import re

import psycopg
import pytest

from tests.infra.test_alert_rules import fleet_queries
from tests.services.postgres import Postgres
from twinflow.connectors.postgres import migrate

pytestmark = pytest.mark.services


def test_every_fleet_panel_query_runs_on_the_migrated_schema() -> None:
    queries = fleet_queries()
    assert queries
    with Postgres() as pg:
        migrate(pg.url)
        with psycopg.connect(pg.url) as conn:
            for sql in queries:
                # Grafana's macro, expanded as its PostgreSQL data source does for a 1-day range
                concrete = re.sub(
                    r"\$__timeFilter\((\w+)\)",
                    r"\1 BETWEEN now() - interval '1 day' AND now()",
                    sql,
                )
                assert "$" not in concrete, concrete
                conn.execute(concrete).fetchall()  # raises on an unknown table or column
