"""What-if on a bundled type: the prediction against the simulated plant's own counterfactual,
and scenario files refused naming the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from twinflow.connectors.simulator import Plant, PlantConfig
from twinflow.core.errors import ConfigError
from twinflow.core.records import TelemetryFrame
from twinflow.flows.cli import main
from twinflow.flows.outputs import telemetry_columns
from twinflow.flows.whatif import check_steps, read_whatif, what_if
from twinflow.flows.whatif_machines import SimulatedDynamics
from twinflow.operators.catalog import CATALOG

#: Six twins, all faulty: motor-006, the second motor, gets the overheating fault.
CONFIG = PlantConfig(
    n_twins=6,
    duration_s=4 * 3600.0,
    seed=11,
    fault_fraction=1.0,
    bad_message_rate=0.0,
    raw_message_rate=0.0,
)
TWIN, INDEX = "motor-006", 5
DERATE = {"twin": TWIN, "horizon": "1h", "scenarios": [
    {"name": "derate now", "steps": [{"command": "derate", "params": {"fraction": 0.7}}]},
]}  # fmt: skip


def run_until(plant: Plant, t0: float, state: Any = None) -> tuple[list[TelemetryFrame], Any]:
    """The twin's frames up to ``t0`` (and the partition's state there), or from ``state`` on."""
    part = plant.partition(INDEX, CONFIG.n_twins, state)
    frames = []
    while not part.done and (state is not None or part.chunk * 60 + CONFIG.start_epoch < t0):
        frames += [i for i in part.next_chunk() if isinstance(i, TelemetryFrame)]
    return frames, part.snapshot()


def mean(frames: list[TelemetryFrame], signal: str, a: float, b: float) -> float:
    v = np.concatenate([f.signals[signal][(f.times >= a) & (f.times < b)] for f in frames])
    return float(v.mean())


@pytest.fixture(scope="module")
def plant_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float, dict[str, float]]:
    """A run's outputs up to mid-fault, and the true winding temperature 30-60 min later
    without a command and after a derate to 0.7 at that moment."""
    plant = Plant(CONFIG)
    (fault,) = [f for f in plant.fault_specs if f.twin_id == TWIN]
    assert fault.kind == "overheating"
    history, state = run_until(plant, (fault.onset + fault.failure) / 2)
    t0 = float(history[-1].times[-1])
    out = tmp_path_factory.mktemp("run")
    part = out / "telemetry" / "twin_type=motor"
    part.mkdir(parents=True)
    frames = [pl.DataFrame(telemetry_columns(f)) for f in history]
    pl.concat(frames).write_parquet(part / "part-0-0.parquet")
    (out / "faults.json").write_text(json.dumps([f.to_json() for f in plant.faults]))
    without, _ = run_until(Plant(CONFIG), 0.0, state)
    state.twins[0].machine.command("derate", {"fraction": 0.7})
    derated, _ = run_until(Plant(CONFIG), 0.0, state)
    window = (t0 + 1800.0, t0 + 3600.0)
    truth = {
        "without": mean(without, "winding_temp", *window),
        "derated": mean(derated, "winding_temp", *window),
    }
    return out, t0, truth


def test_derate_now_agrees_with_the_simulated_counterfactual(
    plant_run: tuple[Path, float, dict[str, float]],
) -> None:
    out, t0, truth = plant_run
    report = what_if(out, read_whatif(DERATE, Path("derate.yaml")))
    assert [o.name for o in report.outcomes] == ["no change", "derate now"]
    assert report.time == t0
    base, derate = report.outcomes
    predicted = {
        "without": base.mean("winding_temp", 1800.0, 3600.0, t0),
        "derated": derate.mean("winding_temp", 1800.0, 3600.0, t0),
    }
    # the state estimate: no change follows the true machine within a few degrees
    assert predicted["without"] == pytest.approx(truth["without"], abs=3.0)
    effect = predicted["derated"] - predicted["without"]  # type: ignore[operator]
    true_effect = truth["derated"] - truth["without"]
    assert true_effect < -10.0  # the fault makes the derate count
    assert effect == pytest.approx(true_effect, rel=0.25)
    doc = report.to_json()
    assert [s["name"] for s in doc["scenarios"]] == ["no change", "derate now"]
    assert len(doc["scenarios"][1]["signals"]["winding_temp"]) == 4  # 15 min blocks of 1 h
    assert doc["scenarios"][0]["failure_change_hours"] in (0.0, None)


def test_twinflow_whatif_prints_and_writes_the_comparison(
    plant_run: tuple[Path, float, dict[str, float]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out, t0, _ = plant_run
    spec = tmp_path / "hot.yaml"
    spec.write_text(
        "horizon: 30m\nscenarios:\n  - name: hot day\n    steps: [{change: {ambient: 8}}]\n"
        "  - name: fixed\n    fault: none\n"
    )
    at = datetime.fromtimestamp(t0 - 600.0, UTC).isoformat()
    target = tmp_path / "report.json"
    args = ["whatif", str(out), str(spec), "--twin", TWIN, "--at", at, "--json", str(target)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"what-if for {TWIN} (motor)" in printed and "[hot day]" in printed
    doc = json.loads(target.read_text())
    temps = {s["name"]: s["signals"]["winding_temp"][-1] for s in doc["scenarios"]}
    assert temps["hot day"] > temps["no change"] + 4.0  # 8 degC hotter air, 10 min lag
    assert temps["fixed"] < temps["no change"]  # without the fault it runs cooler


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"scenarios": []}, "scenarios must be a non-empty list"),
        ({"scenarios": [{"name": "a"}], "horizn": "1h"}, "unknown field 'horizn'; did you mean"),
        ({"scenarios": [{"steps": []}]}, r"scenarios\[0\]\.name is required"),
        ({"scenarios": [{"name": "a"}, {"name": "a"}]}, r"scenarios\[1\]\.name 'a' appears twice"),
        ({"scenarios": [{"name": "a", "steps": [{}]}]}, r"steps\[0\]: give exactly one of"),
        (
            {"scenarios": [{"name": "a", "steps": [{"set": {"x": 1}, "change": {"y": 1}}]}]},
            r"give exactly one of command, set or change \(got set, change\)",
        ),
        (
            {"scenarios": [{"name": "a", "steps": [{"set": {"ambient": 1}, "params": {}}]}]},
            r"steps\[0\]\.params: only a command takes params",
        ),
        (
            {"scenarios": [{"name": "a", "steps": [{"set": {"ambient": "warm"}}]}]},
            r"scenarios\[0\]\.steps\[0\]\.set\.ambient = 'warm': expected a number",
        ),
        (
            {
                "fault": {"kind": "overheating", "severity": 2, "failure_in": "1h"},
                "scenarios": [{"name": "a"}],
            },
            r"fault\.severity must be in \[0, 1\], got 2",
        ),
        (
            {"fault": {"kind": "overheating"}, "scenarios": [{"name": "a"}]},
            r"fault\.failure_in is required",
        ),
    ],
)
def test_bad_scenario_files_are_refused_naming_the_field(data: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        read_whatif(data, Path("s.yaml"))
    assert str(err.value).startswith("s.yaml")


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"command": "explode"}, r"steps\[0\]\.command = 'explode': motor has no such command"),
        (
            {"command": "derate", "params": {"fraction": 3}},
            r"steps\[0\]\.params: fraction=3 is outside",
        ),
        ({"command": "derate"}, r"steps\[0\]\.params: missing parameter 'fraction'"),
        ({"set": {"ambiant": 30}}, r"steps\[0\]\.set\.ambiant: not an input of motor's dynamics"),
        ({"at": "2h", "change": {"ambient": 1}}, r"steps\[0\]\.at is at or beyond the horizon"),
    ],
)
def test_steps_the_type_cannot_take_are_refused_naming_the_field(
    step: dict[str, Any], message: str
) -> None:
    whatif = read_whatif({"horizon": "1h", "scenarios": [{"name": "a", "steps": [step]}]},
                         Path("s.yaml"))  # fmt: skip
    dyn = SimulatedDynamics("motor")
    dyn.start({"winding_temp": 90.0, "load_pct": 80.0}, CONFIG.start_epoch, None, 0.0)
    with pytest.raises(ConfigError, match=message):
        check_steps(whatif, CATALOG["motor"], dyn.inputs())


def test_a_twin_without_telemetry_is_a_clear_error(tmp_path: Path) -> None:
    whatif = read_whatif(DERATE, Path("derate.yaml"))
    with pytest.raises(ConfigError, match="no telemetry under"):
        what_if(tmp_path, whatif)
