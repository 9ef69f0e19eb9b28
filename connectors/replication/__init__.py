"""Store-and-forward of replicated twin updates: the on-disk outbox and the transports.

:class:`DiskOutbox` keeps updates on disk while a link is down; :class:`MqttLink` (needs
``twinflow[mqtt]``) and :class:`KafkaLink` (needs ``twinflow[kafka]``) send them to a broker
and merge the updates they receive into a
:class:`~twinflow.operators.replication.TwinReplica`.
"""

from twinflow.connectors.replication.outbox import DiskOutbox, Entry, OutboxError
from twinflow.core.optional import lazy_exports

_mqtt = lazy_exports(__name__, {"MqttLink": "mqtt_link"}, extra="mqtt", what="the MQTT link")
_kafka = lazy_exports(__name__, {"KafkaLink": "kafka_link"}, extra="kafka", what="the Kafka link")


def __getattr__(name: str) -> object:
    """The transports, imported on first use (each needs its extra)."""
    return _kafka(name) if name == "KafkaLink" else _mqtt(name)


__all__ = ["DiskOutbox", "Entry", "KafkaLink", "MqttLink", "OutboxError"]
