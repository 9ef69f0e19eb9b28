"""The flow's Parquet outputs in a cluster are written by the worker that holds each twin.

``twinflow replay`` of five recorded compressors (1 h each, one file per twin), with two
workers: the telemetry, window and twin-state part files of partition ``p<j>`` hold only
twins whose state is on the worker Bytewax places ``p<j>`` on (``placement_keys``), in one
process of two workers, and across two processes of one worker each, where each ``--out``
also holds only its own worker's partition. With one worker the outputs are unchanged: one
partition ``p0`` holds every twin. No services: the processes talk over loopback only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl

from tests.flows.test_compressor_replay import EXAMPLE, START, compressor
from tests.services.ports import free_port
from twinflow.connectors.files_parts import parse
from twinflow.connectors.placement_keys import key_worker, part_workers

ROOT = Path(__file__).absolute().parents[2]
TWINS = [f"comp-{i}" for i in range(1, 6)]  # 2 workers: comp-4 and comp-5 on worker 0
SECONDS = 3600
OUTPUTS = ("telemetry", "windows", "twin_states")


def setup(folder: Path) -> tuple[Path, list[Path]]:
    """The deployment file and one recording per twin."""
    dep = folder / "plant.yaml"
    lines = ["version: 1", "site: plant1", f"models: [{EXAMPLE / 'models'}]"]
    lines += ["flow: {window_s: 300, lateness_s: 30}", "twins:"]
    lines += [f"  - {{id: {t}, type: compressor, protocol: replay}}" for t in TWINS]
    dep.write_text("\n".join(lines) + "\n")
    start = np.datetime64(START.replace(tzinfo=None), "ms")
    times = start + np.arange(SECONDS) * np.timedelta64(1, "s")
    files = []
    for i, twin in enumerate(TWINS):
        frame = pl.DataFrame({"time": times, "twin_id": [twin] * SECONDS, **compressor(i, SECONDS)})
        path = folder / f"{twin}.csv"
        frame.with_columns(pl.col("time").dt.strftime("%Y-%m-%d %H:%M:%S")).write_csv(path)
        files.append(path)
    return dep, files


def replay(dep: Path, files: list[Path], out: Path, *cluster: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "twinflow.flows.cli", "replay", str(dep), *map(str, files)]
    argv += ["--out", str(out), "--tz", "UTC", "--quiet", *cluster]
    log = open(f"{out}.log", "wb")  # noqa: SIM115 - closed with the process
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=log)


def done(*procs: tuple[subprocess.Popen[bytes], Path]) -> None:
    for proc, out in procs:
        try:
            rc = proc.wait(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert rc == 0, Path(f"{out}.log").read_text(errors="replace")[-3000:]


def twins_by_partition(out: Path) -> dict[str, set[str]]:
    """``{"<output>/<partition>": twins in its part files}`` under one ``--out``."""
    found: dict[str, set[str]] = {}
    for name in OUTPUTS:
        for path in sorted((out / name).glob("*/part-*.parquet")):
            part = parse(path)
            assert part is not None, path
            twins = set(pl.read_parquet(path, columns=["twin_id"])["twin_id"].to_list())
            found.setdefault(f"{name}/{part.partition}", set()).update(twins)
    return found


def placed(found: dict[str, set[str]], workers: int, partitions: int) -> dict[str, set[int]]:
    """The workers of the twins in each ``<output>/<partition>``, and that partition's own."""
    where = part_workers([f"p{i}" for i in range(partitions)], workers)
    out: dict[str, set[int]] = {}
    for key, twins in found.items():
        out[key] = {key_worker(t, workers) for t in twins} | {where[key.split("/")[1]]}
    return out


def test_one_process_two_workers_writes_each_twin_on_its_worker(tmp_path: Path) -> None:
    dep, files = setup(tmp_path)
    one, two = tmp_path / "w1", tmp_path / "w2"
    done((replay(dep, files, one), one), (replay(dep, files, two, "-w", "2"), two))
    single = twins_by_partition(one)
    assert single == {f"{name}/p0": set(TWINS) for name in OUTPUTS}  # unchanged: one partition
    found = twins_by_partition(two)
    assert set(found) == {f"{name}/p{j}" for name in OUTPUTS for j in (0, 1)}
    assert all(len(w) == 1 for w in placed(found, 2, 2).values()), placed(found, 2, 2)
    for name in OUTPUTS:
        assert found[f"{name}/p0"] | found[f"{name}/p1"] == set(TWINS)


def test_two_processes_each_write_their_own_twins(tmp_path: Path) -> None:
    dep, files = setup(tmp_path)
    addresses = f"127.0.0.1:{free_port()};127.0.0.1:{free_port()}"
    outs = [tmp_path / "p0", tmp_path / "p1"]
    done(*((replay(dep, files, o, "-i", str(i), "-a", addresses), o) for i, o in enumerate(outs)))
    for i, out in enumerate(outs):
        found = twins_by_partition(out)
        assert set(found) == {f"{name}/p{i}" for name in OUTPUTS}, found
        assert all(w == {i} for w in placed(found, 2, 2).values()), placed(found, 2, 2)
        assert all(t == {t for t in TWINS if key_worker(t, 2) == i} for t in found.values())
