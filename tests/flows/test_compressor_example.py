"""The compressor example (``infra/examples/compressor/``) and its guide stay true: the type
loads, the deployment loads, and the guide's files and payloads are the example's."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from twinflow.connectors.files import read_parquet_dir
from twinflow.connectors.mqtt.payloads import PayloadDecoder
from twinflow.flows.cli import main
from twinflow.flows.deploy import load_deployment
from twinflow.operators.catalog import load_catalogue

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "infra" / "examples" / "compressor"
GUIDE = ROOT / "docs" / "guide" / "bring-your-own-machine.md"
DTMI = "dtmi:example:plant:Compressor;1"


def test_the_example_type_loads_from_its_folder() -> None:
    types = load_catalogue([EXAMPLE / "models"])
    kind = types["compressor"]
    assert kind.model_id == DTMI and types.resolve(DTMI) is kind
    assert [s.name for s in kind.signals] == [
        "discharge_pressure",
        "discharge_temp",
        "motor_power",
        "oil_level",
    ]
    assert kind.signal("oil_level").optional
    assert {a.name for a in kind.actuators} == {"set_pressure"}


def test_the_example_models_pass_models_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "check", str(EXAMPLE / "models")]) == 0
    out = capsys.readouterr().out
    assert "1 file, 1 interface: all valid" in out
    assert "1 profile, twin types compressor: all valid" in out


def test_the_example_deployment_loads() -> None:
    dep = load_deployment(EXAMPLE / "plant.yaml", env={})
    assert dep.twin_types == {"comp-1": "compressor", "comp-2": "compressor"}
    deployed = dep.deployed_types()
    assert deployed["comp-1"].signal_names == {
        "discharge_pressure",
        "discharge_temp",
        "motor_power",
        "oil_level",
    }
    assert deployed["comp-2"].signal_names == {"discharge_pressure", "motor_power"}


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", GUIDE.read_text(), flags=re.S)


def test_the_guide_shows_the_example_files() -> None:
    shown = [yaml.safe_load(b) for b in _blocks("yaml")]
    profile = yaml.safe_load((EXAMPLE / "models" / "compressor.yaml").read_text())
    deployment = yaml.safe_load((EXAMPLE / "plant.yaml").read_text())
    recorded = yaml.safe_load((EXAMPLE / "recorded.yaml").read_text())
    assert profile in shown
    assert deployment in shown
    assert recorded in shown


def test_the_guides_payloads_decode_for_their_twins() -> None:
    dep = load_deployment(EXAMPLE / "plant.yaml", env={})
    by_topic = {b.telemetry_topic: b for b in dep.bindings("mqtt")}
    sent = re.findall(r"-t (\S+) -m \\\n\s*'(\{.*?\})'", GUIDE.read_text())
    got: dict[str, Any] = {}
    for topic, payload in sent:
        got[by_topic[topic].twin_id] = PayloadDecoder(by_topic[topic]).decode(payload.encode())
    assert set(got) == {"comp-1", "comp-2"}
    t1, v1 = got["comp-1"]
    assert t1 == 1772438400.0 and v1["discharge_temp"] == 81.2
    times, v2 = got["comp-2"]
    assert list(times) == [1772438400.0, 1772438401.0]
    assert set(v2) == {"discharge_pressure", "motor_power"}
    assert v2["motor_power"][0] == pytest.approx(118.4)  # W scaled to kW


def test_the_guides_replay_runs(tmp_path: Path) -> None:
    (shown,) = re.findall(r"```\n(time,discharge_pressure.*?)```", GUIDE.read_text(), flags=re.S)
    header, *rows = shown.strip().splitlines()
    first = rows[0].split(",")
    lines = [header] + [
        f"2026-03-02 08:{m:02d}:{s:02d},{first[1]},{first[2]},{first[3]}"
        for m in range(20)
        for s in range(60)
    ]
    csv = tmp_path / "comp-1.csv"
    csv.write_text("\n".join(lines) + "\n")
    out = tmp_path / "replayed"
    argv = ["replay", str(EXAMPLE / "plant.yaml"), str(csv), "--out", str(out)]
    assert main([*argv, "--tz", "Europe/Berlin"]) == 0
    telemetry = read_parquet_dir(out / "telemetry")
    assert telemetry.height == 1200 and set(telemetry["twin_id"]) == {"comp-1"}
    assert telemetry["time"].min() == datetime(2026, 3, 2, 7, tzinfo=UTC)  # Berlin is UTC+1
    assert read_parquet_dir(out / "windows").height == 4
