"""Modbus TCP in deployment files (``twins[].modbus``) and its connector spec.

pymodbus is imported only by the factories (and for the simulator's default register map),
so deployment files without Modbus twins load without the extra. The register fields here
are also what :mod:`twinflow.connectors.modbus.checks` checks bindings built in code against.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from twinflow.connectors.bindings import (
    ModbusBinding,
    ModbusWrite,
    Order,
    Register,
    RegisterKind,
    RegisterType,
)
from twinflow.connectors.sections import check_command, check_signal
from twinflow.connectors.simulator.settings import SimulatorSettings
from twinflow.connectors.spec import BindingContext, ConnectorSpec, SimulatedDevices
from twinflow.core.config import Choice, Number, Part, Schema, Section, Text, Whole
from twinflow.core.errors import ConfigError
from twinflow.core.records import TelemetryFrame

KINDS = ("holding", "input", "coil", "discrete")
TYPES = ("int16", "uint16", "int32", "uint32", "float32", "bool")
ORDERS = ("big", "little")

REGISTER = Schema(
    "twins[].modbus.registers.<signal>",
    "Where a value lives in the device and how to decode it: `value = raw * scale + offset`.",
    (
        Whole("address", "Register (or coil) address.", -1, 0, 65535, required=True),
        Choice("kind", "Register table.", "holding", choices=KINDS),
        Choice("type", "Value type; 32-bit types span two registers.", "uint16", choices=TYPES),
        Choice(
            "word_order", "Order of the two registers of a 32-bit value.", "big", choices=ORDERS
        ),
        Choice("byte_order", "Order of the two bytes inside each register.", "big", choices=ORDERS),
        Number("scale", "Factor applied to the raw value.", 1.0),
        Number("offset", "Added after scaling.", 0.0),
    ),
)
WRITE = Schema(
    "twins[].modbus.commands.<command>",
    "A command as a register or coil write of one parameter (range-checked first).",
    (
        Part(
            "register",
            "Where the value is written (fields as for a register).",
            see="twins[].modbus.registers.<signal>",
        ),
        Text("param", "The command's request field whose value is written.", "", required=True),
    ),
)
BINDING = Schema(
    "twins[].modbus",
    "A twin's Modbus TCP device, its register map and poll interval.",
    (
        Text("host", "Device host.", "", shown="`simulator.modbus_host`"),
        Whole("port", "Device port.", 0, 1, 65535, shown="`simulator.modbus_port`"),
        Whole("unit", "Unit (slave) id.", 1, 0, 247),
        Part(
            "registers",
            "Signal name to register.",
            kind="mapping of signal to register",
            see="twins[].modbus.registers.<signal>",
            shown="float32 holding registers of every scalar signal",
        ),
        Part(
            "commands",
            "Command name to register write.",
            kind="mapping of command to write",
            see="twins[].modbus.commands.<command>",
            shown="holding registers from 100 for every one-parameter command",
        ),
        Number("poll_interval_s", "Seconds between polls of the register map.", 1.0, 0.01),
        Number("timeout_s", "Seconds a request may take.", 1.0, 0.01),
    ),
)


def register(r: Section) -> Register:
    """One register section, checked."""
    r.check_keys(REGISTER)
    f = REGISTER
    kind, typ = r.get(f["kind"]), r.get(f["type"])
    word, byte = r.get(f["word_order"]), r.get(f["byte_order"])
    return Register(
        address=r.get(f["address"]),
        kind=cast(RegisterKind, kind),
        type=cast(RegisterType, typ),
        word_order=cast(Order, word),
        byte_order=cast(Order, byte),
        scale=r.get(f["scale"]),
        offset=r.get(f["offset"]),
    )


def modbus_binding(s: Section, ctx: BindingContext) -> ModbusBinding:
    """``twins[i].modbus``: the register map defaults to the simulator's."""
    s.check_keys(BINDING)
    from twinflow.connectors.simulator.devices.modbus import default_register_map

    default_regs, default_cmds = default_register_map(ctx.type)
    regs_raw = s.section("registers")
    registers = dict(default_regs) if not regs_raw.data else {}
    for signal in regs_raw.data:
        check_signal(regs_raw, str(signal), str(signal), ctx.type)
        registers[str(signal)] = register(regs_raw.section(str(signal)))
    cmds_raw = s.section("commands")
    commands = dict(default_cmds) if not cmds_raw.data else {}
    for name in cmds_raw.data:
        c = cmds_raw.section(str(name))
        c.check_keys(WRITE)
        param = c.get(WRITE["param"])
        check_command(cmds_raw, str(name), str(name), param, ctx.type)
        commands[str(name)] = ModbusWrite(register(c.section("register")), param)
    if not registers:
        raise ConfigError(f"{s.file}: {s.path('registers')}: twin {ctx.twin_id!r} maps no register")
    sim = ctx.simulator
    return ModbusBinding(
        twin_id=ctx.twin_id,
        twin_type=ctx.twin_type,
        kind=ctx.kind,
        host=s.get(BINDING["host"], sim.modbus_host),
        port=s.get(BINDING["port"], sim.modbus_port),
        unit=s.get(BINDING["unit"]),
        registers=registers,
        commands=commands,
        poll_interval_s=s.get(BINDING["poll_interval_s"]),
        timeout_s=s.get(BINDING["timeout_s"]),
    )


class _Devices(SimulatedDevices):
    """One Modbus server per port, each serving the units bound to it."""

    def __init__(self, plant: Any, host: str, bindings: Sequence[ModbusBinding]) -> None:
        from twinflow.connectors.simulator.devices.modbus import ModbusDevices

        by_port: dict[int, list[ModbusBinding]] = {}
        for b in bindings:
            by_port.setdefault(b.port, []).append(b)
        self._servers = [ModbusDevices(plant, host, p, bs) for p, bs in sorted(by_port.items())]
        self._by_twin = {b.twin_id: srv for srv in self._servers for b in srv.bindings}

    async def start(self) -> None:
        for server in self._servers:
            await server.start()

    async def send(self, frame: TelemetryFrame) -> None:
        await self._by_twin[frame.twin_id].update(frame)

    async def stop(self) -> None:
        for server in self._servers:
            await server.stop()

    def serves(self, twin_id: str) -> bool:
        return twin_id in self._by_twin


class ModbusSpec(ConnectorSpec):
    """Modbus TCP twins: polled registers in, register and coil writes out."""

    name = "modbus"
    doc = "Registers of a Modbus TCP device, polled; commands written to registers or coils."
    binding_type = ModbusBinding
    binding_schemas = (BINDING, REGISTER, WRITE)
    metrics = (
        "twinflow_modbus_polls",
        "twinflow_modbus_reconnects",
        "twinflow_modbus_command_results",
    )
    metrics_module = "twinflow.connectors.modbus.metrics"

    def parse_binding(self, section: Section, ctx: BindingContext) -> ModbusBinding:
        return modbus_binding(section, ctx)

    def signals(self, binding: Any, scalar: frozenset[str]) -> frozenset[str]:
        return frozenset(cast(ModbusBinding, binding).registers)

    def source(self, service: Any, bindings: Sequence[Any], **limits: Any) -> Any | None:
        if not bindings:
            return None
        from twinflow.connectors.modbus import ModbusSource

        return ModbusSource(bindings, **limits)

    def command_sink(self, service: Any, bindings: Sequence[Any], **retry: Any) -> Any | None:
        if not bindings:
            return None
        from twinflow.connectors.modbus import ModbusCommandSink

        return ModbusCommandSink(bindings, **retry)

    def devices(
        self, plant: Any, service: Any, simulator: SimulatorSettings, bindings: Sequence[Any]
    ) -> SimulatedDevices | None:
        return _Devices(plant, simulator.modbus_host, bindings) if bindings else None


SPEC = ModbusSpec()
