"""Physics models shared by the simulator (to generate) and the flow (to compute residuals).

All functions are vectorised over numpy arrays and pure.

Wind turbine: a 2,000 kW machine with cut-in 3 m/s, rated 12 m/s and cut-out 25 m/s; between
cut-in and rated the output follows the cube of wind speed (the kinetic power in the wind).

Centrifugal pump: a quadratic head curve and a parabolic efficiency curve around the best
efficiency point (BEP); hydraulic efficiency is measured as hydraulic power over the shaft
power estimated from the motor's current and voltage.
"""

from __future__ import annotations

import numpy as np

RATED_KW = 2000.0
CUT_IN_MS = 3.0
RATED_MS = 12.0
CUT_OUT_MS = 25.0

RHO_WATER = 1000.0  # kg/m3
G = 9.81  # m/s2
PUMP_BEP_M3H = 250.0
PUMP_SHUTOFF_HEAD_M = 60.0
PUMP_BEP_HEAD_M = 45.0
PUMP_BEP_EFFICIENCY = 0.78
MOTOR_EFFICIENCY = 0.95
POWER_FACTOR = 0.88
_HEAD_K = (PUMP_SHUTOFF_HEAD_M - PUMP_BEP_HEAD_M) / PUMP_BEP_M3H**2


def turbine_power_curve(wind_ms: np.ndarray | float, rated_kw: float = RATED_KW) -> np.ndarray:
    """Expected electrical output (kW) at a wind speed (m/s).

    >>> [round(float(p)) for p in turbine_power_curve(np.array([2.0, 12.0, 20.0, 26.0]))]
    [0, 2000, 2000, 0]
    """
    v = np.asarray(wind_ms, dtype=np.float64)
    frac = (v**3 - CUT_IN_MS**3) / (RATED_MS**3 - CUT_IN_MS**3)
    p = rated_kw * np.clip(frac, 0.0, 1.0)
    power: np.ndarray = np.where((v < CUT_IN_MS) | (v >= CUT_OUT_MS), 0.0, p)
    return power


def turbine_expected_power(wind_ms: np.ndarray, power_limit_kw: np.ndarray | float) -> np.ndarray:
    """Power curve capped by the commanded limit (a derated turbine is not underperforming)."""
    capped: np.ndarray = np.minimum(turbine_power_curve(wind_ms), power_limit_kw)
    return capped


def pump_head_m(flow_m3h: np.ndarray | float) -> np.ndarray:
    """Head (m) of the new pump at a flow (m3/h)."""
    q = np.asarray(flow_m3h, dtype=np.float64)
    return PUMP_SHUTOFF_HEAD_M - _HEAD_K * q**2


def pump_nominal_efficiency(flow_m3h: np.ndarray | float) -> np.ndarray:
    """Hydraulic efficiency of the new pump at a flow (parabola through the BEP).

    >>> round(float(pump_nominal_efficiency(PUMP_BEP_M3H)), 2)
    0.78
    """
    r = np.asarray(flow_m3h, dtype=np.float64) / PUMP_BEP_M3H
    return np.clip(PUMP_BEP_EFFICIENCY * (2.0 * r - r * r), 0.05, 1.0)


def differential_pressure_bar(head_m: np.ndarray | float) -> np.ndarray:
    """Pressure rise (bar) for a head (m) of water."""
    return np.asarray(head_m, dtype=np.float64) * RHO_WATER * G / 1e5


def hydraulic_power_w(flow_m3h: np.ndarray, dp_bar: np.ndarray) -> np.ndarray:
    watts: np.ndarray = np.asarray(flow_m3h) / 3600.0 * np.asarray(dp_bar) * 1e5
    return watts


def motor_electric_power_w(current_a: np.ndarray, voltage_v: np.ndarray) -> np.ndarray:
    """Three-phase electrical input power."""
    watts: np.ndarray = np.sqrt(3.0) * np.asarray(voltage_v) * np.asarray(current_a) * POWER_FACTOR
    return watts


def pump_current_a(
    flow_m3h: np.ndarray, dp_bar: np.ndarray, efficiency: np.ndarray, voltage_v: np.ndarray
) -> np.ndarray:
    """Motor current that drives the pump at a flow, pressure rise and efficiency."""
    shaft = hydraulic_power_w(flow_m3h, dp_bar) / np.maximum(efficiency, 1e-3)
    amps: np.ndarray = (
        shaft / MOTOR_EFFICIENCY / (np.sqrt(3.0) * np.asarray(voltage_v) * POWER_FACTOR)
    )
    return amps


def pump_measured_efficiency(
    flow_m3h: np.ndarray,
    suction_bar: np.ndarray,
    discharge_bar: np.ndarray,
    current_a: np.ndarray,
    voltage_v: np.ndarray,
) -> np.ndarray:
    """Hydraulic efficiency from measurements: hydraulic power / shaft power (NaN if idle)."""
    shaft = motor_electric_power_w(current_a, voltage_v) * MOTOR_EFFICIENCY
    hyd = hydraulic_power_w(flow_m3h, np.asarray(discharge_bar) - np.asarray(suction_bar))
    with np.errstate(divide="ignore", invalid="ignore"):
        eff = np.where(shaft > 1000.0, hyd / shaft, np.nan)
    return eff
