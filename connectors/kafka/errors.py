"""Errors of the Kafka connector, children of twinflow's one exception root."""

from __future__ import annotations

from twinflow.core.errors import TwinflowError


class KafkaConnectorError(TwinflowError):
    """Kafka cannot be used as configured (unknown topic, refused ACL, fatal client error)."""


class KafkaDeliveryError(KafkaConnectorError):
    """Messages a sink accepted were not acknowledged by the brokers.

    Raised at the next write or snapshot after the failure, so the Bytewax epoch that
    held those messages never commits and a recovering flow writes them again.
    """
