"""Progress lines while a flow runs, and the closing summary.

Every ``every_s`` seconds :class:`Progress` writes one line: readings per second since the
last line, the Kafka consumer lag, open alarms, commands by status, dead letters and
connections up/down. On a terminal the line is rewritten in place; otherwise (a log file, a
pipe, systemd) each is a plain line of its own. :func:`summary_lines` says how the run went
when it ends.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TextIO

from twinflow.connectors import connection_state
from twinflow.flows.kafka_lag import KafkaLag
from twinflow.flows.logs import LIVE_LINE
from twinflow.flows.metrics import RunStats
from twinflow.flows.observe import Observer

#: Statuses shown in the progress line, in lifecycle order (others are summed as "other").
_SHOWN = ("queued", "sent", "acknowledged", "succeeded", "failed", "timed_out", "expired",
          "rejected")  # fmt: skip


def commands_by_status(stats: RunStats) -> dict[str, int]:
    """Command transitions of the run by status, in lifecycle order."""
    counts: Counter[str] = Counter()
    for key, n in stats.commands.items():
        counts[key.rsplit(":", 1)[-1]] += n
    ordered = {s: counts.pop(s) for s in _SHOWN if s in counts}
    ordered.update(sorted(counts.items()))
    return ordered


def _status_text(by_status: dict[str, int]) -> str:
    if not by_status:
        return "0"
    return " ".join(f"{s} {n}" for s, n in by_status.items())


class Progress(threading.Thread):
    """Writes a progress line every ``every_s`` seconds until :meth:`finish`.

    ``extra`` adds a leading field (e.g. the simulated time reached); ``flow=False`` leaves
    out what only a flow has (commands, dead letters), for ``twinflow simulate``.
    """

    def __init__(
        self,
        stats: RunStats,
        stream: TextIO,
        *,
        observer: Observer | None = None,
        lag: KafkaLag | None = None,
        every_s: float = 5.0,
        extra: Callable[[], str] | None = None,
        live: bool | None = None,
        flow: bool = True,
    ) -> None:
        super().__init__(daemon=True, name="twinflow-progress")
        self.stats, self.stream, self.observer, self.lag = stats, stream, observer, lag
        self.every_s, self.extra, self.flow = every_s, extra, flow
        self.live = stream.isatty() if live is None else live
        self._halt = threading.Event()
        self.t0 = time.monotonic()
        self._last = (self.t0, 0)
        self._width = 0

    def line(self) -> str:
        """The progress line now (readings/s since the previous line)."""
        now, readings = time.monotonic(), self.stats.readings
        t, n = self._last
        rate = (readings - n) / (now - t) if now > t else 0.0
        self._last = (now, readings)
        parts = [self.extra()] if self.extra is not None else []
        parts.append(f"{rate:,.0f} readings/s ({readings:,} in all)")
        if self.lag is not None and self.lag.active:
            total = self.lag.total()
            parts.append(f"Kafka lag {'-' if total is None else f'{total:,}'}")
        if self.observer is not None:
            parts.append(f"open alarms {self.observer.open_alarms()}")
        if self.flow:
            parts.append(f"commands {_status_text(commands_by_status(self.stats))}")
            parts.append(f"dead letters {self.stats.dead_letters:,}")
        ups, downs = connection_state.counts()
        if ups or downs:
            parts.append(f"connections {ups} up, {downs} down")
        return " | ".join(parts)

    def _write(self, text: str) -> None:
        if self.live:
            pad = max(self._width - len(text), 0)
            self._width = len(text)
            self.stream.write("\r" + text + " " * pad)
            LIVE_LINE.set()
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def run(self) -> None:
        while not self._halt.wait(self.every_s):
            self._write(self.line())

    def finish(self) -> None:
        """Stop the lines; on a terminal, end the live line so that what follows starts clean."""
        self._halt.set()
        if self.is_alive():
            self.join(timeout=self.every_s + 1)
        if self.live and self._width:
            LIVE_LINE.clear()
            self.stream.write("\n")
            self.stream.flush()


def summary_lines(
    what: str,
    stats: RunStats,
    wall_s: float,
    *,
    observer: Observer | None = None,
    lag: KafkaLag | None = None,
    stopped_by: str | None = None,
) -> list[str]:
    """How a run went, for the end of ``twinflow run`` and ``simulate``-style commands."""
    how = f"stopped by {stopped_by}" if stopped_by else "ended"
    raised = sum(n for k, n in stats.alerts.items() if k.endswith(":raised"))
    lines = [
        f"{what} {how} after {wall_s:,.1f} s: {stats.readings:,} readings in "
        f"{stats.frames:,} frames ({stats.readings / wall_s if wall_s > 0 else 0:,.0f}/s), "
        f"{stats.windows:,} windows, {raised:,} alerts raised",
        f"  commands: {_status_text(commands_by_status(stats))}",
        f"  dead letters: {stats.dead_letters:,} ({stats.late_readings:,} late readings)",
    ]
    if observer is not None:
        in_alarm = observer.in_alarm()
        text = ", ".join(f"{t} {n}" for t, n in in_alarm.items()) or "none"
        lines.append(f"  twins in alarm at the end: {text}")
    if lag is not None and lag.total() is not None:
        lines.append(f"  Kafka lag at the end: {lag.total():,}")
    down = connection_state.down_peers()
    if down:
        lines.append(
            "  connections down at the end: " + ", ".join(f"{p} {r} {peer}" for p, r, peer in down)
        )
    return lines
