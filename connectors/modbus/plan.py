"""Read plans: a twin's register map as few read requests as possible, decoded in one go.

Registers of one kind whose addresses touch or overlap are read by one request, up to the
protocol's limit (125 registers, 2000 bits); a gap starts a new request, because reading
unmapped addresses makes many devices answer "illegal data address". Each
:class:`ReadGroup` decodes its response into a row of values with one ``struct`` call when
its fields do not overlap.

>>> from twinflow.connectors.bindings import Register
>>> names, groups = plan_reads({
...     "a": Register(0, type="float32"), "b": Register(2, type="int16", scale=0.5),
...     "c": Register(10), "d": Register(0, kind="coil", type="bool")})
>>> [(g.kind, g.address, g.count) for g in groups]
[('holding', 0, 3), ('holding', 10, 1), ('coil', 0, 1)]
>>> row = [float("nan")] * len(names)
>>> groups[0].decode([0x3F80, 0x0000, 0xFFFE], row)
>>> row[:2]
[1.0, -1.0]
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

from twinflow.connectors.bindings import Register, RegisterKind
from twinflow.connectors.modbus.codec import BIT_KINDS, TYPES, decode_value, to_canonical

#: Most registers one read request may return (Modbus function codes 3 and 4).
MAX_REGISTERS = 125
#: Most bits one read request may return (function codes 1 and 2).
MAX_BITS = 2000
#: Order in which a poll reads the kinds.
KINDS: tuple[RegisterKind, ...] = ("holding", "input", "coil", "discrete")


class ReadGroup:
    """One read request (``kind``, ``address``, ``count``) and the signals it carries.

    ``fields`` holds ``(signal index, offset in the response, register)``; :meth:`decode`
    writes each signal's value into ``row[signal index]``.
    """

    __slots__ = (
        "_bits",
        "_fast",
        "_pack",
        "_post",
        "_reorder",
        "_unpack",
        "address",
        "count",
        "fields",
        "kind",
    )

    def __init__(
        self,
        kind: RegisterKind,
        address: int,
        count: int,
        fields: Sequence[tuple[int, int, Register]],
    ) -> None:
        self.kind = kind
        self.address = address
        self.count = count
        self.fields = tuple(sorted(fields, key=lambda f: f[1]))
        self._bits = kind in BIT_KINDS
        #: Per field: (signal index, offset, scale, value offset, is a bit/bool).
        self._post = tuple(
            (idx, off, reg.scale, reg.offset, reg.type == "bool") for idx, off, reg in self.fields
        )
        self._reorder = tuple(
            (off, reg)
            for _, off, reg in self.fields
            if (reg.count == 2 and (reg.word_order, reg.byte_order) != ("big", "big"))
            or (reg.count == 1 and reg.byte_order == "little" and reg.type != "bool")
        )
        self._fast = not self._bits and self._no_overlap()
        if self._fast:
            fmt, cursor = ">", 0
            for _, off, reg in self.fields:
                if off > cursor:
                    fmt += f"{2 * (off - cursor)}x"
                fmt += TYPES[reg.type][0]
                cursor = off + reg.count
            if cursor < count:
                fmt += f"{2 * (count - cursor)}x"
            self._unpack = struct.Struct(fmt).unpack
            self._pack = struct.Struct(f">{count}H").pack

    def _no_overlap(self) -> bool:
        end = 0
        for _, off, reg in self.fields:
            if off < end:
                return False
            end = off + reg.count
        return True

    def decode(self, data: Sequence[int] | Sequence[bool], row: list[float]) -> None:
        """Decode a response's registers (or bits) into ``row``.

        Raises ``struct.error``, ``IndexError`` or ``ValueError`` when the response is
        shorter than the request (a malformed answer).
        """
        if self._bits:
            for idx, off, scale, offset, _ in self._post:
                row[idx] = (1.0 if data[off] else 0.0) * scale + offset
            return
        if not self._fast:
            for idx, off, reg in self.fields:
                row[idx] = decode_value(data[off : off + reg.count], reg)
            return
        words = data
        if self._reorder:
            words = list(data)
            for off, reg in self._reorder:
                words[off : off + reg.count] = to_canonical(words[off : off + reg.count], reg)
        raws = self._unpack(self._pack(*words))
        for (idx, _, scale, offset, is_bool), raw in zip(self._post, raws, strict=True):
            row[idx] = (1.0 if raw else 0.0) * scale + offset if is_bool else raw * scale + offset

    def __repr__(self) -> str:
        return f"ReadGroup({self.kind!r}, address={self.address}, count={self.count})"


def plan_reads(
    registers: Mapping[str, Register],
    max_registers: int = MAX_REGISTERS,
    max_bits: int = MAX_BITS,
) -> tuple[tuple[str, ...], tuple[ReadGroup, ...]]:
    """Signal names (row order) and the read requests that fetch all of ``registers``."""
    names = tuple(registers)
    groups: list[ReadGroup] = []
    for kind in KINDS:
        limit = max_bits if kind in BIT_KINDS else max_registers
        members = sorted(
            (reg.address, i, reg) for i, reg in enumerate(registers.values()) if reg.kind == kind
        )
        start = end = -1
        fields: list[tuple[int, int, Register]] = []
        for address, idx, reg in members:
            span = 1 if kind in BIT_KINDS else reg.count
            new_end = max(end, address + span)
            if fields and address <= end and new_end - start <= limit:
                end = new_end
            else:
                if fields:
                    groups.append(_group(kind, start, end, fields))
                start, end, fields = address, address + span, []
            fields.append((idx, address, reg))
        if fields:
            groups.append(_group(kind, start, end, fields))
    return names, tuple(groups)


def _group(
    kind: RegisterKind, start: int, end: int, fields: list[tuple[int, int, Register]]
) -> ReadGroup:
    return ReadGroup(kind, start, end - start, [(i, a - start, r) for i, a, r in fields])


__all__ = ["KINDS", "MAX_BITS", "MAX_REGISTERS", "ReadGroup", "plan_reads"]
