"""The simulated plant: twins, their faults, the command inbox, and partitions that run them.

A :class:`Plant` is cheap shared bookkeeping (twin list, fault plan, command inbox and log,
simulated clock), safe to use from several threads. The simulation itself runs in
:class:`PlantPartition` objects, each owning a disjoint set of twins (index modulo the number
of partitions) with a small picklable :class:`PartitionState`, so a Bytewax source can
snapshot and resume it.

Twins are assigned round-robin to wind_turbine, pump, motor and named by their 1-based index
over all twins: ``wt-001``, ``pump-002``, ``motor-003``, ``wt-004``...

Commands given to :meth:`Plant.apply` are checked at once (a refusal is logged right away)
and act at the start of the next chunk the owning partition generates. That moment depends
on thread timing, and it is the only thing that can differ between two runs with one seed.

>>> plant = Plant(PlantConfig(n_twins=3, duration_s=120, seed=1, fault_fraction=0.0))
>>> plant.twins
[('wt-001', 'wind_turbine'), ('pump-002', 'pump'), ('motor-003', 'motor')]
>>> [type(item).__name__ for item in plant.partition(0, 1).next_chunk()]
['TelemetryFrame', 'TelemetryFrame', 'TelemetryFrame', 'WaveformFrame']
"""

from __future__ import annotations

import copy
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from twinflow.connectors.simulator.commands import ACTIONABLE, CommandRecord, rejection
from twinflow.connectors.simulator.config import PlantConfig
from twinflow.connectors.simulator.faults import FaultSpec, plan_faults
from twinflow.connectors.simulator.machines import TYPE_ORDER
from twinflow.connectors.simulator.twin import TwinSim
from twinflow.core.errors import ConfigError
from twinflow.core.records import Command, FaultTruth, Incoming, WaveformFrame


class Plant:
    """A deterministic (per seed) simulated plant of wind turbines, pumps and motors."""

    def __init__(self, config: PlantConfig) -> None:
        self.config = config
        self._twins = [
            (f"{TYPE_ORDER[i % 3][1]}-{i + 1:03d}", TYPE_ORDER[i % 3][0])
            for i in range(config.n_twins)
        ]
        self._types = dict(self._twins)
        self._specs = plan_faults(
            self._twins,
            config.seed,
            config.fault_fraction,
            config.start_epoch,
            config.duration_s,
        )
        self._lock = threading.Lock()
        self._pending: dict[str, list[Command]] = {}
        self._log: list[CommandRecord] = []
        self._now = config.start_epoch

    @property
    def twins(self) -> list[tuple[str, str]]:
        """``(twin_id, twin_type)`` of every twin, in index order."""
        return list(self._twins)

    @property
    def faults(self) -> list[FaultTruth]:
        """Ground truth of every injected fault, in twin order."""
        return [s.truth() for s in self._specs]

    @property
    def fault_specs(self) -> list[FaultSpec]:
        """The fault plan with the simulator's details (which signal a sensor fault hits)."""
        return list(self._specs)

    @property
    def command_log(self) -> list[CommandRecord]:
        """Every command decision so far: refusals when received, acceptances when applied."""
        with self._lock:
            return list(self._log)

    @property
    def end(self) -> float:
        """Epoch seconds just after the last sample of the run."""
        return self.config.start_epoch + self.config.n_samples

    def now(self) -> float:
        """Newest simulated time emitted so far (epoch s): the latest telemetry timestamp or
        waveform end; the start of the run before anything was emitted. No emitted item is
        newer than ``now()`` once a consumer sees it."""
        with self._lock:
            return self._now

    def apply(self, command: Command) -> bool:
        """Queue a command for its twin's next chunk; ``False`` (and logged) if refused.

        Safe to call from any thread. Commands in a bookkeeping state (acknowledged,
        succeeded, ...) are not requests and are ignored without a log entry.
        """
        if command.status not in ACTIONABLE:
            return False
        reason = rejection(command, self._types)
        with self._lock:
            if reason is not None:
                self._log.append(
                    CommandRecord(command.command_id, command.twin_id, False, self._now, reason)
                )
                return False
            self._pending.setdefault(command.twin_id, []).append(command)
        return True

    def partition(
        self, index: int, count: int, resume: PartitionState | None = None
    ) -> PlantPartition:
        """The partition ``index`` of ``count``: twins whose index modulo ``count`` is ``index``.

        With ``resume`` (from :meth:`PlantPartition.snapshot`) it continues from there.
        """
        return PlantPartition(self, index, count, resume)

    def items(self) -> Iterator[Incoming]:
        """Everything the whole plant emits, chunk by chunk, from one partition."""
        part = self.partition(0, 1)
        while not part.done:
            yield from part.next_chunk()

    def _take(self, twin_ids: frozenset[str]) -> dict[str, list[Command]]:
        with self._lock:
            mine = {t: self._pending.pop(t) for t in twin_ids & self._pending.keys()}
        return mine

    def _record(self, record: CommandRecord) -> None:
        with self._lock:
            self._log.append(record)

    def _advance(self, t: float) -> None:
        with self._lock:
            self._now = max(self._now, t)


@dataclass(slots=True)
class PartitionState:
    """What a partition needs to continue exactly where it was (picklable)."""

    index: int
    count: int
    chunk: int
    twins: list[TwinSim]
    stats: Counter[str] = field(default_factory=Counter)


class PlantPartition:
    """The simulation of a disjoint subset of the plant's twins, one chunk per call."""

    def __init__(
        self, plant: Plant, index: int, count: int, resume: PartitionState | None = None
    ) -> None:
        if not 0 <= index < count:
            raise ConfigError(f"partition index {index} is outside 0..{count - 1}")
        self.plant = plant
        self.index = index
        self.count = count
        if resume is None:
            twins = [self._create(i) for i in range(index, plant.config.n_twins, count)]
            resume = PartitionState(index, count, 0, twins)
        elif (resume.index, resume.count) != (index, count):
            raise ConfigError(
                f"cannot resume simulator partition {index}/{count} from the state of "
                f"partition {resume.index}/{resume.count}; keep the number of partitions"
            )
        self._state = copy.deepcopy(resume)
        self.twin_ids = frozenset(t.twin_id for t in self._state.twins)

    def _create(self, i: int) -> TwinSim:
        twin_id, twin_type = self.plant.twins[i]
        fault = next((s for s in self.plant.fault_specs if s.twin_index == i), None)
        return TwinSim.create(self.plant.config, i, twin_id, twin_type, fault)

    @property
    def done(self) -> bool:
        """True once every chunk of the run has been generated."""
        return self._state.chunk >= self.plant.config.n_chunks

    @property
    def chunk(self) -> int:
        """Index of the next chunk to generate."""
        return self._state.chunk

    @property
    def stats(self) -> Counter[str]:
        """Counts of what was emitted: frames, raw, waveforms, bad, bad:<kind>, readings."""
        return Counter(self._state.stats)

    def next_chunk(self) -> list[Incoming]:
        """Apply pending commands, then generate the next chunk of every owned twin."""
        if self.done:
            return []
        cfg = self.plant.config
        first = self._state.chunk * cfg.chunk_samples
        n = min(cfg.chunk_samples, cfg.n_samples - first)
        t0 = cfg.start_epoch + first
        times = t0 + np.arange(n, dtype=np.float64)
        times.flags.writeable = False
        commands = self.plant._take(self.twin_ids)
        out: list[Incoming] = []
        for twin in self._state.twins:
            for cmd in commands.get(twin.twin_id, ()):
                detail = twin.machine.command(cmd.name, cmd.params)
                self.plant._record(CommandRecord(cmd.command_id, twin.twin_id, True, t0, detail))
            twin.emit_chunk(cfg, times, out, self._state.stats)
        self._state.chunk += 1
        if self._state.twins:
            newest = max((i.end for i in out if isinstance(i, WaveformFrame)), default=0.0)
            self.plant._advance(max(float(times[-1]), newest))
        return out

    def snapshot(self) -> PartitionState:
        """A copy of the state, to resume from with :meth:`Plant.partition`."""
        return copy.deepcopy(self._state)
