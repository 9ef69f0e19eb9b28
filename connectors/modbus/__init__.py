"""Modbus TCP: a polling source and a command sink on pymodbus, and a pure register codec.

- :class:`ModbusSource` polls each twin's register map
  (``twinflow.connectors.bindings.ModbusBinding``) and emits one
  :class:`~twinflow.core.records.TelemetryFrame` per twin per batch; failed reads become NaN
  with BAD quality and metrics, never a crash.
- :class:`ModbusCommandSink` writes the flow's issued commands to holding registers or coils,
  after checking them against the twin type's actuator ranges and the register's type.
- :mod:`twinflow.connectors.modbus.codec` turns registers into values and back (int16/uint16/int32/
  uint32/float32/bool, word and byte order, scale and offset).

The source and sink import pymodbus (the ``modbus`` extra) when first used; the codec does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twinflow.connectors.modbus.codec import decode_value, encode_value
from twinflow.core.optional import lazy_exports

if TYPE_CHECKING:
    from twinflow.connectors.modbus.sink import ModbusCommandSink
    from twinflow.connectors.modbus.source import ModbusSource

__getattr__ = lazy_exports(
    __name__,
    {"ModbusCommandSink": "sink", "ModbusSource": "source"},
    extra="modbus",
    what="the Modbus connector",
)


__all__ = ["ModbusCommandSink", "ModbusSource", "decode_value", "encode_value"]
