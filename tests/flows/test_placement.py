"""``twinflow.connectors.placement_keys`` against Bytewax's real placement.

A probe flow keys a few hundred keys, holds them in a stateful step and writes them to sinks
whose ``part_fn`` is :meth:`Placement.part_index`; every worker reports (through a dynamic
sink's ``build``) which thread it is. The test then requires, for 1 to 4 workers in one
process and for 2 processes of 1 and 2 workers on loopback:

- each key's state on worker ``key_worker(key)``;
- each sink partition built on worker ``part_workers(parts)[part]``;
- each key's items written by the very thread that holds its state (nothing crosses).

SipHash-1-3 itself is checked against CPython's own (``PYTHONHASHSEED=0``: zero keys).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)
from bytewax.testing import TestingSource, cluster_main

from tests.services.ports import free_port
from twinflow.connectors.placement_keys import (
    Placement,
    key_worker,
    part_workers,
    place,
    siphash13,
)

ROOT = Path(__file__).absolute().parents[2]

#: Twin-like ids, odd lengths (the hash's 8-byte words and tail), non-ASCII and long ones.
KEYS = [f"pump-{i:03d}" for i in range(200)] + [
    "",
    "a",
    "fan-7",
    "Kühlpumpe-ß",
    "ventilateur-é-" * 5,
    "x" * 8,
    "y" * 16,
]
#: Partition counts per workers: as many, a multiple, one more, and over 10 (names sort
#: ``p0, p1, p10, p11, p2, ...``, not by number).
COUNTS = (1, 2, 3, 12)


class _Observed:
    """What one process's threads saw: worker index, keys held, partitions built, writes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.worker: dict[int, int] = {}
        self.count = 0
        self.state: dict[str, int] = {}
        self.built: dict[str, int] = {}
        self.wrote: dict[str, int] = {}

    def dump(self, proc: int) -> dict[str, Any]:
        def name(ident: int) -> str:
            return f"{proc}/{ident}"

        return {
            "worker": {name(t): w for t, w in self.worker.items()},
            "count": self.count,
            "state": {k: name(t) for k, t in self.state.items()},
            "built": {p: name(t) for p, t in self.built.items()},
            "wrote": {k: name(t) for k, t in self.wrote.items()},
        }


class _Who(DynamicSink[Any]):
    def __init__(self, seen: _Observed) -> None:
        self.seen = seen

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Nothing:
        with self.seen.lock:
            self.seen.worker[threading.get_ident()] = worker_index
            self.seen.count = worker_count
        return _Nothing()


class _Nothing(StatelessSinkPartition[Any]):
    def write_batch(self, items: list[Any]) -> None:
        pass


class _Placed(FixedPartitionedSink[Any, None]):
    def __init__(self, seen: _Observed, n: int, workers: int) -> None:
        self.seen, self.n, self.placement = seen, n, Placement(workers)

    def list_parts(self) -> list[str]:
        return [f"n{self.n}-p{i}" for i in range(self.n)]

    def part_fn(self, item_key: str) -> int:
        return self.placement.part_index(item_key, self.n)

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Record:
        with self.seen.lock:
            self.seen.built[for_part] = threading.get_ident()
        return _Record(self.seen, self.n)


class _Record(StatefulSinkPartition[Any, None]):
    def __init__(self, seen: _Observed, n: int) -> None:
        self.seen, self.n = seen, n

    def write_batch(self, values: list[Any]) -> None:
        with self.seen.lock:
            for key in values:
                self.seen.wrote[f"n{self.n}:{key}"] = threading.get_ident()

    def snapshot(self) -> None:
        return None


def probe(workers: int) -> tuple[Dataflow, _Observed]:
    """The probe flow for a cluster of ``workers`` workers in all."""
    seen = _Observed()

    def hold(state: None, key: str) -> tuple[None, str]:
        with seen.lock:
            seen.state[key] = threading.get_ident()
        return None, key

    flow = Dataflow("placement-probe")
    keyed = op.key_on("key", op.input("in", flow, TestingSource(KEYS)), lambda k: k)
    held = op.stateful_map("hold", keyed, hold)
    op.output("who", held, _Who(seen))
    for n in sorted({workers * c for c in COUNTS[:3]} | {COUNTS[3]}):
        op.output(f"placed_{n}", held, _Placed(seen, n, workers))
    return flow, seen


def check(seen: dict[str, Any], workers: int) -> None:
    """Bytewax's placement in ``seen`` is what :mod:`placement_keys` predicts."""
    worker = seen["worker"]
    assert len(set(worker.values())) == workers == seen["count"]
    assert set(seen["state"]) == set(KEYS)
    wrong = {k: worker[t] for k, t in seen["state"].items() if worker[t] != key_worker(k, workers)}
    assert not wrong, f"state of {len(wrong)} key(s) not on key_worker: {list(wrong.items())[:5]}"
    by_n: dict[int, list[str]] = {}
    for part in seen["built"]:
        by_n.setdefault(int(part.split("-")[0][1:]), []).append(part)
    for n, parts in by_n.items():
        assert len(parts) == n
        expected = part_workers(parts, workers)
        assert {p: worker[t] for p, t in seen["built"].items() if p in expected} == expected
        for key in KEYS:  # written where its state is, and on a partition of its worker
            assert seen["wrote"][f"n{n}:{key}"] == seen["state"][key], (n, key)
    assert len(seen["wrote"]) == len(by_n) * len(KEYS)


def test_siphash13_is_cpythons() -> None:
    """CPython 3.11+ hashes bytes with SipHash-1-3; PYTHONHASHSEED=0 makes its keys zero
    (it hashes empty bytes to 0 without SipHash: left out)."""
    samples = [k.encode() for k in KEYS[195:] if k] + [bytes(range(n)) for n in range(1, 20)]
    code = "import sys, json; print(json.dumps([hash(bytes(b)) for b in json.load(sys.stdin)]))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps([list(s) for s in samples]),
        env={**os.environ, "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    theirs = [h % 2**64 for h in json.loads(out)]
    assert sys.hash_info.algorithm == "siphash13"
    assert [siphash13(s) for s in samples] == theirs


@pytest.mark.parametrize("workers", [1, 2, 3, 4])
def test_one_process_places_as_predicted(workers: int) -> None:
    flow, seen = probe(workers)
    cluster_main(flow, [], 0, worker_count_per_proc=workers)  # type: ignore[no-untyped-call]
    check(seen.dump(0), workers)


def _processes(per_process: int, tmp: Path) -> Iterator[dict[str, Any]]:
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    procs = []
    for pid in range(2):
        out = tmp / f"seen-{pid}.json"
        argv = [sys.executable, __file__, str(pid), ";".join(addresses), str(per_process), str(out)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, env=env, cwd=ROOT))
    for p in procs:
        assert p.wait(timeout=120) == 0
    for pid in range(2):
        yield json.loads((tmp / f"seen-{pid}.json").read_text())


@pytest.mark.parametrize("per_process", [1, 2])
def test_two_processes_place_as_predicted(per_process: int, tmp_path: Path) -> None:
    fields = ("worker", "state", "built", "wrote")
    merged: dict[str, Any] = {f: {} for f in fields}
    for seen in _processes(per_process, tmp_path):
        for f in fields:
            merged[f].update(seen[f])
        merged["count"] = seen["count"]
    check(merged, 2 * per_process)
    # worker p * w + i is thread i of process p
    assert all(int(t.split("/")[0]) == w // per_process for t, w in merged["worker"].items())


def test_place_rounds_partitions_up_and_leaves_others() -> None:
    class Sink:
        partitions = 3
        placement = None

    from twinflow.connectors.files import JsonLinesSink, ParquetSink

    parquet = ParquetSink("/nonexistent", lambda v: None, str, partitions=3)
    place(parquet, Placement(2))
    assert (parquet.partitions, parquet.placement) == (4, Placement(2))
    assert parquet.part_fn("fan-7") % 2 == key_worker("fan-7", 2)
    place(parquet, None)
    assert parquet.partitions == 4
    lines = JsonLinesSink("/nonexistent.jsonl", dict)
    place(lines, Placement(2))
    assert lines.list_parts() == ["nonexistent.jsonl"]
    other = Sink()
    place(other, Placement(2))  # not a PlacedParts: unchanged
    assert other.partitions == 3


if __name__ == "__main__":  # one process of test_two_processes_place_as_predicted
    proc, addrs, per = int(sys.argv[1]), sys.argv[2].split(";"), int(sys.argv[3])
    probe_flow, observed = probe(2 * per)
    cluster_main(probe_flow, addrs, proc, worker_count_per_proc=per)  # type: ignore[no-untyped-call]
    Path(sys.argv[4]).write_text(json.dumps(observed.dump(proc)))
