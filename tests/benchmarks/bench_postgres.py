"""Benchmark: rows/s of the PostgreSQL sink against a bare psycopg COPY of the same rows.

Not a test (no assertion on time). Prints rows/s and the ratios; the target is the
idempotent sink at 0.8x or more of bare COPY. In one run, on one hermetic PostgreSQL server
(tests/services/postgres.py) or on ``--url``, each into a fresh database holding the same
``twinflow.telemetry_points`` table (migration 0009: primary key (series, time), BRIN on
time; the series ids of the bare cases made before their clock starts):

- ``bare COPY (pre-encoded)``: the rows as ready binary COPY bytes made before the clock
  starts (in the sink's order), one ``COPY twinflow.telemetry_points ... FROM STDIN (FORMAT
  BINARY)`` and one commit per batch: the database's own ceiling, the strict baseline;
- ``bare COPY (write_row)``: a plain psycopg loop, ``copy.write_row`` per reading;

both bare cases use as many connections as the sink has partitions (``--partitions``, default
2 like ``twinflow run``), one thread each, the frames routed to them as the sink routes them,
so that the ratio compares like with like;
- ``sink``: :class:`PostgresSink` partitions fed the telemetry frames with ``write_batch``
  and closed (every row committed), encoding included; with ``optimistic_copy`` (default)
  and without it (always through the staging table);
- ``sink, replay``: the same frames written again into the full table (every row a
  duplicate, as after a recovery), then the table is checked to hold each row once.

The cases run interleaved, ``--repeat`` times; the headline ratio is of the medians (the best
run of each is printed beside it, for reference only).

With ``--server-cpu``, instead: the server's CPU time per row of the telemetry COPY, the same
rows into two layouts, one connection, interleaved ``--repeat`` times, each into a fresh
database: the compact series key of migration 0009 (``telemetry_points``) against the text
key ``(twin_id, signal, time)`` it replaced (a database migrated up to 0008), each COPY in its
key's order as the sink sends it, and the size of the table with its indexes. The CPU is the
backend's own (user + system, ``/proc/<pg_backend_pid>/stat``), so the hermetic server must
run on this machine; medians (min-max) and their ratio.

Run: ``.venv/bin/python tests/benchmarks/bench_postgres.py [--rows 1000000] [--repeat 3]``;
``... --server-cpu --rows 5000000 --twins 200 --frame 10``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.services.postgres import Postgres
from twinflow.connectors.postgres import PostgresSink, migrate
from twinflow.connectors.postgres.connection import psycopg
from twinflow.connectors.postgres.copy_columns import gather, series_tuples
from twinflow.connectors.postgres.migrations import MIGRATIONS_DIR
from twinflow.connectors.postgres.rows import COPY_HEADER, COPY_TRAILER
from twinflow.connectors.postgres.series import SeriesIds
from twinflow.connectors.postgres.tables import SERIES_COPY_SQL
from twinflow.core.records import TelemetryFrame

SIGNALS = (
    "power_kw",
    "wind_speed_ms",
    "rotor_rpm",
    "generator_temp_c",
    "pitch_deg",
    "yaw_deg",
    "current_a",
    "voltage_v",
)
COPY_SQL = (
    "COPY twinflow.telemetry (twin_id, signal, time, value, quality) FROM STDIN (FORMAT BINARY)"
)


def make_frames(rows: int, twins: int, per_frame: int, seed: int = 7) -> list[TelemetryFrame]:
    """Frames of ``per_frame`` timestamps x 8 signals, round-robin over twins, 1 Hz."""
    rng = np.random.default_rng(seed)
    per_twin_times = rows // (twins * len(SIGNALS))
    frames = []
    t0 = 1.7e9
    for start in range(0, per_twin_times, per_frame):
        times = t0 + np.arange(start, min(start + per_frame, per_twin_times), dtype=np.float64)
        for twin in range(twins):
            signals = {s: rng.normal(100.0, 10.0, len(times)) for s in SIGNALS}
            frames.append(TelemetryFrame(f"turbine-{twin:03d}", "wind_turbine", times, signals))
    return frames


def batches(frames: list[TelemetryFrame], batch_rows: int) -> list[list[TelemetryFrame]]:
    out: list[list[TelemetryFrame]] = [[]]
    n = 0
    for f in frames:
        if n >= batch_rows:
            out.append([])
            n = 0
        out[-1].append(f)
        n += f.readings
    return out


def routed(frames: list[TelemetryFrame], connections: int) -> list[list[TelemetryFrame]]:
    """The frames split over ``connections`` as the sink splits them over its partitions."""
    sink = PostgresSink("postgresql://unused/none", partitions=connections)
    out: list[list[TelemetryFrame]] = [[] for _ in range(connections)]
    for f in frames:
        out[sink.part_fn(f.twin_id) % connections].append(f)
    return out


def concurrently(work: list[Callable[[], None]]) -> float:
    """Seconds until every one of ``work`` has run, each on its own thread."""
    with ThreadPoolExecutor(len(work)) as pool:
        started = time.perf_counter()
        for future in [pool.submit(w) for w in work]:
            future.result()
        return time.perf_counter() - started


def series_ids(url: str, frames: list[TelemetryFrame]) -> SeriesIds:
    """Every (twin, signal) pair of ``frames`` given its series id (before a clock starts)."""
    ids = SeriesIds()
    pairs = sorted({(f.twin_id, s) for f in frames for s in f.signals})
    with psycopg.connect(url, autocommit=True) as conn:
        ids.ensure(conn, pairs)
    return ids


def series_payload(frames: list[TelemetryFrame], ids: SeriesIds) -> bytes:
    """One batch's binary COPY for ``telemetry_points``, as the sink builds it."""
    got = gather(frames)
    assert got is not None
    return COPY_HEADER + series_tuples(got, ids.ids(got.pairs)) + COPY_TRAILER


def bare_pre_encoded(
    url: str, frames: list[TelemetryFrame], batch_rows: int, connections: int
) -> float:
    ids = series_ids(url, frames)
    parts = [
        [series_payload(b, ids) for b in batches(share, batch_rows)]
        for share in routed(frames, connections)
    ]
    conns = [psycopg.connect(url, autocommit=True) for _ in parts]

    def write(conn: psycopg.Connection, blobs: list[bytes]) -> Callable[[], None]:
        def go() -> None:
            for blob in blobs:
                with conn.transaction(), conn.cursor() as cur, cur.copy(SERIES_COPY_SQL) as cp:
                    cp.write(blob)

        return go

    try:
        return concurrently([write(c, b) for c, b in zip(conns, parts, strict=True)])
    finally:
        for c in conns:
            c.close()


def bare_write_row(
    url: str, frames: list[TelemetryFrame], batch_rows: int, connections: int
) -> float:
    from twinflow.core.times import utc

    ids = series_ids(url, frames)
    shares = routed(frames, connections)
    conns = [psycopg.connect(url, autocommit=True) for _ in shares]

    def write(conn: psycopg.Connection, share: list[TelemetryFrame]) -> Callable[[], None]:
        def go() -> None:
            for b in batches(share, batch_rows):
                with conn.transaction(), conn.cursor() as cur, cur.copy(SERIES_COPY_SQL) as cp:
                    cp.set_types(["int4", "timestamptz", "float8", "int2"])
                    for f in b:
                        stamps = [utc(t) for t in f.times.tolist()]
                        series = ids.ids([(f.twin_id, s) for s in f.signals]).tolist()
                        for sid, values in zip(series, f.signals.values(), strict=True):
                            for ts, v in zip(stamps, values.tolist(), strict=True):
                                cp.write_row((sid, ts, v, 0))

        return go

    try:
        return concurrently([write(c, s) for c, s in zip(conns, shares, strict=True)])
    finally:
        for c in conns:
            c.close()


def through_sink(
    url: str,
    frames: list[TelemetryFrame],
    batch_rows: int,
    partitions: int,
    optimistic: bool,
    items_per_call: int = 16,
) -> float:
    sink = PostgresSink(
        url,
        partitions=partitions,
        batch_rows=batch_rows,
        max_buffer_rows=4 * batch_rows,
        max_latency_s=5.0,
        optimistic_copy=optimistic,
    )
    parts = [sink.build_part("bench", p, None) for p in sink.list_parts()]
    routed: list[list[TelemetryFrame]] = [[] for _ in parts]
    for f in frames:
        routed[sink.part_fn(f.twin_id) % len(parts)].append(f)
    started = time.perf_counter()
    # Bytewax hands each partition small batches in turn, from one worker thread: so here.
    cursors = [0] * len(parts)
    while any(c < len(r) for c, r in zip(cursors, routed, strict=True)):
        for i, part in enumerate(parts):
            chunk = routed[i][cursors[i] : cursors[i] + items_per_call]
            if chunk:
                part.write_batch(chunk)
                cursors[i] += len(chunk)
    for part in parts:
        part.close()
    return time.perf_counter() - started


def count_rows(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT (twin_id, signal, time)) FROM twinflow.telemetry"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def backend_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a server process (a backend) of this machine."""
    import os

    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu(url: str, payloads: list[bytes], sql: str) -> float:
    """The backend's CPU seconds to COPY ``payloads`` (one transaction each) with ``sql``."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        pid = int(row[0])
        before = backend_cpu_s(pid)
        for blob in payloads:
            with conn.transaction(), conn.cursor() as cur, cur.copy(sql) as copy:
                copy.write(blob)
        return backend_cpu_s(pid) - before


def compare_layouts(args: argparse.Namespace, fresh: Callable[..., str], rows: int) -> None:
    """``--server-cpu``: the compact series key against the text key it replaced (a database
    migrated up to 0008), both COPYs in the key's order as the sink sends them."""
    from twinflow.connectors.postgres.copy_columns import telemetry_copy

    frames = make_frames(args.rows, args.twins, args.frame)
    parts = batches(frames, args.batch_rows)
    text = [COPY_HEADER + telemetry_copy(b)[0] + COPY_TRAILER for b in parts]
    spent: dict[str, list[float]] = {"series key (0009)": [], "text key (0001-0008)": []}
    sizes: dict[str, list[float]] = {name: [] for name in spent}
    for r in range(args.repeat):
        for name in list(spent) if r % 2 == 0 else list(spent)[::-1]:
            if name.startswith("series"):
                url = fresh()
                ids = series_ids(url, frames)
                payloads, sql = [series_payload(b, ids) for b in parts], SERIES_COPY_SQL
            else:
                url = fresh(upto=8)
                payloads, sql = text, COPY_SQL
            spent[name].append(server_cpu(url, payloads, sql) * 1e6 / rows)
            stored, distinct = count_rows(url)
            assert stored == distinct == rows, (name, stored, distinct, rows)
            sizes[name].append(relation_mib(url))
    print(f"server (backend) CPU per telemetry row, µs, median (min-max) of {args.repeat}:")
    for name, per in spent.items():
        size = statistics.median(sizes[name])
        print(
            f"  {name:22} {statistics.median(per):.3f} ({min(per):.3f}-{max(per):.3f}); "
            f"table + indexes {size:,.0f} MiB"
        )
    first, second = (statistics.median(v) for v in spent.values())
    print(f"series key / text key: {first / second:.3f}; load average {_load()}")


def relation_mib(url: str) -> float:
    """MiB of the telemetry storage table with its indexes (and the series table)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT sum(pg_total_relation_size(c)) FROM unnest(ARRAY["
            "to_regclass('twinflow.telemetry_points'), to_regclass('twinflow.series'), "
            "(SELECT oid FROM pg_class WHERE oid = to_regclass('twinflow.telemetry') "
            "AND relkind = 'r')]) AS c WHERE c IS NOT NULL"
        ).fetchone()
    return float(row[0] or 0) / 2**20 if row else 0.0


def _load() -> str:
    import os

    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--twins", type=int, default=50)
    p.add_argument("--frame", type=int, default=60, help="timestamps per frame (default 60)")
    p.add_argument("--batch-rows", type=int, default=50_000)
    p.add_argument(
        "--partitions", type=int, default=2, help="sink partitions = bare connections (2)"
    )
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--url", help="an existing server's admin URL (default: start a hermetic one)")
    p.add_argument("--server-cpu", action="store_true", help="server CPU per row by COPY order")
    args = p.parse_args()

    frames = make_frames(args.rows, args.twins, args.frame)
    rows = sum(f.readings for f in frames)
    server = None if args.url else Postgres(settings={"shared_buffers": "256MB"}).start()
    admin = args.url or server.url  # type: ignore[union-attr]
    print(
        f"PostgreSQL sink benchmark: {rows:,} telemetry rows, {len(frames):,} frames of "
        f"{args.frame} timestamps x {len(SIGNALS)} signals, {args.twins} twins, "
        f"batches of {args.batch_rows:,} rows; sink partitions = bare connections = "
        f"{args.partitions}"
    )
    counter = 0

    def fresh(upto: int | None = None) -> str:
        """A new database, migrated to the end or only up to migration ``upto``."""
        nonlocal counter
        counter += 1
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS bench_{counter} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE bench_{counter}")
        url = admin.rsplit("/", 1)[0] + f"/bench_{counter}"
        if upto is None:
            migrate(url)
        else:
            folder = Path(tempfile.mkdtemp(prefix="bench-migrations-"))
            for path in MIGRATIONS_DIR.glob("*.sql"):
                if int(path.name[:4]) <= upto:
                    shutil.copy(path, folder / path.name)
            migrate(url, directory=folder)
            shutil.rmtree(folder)
        return url

    if args.server_cpu:
        try:
            compare_layouts(args, fresh, rows)
        finally:
            if server is not None:
                server.close()
        return
    runs: dict[str, list[float]] = {}
    b, n = args.batch_rows, args.partitions
    cases: dict[str, Callable[[str], float]] = {
        "bare COPY (pre-encoded)": lambda u: bare_pre_encoded(u, frames, b, n),
        "bare COPY (write_row)": lambda u: bare_write_row(u, frames, b, n),
        "sink (optimistic COPY)": lambda u: through_sink(u, frames, b, n, True),
        "sink (staging always)": lambda u: through_sink(u, frames, b, n, False),
    }
    try:
        for _ in range(args.repeat):
            for name, run in cases.items():
                url = fresh()
                seconds = run(url)
                stored, distinct = count_rows(url)
                assert stored == distinct == rows, (name, stored, distinct, rows)
                runs.setdefault(name, []).append(seconds)
            url = fresh()
            through_sink(url, frames, b, n, True)
            seconds = through_sink(url, frames, b, n, True)
            stored, distinct = count_rows(url)
            assert stored == distinct == rows, ("replay", stored, distinct, rows)
            runs.setdefault("sink, replay (all duplicates)", []).append(seconds)
    finally:
        if server is not None:
            server.close()

    best = {name: rows / min(s) for name, s in runs.items()}
    median = {name: rows / statistics.median(s) for name, s in runs.items()}
    strict = "bare COPY (pre-encoded)"
    print(
        f"{'':32} {'median rows/s':>14} {'ratio':>6} {'min-max rows/s':>22} {'best ratio':>10}"
        f"   (of {args.repeat} runs, interleaved)"
    )
    for name, times in runs.items():
        spread = f"{rows / max(times):,.0f}-{rows / min(times):,.0f}"
        print(
            f"{name:32} {median[name]:14,.0f} {median[name] / median[strict]:5.2f}x "
            f"{spread:>22} {best[name] / best[strict]:9.2f}x"
        )
    headline = median["sink (optimistic COPY)"] / median[strict]
    print(
        f"sink / bare COPY over {n} connection(s) each = {headline:.2f}, median of "
        f"{args.repeat} (target >= 0.80: {'met' if headline >= 0.8 else 'NOT met'}); "
        "every run stored each row exactly once"
    )


if __name__ == "__main__":
    main()
