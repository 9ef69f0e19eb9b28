"""``twinflow report OUT_DIR``: one self-contained HTML page of a run's outputs, with plots.

Works on the ``--out`` folder of ``twinflow demo``, ``replay`` or ``run``: the fleet overview
(alarms, commands and faults per twin, roll-ups), the evaluation when the run was scored
(``summary.json``), and per twin its signals with alarm spans and command marks, the anomaly
score with its threshold, health and RUL with its interval against the failure time when it
is known, and the vibration band powers. See :mod:`~twinflow.flows.report.loading` (reading
and downsampling), :mod:`~twinflow.flows.report.plots` (SVG) and
:mod:`~twinflow.flows.report.html` (the page).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from twinflow.core.errors import TwinflowError
from twinflow.flows.report.html import page
from twinflow.flows.report.loading import load

#: The report's file name inside the outputs folder, unless ``--to`` says otherwise.
REPORT_NAME = "report.html"


def write_report(
    out_dir: Path, to: Path | None = None, points: int = 240, max_twins: int = 60
) -> Path:
    """Write the report of the run in ``out_dir`` (to ``out_dir/report.html`` by default)."""
    html = page(load(Path(out_dir), points=points), max_twins=max_twins)
    target = Path(to) if to is not None else Path(out_dir) / REPORT_NAME
    tmp = target.with_name(f".{target.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(html)
    tmp.replace(target)
    return target


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``report`` to the ``twinflow`` command's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "report",
        help="one self-contained HTML page with plots of a run's outputs",
        description="Write one self-contained HTML page with plots of a run's outputs "
        "(demo, replay or run): fleet overview, evaluation, and per twin its signals with "
        "alarms, commands and faults, anomaly score, health and RUL, vibration spectra.",
    )
    p.add_argument("out_dir", type=Path, help="the --out folder of a demo, replay or run")
    p.add_argument(
        "--to", type=Path, default=None, help=f"where to write (default OUT_DIR/{REPORT_NAME})"
    )
    p.add_argument(
        "--points",
        type=int,
        default=240,
        help="points per twin and signal after downsampling (default 240)",
    )
    p.add_argument(
        "--max-twins",
        type=int,
        default=60,
        help="twins drawn in detail, those with alarms, commands or faults first (default 60)",
    )
    return p


def run_report(args: argparse.Namespace) -> int:
    """Run ``twinflow report``: 0 when written, 2 with a clear message otherwise."""
    if args.points < 2 or args.max_twins < 0:
        print(
            "twinflow: error: --points must be at least 2, --max-twins at least 0", file=sys.stderr
        )
        return 2
    try:
        path = write_report(args.out_dir, args.to, args.points, args.max_twins)
    except TwinflowError as exc:
        print(f"twinflow: error: {exc}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0


__all__ = ["REPORT_NAME", "add_report_parser", "run_report", "write_report"]
