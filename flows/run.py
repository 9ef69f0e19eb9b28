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

from twinflow.connectors.actuators import CommandRouter
from twinflow.connectors.feedback import Backoff, CommandFeedback, CommandFeedbackSource
from twinflow.flows.deploy import PROTOCOLS as ACTUATOR_PROTOCOLS
from twinflow.flows.deploy import Deployment
from twinflow.flows.metrics import RunStats
from twinflow.flows.outputs import file_outputs
from twinflow.flows.telemetry import FlowOutputs, build_flow


def sources_for(dep: Deployment, **limits: Any) -> list[Any]:
    """One source per protocol in use; ``limits`` (e.g. a test's stop condition) pass down."""
    sources: list[Any] = []
    if dep.bindings("mqtt"):
        from twinflow.connectors.mqtt import MqttSource

        sources.append(MqttSource(dep.mqtt, dep.bindings("mqtt"), **limits.get("mqtt", {})))
    if dep.bindings("opcua"):
        from twinflow.connectors.opcua import OpcUaSource

        sources.append(OpcUaSource(dep.bindings("opcua"), **limits.get("opcua", {})))
    if dep.bindings("modbus"):
        from twinflow.connectors.modbus import ModbusSource

        sources.append(ModbusSource(dep.bindings("modbus"), **limits.get("modbus", {})))
    if dep.kafka is not None and dep.kafka.telemetry_topics:
        from twinflow.connectors.kafka import kafka_telemetry_source

        sources.append(kafka_telemetry_source(dep.kafka, **limits.get("kafka", {})))
    return sources


def actuators_for(dep: Deployment, feedback: CommandFeedback | None = None) -> CommandRouter:
    """Commands to each twin over the protocol it is bound to; outcomes to ``feedback``.

    The sinks retry a transient failure until the command expires (the flow's command book
    ends a command that gets no answer ``timed_out`` after ``flow.command_timeout_s``).
    """
    routes: dict[str, Any] = {}
    retry = {"feedback": feedback, "backoff": UNTIL_EXPIRY} if feedback is not None else {}
    if dep.bindings("mqtt"):
        from twinflow.connectors.mqtt import MqttCommandSink

        routes["mqtt"] = MqttCommandSink(dep.mqtt, dep.bindings("mqtt"), **retry)
    if dep.bindings("opcua"):
        from twinflow.connectors.opcua import OpcUaCommandSink

        routes["opcua"] = OpcUaCommandSink(dep.bindings("opcua"), **retry)
    if dep.bindings("modbus"):
        from twinflow.connectors.modbus import ModbusCommandSink

        routes["modbus"] = ModbusCommandSink(dep.bindings("modbus"), **retry)
    return CommandRouter(routes, {t.twin_id: t.protocol for t in dep.twins}, feedback=feedback)


#: Sink retries for a flow: keep trying (backing off to 30 s) until the command expires.
UNTIL_EXPIRY = Backoff(base_s=0.5, cap_s=30.0, max_attempts=1_000_000)


def routed_twins(dep: Deployment) -> frozenset[str]:
    """Twins with an actuator protocol (telemetry-only Kafka twins have none)."""
    return frozenset(t.twin_id for t in dep.twins if t.protocol in ACTUATOR_PROTOCOLS)


def request_sources(dep: Deployment, **limits: Any) -> list[Any]:
    """Command requests and desired-property changes from Kafka, when a topic is configured."""
    if dep.kafka is None or not dep.kafka.command_requests_topic:
        return []
    from twinflow.connectors.kafka import kafka_command_request_source

    return [kafka_command_request_source(dep.kafka, twins=dep.twin_types, **limits)]


def outputs_for(dep: Deployment, out_dir: Path, actuators: Any) -> FlowOutputs:
    """Files under ``out_dir``, plus the Kafka topics when Kafka is configured."""
    config = replace(dep.flow, out_dir=out_dir)
    files = file_outputs(config, actuators=actuators)
    extra: dict[str, list[Any]] = {f: [] for f in _STREAMS}
    if dep.kafka is not None:
        from twinflow.connectors.kafka import alert_sink, command_sink, rollup_sink, twin_state_sink

        k = dep.kafka
        if k.alerts_topic:
            extra["alerts"].append(alert_sink(k))
        if k.commands_topic:
            extra["commands"].append(command_sink(k))
        if k.twin_state_topic:
            extra["twin_states"].append(twin_state_sink(k))
        if k.rollups_topic:
            extra["rollups"].append(rollup_sink(k))
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
    )
