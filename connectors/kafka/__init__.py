"""Kafka: telemetry in, versioned JSON out (alerts, commands, twin states, roll-ups), requests.

Built on confluent-kafka (install the ``kafka`` extra: ``pip install 'twinflow[kafka]'``) and
configured by one :class:`~twinflow.connectors.bindings.KafkaSettings`; ``settings.extra``
passes SASL and TLS settings through to librdkafka.

Sources (Bytewax partitioned sources, resumed from their own offsets by recovery):

- :func:`kafka_telemetry_source`: ``settings.telemetry_topics`` as :class:`RawMessage` items
  that the flow's decoder turns into frames or dead letters.
- :func:`kafka_command_request_source`: ``settings.command_requests_topic`` as validated
  :class:`Command` objects or dead letters.

Sinks of the flow's ``(twin_id, item)`` pairs, keyed by twin, acks=all and idempotent, with a
bounded outbox of unacknowledged messages that a broker outage fills instead of stopping the
flow (see :mod:`twinflow.connectors.kafka.sink`): :func:`alert_sink`, :func:`command_sink`,
:func:`twin_state_sink`, :func:`rollup_sink` (keyed by asset rather than twin), and the
general :func:`kafka_json_sink`.

Everything here is imported on first use, so the package imports without confluent-kafka.

Guarantees: at-least-once in both directions under Bytewax recovery (a sink's snapshot keeps
its unacknowledged messages); a twin's messages stay in order; a broker that is away or
restarts is followed by the sources and the sinks, with one log line per condition and the
``twinflow_output_*`` metrics (:mod:`twinflow.connectors.outage`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twinflow.core.optional import lazy_exports

if TYPE_CHECKING:
    from twinflow.connectors.kafka.command_requests import (
        command_id_for,
        kafka_command_request_source,
        parse_command_request,
    )
    from twinflow.connectors.kafka.config import admin_config, consumer_config, producer_config
    from twinflow.connectors.kafka.documents import twin_state_json
    from twinflow.connectors.kafka.errors import KafkaConnectorError, KafkaDeliveryError
    from twinflow.connectors.kafka.outputs import (
        alert_sink,
        asset_id_of,
        command_sink,
        rollup_sink,
        twin_state_sink,
    )
    from twinflow.connectors.kafka.sink import KafkaJsonSink, kafka_json_sink
    from twinflow.connectors.kafka.source import KafkaMessageSource
    from twinflow.connectors.kafka.telemetry import kafka_telemetry_source

_WHERE = {
    "KafkaConnectorError": "errors",
    "KafkaDeliveryError": "errors",
    "KafkaJsonSink": "sink",
    "KafkaMessageSource": "source",
    "admin_config": "config",
    "alert_sink": "outputs",
    "asset_id_of": "outputs",
    "command_id_for": "command_requests",
    "command_sink": "outputs",
    "consumer_config": "config",
    "kafka_command_request_source": "command_requests",
    "kafka_json_sink": "sink",
    "kafka_telemetry_source": "telemetry",
    "parse_command_request": "command_requests",
    "producer_config": "config",
    "rollup_sink": "outputs",
    "twin_state_json": "documents",
    "twin_state_sink": "outputs",
}

__getattr__ = lazy_exports(__name__, _WHERE, extra="kafka", what="the Kafka connector")

__all__ = [
    "KafkaConnectorError",
    "KafkaDeliveryError",
    "KafkaJsonSink",
    "KafkaMessageSource",
    "admin_config",
    "alert_sink",
    "asset_id_of",
    "command_id_for",
    "command_sink",
    "consumer_config",
    "kafka_command_request_source",
    "kafka_json_sink",
    "kafka_telemetry_source",
    "parse_command_request",
    "producer_config",
    "rollup_sink",
    "twin_state_json",
    "twin_state_sink",
]
