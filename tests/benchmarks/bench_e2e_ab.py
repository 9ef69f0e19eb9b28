"""Benchmark, end to end, A against B: ``twinflow run`` + PostgreSQL with two versions of the code.

Not a test; prints figures and a ratio. Where ``bench_e2e.py`` compares the flow with bare
reads of Kafka, this compares the flow with itself: side A runs the package as it was at
``--base`` (a commit), side B the same commit with ``--overlay`` paths taken from ``--from``
(a commit, default ``HEAD``; e.g. ``connectors/postgres``: one change measured alone, without
the other work since).
Each side is a view of the package built from ``git archive`` under a temporary folder and
put first on the children's ``PYTHONPATH`` (with ``PYTHONSAFEPATH=1``, so the repository's
own folders do not shadow it; see ``bench_e2e.child_path``).

The plant is recorded once (``bench_e2e.record``), then the sides run interleaved over
``--rounds`` rounds (the order turns each round), each into a fresh migrated database on one
hermetic server (with the schema of that side's own ``infra/migrations``), each timed less its
own run over an empty topic. Prints 1 Hz readings/s,
median (min-max), peak RSS, the telemetry rows stored, and B / A of the medians; and the CPU
time of each ``twinflow run`` child (user + system, its rusage at exit) per 1 Hz reading, less
that of its run over the empty topic, with B / A of the medians: on a machine shared with other
work wall time stretches with the load, CPU time far less, so that ratio is the steadier one.
Also the PostgreSQL server's CPU time during each run with data (the postmaster and all its
processes, live or reaped, from ``/proc``) per 1 Hz reading: the server shares the cores with
the flow, so its cost per row matters as much as the flow's.

Run: ``.venv/bin/python tests/benchmarks/bench_e2e_ab.py --base 30ea3f1 --overlay
connectors/postgres [--twins 100] [--hours 3] [--message-s 10] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).absolute().parents[2]))
sys.path.insert(0, str(Path(__file__).absolute().parent))

import bench_e2e as e2e

from tests.services.kafka import KafkaBroker, create_topic, unique_topic
from tests.services.postgres import Postgres
from twinflow.connectors.postgres import migrate

ROOT = e2e.ROOT
#: Folders of the repository and where they sit in the installed package.
PACKAGE = {"connectors": "connectors", "flows": "flows", "models": "models"}
PACKAGE |= {"operators": "operators", "migrations": "infra/migrations"}


def extract(commit: str, into: Path, paths: list[str] | None = None) -> None:
    """``git archive`` of ``commit`` (only ``paths``, if given) unpacked into ``into``."""
    data = subprocess.run(
        ["git", "archive", commit, *(paths or [])], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, filter="data")


def view(tree: Path, into: Path) -> Path:
    """A folder holding a ``twinflow`` package made of symlinks into ``tree``."""
    pkg = into / "twinflow"
    pkg.mkdir(parents=True)
    for entry in (tree / "twinflow").iterdir():
        (pkg / entry.name).symlink_to(entry)
    for name, folder in PACKAGE.items():
        (pkg / name).symlink_to(tree / folder)
    return into


def server_cpu_s(postmaster: int) -> float:
    """CPU seconds (user + system) of a PostgreSQL server so far: the postmaster, its live
    children (backends, WAL writer, checkpointer, ...) and the children it has reaped."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    spent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # gone meanwhile
        fields = text[text.rindex(")") + 2 :].split()
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)
        spent[pid] = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    total, stack = 0, [postmaster]
    while stack:
        pid = stack.pop()
        total += spent.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total / tick


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="commit of side A (and B's starting point)")
    ap.add_argument("--overlay", nargs="+", required=True, help="paths B takes from --from")
    ap.add_argument("--from", dest="source", default="HEAD", help="commit of the overlay")
    ap.add_argument("--twins", type=int, default=100)
    ap.add_argument("--hours", type=float, default=3.0)
    ap.add_argument("--message-s", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        views: dict[str, Path] = {}
        for side in ("A", "B"):
            tree = folder / f"tree-{side}"
            extract(args.base, tree)
            if side == "B":
                extract(args.source, tree, args.overlay)
            views[side] = view(tree, folder / f"view-{side}")
        names = {"A": f"A: {args.base}", "B": f"B: + {' '.join(args.overlay)} of {args.source}"}
        os.environ["PYTHONSAFEPATH"] = "1"
        with KafkaBroker() as broker, Postgres(settings={"shared_buffers": "256MB"}) as pg:
            postmaster = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
            rec = e2e.record(broker.bootstrap, args.twins, args.hours * 3600, args.message_s)
            empty = create_topic(broker.bootstrap, unique_topic("bench-ab-empty"), e2e.PARTITIONS)
            print(
                f"{args.twins} twins, {args.hours:g} h at 1 Hz, {args.message_s} s of data per "
                f"message: {rec.messages:,} messages, {rec.readings:,} 1 Hz readings; "
                f"{os.cpu_count()} cores, {args.rounds} rounds",
                flush=True,
            )
            count = [0]

            def database(side: str) -> str:
                """A fresh database with the schema of ``side``'s own migration files."""
                count[0] += 1
                url = pg.create_database(f"bench_ab_{count[0]}")
                migrate(url, directory=folder / f"tree-{side}" / "infra" / "migrations")
                return url

            net: dict[str, list[float]] = {s: [] for s in views}
            rss: dict[str, list[float]] = {s: [] for s in views}
            rows: dict[str, list[int]] = {s: [] for s in views}
            cpu: dict[str, list[float]] = {s: [] for s in views}
            server: dict[str, list[float]] = {s: [] for s in views}
            for r in range(args.rounds):
                for side in ("A", "B") if r % 2 == 0 else ("B", "A"):
                    os.environ["PYTHONPATH"] = str(views[side])
                    idle, db = database(side), database(side)
                    lines = rec.twin_lines
                    empty_cfg = e2e.deployment(folder, broker.bootstrap, empty, lines, idle)
                    full_cfg = e2e.deployment(folder, broker.bootstrap, rec.topic, lines, db)
                    spent: list[float] = []
                    fixed, _ = e2e.run_twinflow(empty_cfg, folder, cpu=spent)
                    before = server_cpu_s(postmaster)
                    whole, peak = e2e.run_twinflow(full_cfg, folder, cpu=spent)
                    time.sleep(0.5)  # the run's backends end once it has closed them
                    server[side].append(server_cpu_s(postmaster) - before)
                    net[side].append(whole - fixed)
                    cpu[side].append(spent[1] - spent[0])
                    rss[side].append(peak)
                    rows[side].append(e2e.telemetry_rows(db))
                    print(f"  round {r + 1}, {side}: {whole:.1f} s (empty topic {fixed:.1f} s), "
                          f"CPU {spent[1]:.1f} s (empty topic {spent[0]:.1f} s), server "
                          f"{server[side][-1]:.1f} s; load average "
                          f"{e2e.load_average()}", flush=True)  # fmt: skip
    print("twinflow run + PostgreSQL, 1 Hz readings/s, median (min-max):")
    med = {}
    for side in views:
        rates = [rec.readings / x for x in net[side]]
        med[side] = statistics.median(rates)
        print(
            f"  {names[side]:40} {med[side]:,.0f} ({min(rates):,.0f}-{max(rates):,.0f}); peak RSS "
            f"{statistics.median(rss[side]):.0f} MiB; telemetry rows {sorted(set(rows[side]))}"
        )
    print(f"B / A: {med['B'] / med['A']:.2f} (ratio of medians, {args.rounds} interleaved rounds)")
    print("CPU per 1 Hz reading (the child's user + system time less its empty-topic run's), µs:")
    per = {s: [x * 1e6 / rec.readings for x in cpu[s]] for s in views}
    for side in views:
        print(f"  {names[side]:40} {statistics.median(per[side]):.3f} "
              f"({min(per[side]):.3f}-{max(per[side]):.3f})")  # fmt: skip
    ratio = statistics.median(per["B"]) / statistics.median(per["A"])
    print(f"CPU per reading B / A: {ratio:.3f} (ratio of medians)")
    print(
        "PostgreSQL server CPU (all its processes, during the run with data) per 1 Hz reading, µs:"
    )
    srv = {s: [x * 1e6 / rec.readings for x in server[s]] for s in views}
    for side in views:
        print(f"  {names[side]:40} {statistics.median(srv[side]):.3f} "
              f"({min(srv[side]):.3f}-{max(srv[side]):.3f})")  # fmt: skip
    ratio = statistics.median(srv["B"]) / statistics.median(srv["A"])
    print(f"server CPU per reading B / A: {ratio:.3f} (ratio of medians); load average at the "
          f"end {e2e.load_average()}")  # fmt: skip


if __name__ == "__main__":
    main()
