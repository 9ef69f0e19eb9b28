"""``twinflow plan``: a run's RUL estimates and a deployment's costs in, a plan out (a file,
PostgreSQL); bad input is a clear error."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from textwrap import dedent

import polars as pl
import pytest
from jsonschema import Draft202012Validator

from tests.services.postgres import Postgres
from twinflow.connectors.postgres import migrate
from twinflow.connectors.postgres.connection import connect
from twinflow.flows.cli import main

T0 = datetime(2026, 1, 5, 6, tzinfo=UTC)
H = timedelta(hours=1)
SCHEMA = Path(__file__).resolve().parents[2] / "operators" / "schemas" / "maintenance_plan.v1.json"
COSTS = """
maintenance:
  horizon: 2d
  slot: 12h
  crew_hours_per_day: 8
  types:
    motor: {action: rewind, planned_cost: 1000, planned_duration: 4h,
            unplanned_cost: 10000, unplanned_duration: 1d}
"""

#: (twin, window end, rul hours): motor-1 degrades (20 h at the end), motor-2 is healthy.
WINDOWS = [
    ("motor-1", T0 - 2 * H, 400.0),
    ("motor-1", T0 - 1 * H, 30.0),
    ("motor-1", T0, 20.0),
    ("motor-2", T0 - 1 * H, float("inf")),
    ("motor-2", T0, None),  # no estimate in its newest window: the one before counts
]


def run_outputs(folder: Path) -> Path:
    """A run's ``--out`` folder with window parts as the file sink writes them."""
    part = folder / "windows" / "part=0"
    part.mkdir(parents=True)
    rows = [
        {
            "twin_id": t,
            "twin_type": "motor",
            "start": end - 5 * 60 * timedelta(seconds=1),
            "end": end,
            "rul_hours": h,
            "rul_low_hours": None if h is None else 0.9 * h,
            "rul_high_hours": None if h is None else 1.1 * h,
        }
        for t, end, h in WINDOWS
    ]
    pl.DataFrame(rows).write_parquet(part / "part-0-0.parquet")
    return folder


def costs(folder: Path, text: str = COSTS) -> Path:
    path = folder / "costs.yaml"
    path.write_text(dedent(text))
    return path


def test_plan_from_a_runs_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_outputs(tmp_path / "out")
    assert main(["plan", str(out), "--config", str(costs(tmp_path))]) == 0
    printed = capsys.readouterr().out
    assert "2026-01-05T06:00:00Z  motor-1      rewind" in printed
    doc = json.loads((out / "maintenance_plan.json").read_text())
    Draft202012Validator(json.loads(SCHEMA.read_text())).validate(doc)
    assert doc["time"] == "2026-01-05T06:00:00Z"
    items = {i["twin_id"]: i for i in doc["items"]}
    assert (items["motor-1"]["action"], items["motor-1"]["at"]) == ("rewind", doc["time"])
    assert items["motor-1"]["rul"]["hours"] == 20.0
    assert items["motor-2"]["action"] == "run_to_failure"
    assert items["motor-2"]["rul"]["hours"] is None  # infinite: no trend, no failure expected


def test_at_plans_with_the_estimates_known_then(tmp_path: Path) -> None:
    out = run_outputs(tmp_path / "out")
    target = tmp_path / "earlier.json"
    at = (T0 - 2 * H).isoformat()
    args = ["plan", str(out), "--config", str(costs(tmp_path)), "--at", at, "--json", str(target)]
    assert main(args) == 0
    doc = json.loads(target.read_text())
    (item,) = doc["items"]  # motor-2 had no estimate yet
    assert (item["twin_id"], item["action"], item["rul"]["hours"]) == (
        "motor-1",
        "run_to_failure",
        400.0,
    )
    assert not (out / "maintenance_plan.json").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("flow: {window_s: 60}\n", "no maintenance: section"),
        ("maintenance: {types: {}}\n", "maintenance.types is empty"),
        ("maintenance: {}\nextra: 1\n", "unknown field 'extra'"),
        (
            "maintenance:\n  types: {motor: {planned_cost: 1}}\n",
            "maintenance.types.motor.planned_duration is required",
        ),
    ],
)
def test_bad_cost_files_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    out = run_outputs(tmp_path / "out")
    assert main(["plan", str(out), "--config", str(costs(tmp_path, text))]) == 2
    assert message in capsys.readouterr().err


def test_a_folder_without_estimates_and_a_bad_time_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(costs(tmp_path))
    assert main(["plan", str(tmp_path / "empty"), "--config", config]) == 2
    assert "no windows with RUL estimates" in capsys.readouterr().err
    out = str(run_outputs(tmp_path / "out"))
    assert main(["plan", out, "--config", config, "--at", "tomorrow"]) == 2
    assert "--at 'tomorrow': expected an ISO 8601 time" in capsys.readouterr().err
    assert main(["plan", out, "--config", config, "--at", "2026-01-01T00:00:00Z"]) == 2
    assert "no twin has an RUL estimate yet" in capsys.readouterr().err


@pytest.mark.services
@pytest.mark.timeout(120)
def test_plan_from_postgresql_is_stored_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Postgres() as pg:
        url = pg.create_database("plan")
        migrate(url, use_timescaledb=False)
        with connect(url) as conn:
            for twin, end, hours in WINDOWS:
                conn.execute(
                    "INSERT INTO twinflow.window_features (twin_id, twin_type, window_start, "
                    "window_end, features, rul_hours, rul_low_hours, rul_high_hours) "
                    "VALUES (%s, 'motor', %s, %s, '{}', %s, %s, %s)",
                    (twin, end - 5 * 60 * timedelta(seconds=1), end, hours,
                     None if hours is None else 0.9 * hours,
                     None if hours is None else 1.1 * hours),
                )  # fmt: skip
        args = ["plan", url, "--config", str(costs(tmp_path)), "--db", url]
        args += ["--json", str(tmp_path / "plan.json")]
        assert main(args) == 0
        assert "stored in PostgreSQL" in capsys.readouterr().out
        assert main(args) == 0
        assert "already stored in PostgreSQL" in capsys.readouterr().out
        doc = json.loads((tmp_path / "plan.json").read_text())
        with connect(url) as conn:
            plans = conn.execute(
                "SELECT plan_id::text, expected_cost, document->>'schema' "
                "FROM twinflow.maintenance_plans"
            ).fetchall()
            latest = conn.execute(
                "SELECT twin_id, action, at, rul_hours FROM twinflow.maintenance_plan_latest "
                "ORDER BY twin_id"
            ).fetchall()
    assert plans == [(doc["plan_id"], doc["expected_cost"], "twinflow.maintenance_plan")]
    assert latest == [("motor-1", "rewind", T0, 20.0), ("motor-2", "run_to_failure", None, None)]


@pytest.mark.services
@pytest.mark.timeout(120)
def test_plan_goes_to_a_kafka_topic_of_the_deployment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.connectors.test_kafka import read_back
    from tests.services.kafka import KafkaBroker, create_topic, unique_topic

    out = run_outputs(tmp_path / "out")
    with KafkaBroker() as broker:
        topic = create_topic(broker.bootstrap, unique_topic("plans"))
        deployment = costs(
            tmp_path,
            dedent(f"""
            version: 1
            services:
              kafka: {{bootstrap: "{broker.bootstrap}", telemetry_topics: [plant.telemetry]}}
            twins:
              - {{id: motor-1, type: motor, protocol: kafka}}
              - {{id: motor-2, type: motor, protocol: kafka}}
            """)
            + COSTS,
        )
        args = ["plan", str(out), "--config", str(deployment), "--kafka-topic", topic]
        assert main(args) == 0
        assert f"sent to Kafka topic {topic}" in capsys.readouterr().out
        (message,) = read_back(broker.bootstrap, topic)
    doc = json.loads(message.value())
    assert message.key() == doc["plan_id"].encode()
    assert doc == json.loads((out / "maintenance_plan.json").read_text())


def test_kafka_topic_needs_a_kafka_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = run_outputs(tmp_path / "out")
    args = ["plan", str(out), "--config", str(costs(tmp_path)), "--kafka-topic", "plans"]
    assert main(args) == 2
    assert "has no services.kafka to send it to" in capsys.readouterr().err


def test_every_plans_again_and_writes_only_a_changed_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = run_outputs(tmp_path / "out")
    config = str(costs(tmp_path))
    args = ["plan", str(out), "--config", config, "--every", "1ms", "--rounds", "3"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.count("maintenance plan ") == 1
    assert printed.count("estimates unchanged") == 2
    assert main([*args, "--at", "2026-01-05T06:00:00Z"]) == 2
    assert "--every re-plans from the newest estimates" in capsys.readouterr().err


def test_the_report_shows_the_plan_beside_the_outputs(tmp_path: Path) -> None:
    from twinflow.flows.report import write_report

    out = run_outputs(tmp_path / "out")
    assert main(["plan", str(out), "--config", str(costs(tmp_path))]) == 0
    page = write_report(out).read_text()
    plan = json.loads((out / "maintenance_plan.json").read_text())
    assert "<h2>Maintenance plan</h2>" in page and plan["plan_id"] in page
    first, second = page.index("motor-1"), page.index("motor-2")
    assert first < second  # the planned action before the twin left to run to failure
    assert "rewind" in page and "run_to_failure" in page
