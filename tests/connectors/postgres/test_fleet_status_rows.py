"""A central instance's site summaries as rows (migration 0010), against a real server.

- the migration applies on an empty database and on one migrated up to 0009, and a sink
  refuses a database that lacks it;
- a summary written twice (two writes, or twice in one batch) is stored once;
- ``fleet_status_latest`` keeps the newest summary per site whatever the arrival order,
  while the history keeps every distinct summary;
- a summary with odd text and a NaN is stored cleaned, as the other records are.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.connectors.postgres.test_series import database, query
from tests.services.postgres import Postgres
from twinflow.connectors.postgres import PostgresSink, PostgresSinkError, migrate
from twinflow.core.records import Severity
from twinflow.core.times import utc
from twinflow.operators.replication.fleet_status import SiteStatus, Twin, summary

pytestmark = [pytest.mark.services, pytest.mark.timeout(90)]

T0 = 1_780_000_000.0


@pytest.fixture(scope="module")
def server() -> Iterator[Postgres]:
    with Postgres() as pg:
        yield pg


def status(site: str, at: float, in_alarm: int = 0, **changes: Any) -> SiteStatus:
    """A site's summary at ``at`` (epoch s) with ``in_alarm`` twins in a warning alarm."""
    twins = {f"{site}-{i}": Twin(status="ok") for i in range(3)}
    for i in range(in_alarm):
        twins[f"{site}-{i}"] = Twin(
            status="ok", alarms={"a": Severity.WARNING}, rules=("overheat",)
        )
    base = replace(
        summary(site, twins),
        time=utc(at),
        link="up",
        last_received_ms=int(at * 1000) + 50,
        last_written_ms=int(at * 1000),
    )
    return replace(base, **changes)


def write(url: str, *batches: list[SiteStatus]) -> None:
    """Each batch through its own sink partition (a new writer: a replay after a restart)."""
    for items in batches:
        part = PostgresSink(url, batch_rows=100).build_part("fleet", "pg-0", None)
        part.write_batch(items)
        assert part.snapshot() is None
        part.close()


def history(url: str) -> list[tuple[Any, ...]]:
    return query(
        url,
        "SELECT site, time, twins_in_alarm, link FROM twinflow.fleet_status "
        "ORDER BY site, time, stored_at",
    )


def latest(url: str) -> dict[str, tuple[datetime, int, str]]:
    rows = query(url, "SELECT site, time, twins_in_alarm, link FROM twinflow.fleet_status_latest")
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def test_the_migration_applies_on_an_empty_database(
    server: Postgres, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = database(server, request, tmp_path)
    for table in ("fleet_status", "fleet_status_latest"):
        assert query(url, "SELECT to_regclass(%s) IS NOT NULL", f"twinflow.{table}") == [(True,)]
    key = query(
        url,
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'fleet_status_key'",
    )
    assert key == [('PRIMARY KEY (site, "time", digest)',)]
    assert migrate(url, use_timescaledb=False) == []  # nothing left to apply


def test_the_migration_applies_on_a_database_at_0009_and_the_sink_waits_for_it(
    server: Postgres, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = database(server, request, tmp_path, upto=9)
    assert query(url, "SELECT to_regclass('twinflow.fleet_status')") == [(None,)]
    part = PostgresSink(url, retry_initial_s=0.01).build_part("fleet", "pg-0", None)
    part.write_batch([status("north", T0)])
    with pytest.raises(PostgresSinkError, match=r"has not applied 0010_fleet_status: "):
        part.snapshot()  # the schema check refuses: no retry cures it
    with pytest.raises(PostgresSinkError):
        part.close()
    assert [m.label for m in migrate(url, use_timescaledb=False)] == ["0010_fleet_status"]
    write(url, [status("north", T0)])
    assert latest(url) == {"north": (utc(T0), 0, "up")}


def test_a_summary_written_twice_is_stored_once(
    server: Postgres, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = database(server, request, tmp_path)
    one, two = status("north", T0), status("north", T0 + 5, in_alarm=1)
    fleet = status("fleet", T0 + 5, in_alarm=1, sites=2)
    write(url, [one, two, fleet], [one, two, fleet, two])  # a replay, and a duplicate in it
    assert history(url) == [
        ("fleet", utc(T0 + 5), 1, "up"),
        ("north", utc(T0), 0, "up"),
        ("north", utc(T0 + 5), 1, "up"),
    ]
    assert latest(url) == {"fleet": (utc(T0 + 5), 1, "up"), "north": (utc(T0 + 5), 1, "up")}
    updated = query(url, "SELECT updated_at FROM twinflow.fleet_status_latest ORDER BY site")
    write(url, [two])  # the same summary again changes nothing, not even updated_at
    assert query(url, "SELECT updated_at FROM twinflow.fleet_status_latest ORDER BY site") == (
        updated
    )
    (doc,) = query(url, "SELECT doc FROM twinflow.fleet_status_latest WHERE site = 'fleet'")
    assert doc[0] == fleet.to_json()


def test_latest_keeps_the_newest_per_site_whatever_the_order(
    server: Postgres, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = database(server, request, tmp_path)
    new, old = status("north", T0 + 10, in_alarm=2), status("north", T0, in_alarm=1)
    south = status("south", T0 + 3)
    write(url, [new, south], [old])  # a late, older summary in a later batch
    write(url, [status("south", T0 + 1, in_alarm=3), old])  # and in one batch with others
    assert latest(url) == {"north": (utc(T0 + 10), 2, "up"), "south": (utc(T0 + 3), 0, "up")}
    assert len(history(url)) == 4  # every distinct summary is history

    # A site that goes silent: no new write, so the same time; the newest arrival wins, and
    # a summary of an older receipt at that time does not (a replayed one).
    silent = replace(new, link="silent", link_since_ms=new.last_received_ms)
    write(url, [silent])
    assert latest(url)["north"] == (utc(T0 + 10), 2, "silent")
    earlier = replace(new, last_received_ms=(new.last_received_ms or 0) - 20, central_pending=3)
    write(url, [earlier])
    assert latest(url)["north"] == (utc(T0 + 10), 2, "silent")
    rows = query(
        url,
        "SELECT link FROM twinflow.fleet_status WHERE site = 'north' AND time = %s "
        "ORDER BY stored_at",
        utc(T0 + 10),
    )
    assert rows == [("up",), ("silent",), ("up",)]  # both summaries of that time are kept


def test_odd_text_and_a_nan_are_stored_cleaned(
    server: Postgres, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = database(server, request, tmp_path)
    odd = status(
        "ed\x00ge",
        T0,
        worst_health=math.nan,
        worst_twin="pump\x00\ud800",
        edge_connected=False,
        edge_pending=7,
    )
    write(url, [odd])
    (row,) = query(
        url,
        "SELECT site, worst_health, worst_twin, edge_connected, edge_pending, "
        "doc->>'worst_health', last_received FROM twinflow.fleet_status_latest",
    )
    assert row[:6] == ("ed\ufffdge", None, "pump\ufffd?", False, 7, None)
    assert row[6] == utc((odd.last_received_ms or 0) / 1000)
