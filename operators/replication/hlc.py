"""Hybrid logical clocks: timestamps that follow physical time yet respect causality.

A :class:`Stamp` is (physical milliseconds, logical counter, replica id). A replica stamps
every local write with :meth:`HybridClock.tick` and folds every stamp it receives into its
clock with :meth:`HybridClock.observe`, so a write made after seeing another always carries a
larger stamp, even when the two machines' clocks disagree (Kulkarni et al., 2014). Stamps are
totally ordered: by time, then counter, then replica id, which breaks ties deterministically.

A stamp from a clock too far ahead of ours would drag every later stamp with it, so
:meth:`HybridClock.observe` refuses one more than ``max_drift_ms`` ahead of the local
physical clock with a :class:`ClockDriftError`.

>>> now = iter([1000, 1000, 1000]).__next__
>>> clock = HybridClock("edge-a", now_ms=now)
>>> clock.tick()
Stamp(wall_ms=1000, logical=0, replica='edge-a')
>>> clock.tick()
Stamp(wall_ms=1000, logical=1, replica='edge-a')
>>> clock.observe(Stamp(1005, 3, "central"))
Stamp(wall_ms=1005, logical=4, replica='edge-a')
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from twinflow.core.errors import TwinflowError

#: Default bound on how far a received stamp may run ahead of the local clock (ms).
DEFAULT_MAX_DRIFT_MS = 60_000

#: The logical counter's bound: a counter this large means the physical clock stalled for
#: an implausible number of events, and a stamp carrying it is refused as corrupt.
MAX_LOGICAL = 2**31 - 1


class ClockDriftError(TwinflowError):
    """A received stamp is further ahead of the local clock than the drift bound allows."""


def wall_clock_ms() -> int:
    """The machine's clock in epoch milliseconds."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, order=True, slots=True)
class Stamp:
    """One hybrid logical timestamp; fields in comparison order."""

    wall_ms: int
    logical: int
    replica: str

    def __post_init__(self) -> None:
        if self.wall_ms < 0 or not 0 <= self.logical <= MAX_LOGICAL:
            raise ValueError(
                f"stamp of replica {self.replica!r} has wall_ms={self.wall_ms}, "
                f"logical={self.logical}: both must be >= 0 and logical <= {MAX_LOGICAL}"
            )
        if not self.replica:
            raise ValueError("a stamp needs a non-empty replica id")

    def text(self) -> str:
        """A compact form for logs and ids: ``wall.logical@replica``."""
        return f"{self.wall_ms}.{self.logical}@{self.replica}"


class HybridClock:
    """The clock of one replica; not thread-safe (one owner stamps with it).

    ``now_ms`` returns physical time in epoch milliseconds (the machine's clock unless a
    test passes its own); ``max_drift_ms`` bounds how far ahead a received stamp may be.
    """

    def __init__(
        self,
        replica: str,
        now_ms: Callable[[], int] = wall_clock_ms,
        max_drift_ms: int = DEFAULT_MAX_DRIFT_MS,
    ) -> None:
        if not replica:
            raise ValueError("a hybrid clock needs a non-empty replica id")
        if max_drift_ms <= 0:
            raise ValueError(f"max_drift_ms must be > 0, got {max_drift_ms}")
        self.replica = replica
        self.now_ms = now_ms
        self.max_drift_ms = max_drift_ms
        self._wall = 0
        self._logical = 0

    @property
    def last(self) -> Stamp:
        """The newest stamp this clock issued or observed (0.0 before any)."""
        return Stamp(self._wall, self._logical, self.replica)

    def tick(self) -> Stamp:
        """A stamp for a local event (a write or a send), larger than every earlier one."""
        physical = self.now_ms()
        if physical > self._wall:
            self._wall, self._logical = physical, 0
        else:
            self._advance_logical()
        return self.last

    def observe(self, remote: Stamp) -> Stamp:
        """Fold a received stamp into the clock; the result is larger than both.

        Raises :class:`ClockDriftError` when ``remote`` is more than ``max_drift_ms`` ahead
        of the local physical clock: its sender's clock is wrong, and accepting the stamp
        would carry that error into every later local stamp.
        """
        physical = self.now_ms()
        ahead = remote.wall_ms - physical
        if ahead > self.max_drift_ms:
            raise ClockDriftError(
                f"replica {self.replica!r} received stamp {remote.text()} from replica "
                f"{remote.replica!r}, {ahead} ms ahead of the local clock (the bound is "
                f"{self.max_drift_ms} ms): check the clock (NTP) of {remote.replica!r}"
            )
        wall = max(self._wall, remote.wall_ms, physical)
        if wall == self._wall and wall == remote.wall_ms:
            self._logical = max(self._logical, remote.logical)
            self._advance_logical()
        elif wall == self._wall:
            self._advance_logical()
        elif wall == remote.wall_ms:
            self._wall, self._logical = wall, remote.logical
            self._advance_logical()
        else:
            self._wall, self._logical = wall, 0
        return self.last

    def _advance_logical(self) -> None:
        if self._logical >= MAX_LOGICAL:
            raise ClockDriftError(
                f"replica {self.replica!r}: the logical counter reached {MAX_LOGICAL} at "
                f"wall time {self._wall} ms; the physical clock seems stuck"
            )
        self._logical += 1
