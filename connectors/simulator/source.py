"""Bytewax edges of the simulated plant: a partitioned source and a command sink.

:class:`SimulatedPlantSource` has ``partitions`` fixed partitions, each owning the twins whose
index modulo ``partitions`` is its number; one ``next_batch`` call returns one chunk as a batch
(every item of every owned twin for ``chunk_s`` simulated seconds). Its snapshot is the partition's
state, so a resumed flow continues with the chunk after the snapshot, identically.

:class:`SimulatorCommandSink` hands every :class:`~operators.records.Command` to
:meth:`Plant.apply`; a command acts at the start of the next chunk of its twin's partition.
That moment is the only nondeterminism between runs. Source and sink must share one
``Plant`` object, so closing the loop needs the flow's workers in one process.
"""

from __future__ import annotations

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.simulator.plant import PartitionState, Plant, PlantPartition
from operators.errors import ConfigError
from operators.records import Command, Incoming

_PREFIX = "sim-"


class _SourcePartition(StatefulSourcePartition[Incoming, PartitionState]):
    """One plant partition as a Bytewax source partition; one batch is one chunk."""

    def __init__(self, part: PlantPartition) -> None:
        self._part = part

    def next_batch(self) -> list[Incoming]:
        if self._part.done:
            raise StopIteration
        return self._part.next_chunk()

    def snapshot(self) -> PartitionState:
        return self._part.snapshot()


class SimulatedPlantSource(FixedPartitionedSource[Incoming, PartitionState]):
    """The plant's output as a Bytewax input: items are frames, waveforms and raw messages.

    Every ``next_batch`` returns one chunk of the partition (in twin order; for a twin: its
    telemetry frame or raw JSON message, then its waveform bursts, bad messages after the
    item they were derived from).
    """

    def __init__(self, plant: Plant, partitions: int = 4) -> None:
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise ConfigError(
                f"SimulatedPlantSource partitions must be an integer >= 1, got {partitions!r}"
            )
        self.plant = plant
        self.partitions = partitions

    def list_parts(self) -> list[str]:
        return [f"{_PREFIX}{i}" for i in range(self.partitions)]

    def build_part(
        self, step_id: str, for_part: str, resume_state: PartitionState | None
    ) -> _SourcePartition:
        index = int(for_part.removeprefix(_PREFIX))
        return _SourcePartition(self.plant.partition(index, self.partitions, resume_state))


class _CommandPartition(StatelessSinkPartition[Command]):
    def __init__(self, plant: Plant) -> None:
        self._plant = plant

    def write_batch(self, items: list[Command]) -> None:
        for item in items:
            if not isinstance(item, Command):
                raise TypeError(
                    f"SimulatorCommandSink takes operators.records.Command items, got "
                    f"{type(item).__name__}; route only commands to this sink"
                )
            self._plant.apply(item)


class SimulatorCommandSink(DynamicSink[Command]):
    """Deliver the flow's commands to the simulated plant (any worker, any thread)."""

    def __init__(self, plant: Plant) -> None:
        self.plant = plant

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CommandPartition:
        return _CommandPartition(self.plant)
