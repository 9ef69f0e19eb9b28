"""``twinflow compact OUT_DIR``: merge a run's Parquet part files into fewer, larger ones.

The sinks already merge their parts as they go and when the run ends; this is for folders
written by older versions, by a run that was killed, or with a larger target. It merges, per
sink folder (``telemetry/``, ``windows/``, ...), twin-type folder and sink partition, runs of
consecutive parts into files of up to ``--target-mb`` each. Merged files keep the row counts
of their parts, so a run that resumes from ``--recovery-dir`` afterwards still cuts exactly
the rows written after its snapshot. Run it while no flow writes the folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from twinflow.connectors.files_parts import compact, parse

#: Default size of a merged file, in MiB (the sinks' own target).
TARGET_MB = 64


def compact_outputs(out: Path, target_bytes: int) -> tuple[int, int]:
    """Merge every Parquet part under ``out``; returns the part files before and after."""
    before = after = 0
    for folder in sorted({p.parent for p in out.glob("*/*=*/part-*.parquet")}):
        partitions = {f.partition for f in map(parse, folder.glob("part-*.parquet")) if f}
        for partition in sorted(partitions):
            n = len(list(folder.glob(f"part-{partition}-*.parquet")))
            before += n
            after += n - compact(folder, partition, target_bytes)
    return before, after


def add_compact_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``compact`` to the ``twinflow`` command's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "compact",
        help="merge a run's Parquet part files into fewer, larger ones",
        description="Merge a run's Parquet part files into fewer, larger ones (per sink "
        "folder, twin type and partition); run it while no flow writes the folder.",
    )
    p.add_argument("out_dir", type=Path, help="the --out folder of a demo, replay or run")
    p.add_argument(
        "--target-mb",
        type=float,
        default=TARGET_MB,
        help=f"size of a merged file in MiB (default {TARGET_MB})",
    )
    return p


def run_compact(args: argparse.Namespace) -> int:
    """Run ``twinflow compact``: 0 when done, 2 with a clear message otherwise."""
    if not Path(args.out_dir).is_dir():
        print(f"twinflow: error: {args.out_dir} is not a folder", file=sys.stderr)
        return 2
    if not args.target_mb > 0:
        print("twinflow: error: --target-mb must be positive", file=sys.stderr)
        return 2
    before, after = compact_outputs(Path(args.out_dir), int(args.target_mb * 2**20))
    print(f"compacted {args.out_dir}: {before} Parquet part files -> {after}")
    return 0


__all__ = ["add_compact_parser", "compact_outputs", "run_compact"]
