"""The state of an output that may be unavailable: up or down, backlog, retries, back-pressure.

An output (a Kafka topic, a PostgreSQL sink partition) that cannot deliver keeps what it
accepted in a bounded backlog and lets the flow go on; :class:`OutputHealth` makes that
visible. It logs one line when the output goes down (with the reason and the backlog) and one
when it is back (how long it was down), never a line per failed attempt, and keeps these
process-wide Prometheus metrics, labelled by output name (``kafka:<topic>``,
``postgres:<step>/<partition>``):

- ``twinflow_output_up{output}`` (gauge): 1 while the output delivers, 0 while it is down;
- ``twinflow_output_backlog{output}`` (gauge): items (messages, rows) accepted and not yet
  acknowledged by the service;
- ``twinflow_output_retries_total{output}`` (counter): attempts the output made again after
  a failure (a reconnect, a new producer, a batch written again);
- ``twinflow_output_backpressure_seconds_total{output}`` (counter): time the flow waited
  because the backlog was full.

>>> h = OutputHealth("kafka:demo", logging.getLogger("doctest"))
>>> h.set_backlog(3)
>>> h.went_down("broker unreachable"), h.went_down("again"), h.is_up
(True, False, False)
>>> h.came_back(), h.is_up
(True, True)
"""

from __future__ import annotations

import logging
import time

from prometheus_client import Counter, Gauge

UP = Gauge("twinflow_output_up", "1 while an output delivers, 0 while it is down", ["output"])
BACKLOG = Gauge(
    "twinflow_output_backlog",
    "Items (messages, rows) an output accepted and the service has not acknowledged yet",
    ["output"],
)
RETRIES = Counter(
    "twinflow_output_retries",
    "Attempts an output made again after a failure (reconnect, new producer, batch rewritten)",
    ["output"],
)
BACKPRESSURE = Counter(
    "twinflow_output_backpressure_seconds",
    "Time the flow waited because an output's backlog had reached its bound",
    ["output"],
)


class OutputHealth:
    """Up/down state, backlog and retries of one output; logs only the transitions."""

    def __init__(self, output: str, log: logging.Logger, unit: str = "messages") -> None:
        self.output = output
        self.log = log
        self.unit = unit
        self.is_up = True
        self.down_since: float | None = None
        self.backlog = 0
        self._up = UP.labels(output)
        self._backlog = BACKLOG.labels(output)
        self._retries = RETRIES.labels(output)
        self._blocked = BACKPRESSURE.labels(output)
        self._up.set(1)
        self._backlog.set(0)

    def set_backlog(self, n: int) -> None:
        """The number of items held unacknowledged now."""
        self.backlog = n
        self._backlog.set(n)

    def went_down(self, reason: str) -> bool:
        """Mark the output down (logged once per outage); True if it was up."""
        if not self.is_up:
            return False
        self.is_up = False
        self.down_since = time.monotonic()
        self._up.set(0)
        self.log.warning(
            "output %s is down: %s; holding %d %s and retrying, the flow goes on",
            self.output,
            reason,
            self.backlog,
            self.unit,
        )
        return True

    def came_back(self) -> bool:
        """Mark the output up again (logged once); True if it was down."""
        if self.is_up:
            return False
        down_for = time.monotonic() - (self.down_since or time.monotonic())
        self.is_up = True
        self.down_since = None
        self._up.set(1)
        self.log.warning(
            "output %s is back after %.1f s down; %d %s still to deliver",
            self.output,
            down_for,
            self.backlog,
            self.unit,
        )
        return True

    def retried(self) -> None:
        """Count one retry."""
        self._retries.inc()

    def blocked(self, seconds: float) -> None:
        """Count time the flow waited for room in the backlog."""
        self._blocked.inc(max(seconds, 0.0))


__all__ = ["BACKLOG", "BACKPRESSURE", "RETRIES", "UP", "OutputHealth"]
