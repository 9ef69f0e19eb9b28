"""Sensor faults: what a failing sensor does to one signal of a frame.

The machine underneath is healthy; only the reading is wrong:

- ``sensor_stuck``: the value freezes at the reading taken at onset;
- ``sensor_drift``: an offset grows linearly, reaching +15 % of the signal's range at failure
  and going on to at most +30 %;
- ``sensor_spikes``: rare large spikes (30-60 % of the range): 0.2 % of samples at onset,
  1.2 % at failure;
- ``sensor_dropout``: stretches of minutes where the value is NaN, longer and more frequent
  as the fault grows.

Spiked and drifted values are clipped to the catalog range, as a transducer saturates.
The small mutable :class:`SensorState` carries what must survive from chunk to chunk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from twinflow.connectors.simulator.dynamics import progress, severity
from twinflow.connectors.simulator.faults import FaultSpec

DRIFT_AT_FAILURE = 0.15  # share of the range
DRIFT_CAP = 0.30  # the drift keeps its slope after failure up to this share of the range
SPIKE_RATE = (0.002, 0.01)  # share of samples spiked at onset, added at failure


@dataclass(slots=True)
class SensorState:
    """What a sensor fault remembers between chunks."""

    stuck_value: float | None = None
    next_dropout: float = math.nan
    dropout_until: float = -math.inf


def apply_sensor_fault(
    fault: FaultSpec,
    state: SensorState,
    times: np.ndarray,
    values: np.ndarray,
    low: float,
    high: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Return ``values`` as the failing sensor reports them (a new array)."""
    active = times >= fault.onset
    if not active.any():
        return values
    out = values.copy()
    span = high - low
    if fault.kind == "sensor_stuck":
        if state.stuck_value is None:
            state.stuck_value = float(values[int(np.argmax(active))])
        out[active] = state.stuck_value
    elif fault.kind == "sensor_drift":
        drift = DRIFT_AT_FAILURE * progress(times, fault.onset, fault.failure)
        out += np.minimum(drift, DRIFT_CAP) * span
    elif fault.kind == "sensor_spikes":
        sev = severity(times, fault.onset, fault.failure)
        hit = active & (rng.random(len(times)) < SPIKE_RATE[0] + SPIKE_RATE[1] * sev)
        size = rng.uniform(0.3, 0.6, len(times)) * span
        sign = np.where(rng.random(len(times)) < 0.5, -1.0, 1.0)
        out[hit] += (sign * size)[hit]
    elif fault.kind == "sensor_dropout":
        out[_dropout_mask(fault, state, times, rng)] = np.nan
    else:
        raise ValueError(f"not a sensor fault kind: {fault.kind!r}")
    clipped: np.ndarray = np.clip(out, low, high)
    return clipped


def _dropout_mask(
    fault: FaultSpec, state: SensorState, times: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Mark the samples inside outages; outages and the gaps between them scale with the time
    from onset to failure (1 h in a 6 h run: outages of 2 min at onset, 10 min at failure,
    gaps of 15 min at onset, 4 min at failure; the first outage within 15 min of onset).
    """
    span = fault.failure - fault.onset
    mask = np.zeros(len(times), dtype=bool)
    end = float(times[-1]) + 1.0
    if math.isnan(state.next_dropout):
        state.next_dropout = fault.onset + rng.uniform(0.0, span / 4.0)
    if state.dropout_until > times[0]:
        mask |= times < state.dropout_until
    while state.next_dropout < end:
        begin = state.next_dropout
        sev = float(severity(np.array([begin]), fault.onset, fault.failure)[0])
        state.dropout_until = begin + rng.exponential(span / 30.0 * (1.0 + 4.0 * sev))
        mask |= (times >= begin) & (times < state.dropout_until)
        gap = span / 4.0 * (1.0 - 0.8 * sev) + span / 60.0
        state.next_dropout = state.dropout_until + rng.exponential(gap)
    return mask
