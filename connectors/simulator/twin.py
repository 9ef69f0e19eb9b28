"""One simulated twin and what it emits per chunk: a telemetry frame, waveforms, bad data.

Each twin owns a ``numpy.random.Generator`` seeded from ``(seed, twin index)``, so what a
twin emits does not depend on which partition runs it. Per chunk it draws, in a fixed order:
machine noise, sensor-fault noise, then per emitted item whether it goes out as JSON and
whether a bad message follows it, then the waveform bursts. Commands change the machine's
state, never how many numbers are drawn, so a commanded run stays comparable to an
uncommanded one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from twinflow.connectors.simulator.badmessages import BAD_KINDS, SOURCE, bad_message
from twinflow.connectors.simulator.config import PlantConfig
from twinflow.connectors.simulator.dynamics import severity
from twinflow.connectors.simulator.faults import FaultSpec
from twinflow.connectors.simulator.machines import Machine, Motor, create_machine
from twinflow.connectors.simulator.sensors import SensorState, apply_sensor_fault
from twinflow.connectors.simulator.wire import encode_frame
from twinflow.core.records import Incoming, RawMessage, TelemetryFrame, WaveformFrame
from twinflow.operators.catalog import CATALOG

#: Catalog ranges of every scalar signal, per type, in catalog order.
RANGES: dict[str, dict[str, tuple[float, float]]] = {
    name: {s.name: (s.low, s.high) for s in t.scalar_signals} for name, t in CATALOG.items()
}
_VIBRATION = CATALOG["motor"].signal("vibration")


def twin_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of twin ``index`` (0-based) of a plant seeded with ``seed``."""
    return np.random.default_rng([seed, 1, index])


@dataclass(slots=True)
class TwinSim:
    """Everything that evolves for one twin: small and picklable (a Bytewax snapshot)."""

    index: int
    twin_id: str
    twin_type: str
    machine: Machine
    rng: np.random.Generator
    fault: FaultSpec | None = None
    sensor: SensorState = field(default_factory=SensorState)

    @classmethod
    def create(
        cls,
        config: PlantConfig,
        index: int,
        twin_id: str,
        twin_type: str,
        fault: FaultSpec | None,
    ) -> TwinSim:
        rng = twin_rng(config.seed, index)
        machine = create_machine(twin_type, rng, config.start_epoch)
        return cls(index, twin_id, twin_type, machine, rng, fault)

    def emit_chunk(
        self, config: PlantConfig, times: np.ndarray, out: list[Incoming], stats: Counter[str]
    ) -> None:
        """Advance one chunk at ``times`` and append what the twin sends to ``out``."""
        fault = self.fault
        machine_fault: str | None = None
        sev = np.zeros(len(times))
        if fault is not None and not fault.is_sensor:
            machine_fault = fault.kind
            sev = severity(times, fault.onset, fault.failure)
        values = self.machine.signals(times, self.rng, machine_fault, sev)
        ranges = RANGES[self.twin_type]
        signals = {name: np.clip(values[name], lo, hi) for name, (lo, hi) in ranges.items()}
        if fault is not None and fault.is_sensor and fault.signal is not None:
            lo, hi = ranges[fault.signal]
            signals[fault.signal] = apply_sensor_fault(
                fault, self.sensor, times, signals[fault.signal], lo, hi, self.rng
            )
        frame = TelemetryFrame(self.twin_id, self.twin_type, times, signals)
        received = float(times[-1])
        as_json, bad = self.rng.random(2)
        if as_json < config.raw_message_rate:
            out.append(RawMessage(SOURCE, encode_frame(frame), received))
            stats["raw"] += 1
        else:
            out.append(frame)
            stats["frames"] += 1
        stats["readings"] += frame.readings
        self._maybe_bad(config, bad, frame, received, out, stats)
        if isinstance(self.machine, Motor):
            self._emit_bursts(config, times, frame, machine_fault, out, stats)

    def _emit_bursts(
        self,
        config: PlantConfig,
        times: np.ndarray,
        frame: TelemetryFrame,
        machine_fault: str | None,
        out: list[Incoming],
        stats: Counter[str],
    ) -> None:
        """One waveform per burst interval whose start falls inside this chunk."""
        assert isinstance(self.machine, Motor)
        fault = self.fault
        start = config.start_epoch
        offset, n = float(times[0]) - start, len(times)
        interval = config.burst_interval_s
        j = int(np.ceil(offset / interval))
        while j * interval < offset + n:
            t_burst = start + j * interval
            sev = 0.0
            if machine_fault is not None and fault is not None:
                sev = float(severity(np.array([t_burst]), fault.onset, fault.failure)[0])
            samples = self.machine.vibration(
                config.waveform_samples, config.waveform_rate, machine_fault, sev, self.rng
            )
            np.clip(samples, _VIBRATION.low, _VIBRATION.high, out=samples)
            wave = WaveformFrame(
                self.twin_id,
                self.twin_type,
                _VIBRATION.name,
                t_burst,
                config.waveform_rate,
                samples,
            )
            out.append(wave)
            stats["waveforms"] += 1
            stats["readings"] += wave.readings
            self._maybe_bad(config, self.rng.random(), frame, wave.end, out, stats)
            j += 1

    def _maybe_bad(
        self,
        config: PlantConfig,
        draw: float,
        frame: TelemetryFrame,
        received: float,
        out: list[Incoming],
        stats: Counter[str],
    ) -> None:
        """After a good item a bad message may follow: ``bad_message_rate`` of all items are bad."""
        rate = config.bad_message_rate
        if draw < rate / (1.0 - rate):
            kind = BAD_KINDS[int(self.rng.integers(len(BAD_KINDS)))]
            out.append(bad_message(kind, frame, received, self.rng))
            stats["bad"] += 1
            stats[f"bad:{kind}"] += 1
