"""Bytewax sink that carries the flow's commands to Modbus devices as register or coil writes.

Only commands in status QUEUED are acted on. Before anything is sent, a command is checked
against its twin's binding (``commands[name]`` says which register and which parameter),
the twin type's :class:`~twinflow.operators.catalog.ActuatorSpec` (parameters and ranges) and what
the register can hold after scale and offset (e.g. a uint16 cannot take a negative raw
value): a command that fails a check is REJECTED, one whose ``expires_at`` has passed is
EXPIRED, and neither is sent.

Writes run on a background event loop so a slow or absent device never stalls the flow;
writes to one endpoint go one at a time, in order. Each command's outcomes go to the
:class:`~twinflow.connectors.feedback.CommandFeedback` given as ``feedback``:

- SENT (with the attempt number) when the request went out on a connection;
- ACKNOWLEDGED when the device answered the write without an exception;
- FAILED at once on a Modbus exception answer (the code and its name in ``detail``);
- a refused or lost connection, or no answer, is retried with :class:`~twinflow.connectors.feedback.
  Backoff`; when the attempts run out: FAILED "gave up after N attempts: <last error>";
  when ``expires_at`` passes first: EXPIRED.

A command id seen before (a replay after recovery) is not written twice. Counts go to
``twinflow_modbus_command_results_total{status}`` (``succeeded`` means the write was
acknowledged) and :attr:`ModbusCommandSink.stats`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from twinflow.connectors.bindings import ModbusBinding, ModbusWrite
from twinflow.connectors.feedback import DEFAULT_BACKOFF, Backoff, CommandFeedback, SeenIds, report
from twinflow.connectors.modbus.checks import check_bindings, endpoints
from twinflow.connectors.modbus.client import Connection, async_client_class
from twinflow.connectors.modbus.codec import encode_value
from twinflow.connectors.modbus.loop import LoopThread
from twinflow.connectors.modbus.metrics import COMMAND_RESULTS, ModbusStats
from twinflow.core.errors import ValidationError
from twinflow.core.records import Command, CommandStatus, epoch, iso
from twinflow.operators.catalog import twin_type

async_client_class()  # fails early, naming the extra, when pymodbus is missing
from pymodbus.exceptions import ConnectionException, ModbusIOException  # noqa: E402

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


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    binding: ModbusBinding
    write: ModbusWrite
    value: float
    words: list[int]


class ModbusCommandSink(DynamicSink[Command]):
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
        self.bindings = bindings
        self.feedback = feedback
        self.backoff = backoff
        self.clock = clock
        self.max_ids = max_ids
        self.close_timeout_s = close_timeout_s
        self.stats = ModbusStats()
        self._seen = SeenIds(max_ids)
        self._by_twin = {b.twin_id: b for b in bindings}
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

    # -- public -------------------------------------------------------------------------

    def send(self, items: Sequence[Command]) -> None:
        """Check and hand over ``items`` (what a partition's ``write_batch`` does)."""
        for cmd in items:
            if not isinstance(cmd, Command):
                raise TypeError(
                    f"ModbusCommandSink takes twinflow.core.records.Command items, got "
                    f"{type(cmd).__name__}; route only commands to this sink"
                )
            if cmd.status is not CommandStatus.QUEUED:
                self.stats.add("ignored")
                continue
            if not self._seen.claim(cmd.command_id):  # a replay: in flight or done already
                self.stats.add("duplicates")
                continue
            reason, plan = self._check(cmd)
            if plan is None:
                self._report(cmd, CommandStatus.REJECTED, reason)
            elif self.clock() > epoch(cmd.expires_at):
                self._report(
                    cmd, CommandStatus.EXPIRED, f"expired at {iso(cmd.expires_at)}, not sent"
                )
            else:
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

    # -- checks -------------------------------------------------------------------------

    def _check(self, cmd: Command) -> tuple[str, _Plan | None]:
        binding = self._by_twin.get(cmd.twin_id)
        if binding is None:
            return f"no Modbus binding for twin {cmd.twin_id!r}", None
        if cmd.twin_type != binding.twin_type:
            return (
                f"twin {cmd.twin_id!r} is bound as a {binding.twin_type}, the command is for a "
                f"{cmd.twin_type}",
                None,
            )
        write = binding.commands.get(cmd.name)
        if write is None:
            mapped = ", ".join(binding.commands) or "none"
            return (
                f"the Modbus binding of twin {cmd.twin_id!r} maps no command {cmd.name!r} "
                f"(it maps: {mapped})",
                None,
            )
        problem = twin_type(binding.twin_type).command_problem(cmd.name, cmd.params)
        if problem is not None:
            return problem, None
        value = cmd.params[write.param]
        try:
            words = encode_value(float(value), write.register)
        except ValidationError as err:
            return f"{cmd.name}.{write.param}={value!r}: {err}", None
        return "", _Plan(binding, write, float(value), words)

    # -- writing ------------------------------------------------------------------------

    async def _send(self, cmd: Command, plan: _Plan) -> None:
        try:
            status, detail, attempt = await self._attempts(cmd, plan)
        except asyncio.CancelledError:
            log.warning("command %s: the sink closed before its write finished", cmd.command_id)
            raise
        except Exception as err:  # never leave a command without an end state
            log.exception("write of command %s failed unexpectedly", cmd.command_id)
            status, detail, attempt = CommandStatus.FAILED, f"{type(err).__name__}: {err}", 1
        finally:
            with self._lock:
                self._inflight.pop(cmd.command_id, None)
        self._report(cmd, status, detail, attempt)

    async def _attempts(self, cmd: Command, plan: _Plan) -> tuple[CommandStatus, str, int]:
        """Try the write until answered, out of attempts or expired: the final outcome."""
        b, reg = plan.binding, plan.write.register
        conn, lock = self._connection(b)
        target = f"{reg.kind} {reg.address} of unit {b.unit} at {b.host}:{b.port}"
        last = ""
        async with lock:
            for attempt in range(1, self.backoff.max_attempts + 1):
                expired = await self.backoff.before_try(cmd, attempt, self.clock, last)
                if expired is not None:
                    return expired
                client = await conn.get(honour_backoff=False)
                if client is None:
                    last = conn.last_error
                    continue
                self._report(cmd, CommandStatus.SENT, f"write to {target}", attempt)
                try:
                    resp = await self._write(client, plan, b.unit)
                except ModbusIOException:
                    last = f"no answer within {conn.timeout_s:g} s"
                    conn.drop()
                    continue
                except (TimeoutError, ConnectionException, OSError) as err:
                    last = f"connection lost: {err}"
                    conn.drop()
                    continue
                if resp.isError():
                    code = getattr(resp, "exception_code", 0)
                    name = _EXCEPTIONS.get(code, "exception")
                    detail = f"device answered Modbus exception {code} ({name}) to {target}"
                    return CommandStatus.FAILED, detail, attempt
                return CommandStatus.ACKNOWLEDGED, f"wrote {plan.value:g} to {target}", attempt
        return self.backoff.gave_up(target, last)

    def _connection(self, b: ModbusBinding) -> tuple[Connection, asyncio.Lock]:
        key = (b.host, b.port)
        found = self._connections.get(key)
        if found is None:  # only ever called on the writer loop, so no race
            found = (
                Connection(b.host, b.port, self._timeouts[key], stats=self.stats),
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

    def _report(self, cmd: Command, status: CommandStatus, detail: str, attempt: int = 1) -> None:
        if status.value in COMMAND_RESULTS:
            self.stats.command(status.value)
        elif status is CommandStatus.ACKNOWLEDGED:
            self.stats.command("succeeded")  # the metric's "succeeded": the write was answered
        else:
            self.stats.add(f"command:{status.value}")
        report(self.feedback, cmd, status, detail, attempt=attempt, clock=self.clock)

    def _release(self) -> None:
        with self._lock:
            self._open_partitions -= 1
            last = self._open_partitions <= 0
        if last:
            self.close()
        else:
            self.flush()


class _CommandPartition(StatelessSinkPartition[Command]):
    def __init__(self, sink: ModbusCommandSink) -> None:
        self._sink = sink
        self._closed = False

    def write_batch(self, items: list[Command]) -> None:
        self._sink.send(items)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._sink._release()


__all__ = ["ModbusCommandSink"]
