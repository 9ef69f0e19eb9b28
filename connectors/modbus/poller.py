"""Polling of the units behind one Modbus TCP endpoint, as an asyncio task.

One :class:`EndpointPoller` per (host, port) owns one :class:`Connection` shared by every
unit (twin) behind it, so requests to that endpoint go one at a time, as on a gateway. Each
unit is polled every ``poll_interval_s`` of its binding; a late poll is not caught up (no
bursts), a unit polled back to back (interval 0) takes turns with the others.

Every poll yields one :data:`Row`, also when it fails: the signals it could not read are
NaN and flagged bad, so the flow sees the outage as BAD quality at the poll's time instead
of a silent gap. Results are counted in :class:`ModbusStats` (``ok``, ``exception``,
``timeout``, ``disconnected``; a poll with several failures reports the worst). A unit that
does not answer costs one ``timeout_s`` per read group and the poll stops at the first
silent group; while the endpoint is unreachable a unit is polled (a BAD row, no I/O) at its
interval or at each reconnect attempt, whichever is rarer. ``max_timeouts`` unanswered
requests in a row on the endpoint (no unit answering in between) drop the connection, since
a peer that accepts but never answers is as good as gone, and the next poll reconnects.

The poller lends its connection to the Modbus command sink of its process (``link``, a
:class:`~twinflow.connectors.shared_connections.Link` the source partition registers): a write
runs through :meth:`EndpointPoller.exclusive` between two polls, so the device sees one
connection and one request at a time. The link is closed when polling ends.
"""

from __future__ import annotations

import asyncio
import logging
import math
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from twinflow.connectors.bindings import ModbusBinding
from twinflow.connectors.modbus.client import Connection, async_client_class
from twinflow.connectors.modbus.metrics import POLL_RESULTS, ModbusStats
from twinflow.connectors.modbus.plan import ReadGroup, plan_reads
from twinflow.connectors.shared_connections import Link, close_link

async_client_class()  # fails early, naming the extra, when pymodbus is missing
from pymodbus.exceptions import ConnectionException, ModbusIOException  # noqa: E402

log = logging.getLogger(__name__)

R = TypeVar("R")

#: One poll: (unit index in the partition, poll time in epoch s, values, bad flags or None).
Row = tuple[int, float, list[float], list[bool] | None]

_READS = {
    "holding": "read_holding_registers",
    "input": "read_input_registers",
    "coil": "read_coils",
    "discrete": "read_discrete_inputs",
}
_SEVERITY = {r: i for i, r in enumerate(POLL_RESULTS)}


@dataclass(slots=True)
class UnitPlan:
    """What to read from one twin's unit, and where its rows go."""

    index: int
    binding: ModbusBinding
    names: tuple[str, ...]
    groups: tuple[ReadGroup, ...]
    last_time: float = -math.inf
    polls: int = 0
    due: float = 0.0
    failed: list[bool] = field(default_factory=list)

    @classmethod
    def build(cls, index: int, binding: ModbusBinding) -> UnitPlan:
        names, groups = plan_reads(binding.registers)
        return cls(index, binding, names, groups, failed=[True] * len(names))


class EndpointPoller:
    """Polls ``units`` (all on one host and port) until cancelled or ``max_polls`` each.

    ``emit`` receives each row; ``backlog`` says how many rows wait downstream, and polling
    pauses while it is at ``max_backlog`` (back-pressure instead of dropping rows).
    """

    def __init__(
        self,
        units: list[UnitPlan],
        emit: Callable[[Row], None],
        backlog: Callable[[], int],
        stats: ModbusStats,
        *,
        max_polls: int | None = None,
        max_backlog: int = 10_000,
        backoff_min_s: float = 0.1,
        backoff_max_s: float = 10.0,
        max_timeouts: int = 3,
        clock: Callable[[], float] = time.time,
    ) -> None:
        first = units[0].binding
        self.units = units
        self.emit = emit
        self.backlog = backlog
        self.stats = stats
        self.max_polls = max_polls
        self.max_backlog = max_backlog
        self.max_timeouts = max_timeouts
        self.clock = clock
        self.stopping = False
        #: The registered lending of this connection to the command sink, if any.
        self.link: Link[EndpointPoller] | None = None
        #: One request at a time on the connection: a poll or a command's write.
        self.lock = asyncio.Lock()
        self.connection = Connection(
            first.host,
            first.port,
            timeout_s=max(u.binding.timeout_s for u in units),
            backoff_min_s=backoff_min_s,
            backoff_max_s=backoff_max_s,
            stats=stats,
        )

    def stop(self) -> None:
        """Ask :meth:`run` to end after the current poll (safe from any thread).

        Cancelling the task is not enough on its own: see :class:`LoopThread`.
        """
        self.stopping = True

    async def exclusive(self, work: Callable[[Connection], Awaitable[R]]) -> R:
        """``work(connection)`` between two polls (a command sink's write)."""
        async with self.lock:
            return await work(self.connection)

    async def run(self) -> None:
        """Poll until every unit has had ``max_polls`` polls (forever without a limit)."""
        active = [u for u in self.units if self.max_polls is None or self.max_polls > 0]
        start = time.monotonic()
        for u in active:
            u.due = start
        try:
            while active and not self.stopping:
                unit = min(active, key=_due)
                delay = unit.due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                while self.backlog() >= self.max_backlog and not self.stopping:
                    await asyncio.sleep(0.005)
                started = time.monotonic()
                async with self.lock:
                    await self.poll(unit)
                unit.polls += 1
                if self.max_polls is not None and unit.polls >= self.max_polls:
                    active.remove(unit)
                # Next slot on the unit's cadence; after a late poll, one interval after it
                # (missed slots are skipped, never caught up in a burst).
                interval = unit.binding.poll_interval_s
                unit.due += interval
                if unit.due < started:
                    unit.due = started + interval
                if not self.connection.connected:  # no polls faster than reconnect attempts
                    unit.due = max(unit.due, self.connection.next_attempt)
        finally:
            if self.link is not None:
                close_link(self.link)
            self.connection.close()

    async def poll(self, unit: UnitPlan) -> None:
        """Read every group of ``unit`` once and emit the row."""
        t = max(self.clock(), unit.last_time)
        unit.last_time = t
        n = len(unit.names)
        values = [math.nan] * n
        bad: list[bool] | None = None
        result = "ok"
        conn = self.connection
        client = conn.client if conn.connected else await conn.get()
        if client is None:
            self.emit((unit.index, t, values, unit.failed))
            self.stats.poll("disconnected")
            return
        device = unit.binding.unit
        for i, group in enumerate(unit.groups):
            outcome = await self._read(client, group, device, values)
            if outcome == "ok":
                continue
            if bad is None:
                bad = [False] * n
            if _SEVERITY[outcome] > _SEVERITY[result]:
                result = outcome
            stop = outcome in ("timeout", "disconnected")
            for g in unit.groups[i:] if stop else (group,):
                for idx, _, _ in g.fields:
                    bad[idx] = True
                    values[idx] = math.nan
            if stop:
                break
        self.emit((unit.index, t, values, bad))
        self.stats.poll(result)

    async def _read(self, client: object, group: ReadGroup, device: int, out: list[float]) -> str:
        """One request; returns the poll result it amounts to (``ok`` or a failure)."""
        conn = self.connection
        try:
            resp = await getattr(client, _READS[group.kind])(
                group.address, count=group.count, device_id=device
            )
        except ModbusIOException:  # no answer within timeout_s
            conn.timeouts += 1
            if conn.timeouts >= self.max_timeouts:
                log.warning("%r: %d requests unanswered, reconnecting", conn, conn.timeouts)
                conn.drop()
            return "timeout"
        except (TimeoutError, ConnectionException, OSError):
            conn.drop()
            return "disconnected"
        except Exception:  # an unexpected client failure must not stop polling
            log.exception("%r: read of %r failed; reconnecting", conn, group)
            conn.drop()
            return "disconnected"
        conn.timeouts = 0
        if resp.isError():
            return "exception"
        try:
            group.decode(resp.bits if group.kind in ("coil", "discrete") else resp.registers, out)
        except (struct.error, IndexError, ValueError, TypeError):
            return "exception"  # a malformed (short) answer
        return "ok"


def _due(u: UnitPlan) -> float:
    return u.due


__all__ = ["EndpointPoller", "Row", "UnitPlan"]
