"""The columnar telemetry COPY (copy_columns) against the per-frame reference (rows.frame_rows).

The same rows, byte for byte per row, on mixed batches: NaN readings (left out), NUL and lone
surrogates (cleaned), non-ASCII and long names, empty signal names, per-signal qualities,
waveform chunks; and the same table contents once a real PostgreSQL server stored both.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.services.postgres import Postgres
from twinflow.connectors.postgres import PostgresSink, migrate
from twinflow.connectors.postgres.connection import psycopg
from twinflow.connectors.postgres.copy_columns import telemetry_copy
from twinflow.connectors.postgres.rows import (
    COPY_HEADER,
    COPY_TRAILER,
    frame_rows,
    waveform_rows,
)
from twinflow.core.records import Quality, TelemetryFrame, WaveformFrame

pytestmark = pytest.mark.timeout(60)

E0 = 1_714_564_800.0
NAMES = ("M1", "turbine-007", "température", "泵-3", "a\x00b", "\udcff", "x" * 300, "")


def parse(data: bytes) -> list[tuple[bytes, ...]]:
    """The tuples of binary COPY data (no header), each as its fields' bytes, sorted."""
    out, i = [], 0
    while i < len(data):
        (fields,) = struct.unpack_from(">h", data, i)
        i += 2
        row = []
        for _ in range(fields):
            (n,) = struct.unpack_from(">i", data, i)
            i += 4
            row.append(data[i : i + n])
            i += n
        out.append(tuple(row))
    return sorted(out)


def reference(items: list[Any]) -> bytes:
    """The row-by-row path: one block per frame."""
    return b"".join(
        (frame_rows(f) if isinstance(f, TelemetryFrame) else waveform_rows(f))[0] for f in items
    )


def mixed_batch() -> list[Any]:
    rng = np.random.default_rng(3)
    items: list[Any] = []
    for k in range(40):
        n = 1 + k % 12
        times = E0 + 10.0 * k + np.arange(n, dtype=np.float64) + 0.123456789
        signals = {s: rng.normal(50.0, 10.0, n) for s in NAMES[k % 4 : k % 4 + 4]}
        first = next(iter(signals))
        signals[first][:: max(1, n // 2)] = np.nan  # dropouts
        if k % 7 == 0:
            signals[first][:] = np.nan  # a signal with no reading at all
        quality = {first: Quality.UNCERTAIN} if k % 2 else {}
        items.append(TelemetryFrame(NAMES[k % len(NAMES)], "motor", times, signals, quality))
        if k % 5 == 0:
            samples = rng.normal(0.0, 1.0, 64)
            samples[3] = np.nan
            items.append(
                WaveformFrame(NAMES[(k + 1) % len(NAMES)], "motor", "vib", E0 + k, 1000.0, samples)
            )
    return items


def test_columnar_rows_equal_the_row_by_row_rows_on_a_mixed_batch() -> None:
    items = mixed_batch()
    data, n = telemetry_copy(items)
    expected = parse(reference(items))
    assert n == len(expected) > 0
    assert parse(data) == expected


def test_nothing_to_store_is_empty() -> None:
    nan = np.full(3, np.nan)
    frame = TelemetryFrame("M1", "motor", E0 + np.arange(3.0), {"a": nan})
    assert telemetry_copy([]) == (b"", 0)
    assert telemetry_copy([frame]) == (b"", 0)


values = st.floats(allow_nan=True, allow_infinity=True, width=64)


@st.composite
def frames(draw: st.DrawFn) -> TelemetryFrame:
    n = draw(st.integers(1, 6))
    names = draw(st.lists(st.text(max_size=12), min_size=1, max_size=4, unique=True))
    start = draw(st.floats(0.0, 4e9, allow_nan=False))
    signals = {s: np.array(draw(st.lists(values, min_size=n, max_size=n))) for s in names}
    quality = {names[0]: draw(st.sampled_from(list(Quality)))}
    twin = draw(st.text(max_size=20))
    return TelemetryFrame(twin, "t", start + np.arange(n, dtype=np.float64), signals, quality)


@settings(max_examples=60, deadline=None)
@given(st.lists(frames(), max_size=8))
def test_columnar_rows_equal_the_row_by_row_rows_for_any_frames(items: list[Any]) -> None:
    data, n = telemetry_copy(items)
    expected = parse(reference(items))
    assert n == len(expected)
    assert parse(data) == expected


# -- stored by a real server --------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[Postgres]:
    with Postgres() as pg:
        yield pg


def _database(server: Postgres, request: pytest.FixtureRequest, suffix: str) -> str:
    name = "c_" + re.sub(r"\W+", "_", request.node.name).lower()[:40] + suffix
    url = server.create_database(name)
    migrate(url)
    return url


def _stored(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT twin_id, signal, time, value, quality FROM twinflow.telemetry "
            "ORDER BY twin_id, signal, time"
        ).fetchall()


@pytest.mark.services
def test_the_sink_stores_the_same_table_as_the_row_by_row_copy(
    server: Postgres, request: pytest.FixtureRequest
) -> None:
    items = mixed_batch()
    by_rows = _database(server, request, "_rows")
    with psycopg.connect(by_rows, autocommit=True) as conn, conn.cursor() as cur:
        sql = "COPY twinflow.telemetry (twin_id, signal, time, value, quality) FROM STDIN "
        with cur.copy(sql + "(FORMAT BINARY)") as copy:
            copy.write(COPY_HEADER + reference(items) + COPY_TRAILER)
    by_columns = _database(server, request, "_cols")
    part = PostgresSink(by_columns, waveforms=True, batch_rows=200).build_part("c", "pg-0", None)
    for i in range(0, len(items), 5):  # several batches, as a flow hands them over
        part.write_batch(items[i : i + 5])
    assert part.snapshot() is None
    part.close()
    expected = _stored(by_rows)
    assert len(expected) == len(parse(reference(items)))
    assert _stored(by_columns) == expected
