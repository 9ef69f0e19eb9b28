"""What a PostgreSQL sink partition writes: its settings, the pieces it takes, its batches."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from twinflow.connectors.postgres.copy_columns import (
    Columns,
    Readings,
    gather,
    series_tuples,
    text_tuples,
)
from twinflow.connectors.postgres.series import SeriesIds
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
#: thread; its rows counted as its readings, NaN included) or binary COPY tuples of the text
#: layout (bytes, many rows: what an earlier twinflow's snapshot held); any other payload is
#: one row tuple.
Piece = tuple[str, Any, int]


class Batch:
    """Rows for one transaction, in arrival order per table; ``started``: its first row's.

    ``total`` counts rows as they were added (a frame by its readings), so that the writer's
    buffer bound and its committed count agree; the payload methods say how many rows the
    COPY really holds (NaN readings are not stored). Payloads are built once, on the writer
    thread: a retried write sends the same bytes.
    """

    __slots__ = (
        "_columns",
        "_gathered",
        "_series",
        "_text",
        "frames",
        "legacy",
        "legacy_rows",
        "rows",
        "started",
        "total",
    )

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.legacy: list[tuple[bytes, int]] = []  # text-layout tuples and their rows
        self.legacy_rows = 0
        self.frames: list[Readings] = []  # encoded when the batch is written
        self.rows: dict[str, list[tuple[Any, ...]]] = {}
        self.total = 0
        self._gathered = False
        self._columns: Columns | None = None
        self._text: tuple[bytes, int] | None = None
        self._series: tuple[bytes, int] | None = None

    def add(self, table: str, payload: Any, n: int) -> None:
        if table == TELEMETRY.name:
            if isinstance(payload, bytes):
                self.legacy.append((payload, n))
                self.legacy_rows += n
            else:
                self.frames.append(payload)
            self._gathered, self._text, self._series = False, None, None
        else:
            self.rows.setdefault(table, []).append(payload)
        self.total += n

    @property
    def has_telemetry(self) -> bool:
        return bool(self.legacy or self.frames)

    def columns(self) -> Columns | None:
        """The frames' readings as columns (None: no reading with a value)."""
        if not self._gathered:
            self._columns, self._gathered = gather(self.frames), True
        return self._columns

    def pairs(self) -> list[tuple[str, str]]:
        """The (twin_id, signal) pairs of the frames' readings."""
        cols = self.columns()
        return cols.pairs if cols is not None else []

    def text_payload(self) -> tuple[bytes, int]:
        """All the batch's telemetry as text-layout COPY tuples, and their row count."""
        if self._text is None:
            cols = self.columns()
            data = text_tuples(cols) if cols is not None else b""
            legacy = b"".join(b for b, _ in self.legacy)
            self._text = (legacy + data, self.legacy_rows + (len(cols) if cols else 0))
        return self._text

    def series_payload(self, ids: SeriesIds) -> tuple[bytes, int]:
        """The frames' readings as series tuples (their pairs given ids by ``ids`` first), and
        their row count; the legacy tuples are not in it."""
        if self._series is None:
            cols = self.columns()
            if cols is None:
                self._series = (b"", 0)
            else:
                self._series = (series_tuples(cols, ids.ids(cols.pairs)), len(cols))
        return self._series

    def held(self) -> list[Piece]:
        """The telemetry as pieces that :meth:`Batch.add` takes again (frames as they are)."""
        out: list[Piece] = [(TELEMETRY.name, data, n) for data, n in self.legacy]
        out.extend((TELEMETRY.name, f, f.readings) for f in self.frames)
        return out


__all__ = ["Batch", "Piece", "WriterSettings"]
