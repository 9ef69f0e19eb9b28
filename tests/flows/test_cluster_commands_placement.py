"""The placement rule the actuator sinks rely on, on Bytewax itself (no services).

:class:`~twinflow.connectors.placement.PlacedCommands` lists a protocol's source partition
keys, then the command-only devices under keys that sort last, and expects Bytewax to build
the partition of each read key on the worker that holds the source partition of the same
key, and to hand each command to the partition of its twin's device. Here four workers run a
source of twelve device keys beside a placed sink of those keys and four command-only ones,
with keys that sort in another order than they are listed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import StatelessSinkPartition
from bytewax.testing import TestingSource, cluster_main

from twinflow.connectors.placement import (
    COMMAND_ONLY,
    DevicePlacement,
    PlacedCommands,
    placement_of,
)
from twinflow.core.records import Command, CommandStatus
from twinflow.flows.command_steps import send_commands

READ = [f"opc.tcp://10.0.{i % 3}.{20 - i}:4840" for i in range(8)] + [
    f"10.1.0.{i}:502" for i in (9, 3, 12, 5)
]
ONLY = ["opc.tcp://10.9.0.1:4840", "10.9.0.2:502", "10.9.0.3:502", "plc-7:502"]


class Where:
    """Which worker thread built which partition, and where each command was written."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.source: dict[str, str] = {}
        self.sink: dict[str, str] = {}
        self.wrote: dict[str, str] = {}  # twin -> thread

    def note(self, table: dict[str, str], key: str) -> None:
        with self.lock:
            table[key] = threading.current_thread().name


class Reads(FixedPartitionedSource[str, None]):
    def __init__(self, where: Where) -> None:
        self.where = where

    def list_parts(self) -> list[str]:
        return list(READ)

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Once:
        self.where.note(self.where.source, for_part)
        return _Once()


class _Once(StatefulSourcePartition[str, None]):
    def next_batch(self) -> list[str]:
        raise StopIteration

    def snapshot(self) -> None:
        return None


class Recording:
    """A placeable command sink that records the thread each command is written on."""

    def __init__(self, where: Where, twins: dict[str, str]) -> None:
        self.where = where
        self.twins = twins

    def placement(self) -> DevicePlacement:
        return placement_of(READ, self.twins)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Recorder:
        return _Recorder(self.where)


class _Recorder(StatelessSinkPartition[Command]):
    def __init__(self, where: Where) -> None:
        self.where = where

    def write_batch(self, items: list[Command]) -> None:
        for c in items:
            self.where.note(self.where.wrote, c.twin_id)


class Placed(PlacedCommands):
    """Notes which thread builds each partition."""

    def __init__(self, where: Where, sink: Recording) -> None:
        super().__init__("test", sink)
        self.where = where

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> Any:
        self.where.note(self.where.sink, for_part)
        return super().build_part(step_id, for_part, resume_state)


def commands(twins: Iterable[str]) -> list[Command]:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        Command(
            f"c-{t}",
            t,
            "pump",
            "set_flow",
            {"m3h": 100.0},
            at,
            at,
            "test",
            status=CommandStatus.QUEUED,
        )
        for t in twins
    ]


def test_placed_partitions_sit_with_the_source_partitions_of_their_keys() -> None:
    twins = {f"twin-{i}": key for i, key in enumerate(READ + ONLY)}
    where = Where()
    sink = Placed(where, Recording(where, twins))
    assert sink.list_parts()[: len(READ)] == READ
    assert sorted(sink.list_parts())[len(READ) :] == sorted(COMMAND_ONLY + k for k in ONLY)

    flow = Dataflow("placement")
    op.inspect("read", op.input("devices", flow, Reads(where)), lambda *_: None)
    queued = op.input("commands", flow, TestingSource(commands(twins)))
    send_commands("actuators_out", queued, sink)
    cluster_main(flow, [], 0, worker_count_per_proc=4)

    assert set(where.source) == set(READ)
    assert {k: where.sink[k] for k in READ} == where.source  # each read key: same worker
    assert len(set(where.source.values())) == 4  # and the devices spread over the workers
    # Each command written on the worker of its device's partition.
    key_of = sink.sink.placement().key_of
    assert {t: where.wrote[t] for t in twins} == {t: where.sink[key_of[t]] for t in twins}
