"""Bytewax edges of the simulated plant: a partitioned source and a command sink.

:class:`SimulatedPlantSource` has ``partitions`` fixed partitions, each owning the twins whose
index modulo ``partitions`` is its number; one ``next_batch`` call returns one chunk as a batch
(every item of every owned twin for ``chunk_s`` simulated seconds). Its snapshot is the partition's
state, so a resumed flow continues with the chunk after the snapshot, identically.

:class:`SimulatorCommandSink` hands every :class:`~twinflow.core.records.Command` to
:meth:`Plant.apply`; a command acts at the start of the next chunk of its twin's partition.
That moment is the only nondeterminism between runs. Source and sink must share one
``Plant`` object, so closing the loop needs the flow's workers in one process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from twinflow.connectors.simulator.plant import PartitionState, Plant, PlantPartition
from twinflow.core.errors import ConfigError
from twinflow.core.records import Command, CommandOutcome, CommandStatus, Incoming
from twinflow.core.times import utc

if TYPE_CHECKING:
    from twinflow.connectors.feedback import CommandFeedback

_PREFIX = "sim-"


class _SourcePartition(StatefulSourcePartition[Incoming, PartitionState]):
    """One plant partition as a Bytewax source partition; one batch is one chunk."""

    def __init__(self, part: PlantPartition, on_done: Callable[[], None]) -> None:
        self._part = part
        self._on_done = on_done

    def next_batch(self) -> list[Incoming]:
        if self._part.done:
            self._on_done()
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
        self._done: set[int] = set()
        self._lock = threading.Lock()

    def done(self) -> bool:
        """Whether every partition has emitted its last chunk (in this process)."""
        with self._lock:
            return len(self._done) == self.partitions

    def _mark_done(self, index: int) -> None:
        with self._lock:
            self._done.add(index)

    def list_parts(self) -> list[str]:
        return [f"{_PREFIX}{i}" for i in range(self.partitions)]

    def build_part(
        self, step_id: str, for_part: str, resume_state: PartitionState | None
    ) -> _SourcePartition:
        index = int(for_part.removeprefix(_PREFIX))
        part = self.plant.partition(index, self.partitions, resume_state)
        return _SourcePartition(part, lambda: self._mark_done(index))


class _CommandPartition(StatelessSinkPartition[Command]):
    def __init__(self, plant: Plant, feedback: CommandFeedback | None) -> None:
        self._plant = plant
        self._feedback = feedback

    def write_batch(self, items: list[Command]) -> None:
        for item in items:
            if not isinstance(item, Command):
                raise TypeError(
                    f"SimulatorCommandSink takes twinflow.core.records.Command items, got "
                    f"{type(item).__name__}; route only commands to this sink"
                )
            accepted = self._plant.apply(item)
            if self._feedback is not None and item.status is CommandStatus.QUEUED:
                at = utc(self._plant.now())
                report = self._feedback.report
                if accepted:
                    report(CommandOutcome(item.command_id, item.twin_id, CommandStatus.SENT, at))
                    status, detail = CommandStatus.ACKNOWLEDGED, "accepted by the simulated device"
                else:
                    status, detail = CommandStatus.FAILED, "refused by the simulated device"
                report(CommandOutcome(item.command_id, item.twin_id, status, at, detail))


class SimulatorCommandSink(DynamicSink[Command]):
    """Deliver the flow's commands to the simulated plant (any worker, any thread).

    With ``feedback``, each queued command's outcome is reported there (sent and acknowledged
    when the simulated device takes it, failed when it refuses it), as a real device's would.
    """

    def __init__(self, plant: Plant, feedback: CommandFeedback | None = None) -> None:
        self.plant = plant
        self.feedback = feedback

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CommandPartition:
        return _CommandPartition(self.plant, self.feedback)
