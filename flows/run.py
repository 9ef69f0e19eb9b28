"""``twinflow run CONFIG --out DIR``: the telemetry flow on a deployment's real sources.

Sources: an MQTT source for the MQTT twins, an OPC UA source for the OPC UA twins, a Modbus
source for the Modbus twins and, when ``services.kafka.telemetry_topics`` is set, a Kafka
source. Outputs: the embedded files under ``--out``; with Kafka configured, the alert,
command and twin-state topics (and the roll-up topic when ``rollups_topic`` is set); with a
database URL, PostgreSQL/TimescaleDB (apply the schema first with ``twinflow db migrate``).
Commands go back to each twin over its own protocol.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from bytewax.dataflow import Dataflow

from twinflow.connectors import registry
from twinflow.connectors.actuators import CommandRouter
from twinflow.connectors.feedback import CommandFeedback, CommandFeedbackSource
from twinflow.connectors.placement_keys import Placement, place
from twinflow.core.backoff import Backoff
from twinflow.flows.cluster import Cluster
from twinflow.flows.decide_steps import decide_for
from twinflow.flows.deployment import Deployment
from twinflow.flows.kafka_lag import KafkaLag, is_kafka
from twinflow.flows.metrics import RunStats
from twinflow.flows.observe import Observer, per_reading_rules
from twinflow.flows.outputs import file_outputs
from twinflow.flows.shutdown import stoppable
from twinflow.flows.telemetry import FlowOutputs, build_flow

#: Bytewax's epoch when no snapshot is kept: a year, so a run without recovery takes none.
UNKEPT_EPOCH = timedelta(days=365)


def epoch_interval(snapshot_interval_s: float, recovery: bool) -> timedelta:
    """Bytewax's epoch: ``--snapshot-interval`` with recovery, else :data:`UNKEPT_EPOCH`.

    At the end of every epoch Bytewax asks each stateful step for a snapshot of every twin it
    touched (Bytewax's own ``stateful_map`` deep-copies the state), with or without recovery,
    and only keeps them with recovery. In ``bench_e2e --latency`` (200 twins, 50k readings/s)
    that held the worker 0.2-0.5 s every 10 s, and the alerts behind it; without recovery it
    buys nothing, so such a run does not end epochs.

    >>> epoch_interval(10, recovery=True), epoch_interval(10, recovery=False).days
    (datetime.timedelta(seconds=10), 365)
    """
    return timedelta(seconds=snapshot_interval_s) if recovery else UNKEPT_EPOCH


def settle_heap() -> None:
    """Collect once, then move every object alive (modules, twin types, the built flow) to
    the collector's permanent generation, just before the flow starts: its full passes during
    the run then scan only what the run made. In ``bench_e2e --latency`` (200 twins, a busy
    machine) a full pass held the worker 0.08-1.6 s; after this, 0.01-0.04 s. What an earlier
    run in the same process froze is let go first (tests run many flows in one process)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def sources_for(dep: Deployment, **limits: Any) -> list[Any]:
    """One source per protocol in use; ``limits[<protocol>]`` (e.g. a test's stop condition)
    pass down to that protocol's source."""
    sources: list[Any] = []
    for name in dep.protocols():
        spec = registry.spec(name)
        source = spec.source(dep.services.get(name), dep.bindings(name), **limits.get(name, {}))
        if source is not None:
            sources.append(source)
    return sources


def actuators_for(dep: Deployment, feedback: CommandFeedback | None = None) -> CommandRouter:
    """Commands to each twin over the protocol it is bound to; outcomes to ``feedback``.

    The sinks retry a transient failure until the command expires (the flow's command book
    ends a command that gets no answer ``timed_out`` after ``flow.command_timeout_s``).
    """
    routes: dict[str, Any] = {}
    retry = {"feedback": feedback, "backoff": UNTIL_EXPIRY} if feedback is not None else {}
    for name in dep.protocols():
        spec = registry.spec(name)
        sink = spec.command_sink(dep.services.get(name), dep.bindings(name), **retry)
        if sink is not None:
            routes[name] = sink
    return CommandRouter(routes, {t.twin_id: t.protocol for t in dep.twins}, feedback=feedback)


#: Sink retries for a flow: keep trying (backing off to 30 s) until the command expires.
UNTIL_EXPIRY = Backoff(base_s=0.5, cap_s=30.0, max_attempts=1_000_000)


def routed_twins(dep: Deployment) -> frozenset[str]:
    """Twins with an actuator protocol (telemetry-only Kafka twins have none)."""
    return frozenset(t.twin_id for t in dep.twins if registry.spec(t.protocol).actuates)


def request_sources(dep: Deployment, **limits: Any) -> list[Any]:
    """Command requests and desired-property changes from outside (a Kafka topic), if any."""
    out: list[Any] = []
    places = dep.registry()
    within = {t.twin_id: frozenset(places.ancestors(t.twin_id)) for t in dep.twins}
    for name in dep.protocols():
        spec = registry.spec(name)
        service = dep.services.get(name)
        out += spec.request_sources(
            service, dep.twin_types, catalog=dep.types, within=within, **limits
        )
    return out


def placement_for(cluster: Cluster | None) -> Placement | None:
    """Where a cluster of several workers writes each twin's outputs: on the worker that
    holds its state (:mod:`twinflow.connectors.placement_keys`); ``None`` for one worker
    (or no cluster given), whose sinks keep Bytewax's own spreading.

    >>> placement_for(Cluster(1, 1, ("h:1", "h:2"))), placement_for(Cluster(1))
    (Placement(workers=2), None)
    """
    if cluster is None or cluster.workers == 1:
        return None
    return Placement(cluster.workers)


def outputs_for(
    dep: Deployment, out_dir: Path, actuators: Any, cluster: Cluster | None = None
) -> FlowOutputs:
    """Files under ``out_dir``, plus each connector's outputs (e.g. Kafka topics) and the
    database when configured; in a ``cluster`` of several workers, each partitioned sink
    writes a twin's items on the worker of its state (:func:`placement_for`)."""
    config = replace(dep.flow, out_dir=out_dir)
    placement = placement_for(cluster)
    files = file_outputs(config, actuators=actuators, placement=placement)
    extra: dict[str, list[Any]] = {f: [] for f in _STREAMS}
    for name in dep.protocols():
        for stream, sinks in registry.spec(name).outputs(dep.services.get(name)).items():
            extra[stream] += sinks
    if dep.database_url:
        from twinflow.connectors.postgres import PostgresSink

        # its pool is sized by the partitions: give it the placed count from the start
        db = PostgresSink(
            dep.database_url, partitions=2 if placement is None else placement.partitions(2)
        )
        for stream in _STREAMS:
            extra[stream].append(db)
    for sink in {id(s): s for sinks in extra.values() for s in sinks}.values():
        place(sink, placement)
    return replace(
        files,
        **{s: [getattr(files, s), *extra[s]] for s in _STREAMS if extra[s]},
    )


#: The output streams that external stores may also receive.
_STREAMS = (
    "telemetry",
    "windows",
    "twin_states",
    "alerts",
    "commands",
    "dead_letters",
    "rollups",
)


@dataclass
class Watch:
    """How an operator follows and stops a running flow: setting ``stop`` ends every source
    (the flow then drains and flushes); ``observer`` and ``lag`` measure it at its edges."""

    stop: threading.Event = field(default_factory=threading.Event)
    observer: Observer = field(default_factory=Observer)
    lag: KafkaLag = field(default_factory=KafkaLag)

    def sources(self, sources: Sequence[Any]) -> list[Any]:
        """Each source stoppable and observed (Kafka sources also for their lag)."""
        out = []
        for s in sources:
            if is_kafka(s):
                self.lag.watch(s)
                out.append(stoppable(s, self.stop, self._kafka_tap))
            else:
                out.append(stoppable(s, self.stop, self._tap))
        return out

    def _tap(self, _step_id: str, _part: str, _inner: Any, items: list[Any]) -> None:
        self.observer.arrived(items)

    def _kafka_tap(self, step_id: str, part: str, inner: Any, items: list[Any]) -> None:
        self.lag.tap(step_id, part, inner, items)


def deployment_flow(
    dep: Deployment,
    out_dir: Path,
    *,
    stats: RunStats | None = None,
    actuators: Any = None,
    limits: dict[str, dict[str, Any]] | None = None,
    feedback: CommandFeedback | None = None,
    watch: Watch | None = None,
    cluster: Cluster | None = None,
) -> Dataflow:
    """The telemetry flow of a deployment (of one process of ``cluster``, when given).

    ``actuators`` defaults to the protocol router, reporting to ``feedback`` (a new hub when
    not given); the flow reads the outcomes back from it while any twin has an actuator
    protocol. ``limits`` pass stop conditions to the sources (``"requests"`` to the Kafka
    request source, ``"feedback"`` to the feedback source, e.g. ``{"until": callable}``).
    With ``watch``, every source ends when ``watch.stop`` is set, and the sources and the
    alert, command and dead-letter outputs are observed. With a ``replication:`` section the
    flow is an edge or central instance (``limits["replication"]["until"]`` ends its
    sources, ``{"settle": True}`` ends them once the node is settled, as ``--until-end``
    asks; its node is started here and stopped at exit).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    limits = limits or {}
    routed = routed_twins(dep)
    hub = feedback if feedback is not None else CommandFeedback()
    if actuators is None:
        actuators = actuators_for(dep, hub).placed()
    feedback_source = CommandFeedbackSource(hub, **limits.get("feedback", {})) if routed else None
    sources = sources_for(dep, **limits)
    requests = request_sources(dep, **limits.get("requests", {}))
    outputs = outputs_for(dep, out_dir, actuators, cluster)
    deployed = dep.deployed_types()
    replication = replication_for(dep, out_dir, limits, watch)
    if replication is not None:
        if replication.node.role == "edge":
            requests.append(replication.desired_source())
        if not sources:  # a central instance with no telemetry of its own
            sources = [replication.quiet_source()]
    if watch is not None:
        sources, requests = watch.sources(sources), watch.sources(requests)
        if feedback_source is not None:
            feedback_source = watch.sources([feedback_source])[0]
        outputs = watch.observer.outputs(outputs)
        watch.observer.judge_by(dep.flow.lateness_s, per_reading_rules(deployed))
        stats = stats if stats is not None else RunStats()
        stats.on_decoded = watch.observer.arrived  # Kafka telemetry: timed as it is decoded
    return build_flow(
        sources,
        outputs,
        replace(dep.flow, out_dir=out_dir),
        clock=time.time,
        twins=dep.twin_types,
        twin_types=deployed,
        stats=stats,
        flow_id="twinflow-run",
        requests=requests,
        feedback=feedback_source,
        routed=routed.__contains__,
        registry=dep.registry(),
        catalog=dep.types,
        bindings={t.twin_id: t.protocol for t in dep.twins},
        decide=decide_for(dep, out_dir),
        replication=replication,
    )


def replication_for(
    dep: Deployment, out_dir: Path, limits: dict[str, dict[str, Any]], watch: Watch | None
) -> Any:
    """The started replication of a deployment with a ``replication:`` section (else
    ``None``); its node stops when the process exits (or at ``replication.stop_nodes()``)."""
    if dep.replication is None:
        return None
    from twinflow.flows.replication import Replication, node_for, started

    node = started(node_for(dep, dep.replication, out_dir))
    until = limits.get("replication", {}).get("until")
    if until is None and limits.get("replication", {}).get("settle"):  # --until-end
        from twinflow.flows.replication import until_settled

        until = until_settled(node, None if watch is None else watch.stop.is_set)
    if until is None and watch is not None:
        until = watch.stop.is_set
    interval = dep.replication.status_interval_s
    return Replication.with_files(node, out_dir, interval, until, dep.database_url)
