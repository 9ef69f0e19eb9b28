"""What a PostgreSQL sink partition writes: its settings, the pieces it takes, its batches."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from twinflow.connectors.postgres.tables import TELEMETRY


@dataclass(frozen=True)
class WriterSettings:
    """How one partition writes: where, in what batches, how it retries."""

    url: str
    batch_rows: int = 50_000
    max_latency_s: float = 1.0
    max_buffer_rows: int = 200_000
    optimistic_copy: bool = True
    retry_initial_s: float = 0.1
    retry_max_s: float = 5.0
    give_up_after_s: float | None = None
    connect_timeout_s: float = 5.0
    application_name: str = "twinflow-sink"
    close_wait_s: float = 30.0


#: One piece of work for :meth:`BatchWriter.add`: table name, payload, rows it holds.
#: A telemetry payload is binary COPY tuples (bytes, many rows); any other is one row tuple.
Piece = tuple[str, Any, int]


class Batch:
    """Rows for one transaction, in arrival order per table; ``started``: its first row's."""

    __slots__ = ("rows", "started", "telemetry", "telemetry_rows", "total")

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.telemetry: list[bytes] = []
        self.telemetry_rows = 0
        self.rows: dict[str, list[tuple[Any, ...]]] = {}
        self.total = 0

    def add(self, table: str, payload: Any, n: int) -> None:
        if table == TELEMETRY.name:
            self.telemetry.append(payload)
            self.telemetry_rows += n
        else:
            self.rows.setdefault(table, []).append(payload)
        self.total += n


__all__ = ["Batch", "Piece", "WriterSettings"]
