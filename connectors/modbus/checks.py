"""Checks of Modbus bindings at construction, so a bad register map fails before any poll.

The deployment loader validates the file as a whole; these checks guard the connector's own
assumptions (and serve callers that build bindings in code). Errors are
:class:`~twinflow.core.errors.ConfigError` naming the twin, the field and what is expected.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, cast

from twinflow.connectors.bindings import ModbusBinding, Register
from twinflow.connectors.modbus.codec import BIT_KINDS
from twinflow.connectors.modbus.deploy import REGISTER
from twinflow.connectors.sections import each_binding
from twinflow.core.config import Choice, Field, Number, Whole, check_value
from twinflow.core.errors import ConfigError
from twinflow.operators.twin_type import TwinType


def check_bindings(bindings: Sequence[ModbusBinding], *, commands: bool) -> None:
    """Raise :class:`ConfigError` on the first problem; ``commands`` checks command maps too."""
    for b, where, kind in each_binding(bindings, ModbusBinding, "Modbus"):
        if not isinstance(b.host, str) or not b.host:
            raise ConfigError(f"{where}: host must be a host name or address, got {b.host!r}")
        for spec in _BINDING:
            check_value(spec, getattr(b, spec.key), f"{where}: ")
        scalar = {s.name for s in kind.scalar_signals}
        for name, reg in b.registers.items():
            if name not in scalar:
                raise ConfigError(
                    f"{where}: registers[{name!r}] is not a scalar signal of twin type "
                    f"{b.twin_type!r}; known: {', '.join(sorted(scalar))}"
                )
            check_register(f"{where}: registers[{name!r}]", reg)
        if commands:
            _check_commands(where, b, kind)


def check_register(where: str, reg: Register) -> None:
    """One register: kind, type, orders, address span, scale and offset."""
    if not isinstance(reg, Register):
        raise ConfigError(f"{where} must be a twinflow.connectors.bindings.Register, got {reg!r}")
    for key in ("kind", "type"):
        choice = cast(Choice, REGISTER[key])
        if getattr(reg, key) not in choice.choices:
            raise ConfigError(f"{where}: {key} {getattr(reg, key)!r} is not {choice.one_of()}")
    if reg.kind in BIT_KINDS and reg.type != "bool":
        raise ConfigError(f"{where}: a {reg.kind} holds one bit; set type: bool (got {reg.type!r})")
    for key in ("word_order", "byte_order"):
        if getattr(reg, key) not in cast(Choice, REGISTER[key]).choices:
            raise ConfigError(f"{where}: {key} must be 'big' or 'little'")
    span = Whole("address", "", 0, 0, 65536 - reg.count)
    check_value(span, reg.address, f"{where}: ")
    ok_scale = _real(reg.scale) and math.isfinite(reg.scale) and reg.scale != 0
    if not ok_scale:
        raise ConfigError(f"{where}: scale must be a finite non-zero number, got {reg.scale!r}")
    if not (_real(reg.offset) and math.isfinite(reg.offset)):
        raise ConfigError(f"{where}: offset must be a finite number, got {reg.offset!r}")


def _check_commands(where: str, b: ModbusBinding, kind: TwinType) -> None:
    actuators = {a.name: a for a in kind.actuators}
    for name, write in b.commands.items():
        at = f"{where}: commands[{name!r}]"
        spec = actuators.get(name)
        if spec is None:
            raise ConfigError(
                f"{at}: twin type {b.twin_type!r} has no command {name!r}; it accepts: "
                f"{', '.join(actuators) or 'none'}"
            )
        if write.param not in spec.params:
            raise ConfigError(
                f"{at}: param {write.param!r} is not a parameter of {name!r}; "
                f"expected one of {', '.join(spec.params)}"
            )
        if len(spec.params) != 1:
            raise ConfigError(
                f"{at}: {name!r} takes {len(spec.params)} parameters but a Modbus write "
                "carries one; map it to a device that accepts it another way"
            )
        check_register(f"{at}.register", write.register)
        if write.register.kind not in ("holding", "coil"):
            raise ConfigError(
                f"{at}.register: a {write.register.kind} register is read-only; commands "
                "write holding registers or coils"
            )


def endpoint_key(host: str, port: int) -> str:
    """An endpoint's partition key, ``host:port`` (the source's and the command sink's).

    >>> endpoint_key("10.0.0.7", 502)
    '10.0.0.7:502'
    """
    return f"{host}:{port}"


def endpoints(bindings: Iterable[ModbusBinding]) -> dict[tuple[str, int], list[ModbusBinding]]:
    """Bindings grouped by (host, port), in first-seen order."""
    out: dict[tuple[str, int], list[ModbusBinding]] = {}
    for b in bindings:
        out.setdefault((b.host, b.port), []).append(b)
    return out


def _real(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


#: Binding fields checked for bindings built in code (a unit id up to 255 is accepted here;
#: deployment files keep to Modbus's 0..247).
_BINDING: tuple[Field[Any], ...] = (
    Whole("port", "", 502, 1, 65535),
    Whole("unit", "", 1, 0, 255),
    Number("timeout_s", "", 1.0, above=0, finite=True, expect="a number > 0 (seconds)"),
    Number("poll_interval_s", "", 1.0, low=0, finite=True, expect="a number >= 0 (seconds)"),
)


__all__ = ["check_bindings", "check_register", "endpoint_key", "endpoints"]
