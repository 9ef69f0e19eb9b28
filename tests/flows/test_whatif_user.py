"""What-if on a type defined by files (the compressor of the tests), with dynamics the user
names by import path: its own rule fires in the scenario that overheats it, not in the
baseline."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.operators.compressor import PROFILE, compressor_frames, write_compressor
from twinflow.core.errors import ConfigError
from twinflow.flows.cli import main
from twinflow.flows.outputs import telemetry_columns
from twinflow.flows.whatif import read_whatif, what_if
from twinflow.operators.catalog import load_catalogue

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
RULES = """\
rules:
  hot: {feature: discharge_temp.mean, above: 105, clear: 95, for: 10m, diagnosis: overheating}
"""


class CompressorDynamics:
    """Discharge pressure follows its setpoint (30 s lag); temperature heads for ambient plus
    8 degC per bar (5 min lag), plus 30 degC at full ``fouling``; power is 15 kW per bar.
    Readings carry 1 % noise from a fixed seed (noise-free signals would look stuck)."""

    def __init__(self) -> None:
        self.state = {"setpoint": 8.0, "ambient": 20.0, "pressure": 8.0, "temp": 84.0}
        self.rng = np.random.default_rng(0)

    def start(
        self, last: Mapping[str, float], time: float, fault: str | None, severity: float
    ) -> None:
        self.state["pressure"] = self.state["setpoint"] = last["discharge_pressure"]
        self.state["temp"] = last["discharge_temp"]
        self.state["ambient"] = last["discharge_temp"] - 8.0 * last["discharge_pressure"]
        self.rng = np.random.default_rng(7)

    def inputs(self) -> dict[str, float]:
        return {"setpoint": self.state["setpoint"], "ambient": self.state["ambient"]}

    def set_input(self, name: str, value: float) -> None:
        self.state[name] = value

    def command(self, name: str, params: Mapping[str, float]) -> None:
        self.state["setpoint"] = params["bar"]

    def advance(
        self, times: np.ndarray, fault: str | None, severity: np.ndarray
    ) -> dict[str, np.ndarray]:
        s = self.state
        k = np.arange(1, len(times) + 1)
        p = s["setpoint"] + (s["pressure"] - s["setpoint"]) * np.exp(-k / 30.0)
        extra = 30.0 * severity if fault == "fouling" else 0.0
        target = s["ambient"] + 8.0 * p + extra
        temp = target + (s["temp"] - target) * np.exp(-k / 300.0)
        s["pressure"], s["temp"] = float(p[-1]), float(temp[-1])
        out = {"discharge_pressure": p, "discharge_temp": temp, "motor_power": 15.0 * p}
        return {k: v * (1.0 + 0.01 * self.rng.standard_normal(len(v))) for k, v in out.items()}


def recorded(folder: Path, twins: tuple[str, ...] = ("comp-1",)) -> Path:
    """A run's outputs: 40 min of each compressor at 8 bar, 84 degC, 120 kW."""
    signals = {"discharge_pressure": 8.0, "discharge_temp": 84.0, "motor_power": 120.0}
    part = folder / "telemetry" / "twin_type=compressor"
    part.mkdir(parents=True)
    for i, twin in enumerate(twins):
        frames = compressor_frames(twin, signals, 40, START)
        pl.concat([pl.DataFrame(telemetry_columns(f)) for f in frames]).write_parquet(
            part / f"part-{i}-0.parquet"
        )
    return folder


SCENARIOS = {
    "twin": "comp-1",
    "horizon": "1h",
    "dynamics": f"{__name__}:CompressorDynamics",
    "scenarios": [
        {"name": "11 bar", "steps": [{"command": "set_pressure", "params": {"bar": 11}}]},
        {"name": "fouling", "fault": {"kind": "fouling", "severity": 0.5, "failure_in": "1h"}},
    ],
}


def test_a_user_type_runs_forward_with_its_own_dynamics_and_rules(tmp_path: Path) -> None:
    write_compressor(tmp_path / "models", PROFILE + RULES)
    catalog = load_catalogue([tmp_path / "models"])
    out = recorded(tmp_path / "out")
    report = what_if(out, read_whatif(SCENARIOS, Path("s.yaml")), catalog=catalog)
    base, high, fouled = report.outcomes
    t0 = report.time
    assert base.mean("discharge_pressure", 1800, 3600, t0) == pytest.approx(8.0, abs=0.1)
    assert high.mean("discharge_pressure", 1800, 3600, t0) == pytest.approx(11.0, abs=0.05)
    # 11 bar heads for 20 + 88 = 108 degC: the profile's rule (above 105 for 10 min) fires
    assert high.mean("discharge_temp", 3000, 3600, t0) == pytest.approx(108.0, abs=1.0)
    assert base.alerts == []
    hot = [a for a in high.alerts if a["rule"] == "hot"]
    assert hot and hot[0]["state"] == "raised" and hot[0]["diagnosis"] == "overheating"
    assert 15.0 < hot[0]["after_min"] < 60.0  # crosses 105 degC, then holds 10 min
    assert fouled.mean("discharge_temp", 3000, 3600, t0) > base.mean(
        "discharge_temp", 3000, 3600, t0
    )  # type: ignore[operator]


def test_dynamics_that_cannot_be_imported_name_the_field(tmp_path: Path) -> None:
    write_compressor(tmp_path / "models", PROFILE)
    catalog = load_catalogue([tmp_path / "models"])
    out = recorded(tmp_path / "out")
    for path, message in (
        ("no_such_module:X", r"s\.yaml: dynamics = 'no_such_module:X': cannot import it"),
        ("not a path", r"expected an import path 'package.module:Class'"),
        (f"{__name__}:recorded", r"is not a dynamics class"),
    ):
        whatif = read_whatif({**SCENARIOS, "dynamics": path}, Path("s.yaml"))
        with pytest.raises(ConfigError, match=message):
            what_if(out, whatif, catalog=catalog)
    bare = read_whatif({**SCENARIOS, "dynamics": None}, Path("s.yaml"))
    with pytest.raises(ConfigError, match="'compressor' is not simulated by twinflow"):
        what_if(out, bare, catalog=catalog)


def test_twinflow_whatif_takes_the_types_of_a_deployment_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_compressor(tmp_path / "models", PROFILE + RULES)
    out = recorded(tmp_path / "out")
    deployment = tmp_path / "plant.yaml"
    deployment.write_text(
        "version: 1\nmodels: [models]\n"
        "twins:\n  - {id: comp-1, type: compressor, protocol: replay}\n"
    )
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps(SCENARIOS))
    assert main(["whatif", str(out), str(spec), "--config", str(deployment)]) == 0
    printed = capsys.readouterr().out
    assert "what-if for comp-1 (compressor)" in printed
    assert "alarm hot raised at +" in printed
    assert main(["whatif", str(out), str(spec)]) == 2  # without it the type is unknown
    assert "is of type 'compressor', unknown here" in capsys.readouterr().err


def test_twinflow_whatif_runs_every_twin_of_an_asset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_compressor(tmp_path / "models", PROFILE + RULES)
    out = recorded(tmp_path / "out", ("comp-1", "comp-2"))
    deployment = tmp_path / "plant.yaml"
    deployment.write_text(
        "version: 1\nmodels: [models]\nassets:\n  - {id: skid-1, type: skid}\ntwins:\n"
        "  - {id: comp-1, type: compressor, protocol: replay, part_of: skid-1}\n"
        "  - {id: comp-2, type: compressor, protocol: replay, part_of: skid-1}\n"
    )
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({**SCENARIOS, "twin": None}))
    report = tmp_path / "skid.json"
    args = ["whatif", str(out), str(spec), "--config", str(deployment), "--asset", "skid-1"]
    assert main([*args, "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "what-if for comp-1" in printed and "what-if for comp-2" in printed
    doc = json.loads(report.read_text())
    assert doc["asset"] == "skid-1"
    assert [t["twin_id"] for t in doc["twins"]] == ["comp-1", "comp-2"]
    assert main([*args[:-1], "skid-9"]) == 2
    assert "--asset 'skid-9': not an asset of" in capsys.readouterr().err
    assert main(["whatif", str(out), str(spec), "--asset", "skid-1"]) == 2
    assert "--asset needs --config" in capsys.readouterr().err
