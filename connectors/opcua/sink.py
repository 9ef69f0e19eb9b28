"""The OPC UA command sink: commands become node writes; the write's StatusCode is the answer.

The checks, replay guard, retries and reporting are
:class:`~twinflow.connectors.command_sink.CommandSink`'s: a command's twin must be bound, the
binding must map the command name to a node and parameter, and the value must be a finite
number inside the catalog's range for that parameter. A refused command is REJECTED and one
whose ``expires_at`` has passed EXPIRED; neither is written.

Writes run on an event loop in a thread of the sink (one per process), one queue per server,
so commands to one server are written in the order they reached the sink and ``write_batch``
never waits for the network. A write goes over the session of the OPC UA source partition
that reads the server, when that partition runs in this process (the flow places the sink's
partitions with the source's: :class:`~twinflow.connectors.placement.PlacedCommands`), so a
server sees one client of the cluster; a server no source of the process reads (only
commanded) gets a session of the sink's own. While the source's session is down, a write is
retried (the source reconnects), not sent over another session. The node's data type is read
once per session and the value converted to it (a PLC setpoint may be Float or Int16).
Outcomes go to the
:class:`~twinflow.connectors.feedback.CommandFeedback` given as ``feedback``:

- SENT (with the attempt number) when the write request goes out on an open session;
- ACKNOWLEDGED when the server answers Good;
- FAILED when it answers Bad (e.g. ``BadOutOfRange``, named in ``detail``), not retried;
- a server that cannot be reached, a broken session or no answer within ``3 * timeout_s``
  is retried with :class:`~twinflow.core.backoff.Backoff`; when the attempts run out: FAILED
  "gave up after N attempts: <last error>"; when ``expires_at`` passes first: EXPIRED.

A command id the sink has already taken on (say, replayed after recovery) is not written
again. End states are counted in ``twinflow_opcua_command_results_total{status}``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import ClassVar

from twinflow.connectors import connection_state
from twinflow.connectors.bindings import OpcUaBinding
from twinflow.connectors.command_sink import CommandPartition, CommandSink
from twinflow.connectors.feedback import CommandFeedback
from twinflow.connectors.opcua.connection import (
    Client,
    Endpoint,
    check_bindings,
    close_quietly,
    group_by_endpoint,
    link_key,
    open_client,
    parse_node,
    ua,
)
from twinflow.connectors.opcua.metrics import COMMAND_RESULTS
from twinflow.connectors.placement import DevicePlacement, placement_of
from twinflow.connectors.shared_connections import Link, LinkDown, count_write, find_link
from twinflow.core.backoff import DEFAULT_BACKOFF, Backoff, Outcome
from twinflow.core.errors import ConfigError
from twinflow.core.optional import needs
from twinflow.core.records import Command, CommandStatus
from twinflow.core.redact import redact

with needs("opcua", "the OPC UA connector"):
    from asyncua.ua.attribute_ids import AttributeIds
    from asyncua.ua.status_codes import StatusCodes
    from asyncua.ua.uaerrors import UaError, UaStatusCodeError

log = logging.getLogger(__name__)

#: StatusCodes that mean "the session or connection broke", worth another attempt.
_TRANSPORT_CODES = frozenset(
    getattr(StatusCodes, name)
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


#: What to write for one command: the server, the node and the value.
_Plan = tuple[Endpoint, ua.NodeId, float]


class OpcUaCommandSink(CommandSink[OpcUaBinding, _Plan]):
    """Write the flow's queued commands to OPC UA nodes; see the module docstring.

    ``timeout_s`` bounds connecting and each request of one attempt (the whole attempt
    takes at most ``3 * timeout_s``); ``backoff`` paces the attempts; ``feedback``
    receives the outcomes; ``clock`` (epoch seconds) judges expiry.
    """

    protocol: ClassVar[str] = "OPC UA"

    def __init__(
        self,
        bindings: Sequence[OpcUaBinding],
        *,
        feedback: CommandFeedback | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        timeout_s: float = 2.0,
        session_timeout_s: float = 60.0,
        clock: Callable[[], float] = time.time,
        max_ids: int = 100_000,
    ) -> None:
        check_bindings(bindings, commands=True)
        if not (isinstance(timeout_s, int | float) and math.isfinite(timeout_s) and timeout_s > 0):
            raise ConfigError(f"OpcUaCommandSink timeout_s must be > 0, got {timeout_s!r}")
        super().__init__(bindings, feedback=feedback, backoff=backoff, clock=clock, max_ids=max_ids)
        self.timeout_s = timeout_s
        self.session_timeout_s = session_timeout_s
        self._endpoint_of = {
            b.twin_id: e for e in group_by_endpoint(self.bindings) for b in e.bindings
        }
        self._lock = threading.Lock()
        self._writer: _Writer | None = None
        self._users = 0

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CommandPartition:
        return _CommandPartition(self)

    def placement(self) -> DevicePlacement:
        """Each twin's server connection: the OPC UA source's partition keys."""
        groups = group_by_endpoint(self.bindings)
        twins = {b.twin_id: e.key for e in groups for b in e.bindings}
        return placement_of([e.key for e in groups if e.reads], twins)

    def _acquire(self) -> _Writer:
        """The process's writer (started by the first partition)."""
        with self._lock:
            if self._writer is None:
                self._writer = _Writer(self)
            self._users += 1
            return self._writer

    def _release(self) -> None:
        """A partition closed; the last one closes the writer."""
        with self._lock:
            self._users -= 1
            writer = self._writer if self._users <= 0 else None
            if writer is not None:
                self._writer = None
        if writer is not None:
            writer.close()

    def writes(self, binding: OpcUaBinding) -> Collection[str]:
        return binding.commands.keys()

    def plan(self, command: Command, binding: OpcUaBinding) -> _Plan:
        """Where and what to write for a checked ``command``."""
        write = binding.commands[command.name]
        node = parse_node(write.node, binding.twin_id, f"commands[{command.name!r}].node")
        return self._endpoint_of[binding.twin_id], node, float(command.params[write.param])

    def count(self, event: str, status: CommandStatus | None = None) -> None:
        if status is not None and status is not CommandStatus.SENT:
            COMMAND_RESULTS.labels(status.value).inc()


class _CommandPartition(CommandPartition[_Plan]):
    """Hands commands to the process's writer thread; never blocks on the network."""

    def __init__(self, sink: OpcUaCommandSink) -> None:
        super().__init__(sink)
        self._opcua = sink
        self.writer = sink._acquire()
        self._closed = False

    def submit(self, command: Command, plan: _Plan) -> None:
        self.writer.submit(command, *plan)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._opcua._release()


#: Seconds a closing sink waits for queued writes before cancelling them.
CLOSE_TIMEOUT_S = 5.0


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

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Finish the queued writes for up to ``timeout_s``, then cancel what is left (a
        server that is away would otherwise be retried until its commands expire), close
        the sessions and end the thread."""

        async def drain() -> None:
            for q in self._queues.values():
                q.put_nowait(None)
            if not self._workers:
                return
            _done, pending = await asyncio.wait(self._workers, timeout=timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                log.warning(
                    "OPC UA command writer closed with %d server(s) still unreachable; their "
                    "unsent commands end timed out in the flow",
                    len(pending),
                )
                await asyncio.gather(*pending, return_exceptions=True)

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
        self._was_up = False

    async def run(self, jobs: asyncio.Queue[tuple[Command, ua.NodeId, float] | None]) -> None:
        try:
            while (job := await jobs.get()) is not None:
                command, node, value = job
                attempt = functools.partial(self._try, command, node, value)
                await self.sink.deliver(command, self.endpoint.label, attempt)
        finally:
            await self._drop(lost=False)
            connection_state.forget("opcua", "sink", self.endpoint.label)

    async def _try(
        self, command: Command, node: ua.NodeId, value: float, attempt: int
    ) -> Outcome | str:
        """One write: its outcome, or what went wrong in a way worth another try.

        Over the session of this server's source partition when there is one in the
        process (its failures are the source's to mend), else over the sink's own."""
        link: Link[Client] | None = find_link("opcua", link_key(self.endpoint))
        count_write("opcua", link)
        try:
            if link is not None:
                if self._client is not None:  # a source appeared: its session from now on
                    await self._drop(lost=False)
                work = functools.partial(self._write_on, command, attempt, node, value)
                code = await asyncio.wait_for(link.call(work), 3 * self.sink.timeout_s)
            else:
                code = await asyncio.wait_for(
                    self._write(command, attempt, node, value), 3 * self.sink.timeout_s
                )
        except UaStatusCodeError as exc:
            code = exc.code
        except LinkDown as exc:
            return str(exc)
        except (TimeoutError, OSError, ConnectionError, UaError) as exc:
            if link is None:
                await self._drop()
            return redact(f"{type(exc).__name__}: {exc}".rstrip(": ")) or type(exc).__name__
        status = ua.StatusCode(ua.UInt32(code))
        if status.is_good():
            detail = f"{status.name} from {self.endpoint.label} node {node.to_string()}"
            return CommandStatus.ACKNOWLEDGED, detail, attempt
        if code in _TRANSPORT_CODES:
            if link is None:
                await self._drop()
            return status.name
        detail = f"server answered {status.name} for node {node.to_string()}"
        return CommandStatus.FAILED, detail, attempt

    async def _write(self, command: Command, attempt: int, node: ua.NodeId, value: float) -> int:
        """Write over the sink's own session."""
        return await self._write_on(command, attempt, node, value, await self._connect())

    async def _write_on(
        self, command: Command, attempt: int, node: ua.NodeId, value: float, client: Client
    ) -> int:
        """Write over ``client``'s session (the sink's own, or the source's on its loop)."""
        vtype = self._types.get(node)
        if vtype is None:
            vtype = await client.get_node(node).read_data_type_as_variant_type()
            self._types[node] = vtype
        item = ua.WriteValue()
        item.NodeId = node
        item.AttributeId = AttributeIds.Value
        item.Value = ua.DataValue(ua.Variant(_convert(value, vtype), vtype))
        params = ua.WriteParameters()
        params.NodesToWrite = [item]
        self.sink.report(
            command,
            CommandStatus.SENT,
            f"write to {self.endpoint.label} node {node.to_string()}",
            attempt,
        )
        [code] = await client.uaclient.write(params)
        return int(code.value)

    async def _connect(self) -> Client:
        if self._client is None:
            s = self.sink
            label = self.endpoint.label
            try:
                self._client = await open_client(self.endpoint, s.timeout_s, s.session_timeout_s)
            except BaseException:
                connection_state.down("opcua", "sink", label)
                raise
            connection_state.up("opcua", "sink", label, reconnected=self._was_up)
            self._was_up = True
            self._types.clear()
        return self._client

    async def _drop(self, lost: bool = True) -> None:
        """Close the session; ``lost``: because it failed (the connection counts as down)."""
        client, self._client = self._client, None
        if client is not None:
            if lost:
                connection_state.down("opcua", "sink", self.endpoint.label)
            await close_quietly(client, self.sink.timeout_s)


def _convert(value: float, vtype: ua.VariantType) -> float | int | bool:
    if vtype in _INTEGER_TYPES:
        return round(value)
    if vtype is ua.VariantType.Boolean:
        return bool(value)
    return float(value)
