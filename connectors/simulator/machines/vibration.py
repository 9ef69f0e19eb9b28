"""Vibration waveform of the simulated motor's bearing housing (acceleration, g).

A healthy machine shows its shaft harmonic at ``MOTOR_SHAFT_HZ`` (and a weaker 2x) over a
white noise floor. An outer-race defect adds a sinusoid at ``BPFO_HZ`` with two harmonics,
plus the impacts themselves: one decaying ring of the housing resonance per ball pass. All
of it scales with defect severity, so the FFT energy at BPFO grows clearly with the defect.
Phases are random per burst, as a burst starts at an arbitrary shaft angle.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from twinflow.connectors.simulator.types import BPFO_HZ, MOTOR_SHAFT_HZ

SHAFT_G = 0.5
NOISE_G = 0.15
BPFO_G = (1.5, 0.6, 0.3)  # fundamental and two harmonics at failure
IMPACT_G = 5.0  # peak of one impact ring at failure
IMPACT_DECAY_S = 0.0015
RESONANCE_HZ = 2800.0

_TWO_PI = 2.0 * np.pi


@lru_cache(maxsize=8)
def _clock(n: int, rate: float) -> np.ndarray:
    """Seconds since the burst start for each sample (shared, read-only)."""
    t = np.arange(n) / rate
    t.flags.writeable = False
    return t


def vibration_burst(n: int, rate: float, bearing: float, rng: np.random.Generator) -> np.ndarray:
    """One burst of ``n`` samples at ``rate`` Hz; ``bearing`` is the defect severity 0..1."""
    t = _clock(n, rate)
    phase = rng.uniform(0.0, _TWO_PI, 4)
    noise = rng.standard_normal(n)
    w = _TWO_PI * MOTOR_SHAFT_HZ
    x: np.ndarray = SHAFT_G * np.sin(w * t + phase[0])
    x += 0.3 * SHAFT_G * np.sin(2.0 * w * t + phase[1])
    x += (NOISE_G * (1.0 + 2.0 * bearing)) * noise
    if bearing > 0.0:
        wb = _TWO_PI * BPFO_HZ
        for k, amp in enumerate(BPFO_G, start=1):
            x += (amp * bearing) * np.sin(k * wb * t + k * phase[2])
        since_impact = np.mod(t * BPFO_HZ + phase[3] / _TWO_PI, 1.0) / BPFO_HZ
        ring = np.exp(-since_impact / IMPACT_DECAY_S)
        ring *= np.sin(_TWO_PI * min(RESONANCE_HZ, 0.35 * rate) * t)
        x += (IMPACT_G * bearing) * ring
    return x
