"""Prometheus counters of the Modbus connector, and per-object counts for one run.

The counters live in prometheus_client's default registry, so Bytewax's dataflow API (or
:func:`twinflow.flows.metrics.serve_metrics`) exports them next to the flow's own metrics:

- ``twinflow_modbus_polls_total{result}``: one per poll of one twin; ``result`` is ``ok``,
  ``exception`` (the device answered with a Modbus exception), ``timeout`` (no answer) or
  ``disconnected`` (no connection, refused or lost);
- ``twinflow_modbus_reconnects_total``: connections re-established after a loss;
- ``twinflow_modbus_command_results_total{status}``: ``succeeded``, ``failed``, ``rejected``.

:class:`ModbusStats` keeps the same counts for one source or sink object (thread-safe), so a
run summary or a test can read them without the process-wide totals of other runs.
"""

from __future__ import annotations

import threading
from collections import Counter as _Counter

from prometheus_client import Counter

#: Poll results, from best to worst (a poll with several failures reports the worst).
POLL_RESULTS = ("ok", "exception", "timeout", "disconnected")
COMMAND_RESULTS = ("succeeded", "failed", "rejected")

POLLS = Counter("twinflow_modbus_polls", "Polls of one twin's register map, by result", ["result"])
RECONNECTS = Counter(
    "twinflow_modbus_reconnects", "Modbus TCP connections re-established after a loss"
)
COMMANDS = Counter(
    "twinflow_modbus_command_results", "Commands handled by the Modbus sink, by result", ["status"]
)
# Children made up front: every label shows (as 0) before it happens, and a poll skips the
# label lookup.
_POLLS = {r: POLLS.labels(r) for r in POLL_RESULTS}
_COMMANDS = {s: COMMANDS.labels(s) for s in COMMAND_RESULTS}


class ModbusStats:
    """Counts of one source or sink: ``poll:<result>``, ``reconnects``, ``rows``, ``frames``,
    ``command:<status>``. Safe to update from the polling thread and Bytewax workers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: _Counter[str] = _Counter()

    def poll(self, result: str) -> None:
        with self._lock:
            self._counts[f"poll:{result}"] += 1
        _POLLS[result].inc()

    def reconnect(self) -> None:
        with self._lock:
            self._counts["reconnects"] += 1
        RECONNECTS.inc()

    def command(self, status: str) -> None:
        with self._lock:
            self._counts[f"command:{status}"] += 1
        _COMMANDS[status].inc()

    def add(self, key: str, n: int = 1) -> None:
        """Count something local only (no Prometheus metric), e.g. rows and frames."""
        with self._lock:
            self._counts[key] += n

    def snapshot(self) -> dict[str, int]:
        """A copy of the counts so far."""
        with self._lock:
            return dict(self._counts)

    def __getitem__(self, key: str) -> int:
        with self._lock:
            return self._counts[key]


__all__ = ["COMMANDS", "COMMAND_RESULTS", "POLLS", "POLL_RESULTS", "RECONNECTS", "ModbusStats"]
