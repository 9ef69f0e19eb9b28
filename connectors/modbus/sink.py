"""Bytewax sink that carries the flow's commands to Modbus devices as register or coil writes.

Only commands in status ISSUED are acted on. Before anything is sent, a command is checked
against its twin's binding (``commands[name]`` says which register and which parameter),
the twin type's :class:`~operators.catalog.ActuatorSpec` (parameters and ranges), what the
register can hold after scale and offset (e.g. a uint16 cannot take a negative raw value)
and its expiry; a command that fails a check is ``rejected`` and never sent.

Writes run on a background event loop so a slow or absent device never stalls the flow;
writes to one endpoint go one at a time. A device that does not answer, refuses the
connection or drops it is retried ``retries`` times with a doubling pause, then the command
is ``failed`` (bounded time: about ``(retries + 1) × 2 × timeout_s`` plus the pauses). A
Modbus exception answer (e.g. illegal data value) is a definite ``failed`` at once.

Results land in :attr:`ModbusCommandSink.results` (``command_id -> (status, detail)``,
thread-safe, bounded), in ``twinflow_modbus_command_results_total{status}`` and, when given,
in ``on_result`` (the command with its end status, e.g. to publish it). A command id seen
before (a replay after recovery) is not written twice.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import math
import numbers
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.bindings import ModbusBinding, ModbusWrite
from connectors.modbus.checks import check_bindings, endpoints
from connectors.modbus.client import Connection, async_client_class
from connectors.modbus.codec import encode_value
from connectors.modbus.loop import LoopThread
from connectors.modbus.metrics import ModbusStats
from operators.catalog import twin_type
from operators.errors import ConfigError, ValidationError
from operators.records import Command, CommandStatus, epoch, iso

async_client_class()  # fails early, naming the extra, when pymodbus is missing
from pymodbus.exceptions import ConnectionException, ModbusIOException  # noqa: E402

log = logging.getLogger(__name__)

_STATUS = {
    "succeeded": CommandStatus.SUCCEEDED,
    "failed": CommandStatus.FAILED,
    "rejected": CommandStatus.REJECTED,
}
_EXCEPTIONS = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    6: "device busy",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


class CommandResults(Mapping[str, tuple[str, str]]):
    """``command_id -> (status, detail)``, safe across threads, keeping the newest ``limit``."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._items: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._cond = threading.Condition()

    def __getitem__(self, command_id: str) -> tuple[str, str]:
        with self._cond:
            return self._items[command_id]

    def __contains__(self, command_id: object) -> bool:
        with self._cond:
            return command_id in self._items

    def __iter__(self) -> Iterator[str]:
        with self._cond:
            return iter(list(self._items))

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def set(self, command_id: str, status: str, detail: str) -> None:
        with self._cond:
            self._items[command_id] = (status, detail)
            self._items.move_to_end(command_id)
            while len(self._items) > self.limit:
                self._items.popitem(last=False)
            self._cond.notify_all()

    def wait(self, command_id: str, timeout: float) -> tuple[str, str] | None:
        """The result of ``command_id``, waiting up to ``timeout`` s for it; ``None`` if none."""
        with self._cond:
            self._cond.wait_for(lambda: command_id in self._items, timeout)
            return self._items.get(command_id)


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    binding: ModbusBinding
    write: ModbusWrite
    value: float
    words: list[int]


class ModbusCommandSink(DynamicSink[Command]):
    """Write issued commands to the devices of ``bindings`` (see the module docstring).

    ``clock`` (epoch seconds) judges expiry; ``close_timeout_s`` bounds how long closing
    waits for writes still in flight (each then ends ``failed``).

    >>> from connectors.bindings import ModbusBinding, ModbusWrite, Register
    >>> b = ModbusBinding("M1", "motor", "127.0.0.1", 5020, 1, {},
    ...                   {"derate": ModbusWrite(Register(100, type="float32"), "fraction")})
    >>> sink = ModbusCommandSink([b])
    >>> len(sink.results)
    0
    """

    def __init__(
        self,
        bindings: Sequence[ModbusBinding],
        *,
        retries: int = 2,
        retry_backoff_s: float = 0.2,
        clock: Callable[[], float] = time.time,
        on_result: Callable[[Command], None] | None = None,
        max_results: int = 10_000,
        close_timeout_s: float = 10.0,
    ) -> None:
        bindings = tuple(bindings)
        check_bindings(bindings, commands=True)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"ModbusCommandSink retries must be an integer >= 0, got {retries!r}")
        if not retry_backoff_s >= 0:
            raise ConfigError(
                f"ModbusCommandSink retry_backoff_s must be >= 0, got {retry_backoff_s!r}"
            )
        self.bindings = bindings
        self.retries = retries
        self.retry_backoff_s = retry_backoff_s
        self.clock = clock
        self.on_result = on_result
        self.close_timeout_s = close_timeout_s
        self.results = CommandResults(max_results)
        self.stats = ModbusStats()
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
                    f"ModbusCommandSink takes operators.records.Command items, got "
                    f"{type(cmd).__name__}; route only commands to this sink"
                )
            if cmd.status is not CommandStatus.ISSUED:
                self.stats.add("ignored")
                continue
            with self._lock:  # check and hand over at once: a replay racing in is skipped
                if cmd.command_id in self._inflight or cmd.command_id in self.results:
                    self.stats.add("duplicates")
                    continue
                reason, plan = self._check(cmd)
                if plan is not None:
                    if self._thread is None:
                        self._thread = LoopThread("twinflow-modbus-commands").start()
                    self._inflight[cmd.command_id] = self._thread.submit(self._send(cmd, plan))
            if plan is None:
                self._record(cmd, "rejected", reason)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every handed-over command has a result; ``False`` on timeout."""
        with self._lock:
            pending = list(self._inflight.values())
        if not pending:
            return True
        wait = self.close_timeout_s if timeout is None else timeout
        _, not_done = concurrent.futures.wait(pending, timeout=wait)
        return not not_done

    def close(self) -> None:
        """Flush (bounded), then stop the writer thread; commands cut short end ``failed``."""
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
        try:
            spec = twin_type(binding.twin_type).actuator(cmd.name)
        except ValidationError as err:
            return str(err), None
        params = dict(cmd.params)
        if set(params) != set(spec.params):
            return (
                f"command {cmd.name!r} takes parameters {sorted(spec.params)}, got "
                f"{sorted(params)}",
                None,
            )
        value = params[write.param]
        low, high = spec.params[write.param]
        ok = (
            isinstance(value, numbers.Real)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and low <= value <= high
        )
        if not ok:
            return f"{cmd.name}.{write.param}={value!r} is outside [{low:g}, {high:g}]", None
        try:
            words = encode_value(float(value), write.register)
        except ValidationError as err:
            return f"{cmd.name}.{write.param}={value!r}: {err}", None
        if self.clock() > epoch(cmd.expires_at):
            return f"expired at {iso(cmd.expires_at)} before it could be sent", None
        return "", _Plan(binding, write, float(value), words)

    # -- writing ------------------------------------------------------------------------

    async def _send(self, cmd: Command, plan: _Plan) -> None:
        status, detail = "failed", "the sink closed before the write finished"
        try:
            status, detail = await self._attempts(plan)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # never leave a command without an end state
            log.exception("write of command %s failed unexpectedly", cmd.command_id)
            status, detail = "failed", f"{type(err).__name__}: {err}"
        finally:
            with self._lock:
                self._inflight.pop(cmd.command_id, None)
            self._record(cmd, status, detail)

    async def _attempts(self, plan: _Plan) -> tuple[str, str]:
        b, reg = plan.binding, plan.write.register
        conn, lock = self._connection(b)
        target = f"{reg.kind} {reg.address} of unit {b.unit} at {b.host}:{b.port}"
        last = ""
        async with lock:
            for attempt in range(self.retries + 1):
                if attempt:
                    await asyncio.sleep(self.retry_backoff_s * 2 ** (attempt - 1))
                client = await conn.get(honour_backoff=False)
                if client is None:
                    last = conn.last_error
                    continue
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
                    return "failed", f"device answered Modbus exception {code} ({name}) to {target}"
                return "succeeded", f"wrote {plan.value:g} to {target}"
        return "failed", f"{target} unreachable after {self.retries + 1} attempt(s): {last}"

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

    def _record(self, cmd: Command, status: str, detail: str) -> None:
        self.results.set(cmd.command_id, status, detail)
        self.stats.command(status)
        if self.on_result is not None:
            try:
                self.on_result(dataclasses.replace(cmd, status=_STATUS[status], detail=detail))
            except Exception:
                log.exception("on_result callback failed for command %s", cmd.command_id)

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


__all__ = ["CommandResults", "ModbusCommandSink"]
