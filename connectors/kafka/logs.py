"""One log line per condition: librdkafka's repeated lines collapsed while a broker is away.

librdkafka reports a broker it cannot reach on every reconnect attempt, from every client
(each sink's producer, each source partition's consumer), which made thousands of lines in a
few minutes of outage. :class:`OncePerCondition` lets the first line of a condition through,
drops the same condition for ``window_s`` seconds, and then lets the next one through with the
number of lines it dropped. A condition is the line with its numbers blanked (ports, times in
ms, client numbers), so "Connect to 127.0.0.1:9092 failed (after 3ms)" and "(after 7ms)" are
one condition.

>>> f = OncePerCondition(window_s=60.0, clock=iter([0.0, 1.0, 2.0, 61.0]).__next__)
>>> def rec(msg: str) -> logging.LogRecord:
...     return logging.LogRecord("k", logging.WARNING, "", 0, msg, (), None)
>>> [f.filter(rec(f"refused (after {ms}ms)")) for ms in (3, 7, 9)]
[True, False, False]
>>> r = rec("refused (after 1ms)"); f.filter(r), r.getMessage()
(True, 'refused (after 1ms) [2 more like this in the last 61 s]')
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

_NUMBERS = re.compile(r"\d+")
#: Conditions remembered at once; the oldest is forgotten beyond this.
MAX_CONDITIONS = 512


class OncePerCondition(logging.Filter):
    """Drop a log record whose condition was let through less than ``window_s`` ago."""

    def __init__(self, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.window_s = window_s
        self.clock = clock
        self._seen: dict[tuple[int, str], list[float]] = {}  # condition -> [since, dropped]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        key = (record.levelno, _NUMBERS.sub("#", message))
        now = self.clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.window_s:
            seen[1] += 1
            return False
        if seen is not None and seen[1]:
            record.msg = (
                f"{message} [{int(seen[1])} more like this in the last {now - seen[0]:.0f} s]"
            )
            record.args = ()
        self._seen.pop(key, None)
        self._seen[key] = [now, 0]
        if len(self._seen) > MAX_CONDITIONS:
            del self._seen[next(iter(self._seen))]
        return True


__all__ = ["MAX_CONDITIONS", "OncePerCondition"]
