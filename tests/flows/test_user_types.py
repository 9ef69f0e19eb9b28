"""A deployment with its own twin type (``models:``) loads and runs through the flow; a twin
that maps only part of its type's signals gets no dropout for the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from bytewax.testing import TestingSink, TestingSource, run_main

from tests.operators.compressor import DTMI, compressor_frames, write_compressor
from twinflow.core.errors import ConfigError
from twinflow.core.records import TelemetryFrame, WindowFeatures
from twinflow.flows.config import FlowConfig
from twinflow.flows.deploy import load_deployment
from twinflow.flows.telemetry import FlowOutputs, build_flow

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z

DEPLOYMENT = """\
version: 1
site: plant9
models: [models]
services:
  mqtt: {url: "mqtt://127.0.0.1:1883"}
  kafka: {telemetry_topics: [plant9.telemetry]}
twins:
  - id: comp-1
    type: compressor
    protocol: mqtt
    mqtt: {signals: [discharge_pressure, motor_power]}
  - id: comp-2
    type: "dtmi:example:Compressor;1"
    protocol: kafka
  - id: pump-1
    type: pump
    protocol: mqtt
"""


def _load(tmp_path: Path, text: str = DEPLOYMENT) -> Any:
    write_compressor(tmp_path / "models")
    path = tmp_path / "plant.yaml"
    path.write_text(text)
    return load_deployment(path, env={})


def test_a_deployment_names_its_own_types_by_short_name_or_dtmi(tmp_path: Path) -> None:
    dep = _load(tmp_path)
    assert dep.twin_types == {"comp-1": "compressor", "comp-2": "compressor", "pump-1": "pump"}
    assert dep.types["compressor"].model_id == DTMI
    deployed = dep.deployed_types()
    assert deployed["comp-1"].signal_names == {"discharge_pressure", "motor_power"}
    assert "oil_level" in deployed["comp-2"].signal_names
    assert dep.registry().get("comp-2").model_id == DTMI
    assert dep.twins[0].binding.kind is dep.types["compressor"]


def test_unknown_types_and_folders_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"twins\[0\].type = 'compresor': expected one of "):
        _load(tmp_path, DEPLOYMENT.replace("type: compressor", "type: compresor"))
    with pytest.raises(ConfigError, match=r"models\[0\] = .*nowhere.*expected a folder"):
        _load(tmp_path, DEPLOYMENT.replace("models: [models]", "models: [nowhere]"))
    with pytest.raises(ConfigError, match=r"twins\[0\].mqtt.signals\[1\]: 'flow'"):
        _load(tmp_path, DEPLOYMENT.replace("motor_power]", "flow]"))
    with pytest.raises(ConfigError, match=r"twins\[0\].type = 'compressor'"):
        _load(tmp_path, DEPLOYMENT.replace("models: [models]\n", ""))


def _frames(twin: str, signals: dict[str, float], minutes: int) -> list[TelemetryFrame]:
    return compressor_frames(twin, signals, minutes, START)


def test_a_twin_of_a_file_type_runs_through_the_flow(tmp_path: Path) -> None:
    dep = _load(tmp_path)
    # comp-1 maps two signals; comp-2 sends every expected signal but not the optional oil_level
    frames = _frames("comp-1", {"discharge_pressure": 8.0, "motor_power": 120.0}, 40)
    full = {"discharge_pressure": 7.5, "discharge_temp": 80.0, "motor_power": 110.0}
    frames += _frames("comp-2", full, 40)
    windows: list[Any] = []
    alerts: list[Any] = []
    states: list[Any] = []
    dead: list[Any] = []
    flow = build_flow(
        TestingSource(frames),
        FlowOutputs(
            windows=TestingSink(windows),
            alerts=TestingSink(alerts),
            twin_states=TestingSink(states),
            dead_letters=TestingSink(dead),
            commands=TestingSink([]),
        ),
        FlowConfig(window_s=300, lateness_s=30),
        clock=lambda: START + 2400,
        twins=dep.twin_types,
        twin_types=dep.deployed_types(),
        catalog=dep.types,
    )
    run_main(flow)
    assert dead == []
    got = [w for _k, w in windows if isinstance(w, WindowFeatures)]
    assert {w.twin_id for w in got} == {"comp-1", "comp-2"}
    one = [w for w in got if w.twin_id == "comp-1"]
    assert one[0].features["discharge_pressure.mean"] == pytest.approx(8.0, rel=0.01)
    missing = {
        (w.twin_id, k) for w in got for k, v in w.features.items() if k.endswith(".missing") and v
    }
    assert missing == set()
    assert not any(k.startswith(("discharge_temp.", "oil_level.")) for w in one for k in w.features)
    assert [a for _k, a in alerts if "dropout" in a.rule] == []
    last = {s.twin_id: s for _k, s in states}
    assert last["comp-1"].status.value == "synchronized"
    assert last["comp-2"].status.value == "synchronized"  # oil_level is optional


def _inline(tmp_path: Path, profile: str) -> Path:
    """A deployment holding the compressor's profile under ``types:``; only its DTDL is a file."""
    write_compressor(tmp_path / "models")
    (tmp_path / "models" / "compressor.yaml").unlink()
    body = "\n".join("    " + line for line in profile.splitlines() if line.strip())
    path = tmp_path / "plant.yaml"
    path.write_text(
        "version: 1\nmodels: [models]\ntypes:\n  compressor:\n"
        + body
        + "\ntwins:\n  - {id: comp-1, type: compressor, protocol: replay}\n"
    )
    return path


def test_a_profile_may_live_in_the_deployment_file(tmp_path: Path) -> None:
    import pickle

    from tests.operators.compressor import PROFILE

    rules = (
        "rules:\n  hot: {feature: discharge_temp.mean, above: 105, clear: 95, for: 10m,"
        " diagnosis: overheating}\n"
    )
    profile = PROFILE.replace("name: compressor\n", "") + rules
    path = _inline(tmp_path, profile)
    dep = load_deployment(path, env={})
    kind = dep.types["compressor"]
    assert kind.model_id == DTMI and kind.profile_file == str(path)
    section = kind.sections["rules"]
    again = pickle.loads(pickle.dumps(section))  # re-read from the deployment file
    assert again.value == section.value and [r.name for r in again.value] == ["hot"]


def test_an_error_in_an_inline_profile_names_the_deployment_file_and_field(
    tmp_path: Path,
) -> None:
    from tests.operators.compressor import PROFILE

    path = _inline(tmp_path, PROFILE.replace("high: 16", "high: sixteen"))
    with pytest.raises(ConfigError) as info:
        load_deployment(path, env={})
    assert f"{path}: types.compressor.signals.discharge_pressure.high" in str(info.value)
    path = _inline(tmp_path, PROFILE.replace("name: compressor", "name: blower"))
    with pytest.raises(ConfigError, match=r"types\.compressor\.name = 'blower': must be"):
        load_deployment(path, env={})
