"""Which twins get which fault, and when: the plant's ground truth, drawn from the seed.

The plan is drawn once for the whole plant (not per partition), so it does not depend on how
twins are split. Kinds cycle through those compatible with each twin type, so every kind
appears once a type has enough faulty twins (four of each type covers all eight kinds).

Times scale with the run: for a 6 h run onsets fall in the first 40 %, machine faults fail
1.5-4 h after onset and sensors are considered failed 1 h after onset; a shorter run shrinks
these spans in proportion, and every failure falls before the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twinflow.core.records import FaultTruth
from twinflow.core.times import utc

#: Kinds that change the machine itself (the rest are sensor faults).
MACHINE_KINDS = ("bearing", "overheating", "impeller_wear", "underperformance")
SENSOR_KINDS = ("sensor_stuck", "sensor_drift", "sensor_spikes", "sensor_dropout")

#: Fault kinds per twin type, in the order faulty twins of that type receive them. Sensor
#: kinds start at a different place per type so that few twins still cover them all.
KINDS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "wind_turbine": (
        "underperformance",
        "overheating",
        "sensor_stuck",
        "sensor_drift",
        "sensor_spikes",
        "sensor_dropout",
    ),
    "pump": ("impeller_wear", "sensor_drift", "sensor_spikes", "sensor_dropout", "sensor_stuck"),
    "motor": (
        "bearing",
        "overheating",
        "sensor_spikes",
        "sensor_dropout",
        "sensor_stuck",
        "sensor_drift",
    ),
}

#: Signals a sensor fault may hit per type (measured values, not reported setpoints).
SENSOR_SIGNALS: dict[str, tuple[str, ...]] = {
    "wind_turbine": (
        "wind_speed",
        "power_kw",
        "rotor_rpm",
        "gearbox_temp",
        "generator_temp",
        "vibration_rms",
        "pitch_deg",
    ),
    "pump": ("flow_m3h", "suction_bar", "discharge_bar", "motor_current_a", "motor_voltage_v"),
    "motor": ("winding_temp", "current_a", "speed_rpm", "load_pct"),
}

_REFERENCE_RUN_S = 6 * 3600.0


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One planned fault: the truth plus what the simulator needs (the hit sensor signal).

    ``onset`` and ``failure`` are epoch seconds.
    """

    twin_index: int
    twin_id: str
    kind: str
    onset: float
    failure: float
    signal: str | None = None

    @property
    def is_sensor(self) -> bool:
        return self.kind in SENSOR_KINDS

    def truth(self) -> FaultTruth:
        return FaultTruth(self.twin_id, self.kind, utc(self.onset), utc(self.failure), self.signal)


def plan_faults(
    twins: list[tuple[str, str]],
    seed: int,
    fault_fraction: float,
    start: float,
    duration_s: float,
) -> list[FaultSpec]:
    """Draw the faults of a plant: about ``fault_fraction`` of the twins of each type.

    ``twins`` is ``[(twin_id, twin_type), ...]`` in index order; the result is in index order.
    """
    rng = np.random.default_rng([seed, 2])
    scale = min(1.0, duration_s / _REFERENCE_RUN_S)
    specs: list[FaultSpec] = []
    for twin_type, kinds in KINDS_BY_TYPE.items():
        members = [i for i, (_, t) in enumerate(twins) if t == twin_type]
        n_faulty = round(fault_fraction * len(members))
        chosen = sorted(rng.permutation(members)[:n_faulty].tolist()) if members else []
        for k, index in enumerate(chosen):
            kind = kinds[k % len(kinds)]
            onset = round(rng.uniform(0.05, 0.4) * duration_s)
            if kind in SENSOR_KINDS:
                span = 3600.0 * scale
                signals = SENSOR_SIGNALS[twin_type]
                signal: str | None = signals[int(rng.integers(len(signals)))]
            else:
                latest = 0.95 * duration_s - onset
                span = min(rng.uniform(1.5, 4.0) * 3600.0 * scale, latest)
                signal = None
            failure = onset + max(1.0, round(span))
            specs.append(
                FaultSpec(index, twins[index][0], kind, start + onset, start + failure, signal)
            )
    specs.sort(key=lambda s: s.twin_index)
    return specs
