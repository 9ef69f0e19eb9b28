"""The long layout of a recording: one row per twin, signal, time and value.

A batch's rows of one twin are grouped by signal name, each group checked for time order on
its own, and the kept values pivoted into one frame per twin with a column per signal (a
time that some signals lack is NaN for them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from twinflow.connectors.recorded.order import SHOWN_ROWS, first_finite
from twinflow.connectors.recorded.spec import ColumnMap
from twinflow.operators.catalog import TwinType

if TYPE_CHECKING:
    from twinflow.connectors.recorded.reader import Batch, RecordingReader


def long_rows(
    reader: RecordingReader,
    batch: Batch,
    df: pl.DataFrame,
    twin: str,
    ttype: TwinType,
    idx: np.ndarray,
    times: np.ndarray,
    first: int,
    label: np.ndarray | None,
) -> None:
    s = reader.spec
    names = df[s.signal_column].cast(pl.String).gather(idx)
    raw = df[s.value_column].gather(idx)
    values = raw.cast(pl.Float64, strict=False)
    bad_all = (raw.is_not_null() & values.is_null()).to_numpy()
    vals = np.asarray(values.fill_null(np.nan).to_numpy(), dtype=np.float64)
    known = {sig.name for sig in ttype.signals}
    keep_rows: list[np.ndarray] = []
    keep_sig: list[np.ndarray] = []
    keep_val: list[np.ndarray] = []
    order: list[str] = []
    by_name = (
        pl.DataFrame({"n": names})
        .with_row_index("j")
        .group_by("n", maintain_order=True)
        .agg(pl.col("j"))
    )
    for name, j_list in by_name.iter_rows():
        j = np.asarray(j_list, dtype=np.int64)
        m = s.mapping(str(name)) if name is not None else ColumnMap("")
        if m.signal not in known:
            batch.items.append(
                reader.dead(
                    f"signal {name!r} maps to no signal of twin type {ttype.name!r} (its "
                    f"signals: {', '.join(sorted(known))}); map it in replay.columns",
                    first + idx[j],
                    twin,
                    first_finite(times[idx[j]]),
                    int(j.size),
                    column=s.signal_column,
                )
            )
            continue
        rows = reader.ordered(
            batch, twin, m.signal, idx[j], times, first, np.ones(j.size, dtype=np.int64)
        )
        local = np.searchsorted(idx, rows)
        bad = bad_all[local]
        if bad.any():
            shown = raw.gather(local[bad][:SHOWN_ROWS]).to_list()
            batch.items.append(
                reader.dead(
                    f"not a number ({', '.join(repr(x) for x in shown)})",
                    first + rows[bad],
                    twin,
                    float(times[rows][bad][0]),
                    int(bad.sum()),
                    column=s.value_column,
                )
            )
        if m.signal not in order:
            order.append(m.signal)
        keep_rows.append(rows)
        keep_sig.append(np.full(rows.size, order.index(m.signal)))
        keep_val.append(vals[local] * m.scale + m.offset)
    if not keep_rows:
        return
    rows = np.concatenate(keep_rows)
    if rows.size == 0:
        return
    stamps, at = np.unique(times[rows], return_inverse=True)
    block = np.full((len(order), stamps.size), np.nan)
    block[np.concatenate(keep_sig), at] = np.concatenate(keep_val)
    if label is not None:
        lab = np.zeros(stamps.size)
        np.maximum.at(lab, at, label[rows])
        reader.labels.add(twin, stamps, lab)
    reader.frames(batch, twin, ttype, stamps, dict(zip(order, block, strict=True)))
