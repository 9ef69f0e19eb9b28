"""Log lines of the long-running commands: short by default, everything with ``--debug``.

Without ``--debug`` a log record's traceback is replaced by its last line (the exception's
type and message), the client libraries' own loggers (asyncua, pymodbus, paho) show only
warnings and errors, and a line repeated within a minute is said once, with a count of the
repeats the next time it is let through. With ``--debug`` every logger speaks at DEBUG
level with full tracebacks.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

#: Loggers of client libraries: their records are shown from WARNING up, without traceback.
LIBRARIES = ("asyncua", "pymodbus", "paho", "confluent_kafka")
#: A repeated line (same logger, same message template) is shown once per this many seconds.
REPEAT_S = 60.0


class Calm(logging.Filter):
    """Drops tracebacks (keeping the exception's one-line summary) and repeats within
    ``repeat_s`` seconds; the next line let through says how many were held back."""

    def __init__(self, repeat_s: float = REPEAT_S) -> None:
        super().__init__()
        self.repeat_s = repeat_s
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()} ({type(exc).__name__}: {exc})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        key = (record.name, record.msg)
        now = time.monotonic()
        with self._lock:
            last, held = self._seen.get(key, (-1e18, 0))
            if now - last < self.repeat_s:
                self._seen[key] = (last, held + 1)
                return False
            self._seen[key] = (now, 0)
            if len(self._seen) > 10_000:
                self._seen.clear()
        if held:
            record.msg = f"{record.getMessage()} (and {held} like it in the last minute)"
            record.args = None
        return True


#: Set while a progress line is being rewritten in place on the terminal: a log line then
#: first clears it (the next progress tick draws it again below the log line).
LIVE_LINE = threading.Event()


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`setup_logging` installs (so that a second call replaces it); with
    no stream given it writes to whatever ``sys.stderr`` is at the time."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream)
        self.fixed = stream

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = self.fixed if self.fixed is not None else sys.stderr
        if LIVE_LINE.is_set():
            self.stream.write("\r\x1b[K")
        super().emit(record)


def setup_logging(debug: bool = False, stream: TextIO | None = None) -> Callable[[], None]:
    """Our handler on the root logger, writing to ``stream`` (default: standard error);
    handlers others installed (a test's log capture) stay. Returns what undoes it (the
    command line calls it when a command ends, for a caller in the same process)."""
    names = ("", "twinflow", *LIBRARIES)
    levels = {n: logging.getLogger(n).level for n in names}
    handler = _Handler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                           "%H:%M:%S"))  # fmt: skip
    root = logging.getLogger()
    for h in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(h)
    root.addHandler(handler)

    def undo() -> None:
        root.removeHandler(handler)
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)

    if debug:
        root.setLevel(logging.DEBUG)
        return undo
    root.setLevel(logging.WARNING)
    logging.getLogger("twinflow").setLevel(logging.INFO)
    handler.addFilter(Calm())
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
    # pymodbus logs every timeout with a hex dump; twinflow counts them in its metrics.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    return undo
