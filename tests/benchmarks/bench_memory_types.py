"""Benchmark: memory of what is built per deployed twin type (issue 13, 10,000 twins < 1 GB).

Not a test; prints figures. The flow builds some things once per twin type and caches them by
the type object's identity: the type's rules (:func:`~twinflow.operators.rules.rules_for`) and
its per-reading plan (:func:`~twinflow.operators.reading_rules_plan.reading_plan`). So how many
type objects a deployment hands out decides how often they are built. A deployment of
``--twins`` Kafka twins (the seeded simulated plant's twins and types) is loaded; then, traced
by ``tracemalloc``, the rules and plan of every twin's deployed type are built, in a fresh
process per side:

- ``deployed``: ``Deployment.deployed_types()`` as it is (twins of a type bound to the same
  signals share one object since commit ``0e19dfb``);
- ``one copy per twin``: each twin given its own copy of its deployed type, as
  ``deployed_types()`` did before.

Prints the distinct type objects and the traced MiB left after building (and collecting).

Run: ``.venv/bin/python tests/benchmarks/bench_memory_types.py [--twins 10000]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).absolute().parents[2]))

from twinflow.connectors.simulator import Plant, PlantConfig
from twinflow.flows.deploy import load_deployment
from twinflow.operators.reading_rules_plan import reading_plan
from twinflow.operators.rules import rules_for

SIDES = ("deployed", "one copy per twin")


def deployment_file(folder: Path, twins: int) -> Path:
    """A deployment of the seeded plant's twins, all telemetry-only Kafka twins."""
    plant = Plant(PlantConfig(n_twins=twins, duration_s=60, seed=3))
    lines = ["version: 1", "site: s1", "services:", "  kafka:", '    bootstrap: "127.0.0.1:9"']
    lines += ["    telemetry_topics: [t]", "twins:"]
    lines += [f"  - {{id: {t}, type: {kind}, protocol: kafka}}" for t, kind in plant.twins]
    path = folder / "deploy.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def child(path: Path, side: str) -> None:
    """One side: build every twin's rules and plan under tracemalloc; print the result."""
    types = load_deployment(path, env={}).deployed_types()
    if side == SIDES[1]:
        types = {twin: dataclasses.replace(kind) for twin, kind in types.items()}
    gc.collect()
    tracemalloc.start()
    for kind in types.values():
        rules_for(kind)
        reading_plan(kind)
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0]
    objects = len({id(k) for k in types.values()})
    print(f"  {side}: {objects:,} type objects for {len(types):,} twins, rules and per-reading "
          f"plans {traced / 2**20:,.2f} MiB traced")  # fmt: skip


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "_child":
        child(Path(sys.argv[2]), sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--twins", type=int, default=10_000)
    args = ap.parse_args()
    print(f"bench_memory_types: {args.twins:,} Kafka twins of the seeded plant")
    with tempfile.TemporaryDirectory() as tmp:
        path = deployment_file(Path(tmp), args.twins)
        for side in SIDES:
            argv = [sys.executable, __file__, "_child", str(path), side]
            subprocess.run(argv, check=True)


if __name__ == "__main__":
    main()
