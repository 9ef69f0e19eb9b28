"""The profile's health: section on a type defined only by files: learned references,
derived features (ratio, difference), a window model by import path, RUL indicators, and
one test per validation rule naming file and field."""

from __future__ import annotations

import math
import pickle
from dataclasses import replace
from pathlib import Path

import pytest

from tests.operators.compressor import PROFILE, write_compressor
from twinflow.core.errors import ConfigError
from twinflow.core.records import WindowFeatures
from twinflow.core.times import utc
from twinflow.operators.catalog import TwinType, load_catalogue
from twinflow.operators.health import DerivedFeatures, HealthTracker
from twinflow.operators.health_profile import ScoreIndex, health_of


def oil_loss(temp: float, pressure: float, *, kelvin_per_bar: float) -> dict[str, float]:
    """A user's window model: discharge temperature against what the pressure implies."""
    return {"excess": temp - kelvin_per_bar * pressure, "ignored": 0.0}


HEALTH = """\
health:
  references:
    discharge_temp: {driver: motor_power, low: 0, high: 250, bins: 25, lag: 5m, gate: 5}
    oil_level: {gate: 2}
  derived:
    power_per_bar: {ratio: [motor_power.mean, discharge_pressure.mean]}
    pressure_swing: {difference: [discharge_pressure.max, discharge_pressure.min]}
  models:
    thermal:
      model: tests.operators.test_health_profile:oil_loss
      inputs: {temp: discharge_temp.mean, pressure: discharge_pressure.mean}
      outputs: {excess: temp_excess}
      params: {kelvin_per_bar: 8}
  indicators:
    overheating: {feature: discharge_temp.residual, failure: 30, floor: 1}
    efficiency: {feature: power_per_bar, failure: 10, direction: falling, fit: linear,
                 baseline: -20, history: 12}
"""
T0 = 1_767_225_600.0


def compressor(tmp_path: Path, extra: str) -> TwinType:
    write_compressor(tmp_path / "models", PROFILE + extra)
    return load_catalogue([tmp_path / "models"])["compressor"]


def win(k: int, features: dict[str, float]) -> WindowFeatures:
    return WindowFeatures(
        twin_id="c-1",
        twin_type="compressor",
        start=utc(T0 + k * 300.0),
        end=utc(T0 + (k + 1) * 300.0),
        features=features,
        counts={},
    )


def healthy(k: int, heat: float = 0.0) -> dict[str, float]:
    return {
        "motor_power.mean": 160.0,
        "discharge_pressure.mean": 8.0,
        "discharge_pressure.max": 8.5,
        "discharge_pressure.min": 7.75,
        "discharge_temp.mean": 85.0 + heat,
        "discharge_temp.slope": 0.0,
        "oil_level.mean": 70.0,
    }


def test_the_section_is_read_in_file_order(tmp_path: Path) -> None:
    h = health_of(compressor(tmp_path, HEALTH))
    assert [r.signal for r in h.references] == ["discharge_temp", "oil_level"]
    ref = h.references[0]
    assert (ref.driver, ref.low, ref.high, ref.bins, ref.lag_s, ref.gate) == (
        "motor_power", 0.0, 250.0, 25, 300.0, 5.0
    )  # fmt: skip
    assert h.references[1].driver is None and h.references[1].gate == 2.0
    assert [(d.key, d.op) for d in h.derived] == [
        ("power_per_bar", "ratio"), ("pressure_swing", "difference")
    ]  # fmt: skip
    assert h.models[0].params == {"kelvin_per_bar": 8.0}
    eff = h.indicators[1]
    assert (eff.sign, eff.fit, eff.baseline, eff.history, eff.floor) == (
        -1.0, "linear", -20.0, 12, None
    )  # fmt: skip


def test_derived_features_models_and_residuals(tmp_path: Path) -> None:
    kind = compressor(tmp_path, HEALTH)
    d = DerivedFeatures("compressor", signals=())
    for k in range(12):
        out = d.update(win(k, healthy(k)), kind=kind)
    assert out["power_per_bar"] == 20.0 and out["pressure_swing"] == 0.75
    assert out["temp_excess"] == 85.0 - 64.0 and "ignored" not in out
    assert out["discharge_temp.residual"] == pytest.approx(0.0)
    assert out["oil_level.residual"] == pytest.approx(0.0)
    hot = d.update(win(12, healthy(12, heat=6.0)), kind=kind)
    assert hot["discharge_temp.residual"] == pytest.approx(6.0)
    empty = d.update(win(13, {}), kind=kind)
    assert math.isnan(empty["power_per_bar"]) and math.isnan(empty["temp_excess"])


def test_ratio_is_nan_unless_the_denominator_is_positive(tmp_path: Path) -> None:
    kind = compressor(tmp_path, HEALTH)
    f = {**healthy(0), "discharge_pressure.mean": 0.0}
    out = DerivedFeatures("compressor", signals=()).update(win(0, f), kind=kind)
    assert math.isnan(out["power_per_bar"])


def test_indicators_give_a_rul_and_the_worst_wins(tmp_path: Path) -> None:
    kind = compressor(tmp_path, HEALTH)
    h = HealthTracker("c-1", "compressor")
    assert HealthTracker("c-1", "compressor").update(win(0, healthy(0))) is None  # no kind
    for k in range(12):
        r = h.update(win(k, healthy(k)), kind)
    assert r is not None and math.isinf(r.hours)
    for k in range(12, 40):
        r = h.update(win(k, healthy(k, heat=1.5 * math.exp((k - 12) / 6.0))), kind)
    assert r is not None and r.indicator == "overheating" and math.isfinite(r.hours)
    assert set(h.estimators) == {"overheating", "efficiency"}
    assert len(pickle.dumps(h)) < 4000  # the section travels by reference, not in the state


def test_a_type_without_the_section_has_no_health(tmp_path: Path) -> None:
    kind = compressor(tmp_path, "")
    assert health_of(kind).indicators == ()
    assert HealthTracker("c-1", "compressor").update(win(0, healthy(0)), kind) is None


def scored(k: int, score: float) -> WindowFeatures:
    return replace(win(k, healthy(k)), anomaly_score=score, anomaly_threshold=2.0)


def test_without_indicators_the_anomaly_score_is_the_health_index(tmp_path: Path) -> None:
    kind = compressor(tmp_path, "")
    assert health_of(kind).score_index() == ScoreIndex()
    h = HealthTracker("c-1", "compressor")
    estimates = [h.update(scored(k, 0.8 + 0.02 * (k % 3)), kind) for k in range(30)]
    assert estimates[22] is None and estimates[24] is not None  # 24 windows of baseline
    r = estimates[-1]
    assert r is not None and r.indicator == "anomaly_score" and math.isinf(r.hours)
    for k in range(30, 90):
        r = h.update(scored(k, 0.8 + 0.05 * (k - 30)), kind)
    assert r is not None and math.isfinite(r.hours) and r.low_hours <= r.hours <= r.high_hours


def test_a_given_index_runs_beside_the_indicators(tmp_path: Path) -> None:
    kind = compressor(tmp_path, HEALTH + "  index: {failure: 2.5, warmup: 4, coverage: 0.8}\n")
    index = health_of(kind).score_index()
    assert index == ScoreIndex(failure=2.5, warmup=4, coverage=0.8)
    h = HealthTracker("c-1", "compressor")
    for k in range(6):
        h.update(scored(k, 0.8), kind)
    assert h.score is not None and h.score.failure == 2.5 and h.estimators


BAD = [
    ("health: {refs: {}}", "unknown field 'health.refs'"),
    ("health: {references: {t: {bins: 4}}}", "health.references.t.driver is required"),
    ("health: {references: {t: {driver: d, low: 5, high: 5}}}",
     "health.references.t.high must be above low"),
    ("health: {references: {t: {driver: d, bins: 0}}}", "health.references.t.bins must be"),
    ("health: {references: {t: {driver: d, span: 1}}}", "health.references.t.span must be"),
    ("health: {references: {t: {lag: soon}}}", "health.references.t.lag"),
    ("health: {references: {t: {gate: 0}}}", "health.references.t.gate must be > 0"),
    ("health: {references: {t: {colour: red}}}", "unknown field 'health.references.t.colour'"),
    ("health: {derived: {x: {}}}", "health.derived.x.ratio: give exactly one"),
    ("health: {derived: {x: {ratio: [a, b], difference: [a, b]}}}",
     "health.derived.x.ratio: give exactly one"),
    ("health: {derived: {x: {ratio: [a]}}}", "health.derived.x.ratio = ['a']: expected [a, b]"),
    ("health: {models: {m: {outputs: {r: x}}}}", "health.models.m.model is required"),
    ("health: {models: {m: {model: nowhere.at_all:f, outputs: {r: x}}}}",
     "health.models.m.model = 'nowhere.at_all:f': cannot import it"),
    ("health: {models: {m: {model: tests.operators.test_health_profile:oil_loss}}}",
     "health.models.m.outputs is required"),
    ("health: {models: {m: {model: tests.operators.test_health_profile:oil_loss, "
     "inputs: {temp: a, pressure: b}, outputs: {excess: x}}}}",
     "health.models.m.params: inputs and params do not fit the model"),
    ("health: {models: {m: {model: tests.operators.test_health_profile:oil_loss, "
     "inputs: {temp: a, pressure: b}, outputs: {excess: x}, params: {kelvin_per_bar: hot}}}}",
     "health.models.m.params.kelvin_per_bar = 'hot': expected a number"),
    ("health: {indicators: {i: {failure: 3}}}", "health.indicators.i.feature is required"),
    ("health: {indicators: {i: {feature: a.mean}}}", "health.indicators.i.failure is required"),
    ("health: {indicators: {i: {feature: a.mean, failure: 0}}}",
     "health.indicators.i.failure must be > 0"),
    ("health: {indicators: {i: {feature: a.mean, failure: 1, direction: up}}}",
     "health.indicators.i.direction"),
    ("health: {indicators: {i: {feature: a.mean, failure: 1, fit: cubic}}}",
     "health.indicators.i.fit"),
    ("health: {indicators: {i: {feature: a.mean, failure: 1, floor: -1}}}",
     "health.indicators.i.floor must be > 0"),
    ("health: {indicators: {i: {feature: a.mean, failure: 1, history: 1}}}",
     "health.indicators.i.history must be"),
    ("health: {indicators: {i: {feature: discharge_temp.residual, failure: 1}}}",
     "health.indicators.i.feature = 'discharge_temp.residual': no health.references entry"),
    ("health: {index: {failure: 0}}", "health.index.failure must be > 0"),
    ("health: {index: {warmup: 1}}", "health.index.warmup must be"),
    ("health: {index: {coverage: 1}}", "health.index.coverage must be in (0, 1)"),
    ("health: {index: {limit: fast}}", "health.index.limit"),
    ("health: {index: {colour: red}}", "unknown field 'health.index.colour'"),
]  # fmt: skip


@pytest.mark.parametrize(("extra", "message"), BAD, ids=[m for _, m in BAD])
def test_each_validation_rule_names_file_and_field(
    tmp_path: Path, extra: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        compressor(tmp_path, extra + "\n")
    text = str(info.value)
    assert "compressor.yaml: " in text and message in text, text
