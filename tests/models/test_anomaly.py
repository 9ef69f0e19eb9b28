"""WindowAnomalyDetector and ReferenceCurve."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinflow.models.anomaly import ReferenceCurve, WindowAnomalyDetector

KEYS = [f"s{i}.{stat}" for i in range(8) for stat in ("mean", "std", "min", "max", "missing")]


def window(rng: np.random.Generator, shift: dict[str, float] | None = None) -> dict[str, float]:
    x = {}
    for k in KEYS:
        if k.endswith(".missing"):
            x[k] = 0.0
        else:
            x[k] = 50.0 + 2.0 * rng.standard_normal()
    for k, v in (shift or {}).items():
        x[k] += v
    return x


def warmed(rng: np.random.Generator, **kwargs) -> WindowAnomalyDetector:
    det = WindowAnomalyDetector(**kwargs)
    for _ in range(det.warmup):
        det.learn_one(window(rng))
    return det


def test_warm_up_then_threshold():
    rng = np.random.default_rng(0)
    det = WindowAnomalyDetector(warmup=10)
    assert det.score_one(window(rng)) == 0.0
    for i in range(10):
        assert det.threshold is None and not det.warm
        det.learn_one(window(rng))
        assert det.n_seen == i + 1
    assert det.warm and det.threshold > 0


def test_healthy_stream_raises_few_false_alarms():
    rng = np.random.default_rng(1)
    det = warmed(rng)
    flagged = 0
    for _ in range(1000):
        x = window(rng)
        flagged += det.score_one(x) > det.threshold
        det.learn_one(x)
    assert flagged <= 10


@pytest.mark.parametrize("key", ["s3.mean", "s5.max"])
def test_shift_in_one_feature_is_anomalous_and_explained(key):
    rng = np.random.default_rng(2)
    det = warmed(rng)
    x = window(rng, {key: 40.0})
    assert det.score_one(x) > det.threshold
    assert next(iter(det.explain(x, top=1))) == key


def test_missing_fraction_jump_is_anomalous():
    rng = np.random.default_rng(3)
    det = warmed(rng)
    assert det.score_one(window(rng, {"s1.missing": 0.6})) > det.threshold


def test_nan_and_missing_features_are_skipped():
    rng = np.random.default_rng(4)
    det = warmed(rng)
    x = window(rng)
    x["s0.mean"] = math.nan
    del x["s1.std"]
    x["new.feature"] = 1e9  # unknown after warm-up: ignored
    score = det.score_one(x)
    assert math.isfinite(score) and score < det.threshold
    det.learn_one({"s0.mean": math.inf})
    assert det.scaler.counts["s0.mean"] == det.n_learned - 1 or det.n_learned >= 24


def test_anomalous_windows_are_not_learned():
    rng = np.random.default_rng(5)
    det = warmed(rng)
    before = (det.n_learned, det.scaler.means["s2.mean"])
    for _ in range(50):
        det.learn_one(window(rng, {"s2.mean": 100.0}))
    assert (det.n_learned, det.scaler.means["s2.mean"]) == before
    assert det.n_seen == det.warmup + 50


def test_feature_selection_and_bound():
    rng = np.random.default_rng(6)
    det = warmed(rng, features=("s0.mean", "s1.mean"))
    assert set(det.scaler.counts) == {"s0.mean", "s1.mean"}
    assert det.score_one(window(rng, {"s2.mean": 1000.0})) < det.threshold
    small = warmed(rng, max_features=5)
    assert len(small.scaler.counts) == 5


def test_every_init_parameter_is_stored():
    det = WindowAnomalyDetector(features=("a",), warmup=5, quantile=0.9, margin=2.0, seed=7)
    assert (det.features, det.warmup, det.quantile, det.margin, det.seed) == (
        ("a",),
        5,
        0.9,
        2.0,
        7,
    )


@pytest.mark.parametrize("kwargs", [{"warmup": 1}, {"quantile": 0.0}, {"margin": 0.0}])
def test_invalid_parameters(kwargs):
    with pytest.raises(ValueError):
        WindowAnomalyDetector(**kwargs)


def test_long_run_is_bounded_and_picklable():
    rng = np.random.default_rng(7)
    det = warmed(rng)
    for _ in range(2000):
        x = window(rng)
        det.learn_one(x)
    size = len(pickle.dumps(det))
    clone = pickle.loads(pickle.dumps(det))
    x = window(rng)
    assert clone.score_one(x) == det.score_one(x) and clone.threshold == det.threshold
    assert size < 6000  # 40 features; ~4 KB for a wind turbine's ~70


# -- ReferenceCurve -------------------------------------------------------------------------


@given(
    a=st.floats(-100, 100),
    b=st.floats(-5, 5),
    drivers=st.lists(st.floats(0.0, 100.0), min_size=5, max_size=60),
)
def test_curve_learns_a_linear_relation(a, b, drivers):
    c = ReferenceCurve(0.0, 100.0, bins=10, min_points=1)
    for x in drivers * 2:
        c.learn(x, a + b * x)
    tol = 1e-6 * (1 + abs(a) + 100 * abs(b))
    for _, x_mean, _ in c.points.values():  # exact at what each bin saw
        assert c.predict(x_mean) == pytest.approx(a + b * x_mean, abs=tol)
    for x in drivers:  # within a bin's width of the truth anywhere it saw data
        assert abs(c.predict(x) - (a + b * x)) <= abs(b) * 10.0 + tol


def test_curve_gate_refuses_a_developing_fault():
    c = ReferenceCurve(0.0, 1.0, bins=1, gate=1.0, min_points=3)
    for v in (10.0, 10.2, 9.8):
        assert c.learn(0.5, v)
    assert not c.learn(0.5, 15.0)
    assert c.residual(0.5, 15.0) == pytest.approx(5.0)


def test_curve_knows_nothing_far_from_what_it_saw():
    c = ReferenceCurve(0.0, 100.0, bins=10, reach=1, min_points=2)
    c.learn(15.0, 1.0)
    assert math.isnan(c.predict(15.0))  # too few points yet
    c.learn(15.0, 1.0)
    assert c.predict(15.0) == 1.0
    assert math.isnan(c.predict(35.0)) and math.isnan(c.predict(math.nan))
    assert math.isnan(c.residual(15.0, math.nan))
    assert not c.learn(85.0, 2.0, allow_new=False)
    assert c.learn(85.0, 2.0)


def test_curve_is_small_and_picklable():
    c = ReferenceCurve(0.0, 25.0, bins=25, gate=2.0)
    rng = np.random.default_rng(8)
    for _ in range(5000):
        w = rng.uniform(0, 25)
        c.learn(w, 5.0 + 0.4 * w + rng.normal(0, 0.1))
    assert len(pickle.loads(pickle.dumps(c)).points) == 25
    assert len(pickle.dumps(c)) < 1500
