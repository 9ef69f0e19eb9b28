"""Whether each connection to a peer is up, the same way for every protocol.

The MQTT, OPC UA and Modbus connectors report here when a connection of theirs comes up,
goes down or is re-established, so that one gauge and one counter cover every source and
command sink, and the progress line can show how many connections are up and down.
``peer`` is an address without credentials (``host:port`` or an endpoint URL).
"""

from __future__ import annotations

import threading

from prometheus_client import Counter, Gauge

UP = Gauge(
    "twinflow_connection_up",
    "1 while a connector's connection to its peer is up, 0 while it is down",
    ["protocol", "role", "peer"],
)
RECONNECTS = Counter(
    "twinflow_connection_reconnects",
    "Connections re-established after a loss, by connector and peer",
    ["protocol", "role", "peer"],
)

Key = tuple[str, str, str]

_lock = threading.Lock()
_state: dict[Key, bool] = {}


def up(protocol: str, role: str, peer: str, *, reconnected: bool = False) -> None:
    """The connection of ``role`` (``source`` or ``sink``) to ``peer`` is up."""
    with _lock:
        _state[(protocol, role, peer)] = True
    UP.labels(protocol, role, peer).set(1)
    if reconnected:
        RECONNECTS.labels(protocol, role, peer).inc()


def down(protocol: str, role: str, peer: str) -> None:
    """The connection is down (lost, refused, or not yet made)."""
    with _lock:
        _state[(protocol, role, peer)] = False
    UP.labels(protocol, role, peer).set(0)


def forget(protocol: str, role: str, peer: str) -> None:
    """The connection was closed on purpose: no longer counted as up or down."""
    with _lock:
        _state.pop((protocol, role, peer), None)


def counts() -> tuple[int, int]:
    """How many known connections are up, and how many down."""
    with _lock:
        ups = sum(1 for v in _state.values() if v)
        return ups, len(_state) - ups


def down_peers() -> list[Key]:
    """The connections that are down, sorted."""
    with _lock:
        return sorted(k for k, v in _state.items() if not v)
