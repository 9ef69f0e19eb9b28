"""OPC UA status codes as twinflow qualities, and back.

An OPC UA StatusCode is a 32-bit value whose two top bits are its severity: ``00`` Good,
``01`` Uncertain, ``10`` Bad (``11`` is reserved and treated as Bad). Only the severity
decides the quality; the sub-code (e.g. ``BadSensorFailure``) is kept by the server, not
by the frame.

>>> quality_of(0x00000000), quality_of(0x40900000), quality_of(0x808C0000)
(<Quality.GOOD: 0>, <Quality.UNCERTAIN: 1>, <Quality.BAD: 2>)
>>> worst(Quality.UNCERTAIN, Quality.BAD)
<Quality.BAD: 2>
"""

from __future__ import annotations

from twinflow.core.records import Quality

#: StatusCode values used when twinflow itself writes a quality (the simulated devices).
GOOD = 0x00000000
UNCERTAIN = 0x40000000
UNCERTAIN_LAST_USABLE_VALUE = 0x40900000
UNCERTAIN_SUBSTITUTE_VALUE = 0x40910000
BAD = 0x80000000
BAD_OUT_OF_RANGE = 0x803C0000

#: How bad each quality is, for "worst quality seen": a frame reports its worst reading.
RANK: dict[Quality, int] = {
    Quality.GOOD: 0,
    Quality.SUBSTITUTED: 1,
    Quality.UNCERTAIN: 2,
    Quality.STALE: 3,
    Quality.BAD: 4,
}

_BY_SEVERITY = (Quality.GOOD, Quality.UNCERTAIN, Quality.BAD, Quality.BAD)

_CODE_OF: dict[Quality, int] = {
    Quality.GOOD: GOOD,
    Quality.UNCERTAIN: UNCERTAIN,
    Quality.BAD: BAD,
    Quality.STALE: UNCERTAIN_LAST_USABLE_VALUE,
    Quality.SUBSTITUTED: UNCERTAIN_SUBSTITUTE_VALUE,
}


def quality_of(code: int) -> Quality:
    """The quality of a StatusCode value, judged by its severity bits alone."""
    return _BY_SEVERITY[(int(code) >> 30) & 0b11]


def worst(a: Quality, b: Quality) -> Quality:
    """The worse of two qualities (BAD > STALE > UNCERTAIN > SUBSTITUTED > GOOD)."""
    return a if RANK[a] >= RANK[b] else b


def status_code_for(quality: Quality) -> int:
    """A StatusCode that carries ``quality`` (STALE and SUBSTITUTED become Uncertain codes)."""
    return _CODE_OF[Quality(quality)]
