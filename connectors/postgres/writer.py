"""The PostgreSQL sink's engine: a bounded buffer and one writer thread per partition.

The flow's thread hands encoded rows to :meth:`BatchWriter.add`, which queues them in batches
of about ``batch_rows``; the writer thread commits them, one transaction per batch, when a
batch is full, when its oldest row has waited ``max_latency_s``, or when
:meth:`BatchWriter.flush` asks (a Bytewax snapshot). A batch leaves memory only after its
transaction commits: on a lost connection the writer reconnects with backoff and writes the
same batch again, which the merges' unique keys make harmless even when the lost answer was
a successful COMMIT.

Memory is bounded: when buffered plus in-flight rows reach ``max_buffer_rows``, ``add``
blocks until the writer catches up (backpressure on the flow) instead of growing.

Telemetry takes a fast path: COPY straight into ``twinflow.telemetry``, first thing in the
flush's transaction. If any row of the batch is already stored (a replay after recovery),
the unique key aborts that COPY and the transaction, and the same batch is written again
through the staging table and ``ON CONFLICT DO NOTHING``; the writer keeps using that path
until a batch turns out to be all new. Either way the batch is stored exactly once. (No
savepoint: the whole flush is redone instead, so the common path stays a plain COPY in a
plain transaction.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from twinflow.connectors.postgres import metrics
from twinflow.connectors.postgres.connection import (
    PostgresError,
    PostgresUnavailable,
    connect,
    is_retryable,
    pg_errors,
    psycopg,
    redact,
)
from twinflow.connectors.postgres.migrations import MIGRATIONS_TABLE, load_migrations
from twinflow.connectors.postgres.rows import COPY_HEADER, COPY_TRAILER
from twinflow.connectors.postgres.tables import BY_NAME, TABLES, TELEMETRY
from twinflow.core.backoff import Backoff

log = logging.getLogger("twinflow.postgres")


class PostgresSinkError(PostgresError):
    """The sink cannot store its rows, and retrying will not help (or was given up)."""


#: Connect errors that no retry cures (wrong password, unknown database or role).
_FATAL_CONNECT = ("authentication failed", "does not exist", "no pg_hba.conf entry")


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


#: One piece of work for :meth:`BatchWriter.add`: table name, payload, rows it holds.
#: A telemetry payload is binary COPY tuples (bytes, many rows); any other is one row tuple.
Piece = tuple[str, Any, int]


class _Batch:
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
        self._queue: deque[_Batch] = deque()  # the last one takes rows until batch_rows
        self._pending = 0
        self._inflight = 0
        self._added = 0
        self._committed = 0
        self._flush_waiters = 0
        self._closing = False
        self._error: BaseException | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._optimistic = settings.optimistic_copy
        self._backoff = Backoff(
            settings.retry_initial_s, settings.retry_max_s, jitter=0.5, seed=None
        ).cursor()
        self.retries = 0
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
                while self._pending + self._inflight >= limit:
                    self._cond.wait(1.0)
                    self._raise_if_failed()
                metrics.BACKPRESSURE_SECONDS.inc(time.monotonic() - started)
            if not self._queue or self._queue[-1].total >= self.settings.batch_rows:
                self._queue.append(_Batch())
            batch = self._queue[-1]
            for table, payload, rows in pieces:
                if rows:
                    batch.add(table, payload, rows)
            self._pending += n
            self._added += n
            metrics.BUFFERED_ROWS.inc(n)
            self._cond.notify_all()

    def flush(self) -> None:
        """Block until every row added so far is committed."""
        with self._cond:
            target = self._added
            self._flush_waiters += 1
            self._cond.notify_all()
            try:
                while self._committed < target:
                    self._raise_if_failed()
                    self._cond.wait(1.0)
            finally:
                self._flush_waiters -= 1

    def close(self) -> None:
        """Commit what is buffered, then stop the thread and close the connection."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()
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
                    self._committed += batch.total
                    self._cond.notify_all()
                metrics.BUFFERED_ROWS.dec(batch.total)
        except BaseException as exc:  # handed to the flow's thread, which raises it
            with self._cond:
                self._error = exc
                self._cond.notify_all()
        finally:
            self._drop_connection()

    def _next_batch(self) -> _Batch | None:
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
                    return batch
                if self._closing:
                    return None
                timeout = None
                if head is not None:
                    timeout = max(0.0, head.started + s.max_latency_s - now)
                self._cond.wait(timeout)

    def _commit(self, batch: _Batch) -> None:
        """Write one batch in one transaction; retry passing failures until it commits."""
        s = self.settings
        failing_since: float | None = None
        while True:
            try:
                conn = self._connection()
                started = time.perf_counter()
                written = self._write(conn, batch)
            except Exception as exc:
                self._drop_connection()
                if isinstance(exc, PostgresSinkError):
                    raise
                if not self._retryable(exc):
                    raise self._fatal(exc, batch) from exc
                now = time.monotonic()
                failing_since = failing_since if failing_since is not None else now
                if s.give_up_after_s is not None and now - failing_since >= s.give_up_after_s:
                    raise PostgresSinkError(
                        f"PostgreSQL sink {self.name} gave up after {s.give_up_after_s:g} s of "
                        f"failures writing {batch.total} rows to {redact(s.url)}: {exc}"
                    ) from exc
                self.retries += 1
                metrics.RETRIES.labels(type(exc).__name__).inc()
                delay = self._backoff.next()
                attempt = self._backoff.attempt
                level = logging.WARNING if attempt <= 3 or attempt % 20 == 0 else logging.DEBUG
                log.log(
                    level,
                    "PostgreSQL sink %s: %s; retrying %d rows in %.2f s (attempt %d)",
                    self.name,
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                    batch.total,
                    delay,
                    self._backoff.attempt,
                )
                time.sleep(delay)
                continue
            if failing_since is not None:
                log.warning(
                    "PostgreSQL sink %s: wrote the held %d rows after %d retries (%.1f s)",
                    self.name,
                    batch.total,
                    self._backoff.attempt,
                    time.monotonic() - failing_since,
                )
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

    def _fatal(self, exc: BaseException, batch: _Batch) -> PostgresSinkError:
        return PostgresSinkError(
            f"PostgreSQL sink {self.name} cannot write a batch of {batch.total} rows to "
            f"{redact(self.settings.url)}: {str(exc).strip()}"
        )

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        self._drop_connection()
        s = self.settings
        conn = connect(
            s.url, application_name=s.application_name, connect_timeout_s=s.connect_timeout_s
        )
        try:
            conn.execute("SET temp_buffers = '64MB'")  # before the session's first temp table
            self._check_schema(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _check_schema(self, conn: psycopg.Connection[Any]) -> None:
        """Refuse a database whose schema is missing or behind the repository's migrations."""
        url = redact(self.settings.url)
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (MIGRATIONS_TABLE,)).fetchone()
        if row and row[0]:
            applied = {
                (version, name)
                for version, name in conn.execute(f"SELECT version, name FROM {MIGRATIONS_TABLE}")
            }
            behind = [m.label for m in load_migrations() if (m.version, m.name) not in applied]
            if behind:
                raise PostgresSinkError(
                    f"the database {url} has not applied {', '.join(behind)}: bring the "
                    "schema up to date with `twinflow db migrate` first"
                )
        targets = sorted({m.target for t in TABLES for m in t.merges})
        row = conn.execute(
            "SELECT array_agg(t) FROM unnest(%s::text[]) AS t WHERE to_regclass(t) IS NULL",
            (["twinflow." + t for t in targets],),
        ).fetchone()
        missing = row[0] if row else None
        if missing:
            raise PostgresSinkError(
                f"the database {url} lacks {', '.join(missing)}: create the schema with "
                "`twinflow db migrate` (twinflow.connectors.postgres.migrations) first"
            )

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # a broken connection may fail to close; it is gone either way
                log.debug("closing a broken connection failed", exc_info=True)

    def _write(self, conn: psycopg.Connection[Any], batch: _Batch) -> dict[str, tuple[int, int]]:
        """Write the batch in one transaction (optimistic telemetry COPY first, if on).

        Returns, per target table, (rows inserted or changed, rows already stored).
        """
        if not (self._optimistic and batch.telemetry):
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
        self, conn: psycopg.Connection[Any], batch: _Batch, optimistic: bool
    ) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        with conn.transaction(), conn.cursor() as cur:
            if batch.telemetry:
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
        self, cur: psycopg.Cursor[Any], batch: _Batch, optimistic: bool
    ) -> tuple[int, int]:
        data = COPY_HEADER + b"".join(batch.telemetry) + COPY_TRAILER
        rows = batch.telemetry_rows
        if optimistic:  # first in the transaction: a unique violation aborts nothing else
            with cur.copy(TELEMETRY.copy_sql("twinflow.telemetry")) as cp:
                cp.write(data)
            return rows, 0
        cur.execute(TELEMETRY.create_stage_sql())
        with cur.copy(TELEMETRY.copy_sql()) as cp:
            cp.write(data)
        cur.execute(TELEMETRY.merges[0].sql)
        inserted = max(cur.rowcount, 0)
        if inserted == rows and self.settings.optimistic_copy:
            self._optimistic = True
        return inserted, rows - inserted
