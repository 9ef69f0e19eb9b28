"""OPC UA edges of twinflow (asyncua): a subscription source and a node-write command sink.

- :class:`OpcUaSource` subscribes to the nodes of every bound twin (one session per server,
  sampling interval and absolute deadband from the binding) and emits one
  :class:`~twinflow.core.records.TelemetryFrame` per twin and batch, with the OPC UA status code
  as quality and the source timestamp as time. It reconnects and resubscribes on its own.
- :class:`OpcUaCommandSink` writes QUEUED commands to the bound nodes after checking them
  against the catalog, and reports each write's outcome to a command feedback hub.

Both are configured by :class:`twinflow.connectors.bindings.OpcUaBinding` values; modules:
``source`` (partitions), ``subscriber`` (the client thread), ``frames`` (grouping),
``quality`` (status codes), ``connection`` (checks, security, backoff), ``sink``, ``metrics``.

>>> from twinflow.connectors.bindings import OpcUaBinding
>>> from twinflow.connectors.opcua import OpcUaSource
>>> b = OpcUaBinding("m1", "motor", "opc.tcp://127.0.0.1:4840",
...                  nodes={"load_pct": "ns=2;s=m1.load_pct"})
>>> OpcUaSource([b]).list_parts()
['opc.tcp://127.0.0.1:4840']
"""

from typing import TYPE_CHECKING

from twinflow.core.optional import lazy_exports

if TYPE_CHECKING:
    from twinflow.connectors.opcua.quality import quality_of, status_code_for
    from twinflow.connectors.opcua.sink import OpcUaCommandSink
    from twinflow.connectors.opcua.source import OpcUaSource

#: Imported on first use, so the package imports without asyncua.
_WHERE = {
    "OpcUaCommandSink": "sink",
    "OpcUaSource": "source",
    "quality_of": "quality",
    "status_code_for": "quality",
}

__getattr__ = lazy_exports(__name__, _WHERE, extra="opcua", what="the OPC UA connector")

__all__ = ["OpcUaCommandSink", "OpcUaSource", "quality_of", "status_code_for"]
