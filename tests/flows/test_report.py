"""``twinflow report``: the page holds what the run's outputs say (alarms, commands, faults,
the evaluation), downsampled to a bounded size, and refuses a folder with no outputs."""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import pytest

from twinflow.connectors.files import read_jsonl
from twinflow.flows.demo import run_demo
from twinflow.flows.report import add_report_parser, run_report, write_report
from twinflow.flows.report.loading import load
from twinflow.flows.report.plots import nice_ticks, time_ticks


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short seeded demo (6 twins, 3 simulated hours: three faults, alarms)."""
    out = tmp_path_factory.mktemp("report") / "out"
    run_demo(twins=6, duration_s=3 * 3600.0, seed=7, out_dir=out, progress=None)
    return out


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    add_report_parser(ap.add_subparsers(dest="command"))
    return ap.parse_args(argv)


def test_report_shows_every_twin_alarm_command_and_fault(
    demo_out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_report(parse(["report", str(demo_out)])) == 0
    path = demo_out / "report.html"
    assert capsys.readouterr().out.strip() == f"report: {path}"
    html = path.read_text()
    assert path.stat().st_mode & 0o077 == 0
    assert "<script" not in html and "http://" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )  # self-contained: nothing fetched at view time
    alerts = read_jsonl(demo_out / "alerts.jsonl")
    faults = json.loads((demo_out / "faults.json").read_text())
    twins = {a["twin_id"] for a in alerts} | {f["twin_id"] for f in faults}
    for twin in twins:
        assert f'id="twin-{twin}"' in html
    raised = sum(1 for a in alerts if a["state"] == "raised")
    # each alarm is a span in the fleet lanes and in each chart of its twin's section
    lanes = html.split("<h2>Twins</h2>")[0]
    assert lanes.count('class="span"') == raised
    for f in faults:
        assert f"{f['kind']} fault failure" in html and f["twin_id"] in html
    assert "Anomaly score" in html and "Remaining useful life" in html
    assert "vibration band power" in html  # the motors' spectra
    assert "faults_detected" in html  # the evaluation from summary.json


def test_report_size_is_bounded_by_downsampling(demo_out: Path, tmp_path: Path) -> None:
    small = write_report(demo_out, tmp_path / "small.html", points=60)
    big = write_report(demo_out, tmp_path / "big.html", points=480)
    assert small.stat().st_size < big.stat().st_size
    data = load(demo_out, points=60)
    assert data.telemetry.group_by("twin_id").len()["len"].max() <= 60  # type: ignore[operator]


def test_report_of_a_run_without_telemetry_or_truth(demo_out: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(demo_out, out)
    shutil.rmtree(out / "telemetry")
    for name in ("summary.json", "faults.json", "report.html"):
        (out / name).unlink(missing_ok=True)
    command = {
        "command_id": "c1",
        "twin_id": "wt-004",
        "twin_type": "wind_turbine",
        "name": "derate",
        "params": {"power_limit_kw": 1500},
        "issued_at": "2026-01-01T02:00:00Z",
    }
    lines = [{**command, "status": s} for s in ("queued", "sent", "succeeded")]
    (out / "commands.jsonl").write_text("".join(json.dumps(c) + "\n" for c in lines))
    html = write_report(out).read_text()
    assert html.count("command derate(power_limit_kw=1500): succeeded") >= 2  # lanes, charts
    assert "<th>by last status</th><td>succeeded 1</td>" in html  # one command, its last status
    assert "No summary.json" in html
    assert "winding_temp" in html  # the signals from the windows' means instead
    assert "fault failure" not in html


def test_report_refuses_a_folder_without_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_report(parse(["report", str(tmp_path)])) == 2
    assert "holds no twinflow outputs" in capsys.readouterr().err
    assert run_report(parse(["report", str(tmp_path / "missing")])) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "summary.json").write_text("{not json")
    assert run_report(parse(["report", str(tmp_path)])) == 2
    assert re.search(r"summary\.json is not valid JSON", capsys.readouterr().err)


def test_ticks_are_round_and_inside() -> None:
    assert nice_ticks(0.2, 0.9) == [0.2, 0.4, 0.6, 0.8]
    assert nice_ticks(-3.0, 1017.0) == [0.0, 500.0, 1000.0]
    ticks = time_ticks(1_767_225_600.0, 1_767_225_600.0 + 6 * 3600)
    assert [label for _t, label in ticks] == [
        "00:00",
        "01:00",
        "02:00",
        "03:00",
        "04:00",
        "05:00",
        "06:00",
    ]
