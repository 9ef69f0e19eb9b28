"""Derived health indicators and the per-twin RUL tracker."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from twinflow.core.records import WindowFeatures
from twinflow.core.times import utc
from twinflow.operators.catalog import CATALOG
from twinflow.operators.health import DerivedFeatures, HealthTracker
from twinflow.operators.health_profile import health_of

T0 = 1_767_225_600.0  # 2026-01-01T00:00Z
STEP = 300.0


def win(k: int, features: dict[str, float], twin_type="motor", counts=None, **kw) -> WindowFeatures:
    return WindowFeatures(
        twin_id="t-1",
        twin_type=twin_type,
        start=utc(T0 + k * STEP),
        end=utc(T0 + (k + 1) * STEP),
        features=features,
        counts=counts or {},
        **kw,
    )


def motor_features(rng, bearing=0.0, heat=0.0, load=80.0) -> dict[str, float]:
    temp = 25.0 + 97.0 * (load / 100.0) ** 2 + heat + rng.normal(0, 0.3)
    return {
        "load_pct.mean": load + rng.normal(0, 0.5),
        "winding_temp.mean": temp,
        "winding_temp.slope": rng.normal(0, 0.5),
        "current_a.mean": 60.0 + 1.4 * load + rng.normal(0, 0.2),
        "speed_rpm.mean": 1500.0 - 0.15 * load,
        "vibration.fault_shaft": 0.125,
        "vibration.fault_bpfo": 2e-5 * (1 + 0.3 * rng.random()) + 1.125 * bearing**2,
    }


def test_bpfo_ratio_and_residuals():
    rng = np.random.default_rng(0)
    d = DerivedFeatures("motor")
    for k in range(20):
        out = d.update(win(k, motor_features(rng)))
    assert out["vibration.bpfo_ratio"] == pytest.approx(2e-4, rel=0.5)
    assert abs(out["winding_temp.residual"]) < 2.0 and abs(out["current_a.residual"]) < 1.5
    hot = d.update(win(20, motor_features(rng, heat=15.0)))
    assert hot["winding_temp.residual"] == pytest.approx(15.0, abs=2.5)


def test_lagging_signal_is_judged_by_where_it_is_heading():
    d = DerivedFeatures("motor", references=("winding_temp",), signals=())
    base = {"load_pct.mean": 80.0, "winding_temp.slope": 0.0}
    for k in range(10):
        d.update(win(k, {**base, "winding_temp.mean": 87.0}))
    # 6 degC/h rising with a 10-min time constant: heading 1 degC above where it is
    out = d.update(win(10, {**base, "winding_temp.mean": 87.0, "winding_temp.slope": 6.0}))
    assert out["winding_temp.residual"] == pytest.approx(1.0)


def test_unseen_operating_point_is_not_judged():
    d = DerivedFeatures("motor", references=("current_a",), signals=())
    for k in range(10):
        d.update(win(k, {"load_pct.mean": 80.0, "current_a.mean": 172.0}))
    seen = d.update(win(10, {"load_pct.mean": 80.0, "current_a.mean": 180.0}))
    assert seen["current_a.residual"] == pytest.approx(8.0)
    out = d.update(win(11, {"load_pct.mean": 40.0, "current_a.mean": 116.0}))
    assert math.isnan(out["current_a.residual"])


def test_curves_do_not_learn_from_anomalous_windows():
    d = DerivedFeatures("motor", references=("current_a",), signals=())
    for k in range(10):
        d.update(win(k, {"load_pct.mean": 80.0, "current_a.mean": 172.0}))
    before = [list(p) for p in d.curves["current_a"].points.values()]
    f = {"load_pct.mean": 80.0, "current_a.mean": 174.0}
    d.update(win(10, f, anomaly_score=3.0, anomaly_threshold=1.0))
    assert [list(p) for p in d.curves["current_a"].points.values()] == before


def test_flat_needs_a_history_of_movement():
    d = DerivedFeatures("pump", references=())
    moving = {"flow_m3h.std": 0.8, "flow_m3h.mean": 250.0, "flow_m3h.min": 248.0,
              "flow_m3h.max": 252.0}  # fmt: skip
    still = {"flow_m3h.std": 0.0, "flow_m3h.mean": 250.0, "flow_m3h.min": 250.0,
             "flow_m3h.max": 250.0}  # fmt: skip
    counts = {"flow_m3h": 300}
    assert d.update(win(0, still, "pump", counts))["flow_m3h.flat"] == 0.0
    for k in range(1, 11):  # moved in 10 of 11 windows (>= 90 %)
        assert d.update(win(k, moving, "pump", counts))["flow_m3h.flat"] == 0.0
    for k in range(11, 30):  # stays flagged however long it is stuck
        assert d.update(win(k, still, "pump", counts))["flow_m3h.flat"] == 1.0
    assert "flow_m3h.flat" not in d.update(win(30, still, "pump", {"flow_m3h": 1}))


def test_spikes():
    d = DerivedFeatures("pump", references=())
    counts = {"flow_m3h": 300}
    calm = {"flow_m3h.std": 0.8, "flow_m3h.mean": 250.0, "flow_m3h.min": 247.6,
            "flow_m3h.max": 252.4}  # fmt: skip
    spiky = {"flow_m3h.std": 12.0, "flow_m3h.mean": 250.7, "flow_m3h.min": 247.6,
             "flow_m3h.max": 460.0}  # fmt: skip
    assert d.update(win(0, calm, "pump", counts))["flow_m3h.spike_pct"] == 0.0
    assert d.update(win(1, spiky, "pump", counts))["flow_m3h.spike_pct"] == pytest.approx(
        100 * (460.0 - 250.7) / 600.0
    )


def test_pump_head_split():
    from twinflow.models.curves import quadratic_head_bar

    dp = float(quadratic_head_bar(250.0, 60.0, 250.0, 45.0))  # the pump profile's head curve
    f = {"flow_m3h.mean": 250.0, "suction_bar.mean": 1.5, "flow_setpoint_m3h.mean": 245.0,
         "efficiency_residual.mean": -0.05}  # fmt: skip
    worn = DerivedFeatures("pump", references=()).update(
        win(0, {**f, "discharge_bar.mean": 1.5 + 0.95 * dp}, "pump")
    )
    assert worn["head_residual_pct"] == pytest.approx(-5.0)
    assert worn["efficiency_residual.with_head_loss"] == -0.05
    assert worn["efficiency_residual.without_head_loss"] == 0.0
    assert worn["flow_m3h.setpoint_error"] == pytest.approx(5.0)
    meter = DerivedFeatures("pump", references=()).update(
        win(0, {**f, "discharge_bar.mean": 1.5 + dp}, "pump")
    )
    assert meter["efficiency_residual.without_head_loss"] == -0.05
    assert meter["efficiency_residual.with_head_loss"] == 0.0


def test_healthy_motor_has_no_finite_life():
    rng = np.random.default_rng(1)
    h = HealthTracker("m-1", "motor")
    for k in range(72):
        r = h.update(win(k, motor_features(rng)))
    assert r is not None and math.isinf(r.hours) and r.health > 0.95


def test_bearing_degradation_gives_a_fair_rul():
    rng = np.random.default_rng(2)
    h = HealthTracker("m-1", "motor")
    onset, fail = 24, 24 + 36  # 3 h from onset to failure
    estimates = {}
    for k in range(onset + 30):
        x = min(max((k - onset) / (fail - onset), 0.0), 1.0)
        sev = math.expm1(3 * x) / math.expm1(3)
        r = h.update(win(k, motor_features(rng, bearing=sev)))
        estimates[k] = r
    r = estimates[onset + 27]  # 3/4 of the way: 0.75 h (9 windows) left
    assert r.indicator == "bearing"
    assert 0.25 < r.hours < 1.5 and r.low_hours <= r.hours <= r.high_hours
    assert 0.0 < r.health < 0.9
    assert estimates[onset + 27].hours < estimates[onset + 20].hours


def test_worst_indicator_wins():
    rng = np.random.default_rng(3)
    h = HealthTracker("m-1", "motor")
    for k in range(40):
        heat = 0.0 if k < 12 else 2.0 * math.exp((k - 12) / 8.0)
        r = h.update(win(k, motor_features(rng, heat=min(heat, 60.0))))
    assert r.indicator == "overheating" and math.isfinite(r.hours)


def test_unknown_type_and_empty_windows():
    assert HealthTracker("x", "conveyor").update(win(0, {}, "conveyor")) is None
    assert HealthTracker("m", "motor").update(win(0, {})) is None
    with_rul = {k.name for k in CATALOG.values() if health_of(k).indicators}
    assert with_rul == {"motor", "wind_turbine", "pump"}


def test_state_is_small_and_picklable():
    rng = np.random.default_rng(4)
    h = HealthTracker("m-1", "motor")
    for k in range(2000):
        h.update(win(k, motor_features(rng, load=70 + 20 * rng.random())))
    clone = pickle.loads(pickle.dumps(h))
    w = win(2000, motor_features(rng))
    assert clone.update(w) == h.update(w)
    assert len(pickle.dumps(h)) < 4000
