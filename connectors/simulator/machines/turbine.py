"""A simulated 2 MW wind turbine.

Wind is a slow Ornstein-Uhlenbeck wander (30 min) around the twin's mean plus turbulence
(8 s, 12 % intensity). Output follows the shared power curve capped by the derate limit,
times an efficiency that a pitch offset or an ``underperformance`` fault lowers. Above
rated wind (or the wind at which the derate limit is reached) the pitch rises to shed power.
Gearbox and generator temperatures lag behind ambient plus a load-dependent rise; an
``overheating`` fault (a failing cooler) adds +50 °C at half load (+20 °C of it whatever the
load, the rest in proportion to load), so a derate visibly cools the generator. Mean output
at 8-9 m/s is about 700-900 kW: a derate acts only when its limit is below what the wind
offers, so derate relative to recent output (e.g. half of it) rather than to rated power.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from twinflow.connectors.simulator.dynamics import daily, lag, ou
from twinflow.connectors.simulator.machines.physics import (
    CUT_IN_MS,
    CUT_OUT_MS,
    RATED_KW,
    RATED_MS,
    turbine_expected_power,
    turbine_power_curve,
)

WIND_WANDER_SIGMA = 2.0  # m/s, std of the slow wind wander
TURBULENCE = 0.12  # turbulence intensity
OVERHEAT_RISE = 50.0  # degC added by a fully developed cooling fault at half load
UNDERPERFORMANCE_LOSS = 0.20  # share of power lost at failure


@dataclass(slots=True)
class Turbine:
    """State of one turbine; the methods advance it one chunk or apply a command."""

    twin_type: ClassVar[str] = "wind_turbine"

    mean_wind: float
    ambient: float
    wind_dev: float
    gust: float
    gearbox_temp: float
    generator_temp: float
    derate: float = 1.0
    pitch_offset: float = 0.0

    @classmethod
    def create(cls, rng: np.random.Generator, t0: float) -> Turbine:
        """A turbine in thermal equilibrium with its wind at ``t0``."""
        mean_wind = rng.uniform(8.0, 9.0)
        ambient = rng.uniform(5.0, 15.0)
        wind_dev = rng.normal(0.0, WIND_WANDER_SIGMA)
        load = float(turbine_power_curve(mean_wind + wind_dev)) / RATED_KW
        amb = ambient + 3.0 * float(daily(np.array([t0]))[0])
        return cls(
            mean_wind=mean_wind,
            ambient=ambient,
            wind_dev=wind_dev,
            gust=rng.normal(),
            gearbox_temp=amb + float(_gearbox_rise(load)),
            generator_temp=amb + float(_generator_rise(load)),
        )

    def signals(
        self, times: np.ndarray, rng: np.random.Generator, fault: str | None, sev: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Advance one chunk at 1 Hz and return the true signal values."""
        n = len(times)
        eps = rng.standard_normal((8, n))
        wind_dev = ou(self.wind_dev, 1800.0, WIND_WANDER_SIGMA, eps[0])
        gust = ou(self.gust, 8.0, 1.0, eps[1])
        base = np.maximum(self.mean_wind + wind_dev, 0.5)
        wind = np.clip(base * (1.0 + TURBULENCE * gust), 0.0, 60.0)

        limit = RATED_KW * self.derate
        eff = np.full(n, max(math.cos(math.radians(self.pitch_offset)), 1e-6) ** 3)
        if fault == "underperformance":
            eff = eff * (1.0 - UNDERPERFORMANCE_LOSS * sev)
        # min(curve * eff, limit): the shared expected-power model with the efficiency folded in
        ideal = turbine_expected_power(wind, limit / eff) * eff
        power = ideal + (3.0 + 0.01 * ideal) * eps[2]

        running = (wind >= CUT_IN_MS) & (wind < CUT_OUT_MS)
        idle = np.where(wind < CUT_IN_MS, 0.4 * wind, 0.0)
        rpm = np.where(running, np.clip(5.0 + 1.4 * (wind - CUT_IN_MS), 5.0, 16.0), idle)
        rpm = rpm + 0.05 * eps[3]

        v_limit = (
            (min(limit, RATED_KW) / RATED_KW) * (RATED_MS**3 - CUT_IN_MS**3) + CUT_IN_MS**3
        ) ** (1.0 / 3.0)
        pitch = np.where(wind >= CUT_OUT_MS, 90.0, np.clip(1.9 * (wind - v_limit), 0.0, 30.0))
        pitch = pitch + self.pitch_offset + 0.05 * eps[4]

        load = np.clip(ideal / RATED_KW, 0.0, 1.3)
        amb = self.ambient + 3.0 * daily(times)
        gearbox = lag(self.gearbox_temp, 1500.0, amb + _gearbox_rise(load))
        heat = amb + _generator_rise(load)
        if fault == "overheating":
            # a failing cooler: iron losses (constant) plus copper losses (with load)
            heat = heat + OVERHEAT_RISE * sev * (0.4 + 0.6 * np.minimum(load / 0.5, 1.2))
        generator = lag(self.generator_temp, 900.0, heat)
        vibration = 1.0 + 0.12 * rpm + 0.3 * load + 0.1 * np.abs(eps[5])
        if fault == "underperformance":
            vibration = vibration + 1.5 * sev  # aerodynamic imbalance of a misaligned blade

        self.wind_dev = float(wind_dev[-1])
        self.gust = float(gust[-1])
        self.gearbox_temp = float(gearbox[-1])
        self.generator_temp = float(generator[-1])
        return {
            "wind_speed": wind,
            "power_kw": power,
            "rotor_rpm": rpm,
            "gearbox_temp": gearbox + 0.1 * eps[6],
            "generator_temp": generator + 0.1 * eps[7],
            "vibration_rms": vibration,
            "pitch_deg": pitch,
            "power_limit_kw": np.full(n, limit),
        }

    def command(self, name: str, params: Mapping[str, float]) -> str:
        """Apply a validated command; returns what changed."""
        if name == "derate":
            self.derate = float(params["fraction"])
            return f"power limit {RATED_KW * self.derate:.0f} kW"
        if name == "set_pitch":
            self.pitch_offset = float(params["degrees"])
            return f"pitch offset {self.pitch_offset:g} deg"
        raise ValueError(f"wind_turbine has no command {name!r}")


def _gearbox_rise(load: np.ndarray | float) -> np.ndarray | float:
    return 20.0 + 35.0 * load


def _generator_rise(load: np.ndarray | float) -> np.ndarray | float:
    return 25.0 + 60.0 * load
