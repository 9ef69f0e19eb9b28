"""The simulated plant served as Modbus TCP devices: pymodbus's async server, usually on loopback.

One server listens at ``host:port``; every bound twin is one unit (device id) behind it,
with the register map of its binding: its signals' registers, readable, and its commands'
registers or coils, writable. :func:`default_register_map` gives the map configs and tests
use unless they need another: each scalar signal a float32 holding register pair from
address 0, each command a float32 holding register pair from address 100.

:meth:`ModbusDevices.update` stores the newest row of a telemetry frame, encoded per
register (a NaN keeps the previous value, as a real device's register holds its last
reading; a value beyond what the register type holds is clipped). A client's write that
covers a command register becomes a :class:`~twinflow.core.records.Command` (status ISSUED, id
derived from twin, command and write count) handed to :meth:`Plant.apply`; a value outside
the catalog's range is answered with Modbus exception 3 (illegal data value) and changes
nothing. Writes to signal registers, partial writes of a command value and reads of
unmapped addresses get exception 2 (illegal data address); an unknown unit gets exception
10 (gateway path unavailable). :meth:`set_silent` makes one unit stop answering (requests
for it get no response, so clients time out) and come back.

Everything runs on the event loop that called :meth:`start`; call :meth:`update` there too.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from twinflow.connectors.bindings import ModbusBinding, ModbusWrite, Register
from twinflow.connectors.modbus.checks import check_bindings, check_register
from twinflow.connectors.modbus.codec import decode_value, encode_value
from twinflow.connectors.simulator.commands import rejection
from twinflow.connectors.simulator.plant import Plant
from twinflow.core.errors import ConfigError, ValidationError
from twinflow.core.optional import needs
from twinflow.core.records import Command, TelemetryFrame, deterministic_id
from twinflow.core.times import utc
from twinflow.operators.catalog import TwinType
from twinflow.operators.catalog import twin_type as lookup_type

with needs("modbus", "the simulator's Modbus devices"):
    from pymodbus.constants import ExcCodes
    from pymodbus.datastore import ModbusServerContext
    from pymodbus.exceptions import NoSuchIdException
    from pymodbus.server import ModbusTcpServer

#: First address of the command registers in the default map.
COMMAND_BASE = 100
#: Modbus function code -> register kind it reads or writes.
_KIND_OF = {
    1: "coil",
    5: "coil",
    15: "coil",
    2: "discrete",
    3: "holding",
    6: "holding",
    16: "holding",
    4: "input",
}


def default_register_map(
    twin_type: str | TwinType,
) -> tuple[dict[str, Register], dict[str, ModbusWrite]]:
    """``(registers, commands)`` of the simulator's default map for a twin type.

    Scalar signal ``i`` (catalog order) is a float32 holding register pair at ``2 i``; the
    ``j``-th single-parameter command is a float32 holding pair at ``100 + 2 j``.

    >>> regs, cmds = default_register_map("motor")
    >>> regs["load_pct"].address, cmds["derate"].register.address, cmds["derate"].param
    (6, 102, 'fraction')
    """
    kind = twin_type if isinstance(twin_type, TwinType) else lookup_type(twin_type)
    registers = {
        s.name: Register(address=2 * i, kind="holding", type="float32")
        for i, s in enumerate(kind.scalar_signals)
    }
    actuators = [a for a in kind.actuators if len(a.params) == 1]
    commands = {
        a.name: ModbusWrite(
            Register(address=COMMAND_BASE + 2 * j, kind="holding", type="float32"),
            param=next(iter(a.params)),
        )
        for j, a in enumerate(actuators)
    }
    return registers, commands


def default_binding(
    twin_id: str, twin_type: str, host: str, port: int, unit: int, **fields: Any
) -> ModbusBinding:
    """A binding with the default register map; ``fields`` set e.g. ``poll_interval_s``.

    >>> default_binding("motor-003", "motor", "127.0.0.1", 5020, 3).registers["load_pct"].type
    'float32'
    """
    registers, commands = default_register_map(twin_type)
    return ModbusBinding(
        twin_id,
        twin_type,
        host,
        port,
        unit,
        registers,
        commands,
        **fields,
    )


def default_bindings(plant: Plant, host: str, port: int, **fields: float) -> list[ModbusBinding]:
    """Default bindings of every twin of ``plant`` behind one endpoint, units 1, 2, 3, ...

    >>> from twinflow.connectors.simulator import PlantConfig
    >>> [(b.twin_id, b.unit) for b in default_bindings(
    ...     Plant(PlantConfig(n_twins=2, duration_s=60, seed=1)), "127.0.0.1", 5020)]
    [('wt-001', 1), ('pump-002', 2)]
    """
    if len(plant.twins) > 247:
        raise ConfigError(
            f"one Modbus endpoint serves at most 247 units; the plant has {len(plant.twins)} "
            "twins, so split them over several ports"
        )
    return [
        default_binding(twin_id, kind, host, port, i + 1, **fields)
        for i, (twin_id, kind) in enumerate(plant.twins)
    ]


@dataclass(slots=True)
class _Unit:
    """One served twin: its register image and which addresses take which command."""

    binding: ModbusBinding
    #: kind -> address -> word (bits are 0/1)
    image: dict[str, dict[int, int]]
    #: kind -> address -> (command name, write) for every address a command register covers
    commands: dict[str, dict[int, tuple[str, ModbusWrite]]]
    writes: int = 0


class _Context(ModbusServerContext):
    """pymodbus's datastore interface, answered from the devices' register images.

    pymodbus 3.x servers call ``async_getValues``/``async_setValues`` of a context whose
    ``old_simulator`` flag is set, and turn what they return into the response: values, or
    an ``ExcCodes`` member (an exception response). Raising ``NoSuchIdException`` with
    ``ignore_missing_devices`` on the server sends no response at all, which is how a unit
    goes silent. The base class's own store (deprecated in 3.x) is not built.
    """

    def __init__(self, devices: ModbusDevices) -> None:  # no super(): no deprecated store
        self.old_simulator = True  # tells pymodbus to call this object's async methods
        self.simdevices = []
        self._served = devices  # not ``_devices``: the base class uses that name

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        return self._served._read(device_id, func_code, address, count)

    async def async_setValues(
        self,
        device_id: int,
        func_code: int,
        address: int,
        values: Sequence[int] | Sequence[bool],
    ) -> ExcCodes | None:
        return self._served._write(device_id, func_code, address, list(values))

    def device_ids(self) -> list[int]:
        return sorted(self._served._units)


class ModbusDevices:
    """The plant's twins as Modbus units at ``host:port``; see the module docstring.

    Every binding must name a twin of ``plant`` (same type) and ``port``; units must be
    distinct. ``command_ttl_s`` is the expiry given to the commands that writes issue.
    """

    def __init__(
        self,
        plant: Plant,
        host: str,
        port: int,
        bindings: Sequence[ModbusBinding],
        *,
        command_ttl_s: float = 3600.0,
    ) -> None:
        bindings = tuple(bindings)
        check_bindings(bindings, commands=True)
        types = dict(plant.twins)
        units: dict[int, _Unit] = {}
        for b in bindings:
            where = f"Modbus devices, twin {b.twin_id!r}"
            if types.get(b.twin_id) != b.twin_type:
                raise ConfigError(
                    f"{where} ({b.twin_type}) is not a twin of the simulated plant; it has "
                    f"{len(types)} twins, e.g. {next(iter(types))!r}"
                )
            if b.port != port:
                raise ConfigError(f"{where}: its binding names port {b.port}, these serve {port}")
            if b.unit in units:
                raise ConfigError(
                    f"{where}: unit {b.unit} already serves twin "
                    f"{units[b.unit].binding.twin_id!r}; give each twin its own unit"
                )
            units[b.unit] = _plan_unit(where, b)
        self.plant = plant
        self.host = host
        self.port = port
        self.bindings = bindings
        self.command_ttl_s = command_ttl_s
        self._units = units
        self._by_twin = {u.binding.twin_id: u for u in units.values()}
        self._silent: set[int] = set()
        self._server: ModbusTcpServer | None = None
        self._lock = threading.Lock()
        self._commands: list[Command] = []

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def commands(self) -> list[Command]:
        """Every command a client's write issued (and the plant accepted), in order."""
        with self._lock:
            return list(self._commands)

    async def start(self) -> None:
        """Listen at ``host:port`` (register values survive a stop and start)."""
        if self._server is not None:
            return
        server = ModbusTcpServer(
            _Context(self), address=(self.host, self.port), ignore_missing_devices=True
        )
        try:
            await server.serve_forever(background=True)
        except RuntimeError as err:
            raise ConfigError(
                f"Modbus devices cannot listen at {self.host}:{self.port} ({err}); is the port "
                "in use?"
            ) from err
        self._server = server

    async def stop(self) -> None:
        """Close every client connection and stop listening; :meth:`start` serves again."""
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()

    def set_silent(self, twin_id: str, silent: bool) -> None:
        """Make ``twin_id``'s unit stop answering (``True``) or answer again (``False``)."""
        unit = self._by_twin.get(twin_id)
        if unit is None:
            raise ConfigError(f"Modbus devices serve no twin {twin_id!r}")
        with self._lock:
            if silent:
                self._silent.add(unit.binding.unit)
            else:
                self._silent.discard(unit.binding.unit)

    # -- telemetry -----------------------------------------------------------------------

    async def update(self, frame: TelemetryFrame) -> int:
        """Store the newest row of ``frame``; returns how many values changed.

        Items that are not telemetry frames, and twins the devices do not serve, are skipped
        (0), so a caller can hand over everything the plant emits.
        """
        if not isinstance(frame, TelemetryFrame) or len(frame.times) == 0:
            return 0
        unit = self._by_twin.get(frame.twin_id)
        if unit is None:
            return 0
        written = 0
        for name, reg in unit.binding.registers.items():
            values = frame.signals.get(name)
            if values is None or len(values) == 0:
                continue
            value = float(values[-1])
            if math.isnan(value):
                continue
            try:
                words = encode_value(value, reg, clamp=True)
            except ValidationError:  # +-inf: nothing sensible to store
                continue
            table = unit.image[reg.kind]
            for i, w in enumerate(words):
                table[reg.address + i] = w
            written += 1
        return written

    # -- the datastore -------------------------------------------------------------------

    def _unit(self, device_id: int) -> _Unit | ExcCodes:
        with self._lock:
            silent = device_id in self._silent
        if silent:
            raise NoSuchIdException(f"unit {device_id} is silent")  # no response at all
        unit = self._units.get(device_id)
        return ExcCodes.GATEWAY_PATH_UNAVIABLE if unit is None else unit

    def _read(
        self, device_id: int, func_code: int, address: int, count: int
    ) -> list[int] | list[bool] | ExcCodes:
        unit = self._unit(device_id)
        if isinstance(unit, ExcCodes):
            return unit
        kind = _KIND_OF.get(func_code)
        if kind is None:
            return ExcCodes.ILLEGAL_FUNCTION
        table = unit.image[kind]
        try:
            words = [table[a] for a in range(address, address + count)]
        except KeyError:
            return ExcCodes.ILLEGAL_ADDRESS
        if kind in ("coil", "discrete"):
            return [bool(w) for w in words]
        return words

    def _write(
        self, device_id: int, func_code: int, address: int, values: list[int] | list[bool]
    ) -> ExcCodes | None:
        unit = self._unit(device_id)
        if isinstance(unit, ExcCodes):
            return unit
        kind = _KIND_OF.get(func_code)
        if kind not in ("holding", "coil"):
            return ExcCodes.ILLEGAL_FUNCTION
        words = [int(v) for v in values]
        span = range(address, address + len(words))
        targets = unit.commands[kind]
        hit: dict[str, ModbusWrite] = {}
        for a in span:
            found = targets.get(a)
            if found is None:
                return ExcCodes.ILLEGAL_ADDRESS  # telemetry registers are read-only
            hit[found[0]] = found[1]
        commands = []
        for name, write in hit.items():
            reg = write.register
            if reg.address < address or reg.address + reg.count > address + len(words):
                return ExcCodes.ILLEGAL_ADDRESS  # a command value is written whole
            value = decode_value(
                words[reg.address - address : reg.address - address + reg.count], reg
            )
            commands.append(self._command(unit, name, write, value))
        types = dict(self.plant.twins)
        if any(rejection(c, types) is not None for c in commands):
            return ExcCodes.ILLEGAL_VALUE
        for c in commands:
            if not self.plant.apply(c):
                return ExcCodes.ILLEGAL_VALUE
            with self._lock:
                self._commands.append(c)
        table = unit.image[kind]
        for a, w in zip(span, words, strict=True):
            table[a] = w
        return None

    def _command(self, unit: _Unit, name: str, write: ModbusWrite, value: float) -> Command:
        b = unit.binding
        unit.writes += 1
        issued = utc(self.plant.now())
        params = {write.param: value}
        return Command(
            command_id=deterministic_id("modbus-write", b.twin_id, name, unit.writes, value),
            twin_id=b.twin_id,
            twin_type=b.twin_type,
            name=name,
            params=params,
            issued_at=issued,
            expires_at=issued + timedelta(seconds=self.command_ttl_s),
            reason=f"Modbus write to {write.register.kind} {write.register.address} of unit "
            f"{b.unit} at {self.host}:{self.port}",
        )


def _plan_unit(where: str, b: ModbusBinding) -> _Unit:
    """The register image (all zero) and command addresses of one binding, checked."""
    image: dict[str, dict[int, int]] = {k: {} for k in ("holding", "input", "coil", "discrete")}
    owner: dict[tuple[str, int], str] = {}
    commands: dict[str, dict[int, tuple[str, ModbusWrite]]] = {"holding": {}, "coil": {}}
    entries: list[tuple[str, Register, tuple[str, ModbusWrite] | None]] = [
        (f"registers[{n!r}]", r, None) for n, r in b.registers.items()
    ]
    entries += [(f"commands[{n!r}]", w.register, (n, w)) for n, w in b.commands.items()]
    for label, reg, command in entries:
        check_register(f"{where}: {label}", reg)
        for a in range(reg.address, reg.address + reg.count):
            other = owner.get((reg.kind, a))
            if other is not None and (command is not None or other.startswith("commands")):
                raise ConfigError(
                    f"{where}: {label} overlaps {other} at {reg.kind} address {a}; a command "
                    "register must not share addresses"
                )
            owner[(reg.kind, a)] = label
            image[reg.kind][a] = 0
            if command is not None:
                commands[reg.kind][a] = command
    return _Unit(b, image, commands)


__all__ = [
    "COMMAND_BASE",
    "ModbusDevices",
    "default_binding",
    "default_bindings",
    "default_register_map",
]
