"""Errors of the Kafka connector, children of twinflow's one exception root."""

from __future__ import annotations

from twinflow.core.errors import TwinflowError


class KafkaConnectorError(TwinflowError):
    """Kafka cannot be used as configured (unknown topic, refused ACL, fatal client error)."""


class KafkaDeliveryError(KafkaConnectorError):
    """Messages a sink accepted were not acknowledged by the brokers.

    The sinks no longer raise it (they hold and send again what is unacknowledged, see
    :mod:`twinflow.connectors.kafka.sink`); kept so that code catching it still imports.
    """
