"""Kafka in deployment files (``services.kafka``, ``twins[].kafka``) and its connector spec.

Kafka carries telemetry of twins bridged from elsewhere (``protocol: kafka``: an optional
binding that lists the signals a twin sends, no actuator route), the flow's outputs (alerts,
commands, twin states, roll-ups) and command requests. confluent-kafka is imported by the
factories.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

from twinflow.connectors.bindings import KafkaBinding, KafkaSettings
from twinflow.connectors.kafka.request_auth import RequestAuth
from twinflow.connectors.kafka.request_section import SCHEMAS as REQUEST_SCHEMAS
from twinflow.connectors.kafka.request_section import check_grants, request_auth
from twinflow.connectors.sections import check_sent
from twinflow.connectors.spec import BindingContext, ConnectorSpec
from twinflow.core.config import Names, OptionalText, Schema, Section, Settings, Text
from twinflow.core.errors import ConfigError
from twinflow.core.fields import Part
from twinflow.core.redact import redact
from twinflow.operators.catalog import CATALOG

#: Logs the warning about unauthenticated command requests.
LOG = logging.getLogger("twinflow.kafka.requests")


@dataclass(frozen=True, slots=True)
class KafkaService(KafkaSettings):
    """``services.kafka`` as parsed: the cluster's settings and the request authorisation."""

    requests: RequestAuth | None = None
    #: Topic of what-if results (the ``whatif`` request kind); unset: what-ifs not served.
    whatif_results_topic: str | None = None
    #: Topic of the maintenance plans the flow re-computes (``maintenance:`` in the file).
    maintenance_plan_topic: str | None = None


SERVICE = Schema(
    "services.kafka",
    "A Kafka cluster: telemetry topics in, output topics out (`KAFKA_BOOTSTRAP` overrides "
    "`bootstrap`). A topic set to `null` is not written.",
    (
        Text("bootstrap", "Bootstrap servers: `host:port[,host:port...]`.", "127.0.0.1:9092"),
        Settings(
            "extra",
            "librdkafka settings passed through (SASL, TLS, tuning), e.g. "
            "`security.protocol: SASL_SSL`.",
            {},
            what="librdkafka settings",
        ),
        Names(
            "telemetry_topics",
            "Topics that carry telemetry (of `protocol: kafka` twins).",
            what="topic names",
        ),
        Text(
            "group_id", "Consumer group id (offsets live in the flow's recovery state).", "twinflow"
        ),
        OptionalText("alerts_topic", "Topic of alerts (alert.v1).", "twinflow.alerts"),
        OptionalText(
            "commands_topic", "Topic of issued commands (command.v2).", "twinflow.commands"
        ),
        OptionalText(
            "twin_state_topic",
            "Topic of twin-state changes (twin_state.v3).",
            "twinflow.twin-state",
        ),
        OptionalText("command_requests_topic", "Topic of command requests from outside."),
        Part(
            "requests",
            "Who may send command requests, signed how, and what each may ask.",
            see="services.kafka.requests",
        ),
        OptionalText(
            "rollups_topic", "Topic of asset roll-ups (asset_rollup.v1), keyed by asset id."
        ),
        OptionalText(
            "whatif_results_topic",
            "Topic of what-if results (whatif_result.v1), keyed by twin; set, the flow answers "
            "`whatif` requests of the command request topic from each twin's live state.",
        ),
        OptionalText(
            "maintenance_plan_topic",
            "Topic of the maintenance plans (maintenance_plan.v1) the flow re-computes as RUL "
            "estimates change (needs a `maintenance:` section).",
        ),
    ),
)

BINDING = Schema(
    "twins[].kafka",
    "A telemetry-only Kafka twin's binding (optional): what it sends on the telemetry topics.",
    (
        Names(
            "signals",
            "The scalar signals the twin sends; staleness and dropout judge only these.",
            (),
            what="signal names",
            shown="every scalar signal of its type",
        ),
    ),
)


def kafka_settings(s: Section, env: Mapping[str, str]) -> KafkaService:
    """``services.kafka``; ``KAFKA_BOOTSTRAP`` in ``env`` overrides the bootstrap servers."""
    from twinflow.connectors.kafka.config import check_extra

    s.check_keys(SERVICE)
    bootstrap = env.get("KAFKA_BOOTSTRAP") or s.get(SERVICE["bootstrap"])
    for part in bootstrap.split(","):
        host, _, port = part.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(
                f"{s.file}: {s.path('bootstrap')} (or KAFKA_BOOTSTRAP) = {redact(bootstrap)!r}: "
                "expected host:port[,host:port...]"
            )
    values = {f.key: s.get(f) for f in SERVICE.fields if f.key not in ("bootstrap", "requests")}
    check_extra(values["extra"], s.where, s.file)
    auth = request_auth(s.section("requests"), env)
    return KafkaService(bootstrap=bootstrap, requests=auth, **values)


def kafka_binding(s: Section, ctx: BindingContext) -> KafkaBinding:
    """``twins[i].kafka``: the scalar signals the twin sends (empty: all of them)."""
    s.check_keys(BINDING)
    sent = check_sent(s, "signals", s.get(BINDING["signals"]), ctx.type, "Kafka")
    return KafkaBinding(ctx.twin_id, ctx.twin_type, sent, ctx.kind)


class KafkaSpec(ConnectorSpec):
    """Kafka: telemetry of bridged twins in; alerts, commands, states, roll-ups out."""

    name = "kafka"
    doc = "Telemetry bridged onto Kafka topics; outputs and command requests over Kafka."
    binding_type = KafkaBinding
    binding_schemas = (BINDING,)
    service_schemas = (SERVICE, *REQUEST_SCHEMAS)
    service_env = "KAFKA_BOOTSTRAP"
    metrics = (
        "twinflow_kafka_delivery_errors",
        "twinflow_kafka_consumer_errors",
        "twinflow_command_requests_refused",
    )
    metrics_module = "twinflow.connectors.kafka"

    def parse_service(self, section: Section, env: Mapping[str, str]) -> KafkaSettings:
        return kafka_settings(section, env)

    def parse_binding(self, section: Section, ctx: BindingContext) -> KafkaBinding:
        return kafka_binding(section, ctx)

    def signals(self, binding: Any, scalar: frozenset[str]) -> frozenset[str]:
        sent = cast(KafkaBinding, binding).signals
        return frozenset(sent) if sent else scalar

    def check(self, service: Any, twins: int, file: Path) -> None:
        if twins and not (service and cast(KafkaSettings, service).telemetry_topics):
            raise ConfigError(
                f"{file}: twins use protocol kafka but services.kafka.telemetry_topics is not "
                "set; list the topics that carry their telemetry"
            )

    def source(self, service: Any, bindings: Sequence[Any], **limits: Any) -> Any | None:
        if service is None or not cast(KafkaSettings, service).telemetry_topics:
            return None
        from twinflow.connectors.kafka import kafka_telemetry_source

        return kafka_telemetry_source(service, **limits)

    def outputs(self, service: Any) -> dict[str, list[Any]]:
        if service is None:
            return {}
        from twinflow.connectors.kafka import alert_sink, command_sink, rollup_sink, twin_state_sink

        k = cast(KafkaSettings, service)
        out: dict[str, list[Any]] = {}
        for stream, topic, make in (
            ("alerts", k.alerts_topic, alert_sink),
            ("commands", k.commands_topic, command_sink),
            ("twin_states", k.twin_state_topic, twin_state_sink),
            ("rollups", k.rollups_topic, rollup_sink),
        ):
            if topic:
                out[stream] = [make(k)]
        return out

    def request_sources(
        self,
        service: Any,
        twins: Mapping[str, str],
        *,
        within: Mapping[str, frozenset[str]] | None = None,
        **limits: Any,
    ) -> list[Any]:
        """The request topic's source; ``within``: each twin's assets, for grants by asset."""
        if service is None or not cast(KafkaSettings, service).command_requests_topic:
            return []
        from twinflow.connectors.kafka import kafka_command_request_source

        auth = getattr(service, "requests", None)
        if auth is not None and within is not None:
            auth = replace(auth, within=MappingProxyType(dict(within)))
            check_grants(auth, twins, limits.get("catalog") or CATALOG, within)
        if auth is None:
            LOG.warning(
                "command requests on %s are not authenticated: anyone who can write the topic "
                "can command every twin; set services.kafka.requests (see the Security guide)",
                cast(KafkaSettings, service).command_requests_topic,
            )
        return [kafka_command_request_source(service, twins=twins, auth=auth, **limits)]


SPEC = KafkaSpec()
