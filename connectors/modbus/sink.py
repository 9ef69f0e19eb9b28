"""Bytewax sink that carries the flow's commands to Modbus devices as register or coil writes.

The checks, replay guard, retries and reporting are
:class:`~twinflow.connectors.command_sink.CommandSink`'s: a command is checked against its
twin's binding (``commands[name]`` says which register and which parameter), the twin type's
catalogue, and what the register can hold after scale and offset (e.g. a uint16 cannot take a
negative raw value); one that fails a check is REJECTED, one whose ``expires_at`` has passed
is EXPIRED, and neither is sent.

Writes run on a background event loop so a slow or absent device never stalls the flow;
writes to one endpoint go one at a time, in order. A write goes over the connection of the
Modbus source partition that polls the endpoint when that partition runs in this process (the
flow places the sink's partitions with the source's:
:class:`~twinflow.connectors.placement.PlacedCommands`), between two of its polls, so a device
sees one client of the cluster; an endpoint no source of the process polls (only commanded)
gets a connection of the sink's own. Each command's outcomes go to the
:class:`~twinflow.connectors.feedback.CommandFeedback` given as ``feedback``:

- SENT (with the attempt number) when the request went out on a connection;
- ACKNOWLEDGED when the device answered the write without an exception;
- FAILED at once on a Modbus exception answer (the code and its name in ``detail``);
- a refused or lost connection, or no answer, is retried with
  :class:`~twinflow.core.backoff.Backoff`; when the attempts run out: FAILED "gave up after N
  attempts: <last error>"; when ``expires_at`` passes first: EXPIRED.

A command id seen before (a replay after recovery) is not written twice. Counts go to
``twinflow_modbus_command_results_total{status}`` (``succeeded`` means the write was
acknowledged) and :attr:`ModbusCommandSink.stats`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, ClassVar

from twinflow.connectors.bindings import ModbusBinding, ModbusWrite
from twinflow.connectors.command_sink import CommandPartition, CommandSink
from twinflow.connectors.feedback import CommandFeedback
from twinflow.connectors.modbus.checks import check_bindings, endpoint_key, endpoints
from twinflow.connectors.modbus.client import Connection
from twinflow.connectors.modbus.codec import encode_value
from twinflow.connectors.modbus.loop import LoopThread
from twinflow.connectors.modbus.metrics import COMMAND_RESULTS, ModbusStats
from twinflow.connectors.placement import DevicePlacement, placement_of
from twinflow.connectors.shared_connections import LinkDown, count_write, find_link
from twinflow.core.backoff import DEFAULT_BACKOFF, Backoff, Outcome
from twinflow.core.errors import ValidationError
from twinflow.core.optional import needs
from twinflow.core.records import Command, CommandStatus

with needs("modbus", "the Modbus connector"):
    from pymodbus.exceptions import ConnectionException, ModbusIOException

log = logging.getLogger(__name__)

_EXCEPTIONS = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    6: "device busy",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}
#: Events counted locally (no Prometheus metric), by the name they get in :attr:`stats`.
_LOCAL = {"ignored": "ignored", "duplicate": "duplicates"}


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    binding: ModbusBinding
    write: ModbusWrite
    value: float
    words: list[int]

    @property
    def target(self) -> str:
        reg, b = self.write.register, self.binding
        return f"{reg.kind} {reg.address} of unit {b.unit} at {b.host}:{b.port}"


class ModbusCommandSink(CommandSink[ModbusBinding, _Plan]):
    """Write queued commands to the devices of ``bindings`` (see the module docstring).

    ``feedback`` receives the outcomes; ``backoff`` paces retries of transient failures;
    ``clock`` (epoch seconds) judges expiry; ``close_timeout_s`` bounds how long closing
    waits for writes still in flight (those cut short get no further outcome).

    >>> from twinflow.connectors.bindings import ModbusBinding, ModbusWrite, Register
    >>> b = ModbusBinding("M1", "motor", "127.0.0.1", 5020, 1, {},
    ...                   {"derate": ModbusWrite(Register(100, type="float32"), "fraction")})
    >>> ModbusCommandSink([b]).backoff.max_attempts
    4
    """

    protocol: ClassVar[str] = "Modbus"

    def __init__(
        self,
        bindings: Sequence[ModbusBinding],
        *,
        feedback: CommandFeedback | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        clock: Callable[[], float] = time.time,
        max_ids: int = 100_000,
        close_timeout_s: float = 10.0,
    ) -> None:
        bindings = tuple(bindings)
        check_bindings(bindings, commands=True)
        super().__init__(bindings, feedback=feedback, backoff=backoff, clock=clock, max_ids=max_ids)
        self.close_timeout_s = close_timeout_s
        self.stats = ModbusStats()
        self._timeouts = {
            ep: max(b.timeout_s for b in bs) for ep, bs in endpoints(bindings).items()
        }
        self._lock = threading.Lock()
        self._inflight: dict[str, concurrent.futures.Future[None]] = {}
        self._thread: LoopThread | None = None
        self._connections: dict[tuple[str, int], tuple[Connection, asyncio.Lock]] = {}
        self._open_partitions = 0

    # -- Bytewax ------------------------------------------------------------------------

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CommandPartition:
        with self._lock:
            self._open_partitions += 1
        return _CommandPartition(self)

    def placement(self) -> DevicePlacement:
        """Each twin's endpoint (``host:port``): the Modbus source's partition keys."""
        polled = endpoints(b for b in self.bindings if b.registers)
        return placement_of(
            [endpoint_key(*ep) for ep in polled],
            {b.twin_id: endpoint_key(b.host, b.port) for b in self.bindings},
        )

    # -- public -------------------------------------------------------------------------

    def send(self, items: Iterable[Command]) -> None:
        """Check and hand over ``items`` (what a partition's ``write_batch`` does)."""
        for cmd, plan in self.admit(items):
            self.submit(cmd, plan)

    def submit(self, cmd: Command, plan: _Plan) -> None:
        """Start writing a checked ``cmd`` on the writer thread."""
        with self._lock:
            if self._thread is None:
                self._thread = LoopThread("twinflow-modbus-commands").start()
            self._inflight[cmd.command_id] = self._thread.submit(self._send(cmd, plan))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every handed-over command is done with; ``False`` on timeout."""
        with self._lock:
            pending = list(self._inflight.values())
        if not pending:
            return True
        wait = self.close_timeout_s if timeout is None else timeout
        _, not_done = concurrent.futures.wait(pending, timeout=wait)
        return not not_done

    def close(self) -> None:
        """Flush (bounded), then stop the writer thread (cancelling what is left)."""
        self.flush()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            try:
                thread.run(self._close_connections(), timeout=5.0)
            except Exception:  # the thread is stopped next in any case
                log.exception("closing Modbus command connections failed")
            thread.stop()

    async def _close_connections(self) -> None:
        for conn, _ in self._connections.values():
            conn.close()
        self._connections.clear()
        await asyncio.sleep(0)  # let the transports finish closing

    # -- CommandSink ----------------------------------------------------------------------

    def writes(self, binding: ModbusBinding) -> Collection[str]:
        return binding.commands.keys()

    def plan(self, command: Command, binding: ModbusBinding) -> _Plan | str:
        write = binding.commands[command.name]
        value = command.params[write.param]
        try:
            words = encode_value(float(value), write.register)
        except ValidationError as err:
            return f"{command.name}.{write.param}={value!r}: {err}"
        return _Plan(binding, write, float(value), words)

    def count(self, event: str, status: CommandStatus | None = None) -> None:
        if status is None:
            if event in _LOCAL:
                self.stats.add(_LOCAL[event])
        elif status.value in COMMAND_RESULTS:
            self.stats.command(status.value)
        elif status is CommandStatus.ACKNOWLEDGED:
            self.stats.command("succeeded")  # the metric's "succeeded": the write was answered
        else:
            self.stats.add(f"command:{status.value}")

    # -- writing (on the writer loop) -----------------------------------------------------

    async def _send(self, cmd: Command, plan: _Plan) -> None:
        conn, lock = self._connection(plan.binding)
        try:
            async with lock:  # one write at a time per endpoint, in order
                await self.deliver(
                    cmd, plan.target, functools.partial(self._attempt, cmd, plan, conn)
                )
        finally:
            with self._lock:
                self._inflight.pop(cmd.command_id, None)

    async def _attempt(
        self, cmd: Command, plan: _Plan, own: Connection, attempt: int
    ) -> Outcome | str:
        """One write, over the connection of the endpoint's source partition in this process
        (between two of its polls) when there is one, else over the sink's ``own``."""
        b = plan.binding
        link = find_link("modbus", (b.host, b.port))
        count_write("modbus", link)
        if link is None:
            return await self._try(cmd, plan, attempt, own)
        if own.client is not None:  # a source appeared: its connection from now on
            own.close()
        work = functools.partial(self._try, cmd, plan, attempt)
        try:
            result: Outcome | str = await link.call(lambda poller: poller.exclusive(work))
        except LinkDown as exc:
            return str(exc)
        return result

    async def _try(
        self, cmd: Command, plan: _Plan, attempt: int, conn: Connection
    ) -> Outcome | str:
        """One write on ``conn``: its outcome, or what went wrong in a way worth another try."""
        client = await conn.get(honour_backoff=False)
        if client is None:
            return conn.last_error
        target = plan.target
        self.report(cmd, CommandStatus.SENT, f"write to {target}", attempt)
        try:
            resp = await self._write(client, plan, plan.binding.unit)
        except ModbusIOException:
            conn.drop()
            return f"no answer within {conn.timeout_s:g} s"
        except (TimeoutError, ConnectionException, OSError) as err:
            conn.drop()
            return f"connection lost: {err}"
        if resp.isError():
            code = getattr(resp, "exception_code", 0)
            name = _EXCEPTIONS.get(code, "exception")
            detail = f"device answered Modbus exception {code} ({name}) to {target}"
            return CommandStatus.FAILED, detail, attempt
        return CommandStatus.ACKNOWLEDGED, f"wrote {plan.value:g} to {target}", attempt

    def _connection(self, b: ModbusBinding) -> tuple[Connection, asyncio.Lock]:
        key = (b.host, b.port)
        found = self._connections.get(key)
        if found is None:  # only ever called on the writer loop, so no race
            found = (
                Connection(b.host, b.port, self._timeouts[key], stats=self.stats, role="sink"),
                asyncio.Lock(),
            )
            self._connections[key] = found
        return found

    @staticmethod
    async def _write(client: Any, plan: _Plan, unit: int) -> Any:
        reg, words = plan.write.register, plan.words
        if reg.kind == "coil":
            return await client.write_coil(reg.address, bool(words[0]), device_id=unit)
        if len(words) == 1:
            return await client.write_register(reg.address, words[0], device_id=unit)
        return await client.write_registers(reg.address, words, device_id=unit)

    def _release(self) -> None:
        with self._lock:
            self._open_partitions -= 1
            last = self._open_partitions <= 0
        if last:
            self.close()
        else:
            self.flush()


class _CommandPartition(CommandPartition[_Plan]):
    def __init__(self, sink: ModbusCommandSink) -> None:
        super().__init__(sink)
        self._modbus = sink
        self._closed = False

    def submit(self, command: Command, plan: _Plan) -> None:
        self._modbus.submit(command, plan)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._modbus._release()


__all__ = ["ModbusCommandSink"]
