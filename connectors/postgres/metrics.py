"""Prometheus metrics of the PostgreSQL sink (process-wide, in the default registry).

Bytewax's dataflow API serves them on ``/metrics`` with the rest of twinflow's metrics.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ROWS_WRITTEN = Counter(
    "twinflow_pg_rows_written",
    "Rows the PostgreSQL sink inserted or updated, per table",
    ["table"],
)
ROWS_DUPLICATE = Counter(
    "twinflow_pg_rows_duplicate",
    "Rows the PostgreSQL sink found already stored (a replay after recovery), per table",
    ["table"],
)
RETRIES = Counter(
    "twinflow_pg_retries",
    "Flushes of the PostgreSQL sink retried after a passing failure, per error class",
    ["error"],
)
FLUSH_SECONDS = Histogram(
    "twinflow_pg_flush_seconds",
    "Time of one committed flush of the PostgreSQL sink (all tables, one transaction)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
BUFFERED_ROWS = Gauge(
    "twinflow_pg_buffered_rows",
    "Rows held by the PostgreSQL sink that are not committed yet",
)
BACKPRESSURE_SECONDS = Counter(
    "twinflow_pg_backpressure_seconds",
    "Time the flow spent blocked because the PostgreSQL sink's buffer was full",
)
POOL_CONNECTIONS = Gauge(
    "twinflow_pg_pool_connections",
    "PostgreSQL connections the sinks' shared pools hold open (busy and idle)",
)
POOL_WAIT_SECONDS = Counter(
    "twinflow_pg_pool_wait_seconds",
    "Time the PostgreSQL sinks' writers waited for a connection of their full pool",
)
