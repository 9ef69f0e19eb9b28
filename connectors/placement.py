"""Commands placed on the worker that reads their twin's device: :class:`PlacedCommands`.

Bytewax places the partitions of a fixed-partitioned step by their keys: it sorts the keys
every worker lists and gives the key at sorted position ``i`` to worker ``i`` modulo the
workers of the cluster, the same in every process (measured on bytewax 0.21; keyed
``stateful`` steps are routed another way). So a sink partition whose key sits at the same
sorted position as a source partition's key, in a list of the same keys, is built on the
source partition's worker. :class:`PlacedCommands` is a ``FixedPartitionedSink`` whose
partitions are a protocol's device-connection keys, exactly its source's partition keys
(OPC UA: server connection; Modbus: ``host:port``), followed by the devices that are only
commanded, under keys that sort after every read key (:data:`COMMAND_ONLY`), so that they do
not shift the read keys' positions. ``part_fn`` sends a command to the partition of its
twin's device; the protocol sink then writes over the source's own connection when it finds
it in its process (:mod:`twinflow.connectors.shared_connections`).

A protocol sink takes part by offering :meth:`Placeable.placement`; its other commands (of
twins it does not bind) are left to the other sinks of the flow.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition, StatelessSinkPartition

from twinflow.core.records import Command

log = logging.getLogger(__name__)

#: Prefix of the keys of devices that no source reads; "~" sorts after the characters that
#: begin an OPC UA URL or a Modbus host.
COMMAND_ONLY = "~command-only "


@dataclass(frozen=True)
class DevicePlacement:
    """Where a protocol's commands go: ``read`` are its source's partition keys (device
    connections), ``key_of`` maps each twin to its device's key (a read key, or
    :data:`COMMAND_ONLY` + key for a device no source reads)."""

    read: tuple[str, ...]
    key_of: Mapping[str, str]


@runtime_checkable
class Placeable(Protocol):
    """A command sink whose commands can be placed by device connection."""

    def placement(self) -> DevicePlacement: ...

    def build(
        self, step_id: str, worker_index: int, worker_count: int
    ) -> StatelessSinkPartition[Command]: ...


def placement_of(read: Sequence[str], key_of: Mapping[str, str]) -> DevicePlacement:
    """A :class:`DevicePlacement` in which twins of devices outside ``read`` get a
    command-only key."""
    known = set(read)
    return DevicePlacement(
        tuple(read),
        {t: k if k in known else COMMAND_ONLY + k for t, k in key_of.items()},
    )


class _Placed(StatefulSinkPartition[Command, None]):
    """One device connection's commands, handed to the protocol sink's partition."""

    def __init__(self, inner: StatelessSinkPartition[Command], twins: Mapping[str, str]) -> None:
        self.inner = inner
        self.twins = twins

    def write_batch(self, items: list[Command]) -> None:
        mine = [c for c in items if c.twin_id in self.twins]  # others: other protocols' sinks
        if mine:
            self.inner.write_batch(mine)

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self.inner.close()


class PlacedCommands(FixedPartitionedSink[Command, None]):
    """``(twin_id, command)`` pairs to ``sink``, each on the worker of its device's source
    partition; commands of twins ``sink`` does not place are dropped (another sink's)."""

    def __init__(self, name: str, sink: Placeable) -> None:
        self.name = name
        self.sink = sink
        p = sink.placement()
        self.parts = list(dict.fromkeys([*p.read, *p.key_of.values()])) or [COMMAND_ONLY + name]
        order = {key: i for i, key in enumerate(sorted(self.parts))}
        self.twins = dict(p.key_of)
        self.index = {twin: order[key] for twin, key in p.key_of.items()}
        read_order = sorted(p.read)
        moved = [k for k in p.read if order[k] != read_order.index(k)]
        if moved:
            log.warning(
                "%s commands: device keys %s sort after the command-only ones; their commands "
                "are written from another worker than their source's",
                name,
                ", ".join(moved),
            )

    def list_parts(self) -> list[str]:
        return list(self.parts)

    def part_fn(self, item_key: str) -> int:
        return self.index.get(item_key, 0)

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Placed:
        return _Placed(self.sink.build(step_id, 0, 1), self.twins)


def placed_sinks(routes: Mapping[str, Any]) -> dict[str, PlacedCommands]:
    """A :class:`PlacedCommands` for each route whose sink is :class:`Placeable`."""
    return {
        name: PlacedCommands(name, sink)
        for name, sink in routes.items()
        if isinstance(sink, Placeable)
    }


__all__ = [
    "COMMAND_ONLY",
    "DevicePlacement",
    "Placeable",
    "PlacedCommands",
    "placed_sinks",
    "placement_of",
]
