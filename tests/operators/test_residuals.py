"""Physics residuals added to telemetry frames."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinflow.connectors.simulator.machines.physics import (
    differential_pressure_bar,
    pump_current_a,
    pump_head_m,
    pump_nominal_efficiency,
    turbine_expected_power,
)
from twinflow.core.records import TelemetryFrame
from twinflow.operators.residuals import add_residuals


def turbine_frame(wind, power, limit=2000.0) -> TelemetryFrame:
    wind = np.asarray(wind, dtype=float)
    return TelemetryFrame(
        "wt-1",
        "wind_turbine",
        np.arange(wind.size, dtype=float),
        {
            "wind_speed": wind,
            "power_kw": np.asarray(power, dtype=float),
            "power_limit_kw": np.full(wind.size, limit),
            "rotor_rpm": np.full(wind.size, 12.0),
        },
    )


def pump_frame(flow, efficiency) -> TelemetryFrame:
    q = np.asarray(flow, dtype=float)
    dp = differential_pressure_bar(pump_head_m(q))
    volts = np.full(q.size, 400.0)
    return TelemetryFrame(
        "p-1",
        "pump",
        np.arange(q.size, dtype=float),
        {
            "flow_m3h": q,
            "suction_bar": np.full(q.size, 1.5),
            "discharge_bar": 1.5 + dp,
            "motor_current_a": pump_current_a(q, dp, efficiency, volts),
            "motor_voltage_v": volts,
        },
    )


@given(st.lists(st.floats(4.0, 24.9), min_size=1, max_size=50), st.floats(400.0, 2000.0))
def test_turbine_on_its_curve_has_zero_residual(winds, limit):
    wind = np.array(winds)
    out = add_residuals(turbine_frame(wind, turbine_expected_power(wind, limit), limit))
    assert np.allclose(out.signals["power_residual_kw"], 0.0, atol=1e-9)
    pct = out.signals["power_residual_pct"]
    assert np.all(np.isnan(pct) | np.isclose(pct, 0.0, atol=1e-9))


def test_turbine_underperformance_and_uninformative_winds():
    wind = np.array([2.0, 3.9, 8.0, 14.0, 26.0, np.nan])
    power = 0.8 * turbine_expected_power(wind, 2000.0)
    out = add_residuals(turbine_frame(wind, power))
    kw, pct = out.signals["power_residual_kw"], out.signals["power_residual_pct"]
    assert np.isnan(kw[[0, 1, 4, 5]]).all() and np.isnan(pct[[0, 1, 4, 5]]).all()
    assert pct[2] == pytest.approx(-20.0) and pct[3] == pytest.approx(-20.0)
    assert kw[3] == pytest.approx(-400.0)
    assert set(out.signals) >= {"wind_speed", "power_kw", "power_limit_kw", "rotor_rpm"}


def test_derated_turbine_at_its_limit_is_not_underperforming():
    out = add_residuals(turbine_frame([15.0], [800.0], limit=800.0))
    assert out.signals["power_residual_kw"][0] == pytest.approx(0.0)
    assert out.signals["power_residual_pct"][0] == pytest.approx(0.0)


def test_small_expected_power_gives_no_percentage():
    out = add_residuals(turbine_frame([4.5], [50.0]))  # expected ~73 kW < 10 % of rated
    assert np.isfinite(out.signals["power_residual_kw"][0])
    assert np.isnan(out.signals["power_residual_pct"][0])


@given(st.lists(st.floats(50.0, 400.0), min_size=1, max_size=50), st.floats(0.4, 1.0))
def test_pump_efficiency_and_residual(flows, wear):
    q = np.array(flows)
    eff = pump_nominal_efficiency(q) * wear
    out = add_residuals(pump_frame(q, eff))
    assert np.allclose(out.signals["efficiency"], eff, rtol=1e-9)
    assert np.allclose(out.signals["efficiency_residual"], eff - pump_nominal_efficiency(q))


def test_pump_residual_is_nan_at_low_flow():
    out = add_residuals(pump_frame([10.0, 250.0], 0.7))
    assert np.isnan(out.signals["efficiency_residual"][0])
    assert np.isfinite(out.signals["efficiency_residual"][1])


def test_other_types_and_incomplete_frames_come_back_unchanged():
    motor = TelemetryFrame("m-1", "motor", np.zeros(1), {"winding_temp": np.ones(1)})
    assert add_residuals(motor) is motor
    partial = TelemetryFrame("wt-1", "wind_turbine", np.zeros(1), {"wind_speed": np.ones(1)})
    assert add_residuals(partial) is partial


def test_frame_identity_fields_are_kept():
    frame = turbine_frame([8.0, 9.0], [500.0, 700.0])
    out = add_residuals(frame)
    assert (out.twin_id, out.twin_type, out.source) == (frame.twin_id, frame.twin_type, "simulator")
    assert out.times is frame.times and out.signals["power_kw"] is frame.signals["power_kw"]
