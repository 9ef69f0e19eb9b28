"""One retry pacing for the whole package: :class:`Backoff`.

The command sinks use it per command (:meth:`Backoff.before_try`, :meth:`Backoff.pause`,
:meth:`Backoff.gave_up`: tries bounded by ``max_attempts`` and by the command's expiry); the
OPC UA source and the PostgreSQL writer pace reconnects with a :class:`Retries` cursor made
by :meth:`Backoff.cursor`. It lives in the core because both kinds of user
sit in different connector packages and neither should import the other.

>>> retries = Backoff(base_s=0.5, cap_s=2.0, jitter=0.0).cursor()
>>> [retries.next() for _ in range(4)], retries.attempt
([0.5, 1.0, 2.0, 2.0], 4)
>>> retries.reset(); retries.next()
0.5
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from twinflow.core.errors import ConfigError
from twinflow.core.records import Command, CommandStatus
from twinflow.core.times import epoch, iso

#: A sink's final word on a command: status, detail and the tries it took.
Outcome = tuple[CommandStatus, str, int]


@dataclass(frozen=True)
class Backoff:
    """Exponential pacing: the pause after failed try ``n`` is about
    ``min(cap_s, base_s * 2 ** (n - 1))``, shortened by up to ``jitter`` of itself.

    The jitter is drawn from a RNG seeded by ``seed``, a key (a command id) and the try, so a
    run is reproducible; ``seed=None`` draws from the system's randomness instead.
    ``max_attempts`` bounds the tries of one command; a :meth:`cursor` of a reconnect loop is
    unbounded (its owner decides when to stop). Share one Backoff between sinks freely (it is
    immutable); a cursor belongs to one reconnect loop.

    >>> b = Backoff(base_s=0.1, cap_s=0.3, max_attempts=5, jitter=0.0)
    >>> [b.delay("c1", n) for n in (1, 2, 3, 4)]
    [0.1, 0.2, 0.3, 0.3]
    """

    base_s: float = 0.2
    cap_s: float = 5.0
    max_attempts: int = 4
    jitter: float = 0.2
    seed: int | None = 0

    def __post_init__(self) -> None:
        for name, value in (("base_s", self.base_s), ("cap_s", self.cap_s)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"Backoff {name} must be a finite number >= 0, got {value!r}")
        n = self.max_attempts
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"Backoff max_attempts must be an integer >= 1, got {n!r}")
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"Backoff jitter must be within [0, 1], got {self.jitter!r}")

    def delay(self, key: str, attempt: int) -> float:
        """Pause after failed try ``attempt`` (1-based) of ``key``, before the next one."""
        pause = min(self.cap_s, self.base_s * 2.0 ** (attempt - 1))
        if self.jitter:
            draw = (
                random.random()
                if self.seed is None
                else random.Random(f"{self.seed}|{key}|{attempt}").random()
            )
            pause *= 1.0 - self.jitter * draw
        return pause

    # -- per command ----------------------------------------------------------------------

    def pause(self, command: Command, attempt: int, now: float) -> float:
        """Pause after failed try ``attempt`` of ``command``, never far past its expiry."""
        until_expiry = epoch(command.expires_at) - now + 0.001
        return max(0.0, min(self.delay(command.command_id, attempt), until_expiry))

    @staticmethod
    def expired(command: Command, tries: int, now: float, last_error: str) -> Outcome | None:
        """The ``expired`` outcome when ``command`` expired after ``tries`` tries, else None."""
        if now <= epoch(command.expires_at):
            return None
        detail = f"expired at {iso(command.expires_at)} after {tries} attempt(s): {last_error}"
        return CommandStatus.EXPIRED, detail, tries

    async def before_try(
        self, command: Command, attempt: int, clock: Callable[[], float], last_error: str
    ) -> Outcome | None:
        """Wait before try ``attempt`` (1-based) of ``command``: the pause after the previous
        try, never past the command's expiry. The ``expired`` outcome when it expired first
        (``last_error`` says what the tries so far met), else ``None``: go ahead."""
        if attempt > 1:
            await asyncio.sleep(self.pause(command, attempt - 1, clock()))
        return self.expired(command, attempt - 1, clock(), last_error)

    def gave_up(self, target: str, last_error: str) -> Outcome:
        """The ``failed`` outcome once every try met a transient failure."""
        n = self.max_attempts
        where = f"{target}: " if target else ""
        return CommandStatus.FAILED, f"gave up after {n} attempts: {where}{last_error}", n

    def cursor(self) -> Retries:
        """A new reconnect cursor paced by this backoff."""
        return Retries(self)


class Retries:
    """Failures of one reconnect loop since its last success, and the pause each one earns."""

    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self.attempt = 0
        self._key = f"cursor@{id(self):x}"  # two reconnecting clients do not move in lockstep

    def next(self) -> float:
        """Seconds to wait after one more failure."""
        self.attempt += 1
        return self.backoff.delay(self._key, self.attempt)

    def reset(self) -> None:
        """After a success: the next failure waits ``base_s`` again."""
        self.attempt = 0


#: The command sinks' default pacing: 4 tries, pauses of about 0.2, 0.4 and 0.8 s.
DEFAULT_BACKOFF = Backoff()

__all__ = ["DEFAULT_BACKOFF", "Backoff", "Outcome", "Retries"]
