"""Series ids of the compact telemetry layout (migration ``0009_series_key``).

Readings are stored in ``twinflow.telemetry_points`` keyed by ``(series, time)``, where a
series is one (twin_id, signal) pair of ``twinflow.series``. The sink's writers COPY rows with
the ids already in them, so before a batch is encoded its pairs must have ids:
:meth:`SeriesIds.ensure` looks up the ones this process has not seen, inserting the new
pairs, in a transaction of its own that commits before the batch's. An id is never changed or
reused, so ids read once are cached for the life of the process, shared by every writer of
the same database; a rolled-back batch leaves no id behind that the cache could hold.

A database migrated while TimescaleDB could be used keeps the text-keyed hypertable
``twinflow.telemetry`` (:func:`series_layout` tells which the database has).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from twinflow.connectors.postgres.connection import psycopg
from twinflow.connectors.postgres.rows import clean_text

#: The table the compact layout stores readings in.
POINTS_TABLE = "twinflow.telemetry_points"

_INSERT = (
    "INSERT INTO twinflow.series (twin_id, signal) "
    "SELECT * FROM unnest(%s::text[], %s::text[]) AS p "
    "ORDER BY 1, 2 ON CONFLICT (twin_id, signal) DO NOTHING"
)
_SELECT = (
    "SELECT s.series, s.twin_id, s.signal FROM twinflow.series AS s "
    "JOIN unnest(%s::text[], %s::text[]) AS p (twin_id, signal) USING (twin_id, signal)"
)


def series_layout(conn: psycopg.Connection[Any]) -> int | None:
    """The object id of ``twinflow.series`` when the database stores telemetry in the compact
    layout (``telemetry_points``), else None. The id tells a database (or schema) made again
    under the same URL from the one whose ids a cache holds."""
    row = conn.execute(
        "SELECT to_regclass('twinflow.series')::oid, to_regclass(%s) IS NOT NULL",
        (POINTS_TABLE,),
    ).fetchone()
    if row is None or row[0] is None or not row[1]:
        return None
    return int(row[0])


class SeriesIds:
    """(twin_id, signal) -> series id for one database, filled as pairs are first written."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        #: round trips made to look up or create ids (for tests and benchmarks)
        self.lookups = 0

    def __len__(self) -> int:
        return len(self._ids)

    def ensure(self, conn: psycopg.Connection[Any], pairs: Sequence[tuple[str, str]]) -> None:
        """Give every pair an id: the ones not cached are created if new and read back, in a
        transaction of their own (committed before any row uses them)."""
        with self._lock:
            missing = [p for p in pairs if p not in self._ids]
        if not missing:
            return
        stored = {(clean_text(t), clean_text(s)): (t, s) for t, s in missing}
        twins = [t for t, _ in stored]
        signals = [s for _, s in stored]
        with conn.transaction():
            conn.execute(_INSERT, (twins, signals))
            found = conn.execute(_SELECT, (twins, signals)).fetchall()
        self.lookups += 1
        with self._lock:
            for series, twin, signal in found:
                self._ids[stored[(twin, signal)]] = int(series)
            # pairs whose clean text matches another's (a NUL removed) share its id
            for t, s in missing:
                if (t, s) not in self._ids:
                    self._ids[(t, s)] = self._ids[stored[(clean_text(t), clean_text(s))]]

    def ids(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """The ids of ``pairs`` (all of them given ids by :meth:`ensure` before)."""
        with self._lock:
            return np.fromiter((self._ids[p] for p in pairs), dtype=np.int64, count=len(pairs))


_CACHES: dict[tuple[str, int], SeriesIds] = {}
_CACHES_LOCK = threading.Lock()


def series_ids_for(url: str, table_oid: int) -> SeriesIds:
    """The process's id cache of the database at ``url`` whose ``twinflow.series`` has the
    object id ``table_oid`` (from :func:`series_layout`), shared by its writers."""
    with _CACHES_LOCK:
        cache = _CACHES.get((url, table_oid))
        if cache is None:
            cache = _CACHES[(url, table_oid)] = SeriesIds()
        return cache


__all__ = ["POINTS_TABLE", "SeriesIds", "series_ids_for", "series_layout"]
