"""The PostgreSQL sink's engine: a bounded buffer and one writer thread per partition.

The flow's thread hands encoded rows to :meth:`BatchWriter.add`, which queues them in batches
of about ``batch_rows``; the writer thread commits them, one transaction per batch, when a
batch is full, when its oldest row has waited ``max_latency_s``, or when
:meth:`BatchWriter.flush` asks (a Bytewax snapshot). A batch leaves memory only after its
transaction commits: on a lost connection the writer reconnects with backoff and writes the
same batch again, which the merges' unique keys make harmless even when the lost answer was
a successful COMMIT.

Memory is bounded: when buffered plus in-flight rows reach ``max_buffer_rows``, ``add``
blocks until the writer catches up (backpressure on the flow) instead of growing. Below that
bound a database that is away costs the flow nothing: rows wait in the buffer, the writer
retries, and :class:`~twinflow.connectors.outage.OutputHealth` logs the outage once and keeps
the ``twinflow_output_*`` metrics (``postgres:<name>``). :meth:`BatchWriter.flush` takes a
timeout, and :meth:`BatchWriter.held` hands out the rows not committed yet (a snapshot's
state, see :mod:`twinflow.connectors.postgres.sink`).

Telemetry takes a fast path: COPY straight into its table, first thing in the flush's
transaction: ``twinflow.telemetry_points`` with series ids in the rows on a database with the
compact layout (:mod:`~twinflow.connectors.postgres.series`; the batch's new (twin, signal)
pairs get their ids in a transaction of their own just before), ``twinflow.telemetry`` on one
without it. If any row of the batch is already stored (a replay after recovery),
the unique key aborts that COPY and the transaction, and the same batch is written again
through a staging table (of series tuples on a database keyed by series) and ``ON CONFLICT
DO NOTHING``; the writer keeps using that path
until a batch turns out to be all new. Either way the batch is stored exactly once. (No
savepoint: the whole flush is redone instead, so the common path stays a plain COPY in a
plain transaction.)
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from twinflow.connectors.outage import OutputHealth
from twinflow.connectors.postgres import metrics
from twinflow.connectors.postgres.batches import Batch, Piece, WriterSettings
from twinflow.connectors.postgres.connection import (
    PostgresError,
    PostgresUnavailable,
    is_retryable,
    pg_errors,
    psycopg,
    redact,
)
from twinflow.connectors.postgres.pool import leave, pool_for
from twinflow.connectors.postgres.rows import COPY_HEADER, COPY_TRAILER
from twinflow.connectors.postgres.schema_check import schema_problem
from twinflow.connectors.postgres.series import SeriesIds, series_ids_for, series_layout
from twinflow.connectors.postgres.tables import (
    BY_NAME,
    SERIES_COPY_SQL,
    SERIES_STAGE,
    SERIES_TELEMETRY_MERGES,
    TELEMETRY,
)
from twinflow.core.backoff import Backoff

log = logging.getLogger("twinflow.postgres")

#: A statement of the writer running this long is cancelled, and its batch written again.
STATEMENT_TIMEOUT_MS = 120_000
#: A wait for room in the buffer this long is logged when it ends.
LONG_WAIT_S = 5.0


class PostgresSinkError(PostgresError):
    """The sink cannot store its rows, and retrying will not help (or was given up)."""


#: Connect errors that no retry cures (wrong password, unknown database or role).
_FATAL_CONNECT = ("authentication failed", "does not exist", "no pg_hba.conf entry")


def _prepare(conn: psycopg.Connection[Any], url: str) -> None:
    """Session settings and the schema check, once per new connection of the pool."""
    conn.execute("SET temp_buffers = '64MB'")  # before the session's first temp table
    conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")  # then retried
    problem = schema_problem(conn, redact(url))
    if problem:
        raise PostgresSinkError(problem)


class BatchWriter:
    """Buffer rows and commit them from a background thread; see the module docstring."""

    def __init__(self, settings: WriterSettings, name: str = "postgres") -> None:
        if settings.max_buffer_rows < settings.batch_rows:
            raise PostgresSinkError(
                f"max_buffer_rows ({settings.max_buffer_rows}) must be at least batch_rows "
                f"({settings.batch_rows})"
            )
        self.settings = settings
        self.name = name
        self._cond = threading.Condition()
        self._queue: deque[Batch] = deque()  # the last one takes rows until batch_rows
        self._pending = 0
        self._inflight = 0
        self._current: Batch | None = None  # the batch the writer thread is committing
        self._added = 0
        self._committed = 0
        self._flush_waiters = 0
        self._closing = False
        self._abandoned = False  # close gave up waiting: the writer thread stops retrying
        self._error: BaseException | None = None
        self._pool = pool_for(
            settings.url,
            settings.pool_size,
            functools.partial(_prepare, url=settings.url),
            connect_timeout_s=settings.connect_timeout_s,
        )
        self._optimistic = settings.optimistic_copy
        self._layout_known = False
        self._series: SeriesIds | None = None  # the compact layout's ids (migration 0009)
        self._backoff = Backoff(
            settings.retry_initial_s, settings.retry_max_s, jitter=0.5, seed=None
        ).cursor()
        self.retries = 0
        self.health = OutputHealth(f"postgres:{name}", log, unit="rows")
        self._thread = threading.Thread(target=self._run, name=f"twinflow-pg-{name}", daemon=True)
        self._thread.start()

    # -- the flow's side ---------------------------------------------------------------

    @property
    def buffered_rows(self) -> int:
        """Rows added and not committed yet (pending plus in flight)."""
        with self._cond:
            return self._pending + self._inflight

    def add(self, pieces: Sequence[Piece]) -> None:
        """Buffer rows; block while the buffer is full (backpressure)."""
        n = sum(p[2] for p in pieces)
        if n == 0:
            return
        with self._cond:
            self._raise_if_failed()
            if self._closing:
                raise PostgresSinkError(f"PostgreSQL sink {self.name} is closed")
            limit = self.settings.max_buffer_rows
            if self._pending + self._inflight >= limit:
                started = time.monotonic()
                if not self.health.is_up:  # a full buffer of a fast flow is routine: say
                    log.warning(  # so only when the database is away
                        "PostgreSQL sink %s: %d rows wait for the database, the bound of this "
                        "output; the flow waits until they are committed",
                        self.name,
                        self._pending + self._inflight,
                    )
                while self._pending + self._inflight >= limit:
                    self._cond.wait(1.0)
                    self._raise_if_failed()
                waited = time.monotonic() - started
                metrics.BACKPRESSURE_SECONDS.inc(waited)
                self.health.blocked(waited)
                if waited >= LONG_WAIT_S:
                    log.warning("PostgreSQL sink %s: the flow waited %.1f s", self.name, waited)
            if not self._queue or self._queue[-1].total >= self.settings.batch_rows:
                self._queue.append(Batch())
            batch = self._queue[-1]
            for table, payload, rows in pieces:
                if rows:
                    batch.add(table, payload, rows)
            self._pending += n
            self._added += n
            self.health.set_backlog(self._pending + self._inflight)
            metrics.BUFFERED_ROWS.inc(n)
            self._cond.notify_all()

    def flush(self, timeout_s: float | None = None) -> bool:
        """Commit what is buffered now; wait until every row added so far is committed, or
        at most ``timeout_s`` (None: no limit). True if all of them are."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            target = self._added
            self._flush_waiters += 1
            self._cond.notify_all()
            try:
                while self._committed < target:
                    self._raise_if_failed()
                    left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                    if left <= 0 or (deadline is not None and not self.health.is_up):
                        return False  # out of time, or the database is away: no use waiting
                    self._cond.wait(left)
                return True
            finally:
                self._flush_waiters -= 1

    def held(self) -> list[Piece]:
        """The rows not committed yet (the batch being written and those waiting), as
        pieces that :meth:`add` takes again."""
        with self._cond:
            batches = ([self._current] if self._current is not None else []) + list(self._queue)
        pieces: list[Piece] = []
        for batch in batches:
            pieces.extend(batch.held())
            pieces.extend((table, row, 1) for table, rows in batch.rows.items() for row in rows)
        return pieces

    def close(self) -> None:
        """Commit what is buffered, then stop the thread and close the connection.

        A database that is still away after ``close_wait_s`` is given up: the rows left are
        logged (a run resumed from recovery writes them again from its snapshot).
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(self.settings.close_wait_s)
        if self._thread.is_alive():
            self._abandoned = True
            log.error(
                "PostgreSQL sink %s: closing with %d rows not committed (%s unreachable); a "
                "run resumed from --recovery-dir writes them again, without recovery they are "
                "lost",
                self.name,
                self.buffered_rows,
                redact(self.settings.url),
            )
            return
        with self._cond:
            self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            if isinstance(self._error, PostgresSinkError):
                raise self._error
            raise PostgresSinkError(
                f"PostgreSQL sink {self.name} stopped: {self._error}"
            ) from self._error

    # -- the writer thread -------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                self._commit(batch)
                with self._cond:
                    self._inflight = 0
                    self._current = None
                    self._committed += batch.total
                    self.health.set_backlog(self._pending)
                    self._cond.notify_all()
                metrics.BUFFERED_ROWS.dec(batch.total)
        except BaseException as exc:  # handed to the flow's thread, which raises it
            with self._cond:
                self._error = exc
                self._cond.notify_all()
        finally:
            leave(self._pool)

    def _next_batch(self) -> Batch | None:
        """Wait until a batch is due and take it out of the buffer (None: closed, empty)."""
        s = self.settings
        with self._cond:
            while True:
                head = self._queue[0] if self._queue else None
                now = time.monotonic()
                due = head is not None and (
                    head.total >= s.batch_rows
                    or len(self._queue) > 1
                    or self._closing
                    or self._flush_waiters > 0
                    or now - head.started >= s.max_latency_s
                )
                if due:
                    batch = self._queue.popleft()
                    self._pending -= batch.total
                    self._inflight = batch.total
                    self._current = batch
                    return batch
                if self._closing:
                    return None
                timeout = None
                if head is not None:
                    timeout = max(0.0, head.started + s.max_latency_s - now)
                self._cond.wait(timeout)

    def _commit(self, batch: Batch) -> None:
        """Write one batch in one transaction; retry passing failures until it commits."""
        s = self.settings
        failing_since: float | None = None
        while True:
            try:
                stop = self._give_up_waiting
                with self._pool.connection(s.application_name, stop) as conn:
                    started = time.perf_counter()
                    written = self._write(conn, batch)
            except Exception as exc:
                if isinstance(exc, PostgresSinkError):
                    raise
                if not self._retryable(exc):
                    raise self._fatal(exc, batch) from exc
                now = time.monotonic()
                failing_since = failing_since if failing_since is not None else now
                if self._abandoned:
                    raise PostgresSinkError(f"PostgreSQL sink {self.name} closed") from exc
                if s.give_up_after_s is not None and now - failing_since >= s.give_up_after_s:
                    raise PostgresSinkError(
                        f"PostgreSQL sink {self.name} gave up after {s.give_up_after_s:g} s of "
                        f"failures writing {batch.total} rows to {redact(s.url)}: {exc}"
                    ) from exc
                self.retries += 1
                metrics.RETRIES.labels(type(exc).__name__).inc()
                self.health.retried()
                delay = self._backoff.next()
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                if self.health.went_down(f"{reason or type(exc).__name__} ({redact(s.url)})"):
                    with self._cond:
                        self._cond.notify_all()  # a snapshot waiting for this batch stops
                else:
                    log.debug(
                        "PostgreSQL sink %s: %s; retrying %d rows in %.2f s (attempt %d)",
                        self.name,
                        reason or type(exc).__name__,
                        batch.total,
                        delay,
                        self._backoff.attempt,
                    )
                time.sleep(delay)
                continue
            if failing_since is not None:
                self.health.came_back()
            self._backoff.reset()
            metrics.FLUSH_SECONDS.observe(time.perf_counter() - started)
            for target, (new, duplicate) in written.items():
                if new:
                    metrics.ROWS_WRITTEN.labels(target).inc(new)
                if duplicate:
                    metrics.ROWS_DUPLICATE.labels(target).inc(duplicate)
            return

    @staticmethod
    def _retryable(exc: BaseException) -> bool:
        if isinstance(exc, PostgresUnavailable):
            text = str(exc)
            return not any(marker in text for marker in _FATAL_CONNECT)
        return is_retryable(exc)

    def _fatal(self, exc: BaseException, batch: Batch) -> PostgresSinkError:
        return PostgresSinkError(
            f"PostgreSQL sink {self.name} cannot write a batch of {batch.total} rows to "
            f"{redact(self.settings.url)}: {str(exc).strip()}"
        )

    def _give_up_waiting(self) -> bool:
        """Whether a wait for a free connection should end (close gave up on this writer)."""
        return self._abandoned

    def _write(self, conn: psycopg.Connection[Any], batch: Batch) -> dict[str, tuple[int, int]]:
        """Write the batch in one transaction (optimistic telemetry COPY first, if on).

        Returns, per target table, (rows inserted or changed, rows already stored).
        """
        if not self._layout_known:
            oid = series_layout(conn)
            self._series = series_ids_for(self.settings.url, oid) if oid is not None else None
            self._layout_known = True
        optimistic = self._optimistic and batch.has_telemetry
        if self._series is not None and batch.has_telemetry:
            if batch.legacy:  # text tuples of an older snapshot: they go through the stage
                optimistic = False
            else:
                self._series.ensure(conn, batch.pairs())  # committed before the batch
        if not optimistic:
            return self._write_once(conn, batch, optimistic=False)
        try:
            return self._write_once(conn, batch, optimistic=True)
        except pg_errors.UniqueViolation:
            # Rows of this batch are stored already (a replay): the transaction is rolled
            # back whole, so write the batch again through the staging tables.
            log.info(
                "PostgreSQL sink %s: telemetry already stored (a replay); writing through the "
                "staging table until the batches are new again",
                self.name,
            )
            self._optimistic = False
            return self._write_once(conn, batch, optimistic=False)

    def _write_once(
        self, conn: psycopg.Connection[Any], batch: Batch, optimistic: bool
    ) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        with conn.transaction(), conn.cursor() as cur:
            if batch.has_telemetry:
                out[TELEMETRY.name] = self._write_telemetry(cur, batch, optimistic)
            for name, rows in batch.rows.items():
                table = BY_NAME[name]
                cur.execute(table.create_stage_sql())  # once per session; then a no-op
                with cur.copy(table.copy_sql()) as copy:
                    copy.set_types(table.types)
                    for row in rows:
                        copy.write_row(row)
                for merge in table.merges:
                    cur.execute(merge.sql)
                    changed = max(cur.rowcount, 0)
                    duplicate = len(rows) - changed if merge.primary else 0
                    out[merge.target] = (changed, max(duplicate, 0))
        return out

    def _write_telemetry(
        self, cur: psycopg.Cursor[Any], batch: Batch, optimistic: bool
    ) -> tuple[int, int]:
        series = self._series
        if optimistic:  # first in the transaction: a unique violation aborts nothing else
            if series is not None:
                tuples, rows = batch.series_payload(series)  # built here, off the flow's thread
                sql = SERIES_COPY_SQL
            else:
                tuples, rows = batch.text_payload()
                sql = TELEMETRY.copy_sql("twinflow.telemetry")
            with cur.copy(sql) as cp:
                cp.write(COPY_HEADER + tuples + COPY_TRAILER)
            return rows, 0
        if series is not None and not batch.legacy:  # ids in the rows: no join needed
            stage = SERIES_STAGE
            tuples, rows = batch.series_payload(series)
            merges = SERIES_STAGE.merges
        else:  # text rows: an older snapshot's, or a database without the series key
            stage = TELEMETRY
            tuples, rows = batch.text_payload()
            merges = SERIES_TELEMETRY_MERGES if series is not None else TELEMETRY.merges
        cur.execute(stage.create_stage_sql())
        with cur.copy(stage.copy_sql()) as cp:
            cp.write(COPY_HEADER + tuples + COPY_TRAILER)
        for merge in merges:
            cur.execute(merge.sql)
        inserted = max(cur.rowcount, 0)  # the last merge stores the readings
        if inserted == rows and self.settings.optimistic_copy:
            self._optimistic = True
        return inserted, rows - inserted
