"""Benchmark: checking a RealEstateCore-sized DTDL folder (about 800 Interfaces) in one go.

The folder is written once (tests/operators/dtdl_samples.ontology: BOM-prefixed files,
``extends`` chains 8 deep, multiple inheritance, Components, Relationships). Each round
times, interleaved, the full check (``twinflow.operators.dtdl.parser.check``: reading,
notation, both passes) and a baseline that only reads and decodes the same files as JSON;
the medians and their ratio are printed. Target: the full check in under 1 s. Run:
``.venv/bin/python tests/benchmarks/bench_dtdl.py [--interfaces 800] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.operators.dtdl_samples import ontology, write_bom
from twinflow.operators.dtdl.parser import check

TARGET_S = 1.0


def _decode_only(folder: Path) -> float:
    start = time.perf_counter()
    for path in sorted(folder.rglob("*.json")):
        json.loads(path.read_bytes().decode("utf-8-sig"))
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--interfaces", type=int, default=800)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_bom(folder, ontology(args.interfaces, args.depth))
        full: list[float] = []
        base: list[float] = []
        for _ in range(args.rounds):
            base.append(_decode_only(folder))
            found = check([folder])
            assert not found.problems, found.problems[:3]
            full.append(found.seconds)
        med, med_base = statistics.median(full), statistics.median(base)
        print(
            f"DTDL check: {found.files} files, {len(found.models)} interfaces, "
            f"{found.elements} elements, extends depth {args.depth}"
        )
        print(
            f"  median of {args.rounds} rounds: {med:.3f} s (min {min(full):.3f}, max "
            f"{max(full):.3f}); JSON decoding alone {med_base:.3f} s; ratio {med / med_base:.1f}x"
        )
        verdict = "met" if med < TARGET_S else "NOT met"
        print(f"  target: under {TARGET_S:.0f} s for the whole folder: {verdict}")


if __name__ == "__main__":
    main()
