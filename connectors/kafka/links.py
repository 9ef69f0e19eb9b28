"""Whether a librdkafka client is connected to a broker, from its statistics.

librdkafka hides lost connections from its caller: it reconnects on its own and reports
each failed attempt as a log line. A client given ``stats_cb=link.update`` (and a
``statistics.interval.ms``) tells :class:`BrokerLink` the state of its broker connections;
the link keeps ``twinflow_connection_up{protocol="kafka", role, peer}`` and the reconnect
counter of :mod:`twinflow.connectors.connection_state` (so the progress line counts Kafka
too), and, with ``log_transitions``, logs once per peer and role when the brokers become
unreachable and when they are back, however many clients share them.

>>> link = BrokerLink("source", "k1:9092", log_transitions=False)
>>> link.update('{"brokers": {"k1:9092/1": {"state": "UP"}}}'), link.connected
(True, True)
>>> link.update('{"brokers": {"k1:9092/1": {"state": "CONNECT"}}}'), link.connected
(False, False)
>>> link.update("not json") is None
True
"""

from __future__ import annotations

import logging
import threading
import time

import orjson

from twinflow.connectors import connection_state

log = logging.getLogger("twinflow.connectors.kafka")

#: How often clients report statistics, in milliseconds.
STATS_INTERVAL_MS = 500

_lock = threading.Lock()
_shared: dict[tuple[str, str], float | None] = {}  # (role, peer) -> down since (None: up)


class BrokerLink:
    """One client's broker connection state; see the module docstring."""

    def __init__(self, role: str, peer: str, *, log_transitions: bool = True) -> None:
        self.role = role
        self.peer = peer
        self.log_transitions = log_transitions
        self.connected_since: float | None = None
        self.seen = False  # statistics have been reported since the last reset

    @property
    def connected(self) -> bool:
        return self.connected_since is not None

    def reset(self) -> None:
        """A new client replaces the old one: its state is unknown until it reports."""
        self.connected_since = None
        self.seen = False

    def update(self, stats: str) -> bool | None:
        """Read one statistics report; True when the client got connected, False when it
        lost (or never had) its brokers, None when nothing changed. (The report holds every
        partition's counters too, tens of kB every 500 ms per client, hence orjson.)"""
        try:
            brokers = orjson.loads(stats).get("brokers", {}).values()
            connected = any(b.get("state") == "UP" for b in brokers)
        except (ValueError, AttributeError):
            return None
        first, self.seen = not self.seen, True
        if connected and self.connected_since is None:
            self.connected_since = time.monotonic()
            self._shared(True)
            return True
        if not connected and (self.connected_since is not None or first):
            self.connected_since = None
            self._shared(False)
            return False
        return None

    def _shared(self, up: bool) -> None:
        key = (self.role, self.peer)
        now = time.monotonic()
        with _lock:
            known = key in _shared
            down_since = _shared.get(key)
            if known and up == (down_since is None):
                return  # another client of the same role and peer said so already
            _shared[key] = None if up else now
        if up:
            connection_state.up("kafka", self.role, self.peer, reconnected=known)
            if known and self.log_transitions:
                log.warning(
                    "kafka %s: brokers at %s reachable again after %.0f s",
                    self.role,
                    self.peer,
                    now - (down_since or now),
                )
        else:
            connection_state.down("kafka", self.role, self.peer)
            if self.log_transitions:
                log.warning(
                    "kafka %s: no connection to the brokers at %s; %s",
                    self.role,
                    self.peer,
                    "reading waits for them" if self.role == "source" else "retrying",
                )


__all__ = ["STATS_INTERVAL_MS", "BrokerLink"]
