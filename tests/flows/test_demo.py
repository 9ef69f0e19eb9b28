"""A seeded short demo run, scored against the simulator's ground truth, and the CLI."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from twinflow.connectors.files import read_jsonl, read_parquet_dir
from twinflow.flows.cli import main
from twinflow.flows.demo import run_demo
from twinflow.flows.evaluation import EXPECTED_DIAGNOSIS


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("demo")
    summary = run_demo(twins=21, duration_s=3 * 3600, seed=7, out_dir=out, progress=None)
    return summary, out


def test_every_fault_kind_is_detected_before_failure(demo: tuple[dict[str, Any], Path]) -> None:
    summary, _out = demo
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f in summary["faults"]:
        by_kind[f["kind"]].append(f)
    assert set(by_kind) == set(EXPECTED_DIAGNOSIS), "the plant injects every kind of fault"
    for kind, faults in by_kind.items():
        hits = [f for f in faults if f["first_alert"] and f["first_alert"] <= f["failure"]]
        assert hits, f"no {kind} fault was detected before failure"
        assert any(f["diagnosed"] for f in faults), f"no {kind} fault got its diagnosis"
    detected = sum(1 for f in summary["faults"] if f["first_alert"])
    assert detected >= 0.8 * len(summary["faults"])
    assert summary["false_alarms"] <= 2


def test_bad_inputs_end_up_as_dead_letters(demo: tuple[dict[str, Any], Path]) -> None:
    summary, out = demo
    dead = read_jsonl(out / "deadletter.jsonl")
    assert len(dead) == summary["dead_letters"] > 0
    assert {"decode", "validate"} <= {d["stage"] for d in dead}
    assert all(d["reason"] for d in dead)


def test_outputs_and_summary(demo: tuple[dict[str, Any], Path]) -> None:
    summary, out = demo
    for key in (
        "readings",
        "wall_seconds",
        "readings_per_second",
        "alerts",
        "false_alarms",
        "commands",
        "faults",
    ):
        assert key in summary
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["readings"] == summary["readings"] > 0
    for f in on_disk["faults"]:
        assert {"twin_id", "kind", "onset", "failure", "first_alert"} <= f.keys()
        assert f["onset"].endswith("Z") and f["failure"].endswith("Z")
    windows = read_parquet_dir(out / "windows")
    assert windows.height >= 21 * 3 * 12 * 0.95  # 5-minute windows of every twin
    assert windows.schema["start"] == pl.Datetime("us", "UTC")
    telemetry = read_parquet_dir(out / "telemetry")
    assert set(telemetry["twin_type"].unique()) == {"wind_turbine", "pump", "motor"}
    assert read_parquet_dir(out / "twin_states").height > 0
    alerts = read_jsonl(out / "alerts.jsonl")
    assert sum(a["state"] == "raised" for a in alerts) == summary["alerts"]
    commands = read_jsonl(out / "commands.jsonl")
    assert sum(c["status"] == "queued" for c in commands) == summary["commands"]
    # Every command sent to the simulated plant ended, and the derates the plant took
    # showed in the reported values or the device's acknowledgement.
    sent = {c["command_id"] for c in commands if c["status"] == "queued"}
    ended = {c["command_id"] for c in commands if c["status"] in {"succeeded", "failed"}}
    assert sent and ended == sent, summary["command_outcomes"]
    assert summary["command_outcomes"].get("succeeded", 0) == len(sent)
    rollups = read_jsonl(out / "rollups.jsonl")
    assert rollups and {r["asset_id"] for r in rollups} == {"demo-site"}
    assert max(r["twins_in_alarm"] for r in rollups) >= 1
    assert sum(c["status"] == "rejected" for c in commands) == len(summary["commands_held"])


def test_commands_change_what_the_plant_does(demo: tuple[dict[str, Any], Path]) -> None:
    summary, _out = demo
    measured = [c for c in summary["command_effects"] if c.get("effect") is not None]
    assert measured, "the demo derates at least one overheating machine"
    assert all(c["effect"] < 0 for c in measured), "a derate lowers the temperature"


def test_cli_demo_writes_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "demo",
            "--twins",
            "3",
            "--duration",
            "20m",
            "--seed",
            "1",
            "--out",
            str(tmp_path),
            "--quiet",
            "--no-telemetry",
        ]
    )
    assert code == 0
    assert json.loads((tmp_path / "summary.json").read_text())["twins"] == 3
    assert "readings/s" in capsys.readouterr().out
    assert not (tmp_path / "telemetry").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--twins", "0"], "must be at least 1"),
        (["--duration", "soon"], "not a duration"),
        (["--metrics-port", "70000"], "not a TCP port"),
    ],
)
def test_cli_rejects_bad_options(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", *args])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_summary_is_honest_about_late_detections_and_false_alarms() -> None:
    """A fault whose only alert came after its failure is said to be detected after failure
    (not counted as detected); an alert on a twin with no fault is a false alarm, listed with
    the rule that fired."""
    from datetime import UTC, datetime

    from twinflow.core.records import FaultTruth
    from twinflow.flows.evaluation import render, score_faults

    fault = FaultTruth(
        "motor-009",
        "overheating",
        datetime(2026, 1, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 1, 3, tzinfo=UTC),
    )
    alerts = [
        {"state": "raised", "time": "2026-01-01T03:30:00Z", "alert_id": "a", "twin_id": "motor-009",
         "rule": "winding_temperature_high", "diagnosis": "overheating"},
        {"state": "raised", "time": "2026-01-01T00:40:00Z", "alert_id": "b", "twin_id": "wt-001",
         "rule": "anomaly_score", "diagnosis": None},
    ]  # fmt: skip
    rows, false_alarms = score_faults([fault], alerts)
    assert rows[0]["first_alert"] is None
    assert rows[0]["after_failure_alert"] == "2026-01-01T03:30:00Z"
    assert rows[0]["after_failure_hours"] == 0.5
    assert [a["twin_id"] for a in false_alarms] == ["wt-001"]
    summary = {
        "twins": 2, "simulated_hours": 4, "seed": 1, "readings": 1, "wall_seconds": 1.0,
        "readings_per_second": 1, "dead_letters": 0, "late_readings": 0, "alerts": 2,
        "alerts_by_rule": {}, "false_alarms": 1,
        "false_alarm_list": [{k: alerts[1][k] for k in ("twin_id", "rule", "time", "diagnosis")}],
        "faults_detected": 0, "faults_diagnosed": 0, "faults": rows, "rul": [], "commands": 0,
        "command_outcomes": {}, "commands_held": [], "command_effects": [],
    }  # fmt: skip
    text = render(summary)
    assert (
        "NOT detected before failure; detected 0.5 h after failure by winding_temperature_high"
        in text
    )
    assert "wt-001     anomaly_score at 2026-01-01 00:40 (no diagnosis)" in text
