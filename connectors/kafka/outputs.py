"""The flow's Kafka outputs: alerts, commands, twin states and roll-ups as versioned JSON."""

from __future__ import annotations

from twinflow.connectors.bindings import KafkaSettings
from twinflow.connectors.kafka.documents import twin_state_json
from twinflow.connectors.kafka.sink import KafkaJsonSink
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
    """``(twin_id, TwinState)`` pairs to ``settings.twin_state_topic`` (twin_state.v3.json)."""
    return KafkaJsonSink(
        settings, _topic(settings.twin_state_topic, "twin_state_topic"), twin_state_json
    )


__all__ = ["alert_sink", "asset_id_of", "command_sink", "rollup_sink", "twin_state_sink"]
