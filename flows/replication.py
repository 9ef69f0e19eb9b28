"""The replication sub-flow: an edge's forwarding and a central instance's storing.

:func:`replicate` is the one sub-flow :func:`~twinflow.flows.telemetry.build_flow` adds when
it is given a :class:`Replication`::

    replication   [forward_twin_state] [forward_windows] [forward_alerts]   (an edge)
                  [forward_command_outcomes]  -> property writes to the link's outbox
                  [downsample] -> [forward_telemetry]   raw telemetry, when forwarded
                  [desired_out]   desired changes made here -> desired writes
                  [received] -> [received_out]   writes new to this replica (central)
                  [sync_status] -> [sync_status_out]   every tracked property, periodically
                  [stamp_sync]   twin states carry their properties' sync status

An edge's received desired changes enter the flow as a request source
(:meth:`Replication.desired_source`, added by ``twinflow run`` beside its other request
sources), so the command loop issues their commands like any desired change. The sources
end when ``until()`` is true (a test's or a finite run's stop condition).
"""

from __future__ import annotations

import atexit
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream, operator
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.operators import KeyedStream
from bytewax.outputs import DynamicSink, Sink, StatelessSinkPartition

from twinflow.connectors.files import JsonLinesSink
from twinflow.connectors.replication.link import ReplicaLink
from twinflow.connectors.replication.node import Received, ReplicationNode
from twinflow.core.errors import ConfigError
from twinflow.core.records import (
    Alert,
    Command,
    DesiredChange,
    Frame,
    TelemetryFrame,
    TwinState,
    WindowFeatures,
)
from twinflow.operators.replication.downsample import Downsample
from twinflow.operators.replication.fleet import SiteStatus
from twinflow.operators.replication.status import PropertySync
from twinflow.operators.replication.twin_sync import TwinSync

if TYPE_CHECKING:
    from twinflow.flows.deployment import Deployment
    from twinflow.flows.replication_config import ReplicationSettings


class _ForwardPartition(StatelessSinkPartition[Any]):
    def __init__(self, call: Callable[[Any], object]) -> None:
        self._call = call

    def write_batch(self, items: list[Any]) -> None:
        for _key, record in items:
            self._call(record)


class NodeSink(DynamicSink[Any]):
    """Hands each ``(key, record)`` to one of the node's methods (every worker the same node)."""

    def __init__(self, call: Callable[[Any], object]) -> None:
        self.call = call

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ForwardPartition:
        return _ForwardPartition(self.call)


class _DrainPartition(StatelessSourcePartition[Any]):
    def __init__(self, source: NodeSource) -> None:
        self._source = source
        self._awake: datetime | None = None
        self._ended = False

    def next_batch(self) -> list[Any]:
        s = self._source
        done = s.until is not None and s.until()
        batch = s.take()
        if batch:
            self._awake = None
            return batch
        if done:
            if s.last is not None and not self._ended:
                self._ended = True
                return s.last()
            raise StopIteration
        self._awake = datetime.now(UTC) + timedelta(seconds=s.idle_s)
        return []

    def next_awake(self) -> datetime | None:
        return self._awake


class NodeSource(DynamicSource[Any]):
    """Items the node has for the flow (``take()``), idling ``idle_s`` when there are none;
    ends once ``until()`` is true and nothing is left, after one last batch of ``last()``
    when given. Only worker 0 drains, so the workers of one process hand each item over
    once."""

    def __init__(
        self,
        take: Callable[[], list[Any]],
        *,
        idle_s: float = 0.05,
        until: Callable[[], bool] | None = None,
        last: Callable[[], list[Any]] | None = None,
    ) -> None:
        self.take = take
        self.idle_s = idle_s
        self.until = until
        self.last = last

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DrainPartition:
        if worker_index != 0:
            return _DrainPartition(NodeSource(list, idle_s=self.idle_s, until=lambda: True))
        return _DrainPartition(self)


class _Every:
    """The node's sync status every ``interval_s`` seconds (and once more at the end)."""

    def __init__(self, node: ReplicationNode, interval_s: float) -> None:
        self.node = node
        self.interval_s = interval_s
        self._next = 0.0

    def __call__(self) -> list[PropertySync]:
        now = time.monotonic()
        if now < self._next:
            return []
        self._next = now + self.interval_s
        return self.node.sync_status()


@dataclass
class Replication:
    """What :func:`~twinflow.flows.telemetry.build_flow` needs to replicate: the node, where
    received writes and sync status go, how often the status is taken, and when the
    replication sources end (``None``: never)."""

    node: ReplicationNode
    received: Sink[Any] | None = None
    sync_status: Sink[Any] | None = None
    status_interval_s: float = 5.0
    until: Callable[[], bool] | None = None
    #: Further sinks that take received writes, sync status and a central instance's site
    #: summaries (a PostgreSQL sink).
    stores: tuple[Sink[Any], ...] = ()
    #: Where a central instance's site summaries go (:mod:`twinflow.flows.rollups`).
    fleet_status: Sink[Any] | None = None

    @classmethod
    def with_files(
        cls,
        node: ReplicationNode,
        out_dir: Path,
        status_interval_s: float = 5.0,
        until: Callable[[], bool] | None = None,
        database_url: str | None = None,
    ) -> Replication:
        """Received writes to ``replicated.jsonl`` and sync status to ``sync_status.jsonl``,
        and both to the database at ``database_url`` when given (tables ``replicated_writes``
        and ``sync_status``); a central instance's site summaries to ``fleet_status.jsonl``,
        and to the database too (``fleet_status`` and ``fleet_status_latest``)."""
        stores: tuple[Sink[Any], ...] = ()
        if database_url:
            from twinflow.connectors.postgres import PostgresSink

            stores = (PostgresSink(database_url, max_latency_s=0.5),)
        return cls(
            node,
            JsonLinesSink(out_dir / "replicated.jsonl", Received.to_json),
            JsonLinesSink(out_dir / "sync_status.jsonl", PropertySync.to_json),
            status_interval_s,
            until,
            stores,
            JsonLinesSink(out_dir / "fleet_status.jsonl", SiteStatus.to_json),
        )

    def desired_source(self) -> NodeSource:
        """The desired changes received for this edge's twins, as a request source."""
        return NodeSource(self.node.take_desired, until=self.until)

    def quiet_source(self) -> NodeSource:
        """A telemetry source with nothing in it, for a central instance whose twins send
        it no telemetry (the flow needs one); it ends with the replication sources."""
        return NodeSource(list, idle_s=0.5, until=self.until)


@operator
def replicate(
    step_id: str,
    flow: Dataflow,
    states: KeyedStream[TwinState],
    windows: KeyedStream[WindowFeatures],
    alerts: KeyedStream[Alert],
    commands: KeyedStream[Command],
    *desired: KeyedStream[DesiredChange],
    replication: Replication,
    telemetry: KeyedStream[Frame] | None = None,
) -> KeyedStream[TwinState]:
    """Forward (an edge; ``telemetry`` downsampled when ``telemetry`` is forwarded), write
    desired changes made here, store what is received, and write the sync status (see the
    module docstring); returns the twin states stamped with their properties' sync status
    (:class:`TwinSync`), to write out instead of ``states``."""
    node = replication.node
    if node.role == "edge" and telemetry is not None and "telemetry" in node.forward_streams:
        buckets = op.stateful_flat_map("downsample", telemetry, Downsample(node.telemetry_every_s))
        op.output("forward_telemetry", buckets, NodeSink(node.forward))
    if node.role == "edge":
        streams: dict[str, Stream[Any]] = {
            "twin_state": states,
            "windows": windows,
            "alerts": alerts,
            "command_outcomes": commands,
        }
        for name in node.forward_streams:
            if name in streams:
                op.output(f"forward_{name}", streams[name], NodeSink(node.forward))
        if "command_outcomes" not in node.forward_streams:  # answers to desired changes
            op.output("answer_desired", commands, NodeSink(node.forward))
    if desired:
        wanted = desired[0] if len(desired) == 1 else op.merge("merge_desired", *desired)
        op.output("desired_out", wanted, NodeSink(node.desire))
    if replication.received is not None:
        got = op.input("received", flow, NodeSource(node.take_received, until=replication.until))
        keyed = op.key_on("key_received", got, _twin_of)
        op.output("received_out", keyed, replication.received)
        for i, store in enumerate(replication.stores):
            op.output(f"received_store_{i}", keyed, store)
    every = _Every(node, replication.status_interval_s)
    src = NodeSource(every, idle_s=0.2, until=replication.until, last=node.sync_status)
    status = op.input("sync_status", flow, src)
    keyed_status = op.key_on("key_sync", status, _twin_of)
    if replication.sync_status is not None:
        op.output("sync_status_out", keyed_status, replication.sync_status)
        for i, store in enumerate(replication.stores):
            op.output(f"sync_status_store_{i}", keyed_status, store)
    both = op.merge("states_and_sync", states, keyed_status)
    return op.stateful_flat_map("stamp_sync", both, stamp_sync)


@operator
def replicated_telemetry(
    step_id: str, flow: Dataflow, replication: Replication
) -> KeyedStream[TelemetryFrame]:
    """A central instance's received telemetry buckets, each once, as one-row frames keyed
    by twin (for the flow's telemetry sinks)."""
    node = replication.node
    node.feeds.watch_telemetry()
    src = NodeSource(node.feeds.take_telemetry, until=replication.until)
    got = op.input("received", flow, src)
    return op.key_on("key_by_twin", got, _frame_twin)


def _frame_twin(frame: TelemetryFrame) -> str:
    return frame.twin_id


def stamp_sync(
    kept: TwinSync | None, item: TwinState | PropertySync
) -> tuple[TwinSync, list[TwinState]]:
    """``stamp_sync`` (stateful_flat_map): a twin's states with its sync status."""
    kept = kept if kept is not None else TwinSync()
    return kept, kept.update(item)


def _twin_of(item: Received | PropertySync) -> str:
    return item.write.key.twin_id if isinstance(item, Received) else item.twin_id


def until_settled(
    node: ReplicationNode,
    stop: Callable[[], bool] | None = None,
    quiet_s: float = 2.0,
    drain_s: float = 30.0,
) -> Callable[[], bool]:
    """When a finite run (``--until-end``) of a replication flow ends: at ``stop()``, or
    once the node is :meth:`~ReplicationNode.settled` (its outbox drained and acknowledged,
    nothing waiting for the flow, nothing written or received for ``quiet_s``). The node's
    stop then waits up to ``drain_s`` for what the flow forwarded after that."""
    node.drain_s = drain_s

    def done() -> bool:
        return (stop is not None and stop()) or node.settled(quiet_s)

    return done


#: The nodes this process started (:func:`started`), stopped by :func:`stop_nodes`.
_RUNNING: list[ReplicationNode] = []


def started(node: ReplicationNode) -> ReplicationNode:
    """Start ``node``; it stops when the process exits, or at :func:`stop_nodes`."""
    if not _RUNNING:
        atexit.register(stop_nodes)
    _RUNNING.append(node.start())
    return node


def running() -> tuple[ReplicationNode, ...]:
    """The nodes :func:`started` and not stopped yet."""
    return tuple(_RUNNING)


def stop_nodes() -> None:
    """Stop every node :func:`started` (their outboxes keep what was not sent)."""
    while _RUNNING:
        _RUNNING.pop().stop()


def node_for(dep: Deployment, settings: ReplicationSettings, out_dir: Path) -> ReplicationNode:
    """The replication node of a deployment with its ``replication:`` section; not started."""
    from dataclasses import replace

    from twinflow.connectors.replication import DiskOutbox
    from twinflow.operators.replication import TwinReplica
    from twinflow.operators.replication.consistency import consistency_of

    central = settings.role == "central"
    types = dep.twin_types

    def consistency(twin_id: str, prop: str) -> str:
        kind = dep.types.get(types.get(twin_id, ""))
        return "eventual" if kind is None else consistency_of(kind, prop)

    replica = TwinReplica(
        settings.replica,
        causal=lambda k: k.kind == "desired" and consistency(k.twin_id, k.name) == "causal",
        hold_ms=int(settings.causal_hold_s * 1000),
        max_held=settings.causal_max_held,
    )
    box = DiskOutbox(
        settings.outbox_dir(out_dir),
        segment_bytes=min(4 * 1024 * 1024, settings.outbox_mb * 1024 * 1024),
        max_bytes=settings.outbox_mb * 1024 * 1024,
        fsync=settings.fsync,
    )
    base = settings.topic_base()
    link: ReplicaLink
    if settings.link == "mqtt":
        from twinflow.connectors.replication.mqtt_link import MqttLink, central_topics, edge_topics

        mqtt = dep.mqtt
        if mqtt is None:
            raise ConfigError(f"{dep.path}: replication.link is mqtt but services.mqtt is not set")
        client = replace(mqtt, client_id=f"{mqtt.client_id}-replication-{settings.replica}")
        topics = central_topics(base) if central else edge_topics(base, settings.replica)
        link = MqttLink(replica, box, client, *topics, relay=central)
    else:
        from twinflow.connectors.replication.kafka_link import KafkaLink, kafka_topics

        kafka = dep.kafka
        if kafka is None:
            raise ConfigError(
                f"{dep.path}: replication.link is kafka but services.kafka is not set"
            )
        produce, consume = kafka_topics(base, central)
        group = f"{kafka.group_id}-replication-{settings.replica}"
        link = KafkaLink(
            replica, box, kafka.bootstrap, produce, consume, group, relay=central,
            config=kafka.extra,
        )  # fmt: skip
    return ReplicationNode(
        link,
        settings.role,
        owned={} if central else types,
        consistency=consistency,
        forward=settings.forward,
        desired_ttl_s=settings.desired_ttl_s,
        state_path=settings.outbox_dir(out_dir) / "replica-state.jsonl",
        ask_state=True,
        silent_after_s=settings.site_silent_s,
        telemetry_every_s=settings.telemetry_every_s,
        report_link=True,
    )


__all__ = [
    "NodeSink",
    "NodeSource",
    "Replication",
    "node_for",
    "replicate",
    "replicated_telemetry",
    "running",
    "started",
    "stop_nodes",
    "until_settled",
]
