"""Kafka: telemetry in, versioned JSON out (alerts, commands, twin states, roll-ups), requests.

Built on confluent-kafka (install the ``kafka`` extra: ``pip install 'twinflow[kafka]'``) and
configured by one :class:`~twinflow.connectors.bindings.KafkaSettings`; ``settings.extra``
passes SASL and TLS settings through to librdkafka.

Sources (Bytewax partitioned sources, resumed from their own offsets by recovery):

- :func:`kafka_telemetry_source`: ``settings.telemetry_topics`` as :class:`RawMessage` items
  that the flow's decoder turns into frames or dead letters.
- :func:`kafka_command_request_source`: ``settings.command_requests_topic`` as validated
  :class:`Command` objects or dead letters.

Sinks of the flow's ``(twin_id, item)`` pairs, keyed by twin, acks=all and idempotent, each
snapshot waiting for every acknowledgement: :func:`alert_sink`, :func:`command_sink`,
:func:`twin_state_sink`, :func:`rollup_sink` (keyed by asset rather than twin), and the
general :func:`kafka_json_sink`.

Guarantees: at-least-once in both directions under Bytewax recovery; a twin's messages stay
in order; a delivery failure is counted, logged and stops the flow (never silent).
"""

from __future__ import annotations

from twinflow.core.optional import needs

with needs("kafka", "the Kafka connector"):
    import confluent_kafka  # noqa: F401

from twinflow.connectors.bindings import KafkaSettings
from twinflow.connectors.kafka.command_requests import (
    command_id_for,
    kafka_command_request_source,
    parse_command_request,
)
from twinflow.connectors.kafka.config import admin_config, consumer_config, producer_config
from twinflow.connectors.kafka.documents import twin_state_json
from twinflow.connectors.kafka.errors import KafkaConnectorError, KafkaDeliveryError
from twinflow.connectors.kafka.sink import KafkaJsonSink, kafka_json_sink
from twinflow.connectors.kafka.source import KafkaMessageSource
from twinflow.connectors.kafka.telemetry import kafka_telemetry_source
from twinflow.core.errors import ConfigError
from twinflow.core.records import Alert, AssetRollup, Command


def _topic(value: str | None, field: str) -> str:
    if not value:
        raise ConfigError(f"kafka.{field} is not set; name the topic to write to")
    return value


def alert_sink(settings: KafkaSettings) -> KafkaJsonSink:
    """``(twin_id, Alert)`` pairs to ``settings.alerts_topic`` (schema alert.v1.json)."""
    return KafkaJsonSink(settings, _topic(settings.alerts_topic, "alerts_topic"), Alert.to_json)


def command_sink(settings: KafkaSettings) -> KafkaJsonSink:
    """``(twin_id, Command)`` pairs to ``settings.commands_topic`` (schema command.v2.json)."""
    return KafkaJsonSink(
        settings, _topic(settings.commands_topic, "commands_topic"), Command.to_json
    )


def asset_id_of(rollup: AssetRollup) -> str:
    """The Kafka key of an asset roll-up: its asset id (an asset's roll-ups stay in order)."""
    return rollup.asset_id


def rollup_sink(settings: KafkaSettings) -> KafkaJsonSink:
    """``(asset_id, AssetRollup)`` pairs to ``settings.rollups_topic`` (asset_rollup.v1.json)."""
    return KafkaJsonSink(
        settings,
        _topic(settings.rollups_topic, "rollups_topic"),
        AssetRollup.to_json,
        key_of=asset_id_of,
    )


def twin_state_sink(settings: KafkaSettings) -> KafkaJsonSink:
    """``(twin_id, TwinState)`` pairs to ``settings.twin_state_topic`` (twin_state.v2.json)."""
    return KafkaJsonSink(
        settings, _topic(settings.twin_state_topic, "twin_state_topic"), twin_state_json
    )


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
