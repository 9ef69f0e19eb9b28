"""Run statistics and Prometheus metrics of a running flow.

The ``twinflow_*`` metrics live in prometheus_client's default registry. :func:`serve_metrics`
serves that registry on one address (the command line's default, 127.0.0.1); Bytewax's
dataflow API (:func:`enable_dataflow_api`) serves it too, with Bytewax's own per-step metrics
added, but always listens on every interface.

:class:`RunStats` keeps the same counts for one run (thread-safe), for progress lines and
``summary.json``; the Prometheus metrics are process-wide and only ever increase.
"""

from __future__ import annotations

import os
import threading
from collections import Counter as _Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Histogram, disable_created_metrics, start_http_server

READINGS = Counter("twinflow_readings", "Readings accepted into the flow", ["twin_type"])
DEAD_LETTERS = Counter(
    "twinflow_dead_letters", "Inputs or readings sent to the dead-letter output", ["stage"]
)
LATE_READINGS = Counter(
    "twinflow_late_readings", "Readings that arrived after their window had closed"
)
ALERTS = Counter("twinflow_alerts", "Alert transitions emitted", ["rule", "state"])
COMMANDS = Counter(
    "twinflow_commands",
    "Command lifecycle transitions on the commands stream (queued, sent, acknowledged, "
    "succeeded, failed, timed_out, expired, rejected), by command name (a name no twin type "
    "declares is counted as 'other')",
    ["name", "status"],
)
ALERT_LAG = Histogram(
    "twinflow_alert_lag_seconds",
    "Lag from the newest reading of the window that raised an alert to the alert, measured on "
    "the flow's reference clock (wall clock for live sources, simulated clock for the simulator)",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600),
)


#: The one label of every command name no twin type declares (requests may name anything).
OTHER = "other"


def bounded(name: str, declared: frozenset[str] | None) -> str:
    """``name`` if it is declared (or nothing is), else :data:`OTHER`.

    >>> bounded("derate", frozenset({"derate"})), bounded("x" * 500, frozenset({"derate"}))
    ('derate', 'other')
    """
    return name if declared is None or name in declared else OTHER


@dataclass
class RunStats:
    """Counts of one run, safe to update from several worker threads.

    ``command_names`` are the declared command names; others are counted as ``other`` so
    that requests cannot grow the metrics or the summary without bound.
    """

    readings: int = 0
    frames: int = 0
    dead_letters: int = 0
    dead_letter_readings: int = 0
    late_readings: int = 0
    windows: int = 0
    alerts: _Counter[str] = field(default_factory=_Counter)
    commands: _Counter[str] = field(default_factory=_Counter)
    command_names: frozenset[str] | None = None
    #: Called with the frames decoded from raw payloads (Kafka telemetry) as they are decoded,
    #: so an observer can time their arrival (sources that emit frames are tapped directly).
    on_decoded: Callable[[Sequence[Any]], None] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_readings(self, twin_type: str, n: int) -> None:
        with self._lock:
            self.readings += n
            self.frames += 1
        READINGS.labels(twin_type).inc(n)

    def add_dead_letter(self, stage: str, readings: int) -> None:
        with self._lock:
            self.dead_letters += 1
            self.dead_letter_readings += readings
        DEAD_LETTERS.labels(stage).inc()

    def add_late(self, n: int) -> None:
        if n:
            with self._lock:
                self.late_readings += n
            LATE_READINGS.inc(n)

    def add_window(self) -> None:
        with self._lock:
            self.windows += 1

    def add_alert(self, rule: str, state: str, lag_s: float | None) -> None:
        with self._lock:
            self.alerts[f"{rule}:{state}"] += 1
        ALERTS.labels(rule, state).inc()
        if lag_s is not None and state == "raised":
            ALERT_LAG.observe(max(lag_s, 0.0))

    def declare_commands(self, names: Iterable[str]) -> None:
        """Add ``names`` to the command names counted under their own label."""
        with self._lock:
            self.command_names = frozenset(self.command_names or ()) | frozenset(names)

    def add_command(self, name: str, status: str = "issued") -> None:
        name = bounded(name, self.command_names)
        with self._lock:
            self.commands[f"{name}:{status}"] += 1
        COMMANDS.labels(name, status).inc()


def enable_dataflow_api(port: int) -> None:
    """Ask Bytewax to serve its dataflow API, whose ``/metrics`` includes twinflow's metrics.

    Bytewax reads these variables when a dataflow starts, so call this before running one.
    """
    disable_created_metrics()  # type: ignore[no-untyped-call]
    os.environ["BYTEWAX_DATAFLOW_API_ENABLED"] = "true"
    os.environ["BYTEWAX_DATAFLOW_API_PORT"] = str(port)


def serve_metrics(port: int, addr: str = "127.0.0.1") -> Any:
    """Serve prometheus_client's registry (twinflow's metrics and the process and Python
    collectors; not Bytewax's) on ``addr:port`` from a daemon thread; returns the server."""
    disable_created_metrics()  # type: ignore[no-untyped-call]  # one family per metric
    server, _thread = start_http_server(port, addr=addr)
    return server
