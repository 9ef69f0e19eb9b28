"""Device connections a source partition lends to the command sink in its process.

A device (an OPC UA server, a Modbus TCP endpoint) should see one client of a twinflow
cluster: the source partition that reads it. The command sink's partitions are placed on the
same worker as the source partitions (:mod:`twinflow.connectors.placement`), and a sink that
finds a :class:`Link` here for a device writes over that connection instead of opening its
own. A link belongs to the source partition that registered it (:func:`open_link`), from
its start to its end; it is *attached* while the connection is up. The connection lives on
the source's event loop, so :meth:`Link.call` runs the sink's work there, thread-safely, and
awaits the result on the sink's own loop.

The registry is per process: a device whose source partition runs in another process (or
that has none: a command-only device) has no link here, and the sink then opens a connection
of its own. ``twinflow_command_writes_total{protocol,connection}`` counts the write attempts
by the connection they used: ``source`` (lent) or ``own``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

from prometheus_client import Counter

T = TypeVar("T")
R = TypeVar("R")

WRITES = Counter(
    "twinflow_command_writes",
    "Command write attempts by the connection they went over: source (the connection of the "
    "source partition that reads the device, in this process) or own (the sink's own)",
    ["protocol", "connection"],
)


class LinkDown(ConnectionError):
    """The source's connection to the device is not up now (it reconnects by itself)."""


class Link(Generic[T]):
    """One source partition's connection to one device, for the command sink to borrow."""

    def __init__(self, protocol: str, key: Hashable, label: str) -> None:
        self.protocol = protocol
        self.key = key
        self.label = label
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._value: T | None = None

    def attach(self, loop: asyncio.AbstractEventLoop, value: T) -> None:
        """The connection is up: ``value`` (a client) on ``loop``."""
        with self._lock:
            self._loop, self._value = loop, value

    def detach(self) -> None:
        """The connection is down (or being replaced)."""
        with self._lock:
            self._loop, self._value = None, None

    @property
    def attached(self) -> bool:
        with self._lock:
            return self._value is not None

    async def call(self, work: Callable[[T], Awaitable[R]]) -> R:
        """``work(connection)`` run on the source's loop; raises :class:`LinkDown` while the
        connection is down. Cancelling the caller cancels the work."""
        with self._lock:
            loop, value = self._loop, self._value
        if loop is None or value is None or loop.is_closed():
            raise LinkDown(f"the source's connection to {self.label} is down")
        if loop is asyncio.get_running_loop():
            return await work(value)

        async def run() -> R:
            return await work(value)

        try:
            future = asyncio.run_coroutine_threadsafe(run(), loop)
        except RuntimeError as err:  # the loop closed in between
            raise LinkDown(f"the source's connection to {self.label} closed") from err
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the caller is cancelled
            # the source's loop cancelled the work: its partition closed meanwhile
            raise LinkDown(f"the source's connection to {self.label} closed") from None


_LINKS: dict[tuple[str, Hashable], list[Link[Any]]] = {}
_GUARD = threading.Lock()


def open_link(protocol: str, key: Hashable, label: str) -> Link[Any]:
    """Register a source partition's link to device ``key`` of ``protocol`` (detached)."""
    link: Link[Any] = Link(protocol, key, label)
    with _GUARD:
        _LINKS.setdefault((protocol, key), []).append(link)
    return link


def close_link(link: Link[Any]) -> None:
    """The source partition ends: its link is detached and no longer found."""
    link.detach()
    with _GUARD:
        links = _LINKS.get((link.protocol, link.key), [])
        if link in links:
            links.remove(link)
        if not links:
            _LINKS.pop((link.protocol, link.key), None)


def find_link(protocol: str, key: Hashable) -> Link[Any] | None:
    """The link of a source partition of this process to device ``key``, if there is one
    (an attached one first, should two partitions read the same device)."""
    with _GUARD:
        links = list(_LINKS.get((protocol, key), ()))
    for link in links:
        if link.attached:
            return link
    return links[0] if links else None


def count_write(protocol: str, link: Link[Any] | None) -> None:
    """Count one write attempt over the source's connection (``link``) or the sink's own."""
    WRITES.labels(protocol, "own" if link is None else "source").inc()


__all__ = ["Link", "LinkDown", "close_link", "count_write", "find_link", "open_link"]
