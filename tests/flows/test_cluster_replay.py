"""``twinflow replay`` as two processes of one Bytewax cluster on loopback, against one process.

Three compressors' recordings, one file each (a replay partition is a file), the third with a
cooler fault. Each process of the cluster reads the files Bytewax assigns it and writes the
output partitions it owns into its own ``--out``; together the two folders must hold exactly
the window features and alerts that one process writes. No services: the processes talk to
each other over loopback TCP only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tests.flows.test_compressor_replay import EXAMPLE, START, compressor
from tests.services.ports import free_port
from twinflow.connectors.files import read_jsonl, read_parquet_dir

ROOT = Path(__file__).absolute().parents[2]
SECONDS = 3 * 3600
FAULT_AT = 3600


def recordings(folder: Path) -> list[Path]:
    times = np.datetime64(START.replace(tzinfo=None), "ms") + np.arange(SECONDS) * np.timedelta64(
        1, "s"
    )
    files = []
    for i, twin in enumerate(("comp-1", "comp-2", "comp-3")):
        values = compressor(11 + i, SECONDS, FAULT_AT if twin == "comp-3" else None)
        frame = pl.DataFrame({"time": times, "twin_id": [twin] * SECONDS, **values})
        path = folder / f"{twin}.csv"
        frame.with_columns(pl.col("time").dt.strftime("%Y-%m-%d %H:%M:%S")).write_csv(
            path, float_precision=2
        )
        files.append(path)
    return files


def replay(files: list[Path], out: Path, *cluster: str) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable,
        "-c",
        "import sys; from twinflow.flows.cli import main; sys.exit(main())",
        "replay",
        str(EXAMPLE / "recorded.yaml"),
        *map(str, files),
        "--out",
        str(out),
        "--tz",
        "UTC",
        "--quiet",
        *cluster,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = open(f"{out}.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=log)


def done(proc: subprocess.Popen[bytes], out: Path) -> None:
    try:
        rc = proc.wait(timeout=180)
    finally:
        if proc.poll() is None:  # a process that waits for ever fails the test, and ends
            proc.kill()
            proc.wait()
    assert rc == 0, Path(f"{out}.log").read_text(errors="replace")[-3000:]


def windows(*outs: Path) -> list[tuple[Any, ...]]:
    frames = [read_parquet_dir(o / "windows") for o in outs]
    rows = pl.concat([f for f in frames if not f.is_empty()], how="diagonal_relaxed")
    cols = sorted(rows.columns)  # every column: features, scores, RUL, health
    return sorted(rows.select(cols).rows(), key=repr)


def alerts(*outs: Path) -> list[tuple[Any, ...]]:
    found = [a for o in outs for a in read_jsonl(o / "alerts.jsonl")]
    return sorted((a["twin_id"], a["rule"], a["state"], a["time"]) for a in found)


def test_two_replay_processes_write_exactly_what_one_process_writes(tmp_path: Path) -> None:
    files = recordings(tmp_path)
    single = tmp_path / "single"
    done(replay(files, single), single)

    addresses = f"127.0.0.1:{free_port()};127.0.0.1:{free_port()}"
    outs = [tmp_path / "p0", tmp_path / "p1"]
    procs = [replay(files, out, "-i", str(i), "-a", addresses) for i, out in enumerate(outs)]
    for proc, out in zip(procs, outs, strict=True):
        done(proc, out)

    reference = windows(single)
    assert len(reference) > 50
    assert alerts(single), "the fouled cooler should have raised alerts"
    assert windows(*outs) == reference
    assert alerts(*outs) == alerts(single)
    # each process replayed a share of the files (one file each at least)
    rows = [
        int(Path(f"{o}.log").read_text().split("replayed ")[1].split(" rows")[0].replace(",", ""))
        for o in outs
    ]
    assert all(r >= SECONDS for r in rows) and sum(rows) == 3 * SECONDS, rows
