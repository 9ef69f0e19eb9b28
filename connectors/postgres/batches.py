"""What a PostgreSQL sink partition writes: its settings, the pieces it takes, its batches."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from twinflow.connectors.postgres.copy_columns import Readings, telemetry_copy
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
    pool_size: int = 4
    close_wait_s: float = 30.0


#: One piece of work for :meth:`BatchWriter.add`: table name, payload, rows it holds.
#: A telemetry payload is either a telemetry or waveform frame (encoded later, on the writer
#: thread; its rows counted as its readings, NaN included) or binary COPY tuples (bytes, many
#: rows: what :meth:`Batch.held` hands out); any other payload is one row tuple.
Piece = tuple[str, Any, int]


class Batch:
    """Rows for one transaction, in arrival order per table; ``started``: its first row's.

    ``total`` counts rows as they were added (a frame by its readings), so that the writer's
    buffer bound and its committed count agree; :meth:`telemetry_payload` says how many rows
    the COPY really holds (NaN readings are not stored).
    """

    __slots__ = ("_encoded", "_encoded_rows", "frames", "rows", "started", "telemetry", "total")

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.telemetry: list[bytes] = []  # encoded tuples (from a snapshot's state)
        self._encoded_rows = 0  # rows those hold
        self.frames: list[Readings] = []  # encoded when the batch is written
        self.rows: dict[str, list[tuple[Any, ...]]] = {}
        self.total = 0
        self._encoded: tuple[bytes, int] | None = None

    def add(self, table: str, payload: Any, n: int) -> None:
        if table == TELEMETRY.name:
            if isinstance(payload, bytes):
                self.telemetry.append(payload)
                self._encoded_rows += n
            else:
                self.frames.append(payload)
            self._encoded = None
        else:
            self.rows.setdefault(table, []).append(payload)
        self.total += n

    @property
    def has_telemetry(self) -> bool:
        return bool(self.telemetry or self.frames)

    def telemetry_payload(self) -> tuple[bytes, int]:
        """The batch's telemetry as binary COPY tuples and their row count (built once, on
        the first call: a retried write sends the same bytes)."""
        if self._encoded is None:
            data, n = telemetry_copy(self.frames)
            self._encoded = (b"".join(self.telemetry) + data, self._encoded_rows + n)
        return self._encoded


__all__ = ["Batch", "Piece", "WriterSettings"]
