"""Prometheus counters of the OPC UA connector (process-wide, in the default registry).

Endpoint labels are URLs without credentials.
"""

from __future__ import annotations

from prometheus_client import Counter

RECONNECTS = Counter(
    "twinflow_opcua_reconnects",
    "Times the OPC UA source re-established a lost session and its subscription",
    ["endpoint"],
)
DATACHANGES = Counter(
    "twinflow_opcua_datachanges",
    "OPC UA data change notifications received by the source",
    ["endpoint"],
)
COMMAND_RESULTS = Counter(
    "twinflow_opcua_command_results",
    "End states of commands the OPC UA command sink handled (succeeded or failed)",
    ["status"],
)
