"""One bounded pool of PostgreSQL connections per database URL, shared by a process's sinks.

A run that stores every output in PostgreSQL builds a sink partition per output and
partition (14 with ``twinflow run``'s two partitions), each with its own writer thread. They
commit at different moments, so they share a few connections instead of holding one each:
a writer takes a connection for one batch's transaction and gives it back after the commit.

- **Bounded**: at most ``size`` connections are open (or being opened) per URL. A writer
  that finds them all busy waits for one (counted in ``twinflow_pg_pool_wait_seconds``); its
  buffer then fills, and the flow blocks on the sink's ``max_buffer_rows``: back-pressure
  reaches the flow instead of the database getting more sessions.
- **Reused**: a connection given back healthy goes to the idle list, newest last, and the next
  writer takes it; a new one is opened only when none is idle and there is room.
- **Recovering**: a writer whose transaction failed gives its connection back as broken; it
  is closed, and so are the idle ones (a restarted server has cut them all), so the retry
  opens a fresh session instead of meeting a dead one per retry.
- **Shared**: :func:`pool_for` hands every sink of the process the same pool for a URL;
  writers register and unregister, and the last one to leave closes it. The largest ``size``
  asked for wins.

Every new connection is prepared once by the pool's ``prepare`` callback (session settings
and the schema check); it is named after the partition whose writer opened it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from twinflow.connectors.postgres.connection import connect, psycopg
from twinflow.connectors.postgres.metrics import POOL_CONNECTIONS, POOL_WAIT_SECONDS

log = logging.getLogger("twinflow.postgres")

Connection = psycopg.Connection[Any]


class ConnectionPool:
    """At most ``size`` connections to ``url``; see the module docstring."""

    def __init__(
        self,
        url: str,
        size: int,
        prepare: Callable[[Connection], None],
        *,
        connect_timeout_s: float = 5.0,
    ) -> None:
        if size < 1:
            raise ValueError(f"a connection pool needs a size of at least 1, got {size}")
        self.url = url
        self.size = size
        self.connect_timeout_s = connect_timeout_s
        self._prepare = prepare
        self._cond = threading.Condition()
        self._idle: list[tuple[Connection, float]] = []  # (connection, opened at)
        self._open = 0  # busy + idle + being opened
        self._users = 0
        self.opened = 0  # connections opened over the pool's life

    @property
    def open_connections(self) -> int:
        with self._cond:
            return self._open

    @contextmanager
    def connection(
        self, application_name: str = "twinflow-sink", stop: Callable[[], bool] = lambda: False
    ) -> Iterator[Connection]:
        """A connection for one unit of work, given back afterwards: healthy when the block
        ends normally, closed (with the idle ones) when it raises. Waits while
        the pool is full; ``stop`` returning True ends the wait with :class:`TimeoutError`."""
        conn, opened_at = self._acquire(application_name, stop)
        try:
            yield conn
        except BaseException:
            self._discard(conn, opened_at)
            raise
        self._release(conn, opened_at)

    def _acquire(self, application_name: str, stop: Callable[[], bool]) -> tuple[Connection, float]:
        waited_since: float | None = None
        with self._cond:
            while True:
                while self._idle:
                    conn, opened_at = self._idle.pop()
                    if not (conn.closed or conn.broken):
                        self._record_wait(waited_since)
                        return conn, opened_at
                    self._open -= 1
                    POOL_CONNECTIONS.dec()
                    _close_quietly(conn)
                if self._open < self.size:
                    self._open += 1  # hold the slot while connecting
                    POOL_CONNECTIONS.inc()
                    break
                if stop():
                    raise TimeoutError(f"no free connection to {self.url!r} (pool closing)")
                waited_since = waited_since if waited_since is not None else time.monotonic()
                self._cond.wait(0.5)
            self._record_wait(waited_since)
        opened_at = time.monotonic()
        try:
            conn = connect(
                self.url,
                application_name=application_name,
                connect_timeout_s=self.connect_timeout_s,
            )
        except BaseException:
            self._give_slot_back()
            raise
        try:
            self._prepare(conn)
        except BaseException:
            _close_quietly(conn)
            self._give_slot_back()
            raise
        with self._cond:
            self.opened += 1
        return conn, opened_at

    @staticmethod
    def _record_wait(since: float | None) -> None:
        if since is not None:
            POOL_WAIT_SECONDS.inc(time.monotonic() - since)

    def _give_slot_back(self) -> None:
        with self._cond:
            self._open -= 1
            POOL_CONNECTIONS.dec()
            self._cond.notify()

    def _release(self, conn: Connection, opened_at: float) -> None:
        if conn.closed or conn.broken:
            self._discard(conn, opened_at)
            return
        with self._cond:
            if self._users > 0:
                self._idle.append((conn, opened_at))
                self._cond.notify()
                return
        _close_quietly(conn)  # the pool was closed while the connection was out
        self._give_slot_back()

    def _discard(self, conn: Connection, opened_at: float) -> None:
        """Close ``conn`` after a failure, and every idle connection (all were opened before
        the failure; a restarted server has cut them too)."""
        _close_quietly(conn)
        with self._cond:
            stale = [c for c, _at in self._idle]
            self._idle = []
            self._open -= 1 + len(stale)
            POOL_CONNECTIONS.dec(1 + len(stale))
            self._cond.notify_all()
        for c in stale:
            _close_quietly(c)

    def register(self) -> None:
        with self._cond:
            self._users += 1

    def unregister(self) -> bool:
        """One user less; the last one closes the idle connections. True if it was the last."""
        with self._cond:
            self._users -= 1
            if self._users > 0:
                return False
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            POOL_CONNECTIONS.dec(len(idle))
        for conn, _at in idle:
            _close_quietly(conn)
        return True


def _close_quietly(conn: Connection) -> None:
    try:
        conn.close()
    except Exception:  # a broken connection may fail to close; it is gone either way
        log.debug("closing a PostgreSQL connection failed", exc_info=True)


_POOLS: dict[str, ConnectionPool] = {}
_POOLS_LOCK = threading.Lock()


def pool_for(
    url: str,
    size: int,
    prepare: Callable[[Connection], None],
    *,
    connect_timeout_s: float = 5.0,
) -> ConnectionPool:
    """The process's pool for ``url`` (made on first use), registered for one more user;
    give it back with :func:`leave`."""
    with _POOLS_LOCK:
        pool = _POOLS.get(url)
        if pool is None:
            pool = ConnectionPool(url, size, prepare, connect_timeout_s=connect_timeout_s)
            _POOLS[url] = pool
        elif size > pool.size:
            with pool._cond:
                pool.size = size
                pool._cond.notify_all()
        pool.register()
        return pool


def leave(pool: ConnectionPool) -> None:
    """Unregister one user of ``pool``; the last one closes it and forgets it."""
    with _POOLS_LOCK:
        if pool.unregister() and _POOLS.get(pool.url) is pool:
            del _POOLS[pool.url]


__all__ = ["ConnectionPool", "leave", "pool_for"]
