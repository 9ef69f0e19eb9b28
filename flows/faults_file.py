"""A faults file for scoring a replay: which twin failed, when the fault began and when it
failed. CSV or Parquet with columns ``twin_id`` (or ``twin``), ``onset``, ``failure`` and,
optionally, ``kind`` and ``signal``; or JSON as the demo's ``faults.json``. Times are ISO-8601
(naive ones in ``zone``) or, in JSON, with their offset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from twinflow.connectors.recorded.reader import scan
from twinflow.connectors.recorded.times import ReplayError, ZoneKind, parse_times
from twinflow.core.records import FaultTruth
from twinflow.core.times import utc


def load_faults(path: Path, zone: str | None = None) -> list[FaultTruth]:
    """The faults of ``path``; errors name the file, row and column."""
    if path.suffix.lower() == ".json":
        try:
            rows = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ReplayError(f"{path}: not a readable JSON list of faults: {exc}") from None
        df = pl.DataFrame(rows) if rows else pl.DataFrame()
    else:
        df = scan(path).collect()
    if "twin" in df.columns and "twin_id" not in df.columns:
        df = df.rename({"twin": "twin_id"})
    for need in ("twin_id", "onset", "failure"):
        if need not in df.columns:
            raise ReplayError(
                f"{path}: row 0 (header), column {need!r} is missing; a faults file has "
                "twin_id, onset, failure (and optionally kind, signal)"
            )
    when = {
        c: parse_times(df[c], "iso", zone, ZoneKind(), str(path), 1) for c in ("onset", "failure")
    }
    out = []
    for i, row in enumerate(df.iter_rows(named=True)):
        for c in ("onset", "failure"):
            if np.isnan(when[c][i]):
                raise ReplayError(f"{path}: row {i + 1}, column {c!r}: {row[c]!r} is not a time")
        if when["failure"][i] < when["onset"][i]:
            raise ReplayError(f"{path}: row {i + 1}, column 'failure': before the onset")
        out.append(
            FaultTruth(
                str(row["twin_id"]),
                str(row.get("kind") or "fault"),
                utc(float(when["onset"][i])),
                utc(float(when["failure"][i])),
                row.get("signal") or None,
            )
        )
    return out


__all__ = ["load_faults"]
