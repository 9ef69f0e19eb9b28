"""The OPC UA command sink: commands become node writes; the write's StatusCode is the result.

Only commands in status ISSUED are acted on. Each is checked before anything is sent: its
twin must be bound, the binding must map the command name to a node and parameter, and the
value must be a finite number inside the catalog's range for that parameter. A refused
command ends "failed" with the reason and is never written.

Writes run on an event loop in a thread of the sink, one queue per server, so commands to
one server are written in the order they reached the sink and ``write_batch`` never waits
for the network. The node's data type is read once per session and the value converted to
it (a PLC setpoint may be Float or Int16). A write ends:

- "succeeded" when the server answers Good;
- "failed" when it answers Bad (e.g. ``BadOutOfRange``), not retried: it is an answer;
- "failed" after ``retries`` further attempts when the server cannot be reached or the
  session breaks, each attempt bounded by ``timeout_s`` (with a short backoff between).

Results land in :attr:`OpcUaCommandSink.results` as ``command_id -> (status, detail)``. The
sink is idempotent: a command id it has already handled (say, replayed after recovery) is
not written again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import numbers
import threading
from collections.abc import Iterator, Mapping, Sequence

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.bindings import OpcUaBinding
from connectors.opcua.connection import (
    Endpoint,
    check_bindings,
    close_quietly,
    group_by_endpoint,
    open_client,
    parse_node,
)
from connectors.opcua.metrics import COMMAND_RESULTS
from operators.catalog import twin_type
from operators.errors import ConfigError, ValidationError
from operators.records import Command, CommandStatus

try:
    from asyncua import Client, ua
except ImportError as exc:  # pragma: no cover - checked in connectors.opcua.connection
    raise ImportError("pip install 'twinflow[opcua]'") from exc

log = logging.getLogger(__name__)

SUCCEEDED = "succeeded"
FAILED = "failed"

#: StatusCodes that mean "the session or connection broke", worth another attempt.
_TRANSPORT_CODES = frozenset(
    getattr(ua.StatusCodes, name)
    for name in (
        "BadTimeout",
        "BadCommunicationError",
        "BadConnectionClosed",
        "BadServerNotConnected",
        "BadSecureChannelClosed",
        "BadSecureChannelIdInvalid",
        "BadSessionClosed",
        "BadSessionIdInvalid",
        "BadSessionNotActivated",
        "BadShutdown",
        "BadServerHalted",
        "BadTooManySessions",
    )
)

_INTEGER_TYPES = {
    ua.VariantType.SByte,
    ua.VariantType.Byte,
    ua.VariantType.Int16,
    ua.VariantType.UInt16,
    ua.VariantType.Int32,
    ua.VariantType.UInt32,
    ua.VariantType.Int64,
    ua.VariantType.UInt64,
}


class CommandResults(Mapping[str, tuple[str, str]]):
    """``command_id -> (status, detail)``, safe to read and wait on from any thread."""

    def __init__(self) -> None:
        self._done: dict[str, tuple[str, str]] = {}
        self._cond = threading.Condition()

    def __getitem__(self, command_id: str) -> tuple[str, str]:
        with self._cond:
            return self._done[command_id]

    def __iter__(self) -> Iterator[str]:
        with self._cond:
            return iter(list(self._done))

    def __len__(self) -> int:
        with self._cond:
            return len(self._done)

    def wait(self, command_id: str, timeout_s: float) -> tuple[str, str] | None:
        """The result of ``command_id`` once there is one, or ``None`` after ``timeout_s``."""
        with self._cond:
            self._cond.wait_for(lambda: command_id in self._done, timeout_s)
            return self._done.get(command_id)

    def record(self, command_id: str, status: str, detail: str) -> None:
        with self._cond:
            self._done[command_id] = (status, detail)
            self._cond.notify_all()
        COMMAND_RESULTS.labels(status).inc()


class OpcUaCommandSink(DynamicSink[Command]):
    """Write the flow's commands to OPC UA nodes; see the module docstring for guarantees.

    ``timeout_s`` bounds one attempt (connect, read the data type, write); ``retries`` is how
    many more attempts follow a transport failure, ``backoff_s`` the first pause between
    them (doubling). So a command to an unreachable server ends "failed" within about
    ``(retries + 1) * 3 * timeout_s + backoff_s * 2 ** retries`` seconds.
    """

    def __init__(
        self,
        bindings: Sequence[OpcUaBinding],
        *,
        timeout_s: float = 2.0,
        retries: int = 2,
        backoff_s: float = 0.2,
        session_timeout_s: float = 60.0,
    ) -> None:
        check_bindings(bindings, commands=True)
        if not (isinstance(timeout_s, int | float) and math.isfinite(timeout_s) and timeout_s > 0):
            raise ConfigError(f"OpcUaCommandSink timeout_s must be > 0, got {timeout_s!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"OpcUaCommandSink retries must be an integer >= 0, got {retries!r}")
        self.bindings = tuple(bindings)
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.session_timeout_s = session_timeout_s
        self.results = CommandResults()
        self._by_twin = {b.twin_id: b for b in self.bindings}
        self._endpoint_of = {
            b.twin_id: e for e in group_by_endpoint(self.bindings) for b in e.bindings
        }
        self._claimed: set[str] = set()
        self._lock = threading.Lock()

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CommandPartition:
        return _CommandPartition(self)

    # -- checks (any thread) -------------------------------------------------------------

    def plan(self, command: Command) -> tuple[Endpoint, ua.NodeId, float] | str:
        """Where and what to write for ``command``, or why it is refused."""
        binding = self._by_twin.get(command.twin_id)
        if binding is None:
            return f"twin {command.twin_id!r} has no OPC UA binding"
        if command.twin_type != binding.twin_type:
            return (
                f"twin {command.twin_id!r} is bound as a {binding.twin_type}, "
                f"not a {command.twin_type}"
            )
        write = binding.commands.get(command.name)
        if write is None:
            return (
                f"twin {command.twin_id!r} binds no OPC UA write for command {command.name!r}; "
                f"bound: {', '.join(binding.commands) or 'none'}"
            )
        try:
            spec = twin_type(binding.twin_type).actuator(command.name)
        except ValidationError as err:
            return str(err)
        low, high = spec.params[write.param]
        value = command.params.get(write.param)
        ok = (
            isinstance(value, numbers.Real)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and low <= value <= high
        )
        if not ok:
            return f"{command.name}.{write.param}={value!r} is outside [{low:g}, {high:g}]"
        node = parse_node(write.node, binding.twin_id, f"commands[{command.name!r}].node")
        return self._endpoint_of[binding.twin_id], node, float(value)  # type: ignore[arg-type]

    def claim(self, command_id: str) -> bool:
        """True the first time a command id is seen (the sink handles each id once)."""
        with self._lock:
            if command_id in self._claimed:
                return False
            self._claimed.add(command_id)
            return True


class _CommandPartition(StatelessSinkPartition[Command]):
    """Hands commands to a writer thread; never blocks on the network."""

    def __init__(self, sink: OpcUaCommandSink) -> None:
        self.sink = sink
        self.writer = _Writer(sink)

    def write_batch(self, items: list[Command]) -> None:
        for command in items:
            if not isinstance(command, Command):
                raise TypeError(
                    f"OpcUaCommandSink takes operators.records.Command items, got "
                    f"{type(command).__name__}; route only commands to this sink"
                )
            if command.status is not CommandStatus.ISSUED or not self.sink.claim(
                command.command_id
            ):
                continue
            plan = self.sink.plan(command)
            if isinstance(plan, str):
                self.sink.results.record(command.command_id, FAILED, f"refused, not sent: {plan}")
                continue
            self.writer.submit(command, *plan)

    def close(self) -> None:
        self.writer.close()


class _Writer:
    """An event loop thread with one ordered write queue (and session) per server."""

    def __init__(self, sink: OpcUaCommandSink) -> None:
        self.sink = sink
        self._loop = asyncio.new_event_loop()
        self._queues: dict[str, asyncio.Queue[tuple[Command, ua.NodeId, float] | None]] = {}
        self._workers: list[asyncio.Future[None]] = []
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="twinflow-opcua-commands", daemon=True
        )
        self._thread.start()

    def submit(self, command: Command, endpoint: Endpoint, node: ua.NodeId, value: float) -> None:
        self._loop.call_soon_threadsafe(self._enqueue, endpoint, (command, node, value))

    def _enqueue(self, endpoint: Endpoint, job: tuple[Command, ua.NodeId, float]) -> None:
        q = self._queues.get(endpoint.key)
        if q is None:
            q = self._queues[endpoint.key] = asyncio.Queue()
            self._workers.append(asyncio.ensure_future(_ServerWriter(self.sink, endpoint).run(q)))
        q.put_nowait(job)

    def close(self) -> None:
        """Finish the queued writes (each bounded), close the sessions, end the thread."""

        async def drain() -> None:
            for q in self._queues.values():
                q.put_nowait(None)
            if self._workers:
                await asyncio.gather(*self._workers, return_exceptions=True)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(drain(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._loop.close()


class _ServerWriter:
    """Writes one server's commands in order, keeping a session open between them."""

    def __init__(self, sink: OpcUaCommandSink, endpoint: Endpoint) -> None:
        self.sink = sink
        self.endpoint = endpoint
        self._client: Client | None = None
        self._types: dict[ua.NodeId, ua.VariantType] = {}

    async def run(self, jobs: asyncio.Queue[tuple[Command, ua.NodeId, float] | None]) -> None:
        try:
            while (job := await jobs.get()) is not None:
                command, node, value = job
                try:
                    status, detail = await self._deliver(node, value)
                except Exception as exc:  # never let one command end the writer
                    status, detail = FAILED, f"unexpected error: {exc!r}"
                self.sink.results.record(command.command_id, status, detail)
                log.info(
                    "OPC UA command %s (%s %s) %s: %s",
                    command.command_id,
                    command.twin_id,
                    command.name,
                    status,
                    detail,
                )
        finally:
            await self._drop()

    async def _deliver(self, node: ua.NodeId, value: float) -> tuple[str, str]:
        sink = self.sink
        pause = sink.backoff_s
        failure = ""
        for attempt in range(sink.retries + 1):
            if attempt:
                await asyncio.sleep(pause)
                pause *= 2
            try:
                code = await asyncio.wait_for(self._write(node, value), 3 * sink.timeout_s)
            except ua.UaStatusCodeError as exc:
                code = exc.code
            except (TimeoutError, OSError, ConnectionError, ua.UaError) as exc:
                failure = f"{type(exc).__name__}: {exc}".rstrip(": ")
                await self._drop()
                continue
            status = ua.StatusCode(code)
            if status.is_good():
                return (
                    SUCCEEDED,
                    f"{status.name} from {self.endpoint.label} node {node.to_string()}",
                )
            if code in _TRANSPORT_CODES:
                failure = status.name
                await self._drop()
                continue
            return FAILED, f"server answered {status.name} for node {node.to_string()}"
        return FAILED, (
            f"{self.endpoint.label} unreachable after {sink.retries + 1} attempt(s): {failure}"
        )

    async def _write(self, node: ua.NodeId, value: float) -> int:
        client = await self._connect()
        vtype = self._types.get(node)
        if vtype is None:
            vtype = await client.get_node(node).read_data_type_as_variant_type()
            self._types[node] = vtype
        item = ua.WriteValue()
        item.NodeId = node
        item.AttributeId = ua.AttributeIds.Value
        item.Value = ua.DataValue(ua.Variant(_convert(value, vtype), vtype))
        params = ua.WriteParameters()
        params.NodesToWrite = [item]
        [code] = await client.uaclient.write(params)
        return int(code.value)

    async def _connect(self) -> Client:
        if self._client is None:
            s = self.sink
            self._client = await open_client(self.endpoint, s.timeout_s, s.session_timeout_s)
            self._types.clear()
        return self._client

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await close_quietly(client, self.sink.timeout_s)


def _convert(value: float, vtype: ua.VariantType) -> float | int | bool:
    if vtype in _INTEGER_TYPES:
        return round(value)
    if vtype is ua.VariantType.Boolean:
        return bool(value)
    return float(value)
