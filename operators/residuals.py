"""Physics residuals: how far a machine is from what its physics model says it should do.

:func:`add_residuals` appends derived signals to a :class:`TelemetryFrame`, vectorised over
the whole frame (it runs on every frame, so it is a handful of numpy operations):

============  ========================  ==============================================
twin type     signal added              definition
============  ========================  ==============================================
wind_turbine  ``power_residual_kw``     ``power_kw - turbine_expected_power(wind, limit)``
wind_turbine  ``power_residual_pct``    ``100 * power_residual_kw / expected``
pump          ``efficiency``            ``pump_measured_efficiency(...)`` (hydraulic / shaft)
pump          ``efficiency_residual``   ``efficiency - pump_nominal_efficiency(flow)``
============  ========================  ==============================================

Where a residual says nothing it is ``NaN`` (the window stage then ignores it):

- turbine, wind below 4 m/s or at/above cut-out (25 m/s): the machine is (about to be)
  idle, the expected power is < 2 % of rated, and cut-in hysteresis dominates. Above rated
  wind the residual *is* kept: a turbine that cannot reach its rated output (or its
  commanded limit) is underperforming, and that is where most energy is lost.
- turbine ``power_residual_pct`` additionally where the expected power is below 10 % of
  rated: a ratio of two small numbers is noise.
- pump, flow below 20 % of the best-efficiency flow: efficiency is then a ratio of two small
  powers and the curve is steep, so a tiny flow error swings it.

Residual signals are derived, not reported: they are not in the catalogue and sensor-fault
rules never judge them (a ``NaN`` here is not a dropout).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from twinflow.core.records import TelemetryFrame
from twinflow.models.physics import (
    CUT_OUT_MS,
    PUMP_BEP_M3H,
    RATED_KW,
    pump_measured_efficiency,
    pump_nominal_efficiency,
    turbine_expected_power,
)
from twinflow.operators.twin_type import TwinType

#: Wind speeds (m/s) over which the turbine power residual is informative: [low, high).
INFORMATIVE_WIND_MS = (4.0, CUT_OUT_MS)
#: Below this expected power (fraction of rated) the percentage residual is NaN.
MIN_EXPECTED_FRACTION = 0.10
#: Below this flow (fraction of the best-efficiency flow) pump efficiency residuals are NaN.
MIN_PUMP_FLOW_FRACTION = 0.20

_TURBINE_INPUTS = ("wind_speed", "power_kw", "power_limit_kw")
_PUMP_INPUTS = (
    "flow_m3h",
    "suction_bar",
    "discharge_bar",
    "motor_current_a",
    "motor_voltage_v",
)

#: Derived signals per twin type (what :func:`add_residuals` may add).
RESIDUAL_SIGNALS = {
    "wind_turbine": ("power_residual_kw", "power_residual_pct"),
    "pump": ("efficiency", "efficiency_residual"),
}


def turbine_residuals(
    wind_ms: np.ndarray, power_kw: np.ndarray, power_limit_kw: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Power residual in kW and in % of the expected power (NaN where uninformative).

    >>> kw, pct = turbine_residuals(np.array([2.0, 8.0, 14.0]), np.array([0.0, 500.0, 1600.0]),
    ...                             np.array([2000.0, 2000.0, 2000.0]))
    >>> [round(float(v), 1) for v in kw[1:]], [round(float(v), 1) for v in pct[1:]]
    ([-70.3, -400.0], [-12.3, -20.0])
    >>> bool(np.isnan(kw[0]))
    True
    """
    wind = np.asarray(wind_ms, dtype=np.float64)
    expected = turbine_expected_power(wind, np.asarray(power_limit_kw, dtype=np.float64))
    low, high = INFORMATIVE_WIND_MS
    with np.errstate(invalid="ignore"):
        informative = (wind >= low) & (wind < high)
        kw = np.where(informative, np.asarray(power_kw, dtype=np.float64) - expected, np.nan)
        big = expected >= MIN_EXPECTED_FRACTION * RATED_KW
        pct = np.where(big, 100.0 * kw / np.where(big, expected, 1.0), np.nan)
    return kw, pct


def pump_residuals(
    flow_m3h: np.ndarray,
    suction_bar: np.ndarray,
    discharge_bar: np.ndarray,
    current_a: np.ndarray,
    voltage_v: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Measured hydraulic efficiency and its residual against the new pump's curve.

    >>> from twinflow.models.physics import differential_pressure_bar, pump_current_a, pump_head_m
    >>> q = np.array([250.0, 10.0]); dp = differential_pressure_bar(pump_head_m(q))
    >>> i = pump_current_a(q, dp, 0.6, 400.0)
    >>> eff, res = pump_residuals(q, np.zeros(2), dp, i, np.full(2, 400.0))
    >>> round(float(eff[0]), 3), round(float(res[0]), 3), bool(np.isnan(res[1]))
    (0.6, -0.18, True)
    """
    flow = np.asarray(flow_m3h, dtype=np.float64)
    eff = pump_measured_efficiency(flow, suction_bar, discharge_bar, current_a, voltage_v)
    with np.errstate(invalid="ignore"):
        ok = flow >= MIN_PUMP_FLOW_FRACTION * PUMP_BEP_M3H
        res = np.where(ok, eff - pump_nominal_efficiency(flow), np.nan)
    return eff, res


def add_residuals(frame: TelemetryFrame, kind: TwinType | None = None) -> TelemetryFrame:
    """Return ``frame`` with its type's residual signals added (see the module table).

    Frames of other types, or lacking an input signal, come back unchanged (the same object).
    """
    signals = frame.signals
    if frame.twin_type == "wind_turbine":
        if not all(s in signals for s in _TURBINE_INPUTS):
            return frame
        kw, pct = turbine_residuals(
            signals["wind_speed"], signals["power_kw"], signals["power_limit_kw"]
        )
        added = {"power_residual_kw": kw, "power_residual_pct": pct}
    elif frame.twin_type == "pump":
        if not all(s in signals for s in _PUMP_INPUTS):
            return frame
        eff, res = pump_residuals(*(signals[s] for s in _PUMP_INPUTS))
        added = {"efficiency": eff, "efficiency_residual": res}
    else:
        return frame
    return replace(frame, signals={**signals, **added})
