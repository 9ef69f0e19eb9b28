"""The profile's physics: section: a user's residual model by import path, its parameters
from the profile, and one test per validation rule naming file and field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.operators.compressor import load_compressor as compressor
from tests.operators.compressor import profile_error
from twinflow.core.records import TelemetryFrame
from twinflow.core.times import utc
from twinflow.operators.catalog import CATALOG
from twinflow.operators.residuals import add_residuals


def polytropic(pressure: np.ndarray, power: np.ndarray, *, kw_per_bar: float) -> dict:
    """A user's model: power against what the discharge pressure implies."""
    return {"residual": power - kw_per_bar * pressure, "ignored": pressure}


NOT_A_FUNCTION = 3

PHYSICS = """\
physics:
  power:
    model: tests.operators.test_physics:polytropic
    inputs: {pressure: discharge_pressure, power: motor_power}
    outputs: {residual: power_residual_kw}
    params: {kw_per_bar: 20}
"""


def frame(kind: str, **signals: list[float]) -> TelemetryFrame:
    n = len(next(iter(signals.values())))
    return TelemetryFrame(
        twin_id="c-1",
        twin_type=kind,
        times=np.array([utc(k).timestamp() for k in range(n)]),
        signals={k: np.asarray(v, dtype=np.float64) for k, v in signals.items()},
    )


def test_a_users_model_by_import_path_with_profile_parameters(tmp_path: Path) -> None:
    kind = compressor(tmp_path, PHYSICS)
    f = frame("compressor", discharge_pressure=[8.0, 10.0], motor_power=[170.0, 200.0])
    out = add_residuals(f, kind)
    assert out.signals["power_residual_kw"].tolist() == [10.0, 0.0]
    assert "ignored" not in out.signals and "residual" not in out.signals
    partial = frame("compressor", discharge_pressure=[8.0])
    assert add_residuals(partial, kind) is partial  # an input missing: nothing added


def test_the_bundled_curves_take_their_constants_from_the_profiles() -> None:
    (curve,) = CATALOG["wind_turbine"].sections["physics"].value
    assert curve.params["rated_kw"] == 2000 and curve.params["cut_out_ms"] == 25
    (pump,) = CATALOG["pump"].sections["physics"].value
    assert pump.params["bep_flow"] == 250
    assert CATALOG["motor"].sections["physics"].value == ()


BAD = [
    ("physics: {p: {inputs: {a: b}, outputs: {r: x}}}", "physics.p.model is required"),
    ("physics: {p: {model: 'no path', outputs: {r: x}}}",
     "physics.p.model = 'no path': expected an import path 'package.module:function'"),
    ("physics: {p: {model: 'tests.nowhere:f', outputs: {r: x}}}",
     "physics.p.model = 'tests.nowhere:f': cannot import it"),
    ("physics: {p: {model: 'tests.operators.test_physics:missing', outputs: {r: x}}}",
     "physics.p.model = 'tests.operators.test_physics:missing': cannot import it"),
    ("physics: {p: {model: 'tests.operators.test_physics:NOT_A_FUNCTION', outputs: {r: x}}}",
     "is not a function"),
    ("physics: {p: {model: 'tests.operators.test_physics:polytropic', outputs: {r: x}}}",
     "physics.p.params: inputs and params do not fit the model"),
    ("physics: {p: {model: 'tests.operators.test_physics:polytropic'}}",
     "physics.p.outputs is required"),
    ("physics: {p: {model: 'tests.operators.test_physics:polytropic', inputs: {a: 1},"
     " outputs: {r: x}}}",
     "physics.p.inputs.a = 1: expected a signal name"),
    ("physics: {p: {model: 'tests.operators.test_physics:polytropic', outputs: {r: x},"
     " inputs: {pressure: a, power: b}, params: {kw_per_bar: high}}}",
     "physics.p.params.kw_per_bar = 'high': expected a number"),
    ("physics: {p: {model: 'm:f', output: {r: x}}}", "unknown field 'physics.p.output'"),
]  # fmt: skip


@pytest.mark.parametrize(("extra", "message"), BAD, ids=[m for _, m in BAD])
def test_each_validation_rule_names_file_and_field(
    tmp_path: Path, extra: str, message: str
) -> None:
    text = profile_error(tmp_path, extra)
    assert "compressor.yaml: " in text and message in text, text
