"""The planning grid: slots over the horizon, when work may start in each, and its day.

A slot is ``[now + k * slot, now + (k + 1) * slot)``; planned work in it starts at the
earliest moment that lies in a maintenance window (at the slot's start when no windows are
declared). A slot with no such moment is closed. Crew capacity counts per UTC calendar day
of that start.

>>> from datetime import UTC, datetime
>>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
>>> [s.start.hour for s in slots(t0, 4 * 3600.0, 3600.0, ()) if s.open]
[0, 1, 2, 3]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta


@dataclass(frozen=True)
class Slot:
    """One slot: its index, when work in it would start (``None``: closed) and that day."""

    index: int
    begin: datetime
    start: datetime | None

    @property
    def open(self) -> bool:
        return self.start is not None

    @property
    def day(self) -> date | None:
        return None if self.start is None else self.start.date()


def slots(
    now: datetime,
    horizon_s: float,
    slot_s: float,
    windows: Sequence[tuple[datetime, datetime]],
) -> list[Slot]:
    """Every slot of the horizon starting at ``now``, open or closed."""
    count = max(1, math.ceil(horizon_s / slot_s - 1e-9))
    end = now + timedelta(seconds=horizon_s)
    out = []
    for k in range(count):
        begin = now + timedelta(seconds=k * slot_s)
        until = min(begin + timedelta(seconds=slot_s), end)
        out.append(Slot(k, begin, _earliest(begin, until, windows)))
    return out


def _earliest(
    begin: datetime, until: datetime, windows: Sequence[tuple[datetime, datetime]]
) -> datetime | None:
    if not windows:
        return begin
    starts = [max(begin, a) for a, b in windows if a < until and b > begin]
    return min(starts) if starts else None


__all__ = ["Slot", "slots"]
