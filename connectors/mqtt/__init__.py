"""MQTT in both directions: telemetry in (:class:`MqttSource`), commands out
(:class:`MqttCommandSink`), on paho-mqtt 2.

- :mod:`.source`: the Bytewax source and its delivery guarantees (at least once);
  :mod:`.session`: one partition's MQTT session (paho client, hand-over buffer, acks).
- :mod:`.sink`: the command sink and its acknowledgement book.
- :mod:`.frames`, :mod:`.payloads`, :mod:`.topics`: pure decoding and routing, no network.
- :mod:`.client`: how a paho client is built from the settings, and the Prometheus metrics.

>>> from twinflow.connectors.bindings import MqttBinding, MqttSettings
>>> twins = [MqttBinding("wt-001", "wind_turbine", "plant/s1/wt-001/telemetry",
...                      "plant/s1/wt-001/commands", "plant/s1/wt-001/responses")]
>>> source = MqttSource(MqttSettings(client_id="twinflow-flow"), twins)
>>> source.list_parts()
['mqtt:twinflow-flow']
"""

from twinflow.connectors.mqtt.frames import MessageDecoder
from twinflow.connectors.mqtt.payloads import PayloadDecoder, PayloadError
from twinflow.connectors.mqtt.responses import CommandResponse
from twinflow.connectors.mqtt.sink import MqttCommandSink
from twinflow.connectors.mqtt.source import MqttPartition, MqttSource

__all__ = [
    "CommandResponse",
    "MessageDecoder",
    "MqttCommandSink",
    "MqttPartition",
    "MqttSource",
    "PayloadDecoder",
    "PayloadError",
]
