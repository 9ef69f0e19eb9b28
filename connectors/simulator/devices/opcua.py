"""The simulated plant served as OPC UA devices: an asyncua server, usually on loopback.

Address space: the namespace ``urn:twinflow:simulator`` (index 2 on a fresh server) holds one
object per bound twin and, under it, a Double variable per bound signal and a writable Double
variable per actuator parameter. Node ids are strings ``<twin_id>.<signal>`` and
``<twin_id>.<command>.<param>``, so the bindings that match the simulator are::

    OpcUaBinding("motor-003", "motor", "opc.tcp://127.0.0.1:4840",
                 nodes=default_nodes("motor-003", "motor"),
                 commands=default_commands("motor-003", "motor"))

(:func:`default_binding` builds exactly that). A binding may name other node ids in
namespace 2; the devices then serve those.

:meth:`OpcUaDevices.update` publishes the newest row of a telemetry frame (or every row, with
``all_rows``) with that row's time as SourceTimestamp and the frame's quality as StatusCode
(NaN readings are not published).
A client's write to an actuator variable becomes a :class:`~twinflow.core.records.Command`
(status ISSUED, id derived from twin, command and write count) handed to
:meth:`Plant.apply`; a value outside the catalog's range, or one the plant refuses, is
rejected with ``BadOutOfRange`` and changes nothing. :meth:`stop` then :meth:`start` restarts
the server on the same port with the same address space and values (sessions and
subscriptions are gone, as after a real device restart).
"""

from __future__ import annotations

import json
import math
import numbers
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from twinflow.connectors.bindings import OpcUaBinding, OpcUaWrite
from twinflow.connectors.opcua.connection import application_uri, check_bindings, parse_node
from twinflow.connectors.opcua.quality import BAD_OUT_OF_RANGE, status_code_for
from twinflow.connectors.simulator.plant import Plant
from twinflow.core.errors import ConfigError
from twinflow.core.optional import needs
from twinflow.core.records import Command, Quality, TelemetryFrame, deterministic_id
from twinflow.core.times import utc
from twinflow.operators.catalog import CATALOG, TwinType

with needs("opcua", "the simulator's OPC UA devices"):
    from asyncua import ua
    from asyncua.common.utils import ServiceError
    from asyncua.crypto.permission_rules import User, UserRole
    from asyncua.server import Server
    from asyncua.server.user_managers import UserManager

#: Namespace of the simulator's nodes, and the index it gets on a fresh asyncua server.
NAMESPACE_URI = "urn:twinflow:simulator"
NAMESPACE_INDEX = 2


def node_id(twin_id: str, name: str) -> str:
    """The simulator's node id of ``name`` (a signal or ``<command>.<param>``) of a twin.

    >>> node_id("motor-003", "load_pct")
    'ns=2;s=motor-003.load_pct'
    """
    return f"ns={NAMESPACE_INDEX};s={twin_id}.{name}"


def default_nodes(twin_id: str, twin_type: str | TwinType) -> dict[str, str]:
    """``signal -> node id`` of every scalar signal of the twin's type, as the devices serve it.

    >>> default_nodes("pump-002", "pump")["flow_m3h"]
    'ns=2;s=pump-002.flow_m3h'
    """
    return {s.name: node_id(twin_id, s.name) for s in _type(twin_type).scalar_signals}


def default_commands(twin_id: str, twin_type: str | TwinType) -> dict[str, OpcUaWrite]:
    """``command -> write`` for every single-parameter actuator of the twin's type.

    >>> default_commands("motor-003", "motor")["derate"]
    OpcUaWrite(node='ns=2;s=motor-003.derate.fraction', param='fraction')
    """
    out = {}
    for a in _type(twin_type).actuators:
        if len(a.params) == 1:
            [param] = a.params
            out[a.name] = OpcUaWrite(node_id(twin_id, f"{a.name}.{param}"), param)
    return out


def default_binding(twin_id: str, twin_type: str, endpoint: str, **fields: Any) -> OpcUaBinding:
    """A binding to the simulator's nodes of one twin; ``fields`` sets the other fields."""
    return OpcUaBinding(
        twin_id,
        twin_type,
        endpoint,
        nodes=default_nodes(twin_id, twin_type),
        commands=default_commands(twin_id, twin_type),
        **fields,
    )


def _type(twin_type: str | TwinType) -> TwinType:
    if isinstance(twin_type, TwinType):
        return twin_type
    kind = CATALOG.get(twin_type)
    if kind is None:
        raise ConfigError(f"unknown twin type {twin_type!r}; known types: {', '.join(CATALOG)}")
    return kind


@dataclass(frozen=True, slots=True)
class ServerSecurity:
    """The devices' certificate and key (PEM or DER paths) and the Basic256Sha256 modes offered.

    With ``allow_unsecured`` the None policy is offered too; by default it is not, so clients
    must sign (and encrypt). Any client certificate is accepted (a simulator, not a PKI).
    """

    certificate: str
    private_key: str
    modes: tuple[Literal["Sign", "SignAndEncrypt"], ...] = ("Sign", "SignAndEncrypt")
    allow_unsecured: bool = False


class _Users(UserManager):
    """asyncua user manager: only the given username/password pairs may open a session."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self.users = dict(users)

    def get_user(
        self,
        iserver: object,
        username: str | None = None,
        password: str | None = None,
        certificate: object = None,
    ) -> User | None:
        if username is not None and self.users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


@dataclass(frozen=True, slots=True)
class _Param:
    """One writable actuator parameter: which twin and command it belongs to, and its range."""

    twin_id: str
    twin_type: str
    command: str
    param: str
    low: float
    high: float


class OpcUaDevices:
    """The plant's twins as OPC UA variables at ``endpoint``; see the module docstring.

    ``bindings`` say which twins to serve and under which node ids (every node id must be in
    namespace 2). ``users`` (username -> password) makes sessions need one of them.
    """

    def __init__(
        self,
        plant: Plant,
        endpoint: str,
        bindings: Sequence[OpcUaBinding],
        security: ServerSecurity | None = None,
        users: Mapping[str, str] | None = None,
    ) -> None:
        check_bindings(bindings, commands=True)
        types = dict(plant.twins)
        for b in bindings:
            if types.get(b.twin_id) != b.twin_type:
                raise ConfigError(
                    f"OPC UA devices: twin {b.twin_id!r} ({b.twin_type}) is not a twin of the "
                    f"simulated plant; it has {len(types)} twins, e.g. {next(iter(types))!r}"
                )
        self.plant = plant
        self.endpoint = endpoint
        self.bindings = tuple(bindings)
        self.security = security
        self.users = None if users is None else dict(users)
        self._signals: dict[str, dict[str, ua.NodeId]] = {}
        self._params: dict[ua.NodeId, _Param] = {}
        self._plan()
        self._server: Server | None = None
        self._running = False
        self._lock = threading.Lock()
        self._writes: dict[tuple[str, str], int] = {}
        self._commands: list[Command] = []

    def _plan(self) -> None:
        """Node ids of every signal and actuator parameter, checked once."""
        for b in self.bindings:
            where = f"OPC UA devices, twin {b.twin_id!r}"
            nodes = {s: parse_node(n, b.twin_id, f"nodes[{s!r}]") for s, n in b.nodes.items()}
            self._signals[b.twin_id] = nodes
            writes = {**default_commands(b.twin_id, b.twin_type), **b.commands}
            for a in CATALOG[b.twin_type].actuators:
                for param, (low, high) in a.params.items():
                    w = writes.get(a.name)
                    text = w.node if w is not None and w.param == param else None
                    text = text or node_id(b.twin_id, f"{a.name}.{param}")
                    nid = parse_node(text, b.twin_id, f"commands[{a.name!r}].node")
                    self._params[nid] = _Param(b.twin_id, b.twin_type, a.name, param, low, high)
            for nid in [*nodes.values(), *self._params]:
                if nid.NamespaceIndex != NAMESPACE_INDEX:
                    raise ConfigError(
                        f"{where}: node {nid.to_string()} is not in namespace "
                        f"{NAMESPACE_INDEX} ({NAMESPACE_URI}), the only one the devices serve"
                    )
        ids = [n for nodes in self._signals.values() for n in nodes.values()]
        ids += list(self._params)
        if len(set(ids)) != len(ids):
            raise ConfigError("OPC UA devices: two signals or parameters share one node id")

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def server(self) -> Server:
        """The asyncua server (after :meth:`start`), e.g. to write a value with any status."""
        if self._server is None:
            raise RuntimeError("OpcUaDevices.start() has not been called")
        return self._server

    @property
    def running(self) -> bool:
        return self._running

    @property
    def commands(self) -> list[Command]:
        """Every command clients issued by a write the devices accepted, in order."""
        with self._lock:
            return list(self._commands)

    async def start(self) -> None:
        """Listen at the endpoint (building the address space on the first start)."""
        if self._running:
            return
        if self._server is None:
            self._server = await self._build()
        await self._server.start()
        self._running = True

    async def stop(self) -> None:
        """Close every session and stop listening; :meth:`start` serves again."""
        if self._running and self._server is not None:
            self._running = False
            await self._server.stop()

    async def _build(self) -> Server:
        server = Server(user_manager=_Users(self.users) if self.users is not None else None)
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("twinflow simulated plant")
        if self.users is not None:
            server.set_identity_tokens([ua.UserNameIdentityToken])
        if self.security is not None:
            await self._secure(server, self.security)
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        idx = await server.register_namespace(NAMESPACE_URI)
        if idx != NAMESPACE_INDEX:  # pragma: no cover - a fresh asyncua server gives 2
            raise ConfigError(f"namespace {NAMESPACE_URI} got index {idx}, expected 2")
        start = datetime.now(UTC)
        waiting = ua.StatusCode(cast(ua.UInt32, ua.StatusCodes.BadWaitingForInitialData))
        # asyncua's annotations name its wire types; the plain Python values are what it takes.
        stamp = cast(ua.DateTime, start)
        objects = server.nodes.objects
        for b in self.bindings:
            twin = await objects.add_object(
                _node_id(b.twin_id, idx), ua.QualifiedName(b.twin_id, idx)
            )
            for signal, nid in self._signals[b.twin_id].items():
                await twin.add_variable(
                    nid, ua.QualifiedName(signal, idx), math.nan, ua.VariantType.Double
                )
                await server.write_attribute_value(
                    nid, ua.DataValue(StatusCode=waiting, SourceTimestamp=stamp)
                )
        for nid, p in self._params.items():
            parent = server.get_node(_node_id(p.twin_id, idx))
            # A derate starts "not derated" (its top); other setpoints are unknown until written.
            initial = p.high if p.command == "derate" else math.nan
            var = await parent.add_variable(
                nid, ua.QualifiedName(f"{p.command}.{p.param}", idx), initial, ua.VariantType.Double
            )
            await var.set_writable()
            server.set_attribute_value_setter(nid, self._setter(nid, p))
        return server

    async def _secure(self, server: Server, sec: ServerSecurity) -> None:
        await server.load_certificate(sec.certificate)
        await server.load_private_key(sec.private_key)
        uri = application_uri(sec.certificate)
        if uri:
            await server.set_application_uri(uri)
        policies = [
            ua.SecurityPolicyType.Basic256Sha256_Sign
            if mode == "Sign"
            else ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt
            for mode in sec.modes
        ]
        if sec.allow_unsecured:
            policies.append(ua.SecurityPolicyType.NoSecurity)
        server.set_security_policy(policies)

    # -- telemetry -----------------------------------------------------------------------

    async def update(self, frame: TelemetryFrame, *, all_rows: bool = False) -> int:
        """Publish the newest row of ``frame``; returns how many values were written.

        With ``all_rows`` every row is written in turn (each its own data change with its own
        source timestamp), so a subscriber whose monitored-item queues are deep enough sees
        every reading of a chunk even when the plant runs faster than real time.
        Items that are not telemetry frames, and twins the devices do not serve, are skipped
        (0), so a caller can hand over everything the plant emits.
        """
        if not isinstance(frame, TelemetryFrame) or not self._running or len(frame.times) == 0:
            return 0
        nodes = self._signals.get(frame.twin_id)
        if not nodes:
            return 0
        server = self.server
        now = datetime.now(UTC)
        columns = [
            (nodes[signal], values, status_code_for(frame.quality.get(signal, Quality.GOOD)))
            for signal, values in frame.signals.items()
            if signal in nodes
        ]
        written = 0
        for i in range(len(frame.times)) if all_rows else (len(frame.times) - 1,):
            when = utc(float(frame.times[i]))
            for nid, values, code in columns:
                value = float(values[i])
                if math.isnan(value):
                    continue
                dv = ua.DataValue(
                    Value=ua.Variant(value, ua.VariantType.Double),
                    StatusCode=ua.StatusCode(cast(ua.UInt32, code)),
                    SourceTimestamp=cast(ua.DateTime, when),
                    ServerTimestamp=cast(ua.DateTime, now),
                )
                await server.write_attribute_value(nid, dv)
                written += 1
        return written

    # -- commands ------------------------------------------------------------------------

    def _setter(self, nid: ua.NodeId, p: _Param) -> Callable[[object, Any, ua.DataValue], None]:
        """The value setter of one actuator parameter: validate, issue, then store."""

        def set_value(node: object, attr: Any, value: ua.DataValue) -> None:
            raw = None if value.Value is None else value.Value.Value
            if isinstance(raw, bool) or not isinstance(raw, numbers.Real):
                raise ServiceError(BAD_OUT_OF_RANGE)
            number = float(raw)
            if not (math.isfinite(number) and p.low <= number <= p.high):
                raise ServiceError(BAD_OUT_OF_RANGE)
            command = self._command(nid, p, number)
            if not self.plant.apply(command):
                raise ServiceError(BAD_OUT_OF_RANGE)
            with self._lock:
                self._commands.append(command)
            node.attributes[attr].value = value  # type: ignore[attr-defined]

        return set_value

    def _command(self, nid: ua.NodeId, p: _Param, value: float) -> Command:
        params = {p.param: value}
        for other, q in self._params.items():  # a multi-parameter command takes the others' values
            if other != nid and (q.twin_id, q.command) == (p.twin_id, p.command):
                dv = self.server.read_attribute_value(other)
                params[q.param] = float(dv.Value.Value) if dv.Value is not None else math.nan
        with self._lock:
            n = self._writes.get((p.twin_id, p.command), 0) + 1
            self._writes[(p.twin_id, p.command)] = n
        issued = utc(self.plant.now())
        return Command(
            command_id=deterministic_id(
                "opcua-write", p.twin_id, p.command, n, json.dumps(params, sort_keys=True)
            ),
            twin_id=p.twin_id,
            twin_type=p.twin_type,
            name=p.command,
            params=params,
            issued_at=issued,
            expires_at=issued + timedelta(hours=1),
            reason=f"OPC UA write to {nid.to_string()} at {self.endpoint}",
        )


def _node_id(name: str, namespace: int) -> ua.NodeId:
    """A string node id in ``namespace`` (asyncua annotates its wire types; it takes these)."""
    return ua.NodeId(cast(ua.String, name), cast(ua.Int16, namespace))
