"""Bytewax source that polls Modbus TCP devices by their twins' register maps.

One Bytewax partition per endpoint (``host:port``, so one connection serves all units behind
it), placed on a worker by its key like an OPC UA server; each polls on a :class:`LoopThread`
of its own, and the polls land in a bounded queue that ``next_batch`` drains. The partition
lends its connection to the Modbus command sink of its process, whose partitions have the same
keys and so run on the same worker: a device sees one client of the cluster
(:mod:`twinflow.connectors.shared_connections`). The rows drained at once become ONE
:class:`TelemetryFrame` per twin (rows in time order): times are the poll times (wall
clock, epoch seconds, UTC), since Modbus devices send no timestamps.

Failures are data, not crashes: a read that fails (exception response, no answer, no
connection) gives NaN for the signals it should have carried, and the frame reports those
signals BAD when the newest row failed (quality is "as of the end of the frame", as
:class:`~twinflow.operators.twin_state.TwinStateTracker` reads it); older failed rows in the same
frame show only as NaN dropouts. Counts go to ``twinflow_modbus_polls_total{result}`` and
``twinflow_modbus_reconnects_total`` (see :mod:`twinflow.connectors.modbus.metrics`).

Polling has no replayable position, so a partition's resume state is empty: a resumed flow
simply polls again. ``max_polls`` ends the source after that many polls of every twin;
:meth:`ModbusSource.stop` ends it early (both drain what was polled first).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from twinflow.connectors.bindings import ModbusBinding
from twinflow.connectors.modbus.checks import check_bindings, endpoint_key, endpoints
from twinflow.connectors.modbus.loop import LoopThread
from twinflow.connectors.modbus.metrics import ModbusStats
from twinflow.connectors.modbus.poller import EndpointPoller, Row, UnitPlan
from twinflow.connectors.shared_connections import close_link, open_link
from twinflow.core.errors import ConfigError
from twinflow.core.records import Quality, TelemetryFrame


class ModbusSource(FixedPartitionedSource[TelemetryFrame, None]):
    """Poll every binding's registers and emit :class:`TelemetryFrame` items.

    ``bindings`` without registers (command-only devices) are not polled. ``max_polls``
    (per twin) makes the source finite, for tests and benchmarks. Reconnects back off from
    ``reconnect_min_s`` to ``reconnect_max_s``; ``max_timeouts`` unanswered requests in a
    row drop a connection. At most ``max_rows`` polled rows wait for the flow (polling
    pauses beyond that). ``next_batch`` runs at most every ``batch_interval_s`` (0: as
    often as Bytewax asks), so fast polls gather into fewer, bigger frames at a small cost
    in latency. ``clock`` gives the poll times.

    >>> from twinflow.connectors.bindings import ModbusBinding, Register
    >>> b = ModbusBinding("M1", "motor", "127.0.0.1", 5020, 1, {"load_pct": Register(0)})
    >>> src = ModbusSource([b], max_polls=10)
    >>> src.stats.snapshot()
    {}
    """

    def __init__(
        self,
        bindings: Sequence[ModbusBinding],
        *,
        max_polls: int | None = None,
        reconnect_min_s: float = 0.1,
        reconnect_max_s: float = 10.0,
        max_timeouts: int = 3,
        max_rows: int = 10_000,
        batch_interval_s: float = 0.01,
        clock: Callable[[], float] = time.time,
        stop: threading.Event | None = None,
    ) -> None:
        bindings = tuple(bindings)
        check_bindings(bindings, commands=False)
        if max_polls is not None and (not isinstance(max_polls, int) or max_polls < 0):
            raise ConfigError(
                f"ModbusSource max_polls must be None or an integer >= 0, got {max_polls!r}"
            )
        if not 0 < reconnect_min_s <= reconnect_max_s:
            raise ConfigError(
                "ModbusSource needs 0 < reconnect_min_s <= reconnect_max_s, got "
                f"{reconnect_min_s!r} and {reconnect_max_s!r}"
            )
        if max_timeouts < 1 or max_rows < 1 or batch_interval_s < 0:
            raise ConfigError(
                "ModbusSource needs max_timeouts >= 1, max_rows >= 1 and batch_interval_s >= 0"
            )
        self.bindings = bindings
        self.max_polls = max_polls
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.max_timeouts = max_timeouts
        self.max_rows = max_rows
        self.batch_interval_s = batch_interval_s
        self.clock = clock
        self.stats = ModbusStats()
        polled = [b for b in self.bindings if b.registers]
        #: The bindings polled through each endpoint, by partition key (``host:port``).
        self.groups = {endpoint_key(*ep): bs for ep, bs in endpoints(polled).items()}
        #: Set (here, by :meth:`stop` or by whoever passed ``stop``) to end every partition.
        self._stop = stop if stop is not None else threading.Event()

    def stop(self) -> None:
        """End every partition: polling stops, what was polled is still emitted."""
        self._stop.set()

    def list_parts(self) -> list[str]:
        return list(self.groups)

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> ModbusPartition:
        return ModbusPartition(self, [self.groups[for_part]], f"{step_id}-{for_part}")


class ModbusPartition(StatefulSourcePartition[TelemetryFrame, None]):
    """The endpoints a partition polls (one; tests may give several): a loop thread feeding
    a queue that batches drain."""

    def __init__(
        self, source: ModbusSource, endpoints: list[list[ModbusBinding]], name: str
    ) -> None:
        self._source = source
        self._rows: deque[Row] = deque()
        self._units: list[UnitPlan] = []
        pollers = []
        for bindings in endpoints:
            units = []
            for b in bindings:
                unit = UnitPlan.build(len(self._units), b)
                self._units.append(unit)
                units.append(unit)
            pollers.append(
                EndpointPoller(
                    units,
                    self._rows.append,
                    self._rows.__len__,
                    source.stats,
                    max_polls=source.max_polls,
                    max_backlog=source.max_rows,
                    backoff_min_s=source.reconnect_min_s,
                    backoff_max_s=source.reconnect_max_s,
                    max_timeouts=source.max_timeouts,
                    clock=source.clock,
                )
            )
        self._sources = [
            f"modbus://{u.binding.host}:{u.binding.port}/{u.binding.unit}" for u in self._units
        ]
        self._pollers = pollers
        self._thread = LoopThread(f"twinflow-modbus-{name}").start()
        for poller in pollers:
            b = poller.units[0].binding
            poller.link = open_link("modbus", (b.host, b.port), endpoint_key(b.host, b.port))
            poller.link.attach(self._thread.loop, poller)
        self._done = self._thread.submit(_run_all(pollers))
        self._closed = False

    def next_batch(self) -> list[TelemetryFrame]:
        if self._source._stop.is_set():
            self.close()  # joins the polling thread: nothing is appended after this
        done = self._closed or self._done.done()
        rows = self._drain()
        if not rows and done:
            self.close()
            error = None if self._done.cancelled() else self._done.exception()
            if error is not None:
                raise error  # a bug in polling, not a device error (those become rows)
            raise StopIteration
        return self._frames(rows) if rows else []

    def next_awake(self) -> datetime | None:
        if self._source.batch_interval_s > 0:
            return datetime.now(UTC) + timedelta(seconds=self._source.batch_interval_s)
        return None

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            for poller in self._pollers:
                poller.stop()
                if poller.link is not None:
                    close_link(poller.link)
            self._thread.stop()

    def _drain(self) -> list[Row]:
        rows = self._rows
        n = len(rows)
        return [rows.popleft() for _ in range(n)]

    def _frames(self, rows: list[Row]) -> list[TelemetryFrame]:
        per_unit: dict[int, list[Row]] = {}
        for row in rows:
            per_unit.setdefault(row[0], []).append(row)
        frames = []
        stats = self._source.stats
        for index in sorted(per_unit):
            unit_rows = per_unit[index]
            unit_rows.sort(key=_time)
            unit = self._units[index]
            times = np.fromiter((r[1] for r in unit_rows), dtype=np.float64, count=len(unit_rows))
            block = np.array([r[2] for r in unit_rows], dtype=np.float64).T.copy()
            newest_bad = unit_rows[-1][3]
            quality = (
                {name: Quality.BAD for name, b in zip(unit.names, newest_bad, strict=True) if b}
                if newest_bad
                else {}
            )
            frames.append(
                TelemetryFrame(
                    twin_id=unit.binding.twin_id,
                    twin_type=unit.binding.twin_type,
                    times=times,
                    signals=dict(zip(unit.names, block, strict=True)),
                    quality=quality,
                    source=self._sources[index],
                )
            )
        stats.add("rows", len(rows))
        stats.add("frames", len(frames))
        return frames


async def _run_all(pollers: list[EndpointPoller]) -> None:
    await asyncio.gather(*(p.run() for p in pollers))


def _time(row: Row) -> float:
    return row[1]


__all__ = ["ModbusPartition", "ModbusSource"]
