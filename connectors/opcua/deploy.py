"""OPC UA in deployment files (``twins[].opcua``) and its connector spec.

asyncua is imported only by the factories (and for the simulator's default node ids), so
deployment files without OPC UA twins load without the extra.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, cast

from twinflow.connectors.bindings import OpcUaBinding, OpcUaSecurity, OpcUaWrite
from twinflow.connectors.opcua.trust import POLICIES
from twinflow.connectors.sections import check_command, check_signal
from twinflow.connectors.simulator.settings import SimulatorSettings
from twinflow.connectors.spec import BindingContext, ConnectorSpec, SimulatedDevices
from twinflow.core.config import (
    Choice,
    Flag,
    Number,
    OptionalText,
    Part,
    Schema,
    Section,
    Text,
)
from twinflow.core.errors import ConfigError
from twinflow.core.records import TelemetryFrame
from twinflow.core.transport import refuse_plain_password

Policy = Literal["Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"]

BINDING = Schema(
    "twins[].opcua",
    "A twin's OPC UA server, the node of each signal and the nodes its commands write.",
    (
        Text("endpoint", "Server endpoint URL.", "", shown="`simulator.opcua_endpoint`"),
        Part(
            "nodes",
            "Signal name to node id, e.g. `flow_m3h: 'ns=2;s=pump-2.flow'`.",
            kind="mapping of signal name to node id",
            shown="`ns=2;s=<id>.<signal>` for every scalar signal",
        ),
        Part(
            "commands",
            "Command name to the node its parameter is written to.",
            kind="mapping of command name to write",
            see="twins[].opcua.commands.<command>",
            shown="`ns=2;s=<id>.<command>.<param>` for every one-parameter command",
        ),
        Number(
            "sampling_interval_ms", "Sampling interval the server is asked for (ms).", 1000.0, 1.0
        ),
        Number("deadband", "Absolute deadband: smaller changes are not reported.", 0.0, 0.0),
        Part("security", "Message security; leave out for none.", see="twins[].opcua.security"),
        OptionalText("username", "User name of the session (with `password`)."),
        OptionalText("password", "Password of the session."),
        Flag(
            "allow_insecure",
            "Allow a password without a `security` section (it would travel in the clear).",
            False,
        ),
    ),
)
WRITE = Schema(
    "twins[].opcua.commands.<command>",
    "A command as a node write: the command's parameter `param` is written to `node`.",
    (
        Text("node", "Node id written.", "", required=True),
        Text("param", "The command's request field whose value is written.", "", required=True),
    ),
)
SECURITY = Schema(
    "twins[].opcua.security",
    "Security policy, mode and the client's certificate (PEM or DER paths).",
    (
        Choice("policy", "Security policy.", "Basic256Sha256", choices=POLICIES),
        Choice(
            "mode", "Message security mode.", "SignAndEncrypt", choices=("Sign", "SignAndEncrypt")
        ),
        Text("certificate", "Client certificate file.", "", required=True),
        Text("private_key", "Client private key file.", "", required=True),
        OptionalText("server_certificate", "The server's certificate, to pin it."),
        OptionalText(
            "trust",
            "Trust list: a file or folder of CA or server certificates (PEM or DER) that the "
            "server's certificate must be, or be signed by; this or `server_certificate` is "
            "required.",
        ),
    ),
)


def _nodes(s: Section, ctx: BindingContext) -> dict[str, str]:
    if not s.data:
        from twinflow.connectors.simulator.devices.opcua import default_nodes

        return dict(default_nodes(ctx.twin_id, ctx.type))
    nodes: dict[str, str] = {}
    for signal, node in s.data.items():
        check_signal(s, str(signal), str(signal), ctx.type)
        if not isinstance(node, str) or not node:
            raise s.fail(str(signal), "a node id string such as 'ns=2;s=pump-1.flow'")
        nodes[str(signal)] = node
    return nodes


def _commands(s: Section, ctx: BindingContext) -> dict[str, OpcUaWrite]:
    if not s.data:
        from twinflow.connectors.simulator.devices.opcua import default_commands

        return dict(default_commands(ctx.twin_id, ctx.type))
    commands: dict[str, OpcUaWrite] = {}
    for name in s.data:
        c = s.section(str(name))
        c.check_keys(WRITE)
        w = OpcUaWrite(c.get(WRITE["node"]), c.get(WRITE["param"]))
        check_command(s, str(name), str(name), w.param, ctx.type)
        commands[str(name)] = w
    return commands


def _security(s: Section) -> OpcUaSecurity:
    s.check_keys(SECURITY)
    trust = s.get(SECURITY["trust"])
    pinned = s.get(SECURITY["server_certificate"])
    if not trust and not pinned:
        raise ConfigError(
            f"{s.file}: {s.where}: name the server certificates to trust (trust: a file or "
            "folder of CA or server certificates, or server_certificate: to pin one); without "
            "them any server's certificate would be accepted"
        )
    return OpcUaSecurity(
        policy=cast(Policy, s.get(SECURITY["policy"])),
        mode=cast(Literal["Sign", "SignAndEncrypt"], s.get(SECURITY["mode"])),
        certificate=s.get(SECURITY["certificate"]),
        private_key=s.get(SECURITY["private_key"]),
        server_certificate=pinned,
        trust=trust,
    )


def opcua_binding(s: Section, ctx: BindingContext) -> OpcUaBinding:
    """``twins[i].opcua``: nodes and commands default to the simulator's node ids."""
    s.check_keys(BINDING)
    refuse_plain_password(
        f"{s.file}: {s.where}",
        password=bool(s.get(BINDING["password"])),
        encrypted="security" in s.data,
        allow_insecure=s.get(BINDING["allow_insecure"]),
        fix="add a security: section",
    )
    return OpcUaBinding(
        twin_id=ctx.twin_id,
        twin_type=ctx.twin_type,
        kind=ctx.kind,
        endpoint=s.get(BINDING["endpoint"], ctx.simulator.opcua_endpoint),
        nodes=_nodes(s.section("nodes"), ctx),
        commands=_commands(s.section("commands"), ctx),
        sampling_interval_ms=s.get(BINDING["sampling_interval_ms"]),
        deadband=s.get(BINDING["deadband"]),
        security=_security(s.section("security")) if "security" in s.data else None,
        username=s.get(BINDING["username"]),
        password=s.get(BINDING["password"]),
    )


class _Devices(SimulatedDevices):
    def __init__(self, devices: Any) -> None:
        self._devices = devices
        self._twins = {b.twin_id for b in devices.bindings}

    async def start(self) -> None:
        await self._devices.start()

    async def send(self, frame: TelemetryFrame) -> None:
        await self._devices.update(frame, all_rows=True)

    async def stop(self) -> None:
        await self._devices.stop()

    def serves(self, twin_id: str) -> bool:
        return twin_id in self._twins


class OpcUaSpec(ConnectorSpec):
    """OPC UA twins: subscriptions in, node writes out."""

    name = "opcua"
    doc = "Variables of an OPC UA server, subscribed to; commands written to nodes."
    binding_type = OpcUaBinding
    binding_schemas = (BINDING, WRITE, SECURITY)
    metrics = (
        "twinflow_opcua_reconnects",
        "twinflow_opcua_datachanges",
        "twinflow_opcua_command_results",
    )
    metrics_module = "twinflow.connectors.opcua.metrics"

    def parse_binding(self, section: Section, ctx: BindingContext) -> OpcUaBinding:
        return opcua_binding(section, ctx)

    def signals(self, binding: Any, scalar: frozenset[str]) -> frozenset[str]:
        return frozenset(cast(OpcUaBinding, binding).nodes)

    def source(self, service: Any, bindings: Sequence[Any], **limits: Any) -> Any | None:
        if not bindings:
            return None
        from twinflow.connectors.opcua import OpcUaSource

        return OpcUaSource(bindings, **limits)

    def command_sink(self, service: Any, bindings: Sequence[Any], **retry: Any) -> Any | None:
        if not bindings:
            return None
        from twinflow.connectors.opcua import OpcUaCommandSink

        return OpcUaCommandSink(bindings, **retry)

    def devices(
        self, plant: Any, service: Any, simulator: SimulatorSettings, bindings: Sequence[Any]
    ) -> SimulatedDevices | None:
        if not bindings:
            return None
        from twinflow.connectors.simulator.devices.opcua import OpcUaDevices

        return _Devices(OpcUaDevices(plant, simulator.opcua_endpoint, bindings))


SPEC = OpcUaSpec()
