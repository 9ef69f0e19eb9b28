"""Register codec: Modbus words (or bits) to engineering values and back, per :class:`Register`.

Pure functions, no pymodbus. A value is ``raw * scale + offset``. 32-bit types span two
registers: ``word_order="big"`` puts the most significant word at the lower address;
``byte_order="little"`` swaps the two bytes inside every register (the wire is always big
endian). The four 32-bit layouts are the usual ABCD (big/big), CDAB (little word order),
BADC (little byte order) and DCBA (both little).

>>> from twinflow.connectors.bindings import Register
>>> encode_value(1.0, Register(0, type="float32"))
[16256, 0]
>>> decode_value([0x0000, 0x3F80], Register(0, type="float32", word_order="little"))
1.0
>>> decode_value([0xFF9C], Register(0, type="int16", scale=0.1))
-10.0
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

from twinflow.connectors.bindings import Register
from twinflow.core.errors import ValidationError

#: Per type: struct code of the big-endian raw value, registers it spans, raw limits.
TYPES: dict[str, tuple[str, int, float, float]] = {
    "int16": ("h", 1, -(2**15), 2**15 - 1),
    "uint16": ("H", 1, 0, 2**16 - 1),
    "int32": ("i", 2, -(2**31), 2**31 - 1),
    "uint32": ("I", 2, 0, 2**32 - 1),
    "float32": ("f", 2, -3.4028234663852886e38, 3.4028234663852886e38),
    "bool": ("H", 1, 0, 1),
}

#: Register kinds that hold single bits rather than 16-bit words.
BIT_KINDS = frozenset({"coil", "discrete"})


def swap_bytes(word: int) -> int:
    """The 16-bit ``word`` with its two bytes exchanged.

    >>> hex(swap_bytes(0x3F80))
    '0x803f'
    """
    return ((word & 0xFF) << 8) | (word >> 8)


def to_canonical(words: Sequence[int], reg: Register) -> list[int]:
    """Device words of one value, reordered to big word order and big byte order."""
    out = [swap_bytes(w) for w in words] if reg.byte_order == "little" else list(words)
    if reg.word_order == "little":
        out.reverse()
    return out


def from_canonical(words: Sequence[int], reg: Register) -> list[int]:
    """Big/big words of one value, reordered as the device stores them."""
    # Both reorderings are involutions and commute, so the inverse is the same operation.
    return to_canonical(words, reg)


def decode_raw(words: Sequence[int], reg: Register) -> float:
    """The raw number (before scale and offset) that ``words`` hold for ``reg``.

    ``words`` are the ``reg.count`` registers starting at ``reg.address``; for a coil or a
    discrete input pass the bit as ``[0]`` or ``[1]``.
    """
    code, count, _, _ = TYPES[reg.type]
    if len(words) != count:
        raise ValueError(f"a {reg.type} value spans {count} register(s), got {len(words)}")
    if reg.type == "bool":
        return 1.0 if words[0] else 0.0
    canon = to_canonical(words, reg)
    return float(struct.unpack(">" + code, struct.pack(f">{count}H", *canon))[0])


def decode_value(words: Sequence[int], reg: Register) -> float:
    """The engineering value of ``words``: ``raw * scale + offset``."""
    return decode_raw(words, reg) * reg.scale + reg.offset


def raw_for(value: float, reg: Register, *, clamp: bool = False) -> float | int:
    """The raw number to store for ``value``: ``(value - offset) / scale``, checked.

    Integer types round to the nearest step. With ``clamp`` a value beyond what the type
    holds is clipped to its limits (the simulator does this for wild sensor readings);
    otherwise it raises :class:`ValidationError`. A value that is not finite always does.
    """
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ValidationError(f"{_where(reg)} cannot hold {value!r}: need a finite number")
    raw = (float(value) - reg.offset) / reg.scale
    _, _, low, high = TYPES[reg.type]
    if reg.type == "bool":
        if clamp:
            return 0 if raw == 0 else 1
        if raw not in (0.0, 1.0):
            raise ValidationError(
                f"{_where(reg)} holds a bit; value {value!r} gives raw {raw:g}, need 0 or 1"
            )
        return int(raw)
    if reg.type != "float32":
        raw = round(raw)
    if not low <= raw <= high:
        if not clamp:
            raise ValidationError(
                f"{_where(reg)} cannot hold {value!r}: raw {raw:g} is outside the "
                f"{reg.type} range [{low:g}, {high:g}]"
            )
        raw = min(max(raw, low), high)
    return raw


def encode_value(value: float, reg: Register, *, clamp: bool = False) -> list[int]:
    """The registers (or ``[bit]``) that store ``value`` in ``reg``; see :func:`raw_for`.

    >>> encode_value(-10.0, Register(0, type="int16", scale=0.1))
    [65436]
    >>> encode_value(70000, Register(0, type="uint16"))
    Traceback (most recent call last):
    ...
    twinflow.core.errors.ValidationError: holding register 0 (uint16) cannot hold 70000: raw 70000 \
is outside the uint16 range [0, 65535]
    """
    return encode_raw(raw_for(value, reg, clamp=clamp), reg)


def encode_raw(raw: float | int, reg: Register) -> list[int]:
    """The registers (or ``[bit]``) holding the raw number ``raw`` (assumed in range)."""
    code, count, _, _ = TYPES[reg.type]
    if reg.type == "bool":
        return [1 if raw else 0]
    value = float(raw) if reg.type == "float32" else int(raw)
    canon = list(struct.unpack(f">{count}H", struct.pack(">" + code, value)))
    return from_canonical(canon, reg)


def _where(reg: Register) -> str:
    kind = {"holding": "holding register", "input": "input register"}.get(reg.kind, reg.kind)
    scaled = "" if reg.scale == 1.0 else f", scale {reg.scale:g}"
    offset = "" if reg.offset == 0.0 else f", offset {reg.offset:g}"
    return f"{kind} {reg.address} ({reg.type}{scaled}{offset})"


__all__ = [
    "BIT_KINDS",
    "TYPES",
    "decode_raw",
    "decode_value",
    "encode_raw",
    "encode_value",
    "from_canonical",
    "raw_for",
    "swap_bytes",
    "to_canonical",
]
