"""`twinflow simulate` plays only the bundled twin types: twins of a deployment's own types are
left out with a warning, and a deployment of nothing else is refused with a clear error."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from tests.operators.compressor import write_compressor
from twinflow.core.errors import ConfigError
from twinflow.flows.cli import main
from twinflow.flows.deploy import Deployment, load_deployment
from twinflow.flows.simulate import plant_for, playable, simulate

HEAD = """\
version: 1
models: [models]
services:
  mqtt: {url: "mqtt://127.0.0.1:1"}
simulator: {twins: 3}
twins:
"""
MIXED = HEAD + (
    "  - {id: wt-001, type: wind_turbine, protocol: mqtt}\n"
    "  - {id: comp-1, type: compressor, protocol: mqtt}\n"
)
ONLY_OWN = HEAD + "  - {id: comp-1, type: compressor, protocol: mqtt}\n"


def _write(tmp_path: Path, text: str) -> Path:
    write_compressor(tmp_path / "models")
    path = tmp_path / "plant.yaml"
    path.write_text(text)
    return path


def _load(tmp_path: Path, text: str) -> Deployment:
    return load_deployment(_write(tmp_path, text), env={})


def test_twins_of_the_deployments_own_types_are_left_out_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dep = _load(tmp_path, MIXED)
    with caplog.at_level(logging.WARNING, logger="twinflow.flows.simulate"):
        played = playable(dep)
    assert [t.twin_id for t in played.twins] == ["wt-001"]
    assert [r.getMessage() for r in caplog.records] == [
        f"{dep.path}: twin 'comp-1' is a compressor, a type of the deployment's models: "
        "folders; twinflow simulate plays only the bundled types (motor, pump, wind_turbine) "
        "and serves no device for it"
    ]
    assert dict(plant_for(played).twins)["wt-001"] == "wind_turbine"
    assert playable(played) is played  # nothing more to leave out


def test_the_plant_names_a_twin_of_an_own_type(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"twin 'comp-1' is a compressor, a type of the "):
        plant_for(_load(tmp_path, MIXED))


def test_a_deployment_of_own_types_only_is_refused(tmp_path: Path) -> None:
    dep = _load(tmp_path, ONLY_OWN)
    message = (
        r"twinflow simulate plays only the bundled twin types \(motor, pump, wind_turbine\), "
        r"and every twin here is of the deployment's own types: 'comp-1' \(compressor\)"
    )
    with pytest.raises(ConfigError, match=message):
        asyncio.run(simulate(dep))


def test_the_command_line_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", str(_write(tmp_path, ONLY_OWN))]) == 2
    err = capsys.readouterr().err
    assert "twinflow: error: " in err and "plays only the bundled twin types" in err
