"""Store-and-forward of replicated twin updates: the on-disk outbox and the MQTT link.

:class:`DiskOutbox` keeps updates on disk while a link is down; :class:`MqttLink` (needs
``twinflow[mqtt]``) sends them to a broker and applies the updates it receives to a
:class:`~twinflow.operators.replication.TwinReplica`.
"""

from twinflow.connectors.replication.outbox import DiskOutbox, Entry, OutboxError
from twinflow.core.optional import lazy_exports

__getattr__ = lazy_exports(
    __name__, {"MqttLink": "mqtt_link"}, extra="mqtt", what="the MQTT replication link"
)

__all__ = ["DiskOutbox", "Entry", "MqttLink", "OutboxError"]
