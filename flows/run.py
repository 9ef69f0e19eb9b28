"""``twinflow run CONFIG --out DIR``: the telemetry flow on a deployment's real sources.

Sources: an MQTT source for the MQTT twins, an OPC UA source for the OPC UA twins, a Modbus
source for the Modbus twins and, when ``services.kafka.telemetry_topics`` is set, a Kafka
source. Outputs: the embedded files under ``--out``; with Kafka configured, the alert,
command and twin-state topics (and the roll-up topic when ``rollups_topic`` is set); with a
database URL, PostgreSQL/TimescaleDB (apply the schema first with ``twinflow db migrate``).
Commands go back to each twin over its own protocol.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bytewax.dataflow import Dataflow

from twinflow.connectors import registry
from twinflow.connectors.actuators import CommandRouter
from twinflow.connectors.feedback import CommandFeedback, CommandFeedbackSource
from twinflow.core.backoff import Backoff
from twinflow.flows.deployment import Deployment
from twinflow.flows.metrics import RunStats
from twinflow.flows.outputs import file_outputs
from twinflow.flows.telemetry import FlowOutputs, build_flow


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


def outputs_for(dep: Deployment, out_dir: Path, actuators: Any) -> FlowOutputs:
    """Files under ``out_dir``, plus each connector's outputs (e.g. Kafka topics) and the
    database when configured."""
    config = replace(dep.flow, out_dir=out_dir)
    files = file_outputs(config, actuators=actuators)
    extra: dict[str, list[Any]] = {f: [] for f in _STREAMS}
    for name in dep.protocols():
        for stream, sinks in registry.spec(name).outputs(dep.services.get(name)).items():
            extra[stream] += sinks
    if dep.database_url:
        from twinflow.connectors.postgres import PostgresSink

        db = PostgresSink(dep.database_url, partitions=2)
        for stream in _STREAMS:
            extra[stream].append(db)
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


def deployment_flow(
    dep: Deployment,
    out_dir: Path,
    *,
    stats: RunStats | None = None,
    actuators: Any = None,
    limits: dict[str, dict[str, Any]] | None = None,
    feedback: CommandFeedback | None = None,
) -> Dataflow:
    """The telemetry flow of a deployment.

    ``actuators`` defaults to the protocol router, reporting to ``feedback`` (a new hub when
    not given); the flow reads the outcomes back from it while any twin has an actuator
    protocol. ``limits`` pass stop conditions to the sources (``"requests"`` to the Kafka
    request source, ``"feedback"`` to the feedback source, e.g. ``{"until": callable}``).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    limits = limits or {}
    routed = routed_twins(dep)
    hub = feedback if feedback is not None else CommandFeedback()
    if actuators is None:
        actuators = actuators_for(dep, hub)
    feedback_source = CommandFeedbackSource(hub, **limits.get("feedback", {})) if routed else None
    return build_flow(
        sources_for(dep, **limits),
        outputs_for(dep, out_dir, actuators),
        replace(dep.flow, out_dir=out_dir),
        clock=time.time,
        twins=dep.twin_types,
        twin_types=dep.deployed_types(),
        stats=stats,
        flow_id="twinflow-run",
        requests=request_sources(dep, **limits.get("requests", {})),
        feedback=feedback_source,
        routed=routed.__contains__,
        registry=dep.registry(),
        catalog=dep.types,
        bindings={t.twin_id: t.protocol for t in dep.twins},
    )
