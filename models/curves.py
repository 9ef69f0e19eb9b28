"""Bundled residual models: a machine's measurements against its reference curve.

A residual model is a plain function of a frame's signals (numpy arrays, by argument name)
and its parameters (numbers from the profile's ``physics:`` section) that returns derived
signals by name. Where a residual says nothing it is ``NaN`` (the window stage ignores it).
The constants of the bundled twin types live in their profiles, not here.
"""

from __future__ import annotations

import math

import numpy as np

#: Water density (kg/m3) and gravity (m/s2): pressure rise from head.
RHO_WATER = 1000.0
G = 9.81


def cubic_power_curve(
    wind: np.ndarray, rated_kw: float, cut_in_ms: float, rated_ms: float, cut_out_ms: float
) -> np.ndarray:
    """Expected output (kW): zero below cut-in and from cut-out, the cube of wind speed
    between cut-in and rated, rated power above.

    >>> [round(float(p)) for p in cubic_power_curve(np.array([2.0, 12.0, 26.0]), 2000, 3, 12, 25)]
    [0, 2000, 0]
    """
    v = np.asarray(wind, dtype=np.float64)
    frac = (v**3 - cut_in_ms**3) / (rated_ms**3 - cut_in_ms**3)
    p = rated_kw * np.clip(frac, 0.0, 1.0)
    power: np.ndarray = np.where((v < cut_in_ms) | (v >= cut_out_ms), 0.0, p)
    return power


def power_curve_residual(
    wind: np.ndarray,
    power: np.ndarray,
    limit: np.ndarray,
    *,
    rated_kw: float,
    cut_in_ms: float,
    rated_ms: float,
    cut_out_ms: float,
    informative_from_ms: float,
    min_expected_fraction: float = 0.1,
) -> dict[str, np.ndarray]:
    """Output against the power curve capped by the commanded ``limit``: ``residual`` (kW,
    NaN outside [``informative_from_ms``, cut-out)) and ``residual_pct`` (% of the
    expected output, NaN where that is below ``min_expected_fraction`` of rated)."""
    w = np.asarray(wind, dtype=np.float64)
    curve = cubic_power_curve(w, rated_kw, cut_in_ms, rated_ms, cut_out_ms)
    expected = np.minimum(curve, np.asarray(limit, dtype=np.float64))
    with np.errstate(invalid="ignore"):
        informative = (w >= informative_from_ms) & (w < cut_out_ms)
        kw = np.where(informative, np.asarray(power, dtype=np.float64) - expected, np.nan)
        big = expected >= min_expected_fraction * rated_kw
        pct = np.where(big, 100.0 * kw / np.where(big, expected, 1.0), np.nan)
    return {"residual": kw, "residual_pct": pct}


def parabolic_efficiency(
    flow: np.ndarray | float, bep_flow: float, bep_efficiency: float
) -> np.ndarray:
    """Hydraulic efficiency at a flow: a parabola through the best efficiency point."""
    r = np.asarray(flow, dtype=np.float64) / bep_flow
    return np.clip(bep_efficiency * (2.0 * r - r * r), 0.05, 1.0)


def quadratic_head_bar(
    flow: np.ndarray | float, shutoff_head_m: float, bep_flow: float, bep_head_m: float
) -> np.ndarray:
    """Pressure rise (bar) of a quadratic head curve through shut-off and the BEP."""
    k = (shutoff_head_m - bep_head_m) / bep_flow**2
    head = shutoff_head_m - k * np.asarray(flow, dtype=np.float64) ** 2
    return np.asarray(head, dtype=np.float64) * RHO_WATER * G / 1e5


def centrifugal_efficiency_residual(
    flow: np.ndarray,
    suction: np.ndarray,
    discharge: np.ndarray,
    current: np.ndarray,
    voltage: np.ndarray,
    *,
    bep_flow: float,
    bep_efficiency: float,
    drive_efficiency: float,
    power_factor: float,
    min_flow_fraction: float = 0.2,
) -> dict[str, np.ndarray]:
    """Measured hydraulic efficiency (hydraulic power over the shaft power a three-phase
    drive delivers; NaN while idle) and its ``residual`` against the parabolic curve (NaN
    below ``min_flow_fraction`` of the BEP flow). Flow in m3/h, pressures in bar."""
    q = np.asarray(flow, dtype=np.float64)
    electric = np.sqrt(3.0) * np.asarray(voltage) * np.asarray(current) * power_factor
    shaft = electric * drive_efficiency
    hyd = q / 3600.0 * (np.asarray(discharge) - np.asarray(suction)) * 1e5
    with np.errstate(divide="ignore", invalid="ignore"):
        eff = np.where(shaft > 1000.0, hyd / shaft, np.nan)
        ok = q >= min_flow_fraction * bep_flow
        res = np.where(ok, eff - parabolic_efficiency(q, bep_flow, bep_efficiency), np.nan)
    return {"efficiency": eff, "residual": res}


def head_loss_split(
    flow: float,
    suction: float,
    discharge: float,
    efficiency_residual: float,
    *,
    shutoff_head_m: float,
    bep_flow: float,
    bep_head_m: float,
    loss_pct: float = 0.5,
) -> dict[str, float]:
    """A window-level model: the measured pressure rise against the quadratic head curve
    (``head_residual_pct``, %), and the efficiency residual split by whether the head also
    fell by more than ``loss_pct`` (``with_head_loss``: wear lowers both) or not
    (``without_head_loss``: a sensor error lowers only the efficiency); 0 on the other side,
    NaN when the head says nothing.

    >>> out = head_loss_split(250.0, 1.0, 4.0, -0.05, shutoff_head_m=60, bep_flow=250,
    ...                       bep_head_m=45)
    >>> round(out["head_residual_pct"], 1), out["with_head_loss"], out["without_head_loss"]
    (-32.0, -0.05, 0.0)
    """
    dp = discharge - suction
    expected = float(quadratic_head_bar(flow, shutoff_head_m, bep_flow, bep_head_m))
    head = 100.0 * (dp / expected - 1.0) if expected > 0.0 else math.nan
    worn = head < -loss_pct
    known = head == head
    return {
        "head_residual_pct": head,
        "with_head_loss": efficiency_residual if worn else (0.0 if known else math.nan),
        "without_head_loss": math.nan if not known else (0.0 if worn else efficiency_residual),
    }


__all__ = [
    "centrifugal_efficiency_residual",
    "cubic_power_curve",
    "head_loss_split",
    "parabolic_efficiency",
    "power_curve_residual",
    "quadratic_head_bar",
]
