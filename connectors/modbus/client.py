"""One Modbus TCP connection with reconnect backoff, on pymodbus's async client.

twinflow reconnects itself (pymodbus's automatic reconnect is off) so that it decides when
to try, can count reconnects, and never retries a request: a poll that gets no answer is
reported as such and the next poll is the retry. A connection attempt that fails doubles
the wait before the next one, from ``backoff_min_s`` up to ``backoff_max_s``; a success
resets it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from twinflow.connectors import connection_state
from twinflow.connectors.modbus.metrics import ModbusStats
from twinflow.core.optional import require

log = logging.getLogger(__name__)


def async_client_class() -> Any:
    """pymodbus's ``AsyncModbusTcpClient``, with an error naming the extra when missing."""
    return require(
        "pymodbus.client", extra="modbus", what="the Modbus connector"
    ).AsyncModbusTcpClient


class Connection:
    """A client for ``host:port`` that (re)connects on demand; use it on one event loop only.

    :meth:`get` returns a connected client, or ``None`` while the peer is unreachable and
    the backoff has not expired. ``timeouts`` counts requests in a row that got no answer;
    the caller resets it on any answer and :meth:`drop`\\ s the connection when it grows too
    large (a peer that accepts a connection but never answers is as good as gone).
    """

    def __init__(
        self,
        host: str,
        port: int,
        timeout_s: float,
        backoff_min_s: float = 0.1,
        backoff_max_s: float = 10.0,
        stats: ModbusStats | None = None,
        role: str = "source",
    ) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.stats = stats
        self.role = role
        self.client: Any = None
        self.timeouts = 0
        self.last_error = ""
        #: ``time.monotonic()`` before which :meth:`get` does not try to connect.
        self.next_attempt = 0.0
        self._backoff = backoff_min_s
        self._had_connection = False

    @property
    def connected(self) -> bool:
        return self.client is not None and bool(self.client.connected)

    async def get(self, *, honour_backoff: bool = True) -> Any:
        """A connected client, connecting first if needed; ``None`` if that is not possible now.

        With ``honour_backoff=False`` it tries at once even while backing off (a command
        sink's retry loop paces itself).
        """
        if self.client is not None:
            if self.client.connected:
                return self.client
            self.drop()  # the peer closed it; reconnect below
        now = time.monotonic()
        if honour_backoff and now < self.next_attempt:
            return None
        client = async_client_class()(
            self.host,
            port=self.port,
            timeout=self.timeout_s,
            retries=0,
            reconnect_delay=0,
            name=f"twinflow {self.host}:{self.port}",
        )
        # twinflow decides when a silent peer is gone (see ``timeouts``), not pymodbus.
        client.set_max_no_responses(1 << 30)
        error = f"cannot connect to {self.host}:{self.port} (refused or timed out)"
        try:
            ok = await client.connect()
        except Exception as err:  # a resolver or socket error must not escape
            ok = False
            error = f"cannot connect to {self.host}:{self.port}: {type(err).__name__}: {err}"
        if not ok:
            client.close()
            if self.last_error != error:
                log.warning("Modbus %s %s; retrying with backoff", self.role, error)
            connection_state.down("modbus", self.role, f"{self.host}:{self.port}")
            self.last_error = error
            self.next_attempt = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2.0, self.backoff_max_s)
            return None
        if self._had_connection and self.stats is not None:
            self.stats.reconnect()
        connection_state.up(
            "modbus", self.role, f"{self.host}:{self.port}", reconnected=self._had_connection
        )
        self._had_connection = True
        self._backoff = self.backoff_min_s
        self.client = client
        self.timeouts = 0
        self.last_error = ""
        return client

    def drop(self) -> None:
        """Close the connection; the next :meth:`get` reconnects at once, then backs off."""
        if self.client is not None:
            self.client.close()
            self.client = None
            connection_state.down("modbus", self.role, f"{self.host}:{self.port}")
        self.timeouts = 0
        self.next_attempt = 0.0

    def close(self) -> None:
        """Close for good: as :meth:`drop`, and the connection is no longer reported."""
        self.drop()
        connection_state.forget("modbus", self.role, f"{self.host}:{self.port}")

    def __repr__(self) -> str:
        return f"Connection({self.host}:{self.port}, connected={self.connected})"


__all__ = ["Connection", "async_client_class"]
