"""One recording file, batch by batch, as telemetry frames and dead letters.

Rows are numbered from 1 (the first data row; in a CSV that is line 2). Per twin, times must
go forward: a row earlier than the twin's latest time is refused as going backwards, a row at
the same time as a duplicate (in the long format both per twin and signal). Values that do not
parse as numbers, columns that map to no signal of the twin's type, unknown twins and
unreadable times become dead letters whose reason names file, rows and column; the rest of
each row flows on. Missing required columns and mixed zones are one :class:`ReplayError`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from twinflow.connectors.recorded.labels import LabelRuns
from twinflow.connectors.recorded.long_format import long_rows
from twinflow.connectors.recorded.order import SHOWN_ROWS, first_finite, out_of_order
from twinflow.connectors.recorded.spec import ColumnMap, ReplaySpec
from twinflow.connectors.recorded.times import ReplayError, ZoneKind, parse_times
from twinflow.core.records import DeadLetter, TelemetryFrame
from twinflow.core.times import utc
from twinflow.operators.catalog import TwinType

Item = TelemetryFrame | DeadLetter


@dataclass
class Batch:
    """What one batch of rows became: frames and dead letters, and the latest time in it."""

    items: list[Item]
    rows: int
    readings: int = 0
    latest: float | None = None


@dataclass
class _Cells:
    """One value column of a batch: its signal mapping, values and unparseable cells."""

    name: str
    mapping: ColumnMap
    values: np.ndarray
    bad: np.ndarray
    raw: pl.Series
    present: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.present = ~np.isnan(self.values) | self.bad


def scan(path: Path) -> pl.LazyFrame:
    """A lazy scan of a CSV (every column read as text) or Parquet file."""
    suffix = path.suffix.lower()
    if not path.exists():
        raise ReplayError(f"{path}: no such file")
    if suffix in (".csv", ".txt"):
        return pl.scan_csv(path, infer_schema=False)
    if suffix in (".tsv",):
        return pl.scan_csv(path, infer_schema=False, separator="\t")
    if suffix in (".parquet", ".pq"):
        return pl.scan_parquet(path)
    raise ReplayError(f"{path}: unknown file type {suffix!r}; replay reads .csv and .parquet")


#: Event time one batch may span at most (seconds): a chunk of rows covering more is cut.
SPAN_S = 86_400.0


def span_slices(times: np.ndarray, span_s: float) -> list[tuple[int, int]]:
    """Row ranges ``[a, b)`` of ``times`` (in file order), each reaching at most ``span_s``
    of event time past the latest time read up to its first row, so that a replay's clock
    (the latest time read) never runs ahead of a batch's own rows by more than that.
    Unreadable (NaN) times stay with the rows around them.

    >>> span_slices(np.array([0.0, 10.0, 20.0, 95.0, 100.0, 250.0]), 50.0)
    [(0, 3), (3, 5), (5, 6)]
    >>> span_slices(np.array([0.0, np.nan, 1.0]), 50.0)
    [(0, 3)]
    >>> span_slices(np.array([np.nan, 0.0, 100.0]), 50.0)
    [(0, 1), (1, 2), (2, 3)]
    """
    n = times.size
    if n == 0 or not np.isfinite(span_s):
        return [(0, n)] if n else []
    reached = np.fmax.accumulate(np.where(np.isfinite(times), times, -np.inf))
    out: list[tuple[int, int]] = []
    start = 0
    while start < n:
        t0 = reached[start]
        if np.isfinite(t0):
            end = int(np.searchsorted(reached, t0 + span_s, "right"))
        else:  # unreadable times before the first readable one: a batch of their own
            end = int(np.searchsorted(reached, -np.inf, "right"))
        end = max(end, start + 1)
        out.append((start, end))
        start = end
    return out


class RecordingReader:
    """Reads one file of a recording for the twins of a deployment (``types`` by twin id).

    ``span_s`` bounds the event time one batch covers (rows past it start the next batch):
    the replay's reference clock is the latest time read, and readings more than
    ``flow.max_past_s`` behind it are refused, so a batch must not reach further ahead of
    its own first rows than that.
    """

    def __init__(
        self,
        path: Path,
        spec: ReplaySpec,
        types: Mapping[str, TwinType],
        span_s: float = SPAN_S,
    ) -> None:
        self.path, self.spec, self.types = path, spec, types
        self.span_s = span_s
        self.file = str(path)
        self.columns = scan(path).collect_schema().names()
        need = [spec.time_column]
        if spec.format == "long":
            need += [spec.twin_column, spec.signal_column, spec.value_column]
        if spec.label_column:
            need.append(spec.label_column)
        missing = [c for c in need if c not in self.columns]
        if missing:
            raise ReplayError(
                f"{path}: row 0 (header), column {missing[0]!r} is missing (the file has "
                f"{', '.join(map(repr, self.columns))}); set replay's column names to match"
            )
        self.twin: str | None = None
        if spec.twin_column not in self.columns:
            self.twin = spec.twin or path.stem
            if self.twin not in types:
                raise ReplayError(
                    f"{path}: no twin column {spec.twin_column!r} and {self.twin!r} is not a "
                    "twin of the deployment; name the twin with --twin (replay.twin), name the "
                    "file after it, or add a twin column"
                )
        self.value_columns = [c for c in self.columns if c not in spec.reserved()]
        if spec.format == "wide":
            self._check_mapping()
        self.last: dict[tuple[str, str], float] = {}
        self.kind = ZoneKind()
        self.labels = LabelRuns()
        self.row = 1

    def _check_mapping(self) -> None:
        seen: dict[str, str] = {}
        for c in self.value_columns:
            signal = self.spec.mapping(c).signal
            if signal in seen:
                raise ReplayError(
                    f"{self.path}: columns {seen[signal]!r} and {c!r} both map to signal "
                    f"{signal!r}; map one of them elsewhere or list it in replay.ignore"
                )
            seen[signal] = c

    def missing_columns(self) -> list[DeadLetter]:
        """One dead letter per mapped column that this (wide) file does not have."""
        if self.spec.format != "wide":
            return []
        return [
            self.dead(
                f"mapped in replay.columns but missing (row 0 is the header): signal "
                f"{m.signal!r} gets no readings from this file",
                np.array([0]),
                None,
                0.0,
                0,
                column=c,
            )
            for c, m in self.spec.columns.items()
            if c not in self.columns
        ]

    def signals_by_twin(self) -> dict[str, set[str]]:
        """The signals the file carries for each twin (read ahead from one or two columns)."""
        s = self.spec
        if s.format == "wide":
            mapped = {s.mapping(c).signal for c in self.value_columns}
            twins = [self.twin] if self.twin else self._unique([s.twin_column])
            return {t[0] if isinstance(t, tuple) else t: set(mapped) for t in twins}
        cols = [s.twin_column, s.signal_column] if self.twin is None else [s.signal_column]
        out: dict[str, set[str]] = {}
        for key in self._unique(cols):
            twin, name = (key[0], key[1]) if self.twin is None else (self.twin, key[0])
            out.setdefault(str(twin), set()).add(s.mapping(str(name)).signal)
        return out

    def _unique(self, cols: list[str]) -> list[tuple[str, ...]]:
        df = scan(self.path).select(pl.col(c).cast(pl.String) for c in cols).unique().collect()
        return [tuple(str(v) for v in row) for row in df.drop_nulls().iter_rows()]

    def batches(self) -> Iterator[Batch]:
        """The file as batches of frames and dead letters."""
        missing = self.missing_columns()
        if missing:
            yield Batch(list(missing), 0)
        s = self.spec
        for df in scan(self.path).collect_batches(chunk_size=s.chunk_rows):
            first, self.row = self.row, self.row + df.height
            times = parse_times(df[s.time_column], s.time_unit, s.zone, self.kind, self.file, first)
            for a, b in span_slices(times, self.span_s):
                yield self._batch(df.slice(a, b - a), first + a, times[a:b])

    # -- one batch ------------------------------------------------------------------------

    def _batch(self, df: pl.DataFrame, first: int, times: np.ndarray) -> Batch:
        s = self.spec
        self._times_raw = df[s.time_column]
        twins = (
            pl.Series("twin", [self.twin] * df.height, pl.String)
            if self.twin is not None
            else df[s.twin_column].cast(pl.String)
        )
        label = None
        if s.label_column:
            label = df[s.label_column].cast(pl.Float64, strict=False).fill_null(0.0).to_numpy()
        batch = Batch([], df.height)
        groups = (
            pl.DataFrame({"twin": twins})
            .with_row_index("i")
            .group_by("twin", maintain_order=True)
            .agg(pl.col("i"))
        )
        cells = self._cells(df) if s.format == "wide" else []
        for twin, idx_list in groups.iter_rows():
            idx = np.asarray(idx_list, dtype=np.int64)
            ttype = self.types.get(twin) if twin is not None else None
            if ttype is None:
                what = "no twin id" if twin is None else f"twin {twin!r} is not deployed"
                n = self._readings(df, cells, idx)
                batch.items.append(
                    self.dead(
                        what, first + idx, twin, first_finite(times[idx]), n, column=s.twin_column
                    )
                )
                continue
            if s.format == "wide":
                self._wide(batch, twin, ttype, idx, times, cells, first, label)
            else:
                long_rows(self, batch, df, twin, ttype, idx, times, first, label)
        return batch

    def _cells(self, df: pl.DataFrame) -> list[_Cells]:
        out = []
        for c in self.value_columns:
            raw = df[c]
            values = raw.cast(pl.Float64, strict=False)
            bad = (raw.is_not_null() & values.is_null()).to_numpy()
            m = self.spec.mapping(c)
            v = np.asarray(values.fill_null(np.nan).to_numpy(), dtype=np.float64)
            if m.scale != 1.0 or m.offset != 0.0:
                v = v * m.scale + m.offset
            out.append(_Cells(c, m, v, bad, raw))
        return out

    def _readings(self, df: pl.DataFrame, cells: list[_Cells], idx: np.ndarray) -> int:
        if self.spec.format == "long":
            return int(idx.size)
        return int(sum(int(c.present[idx].sum()) for c in cells))

    def ordered(
        self,
        batch: Batch,
        twin: str,
        key: str,
        idx: np.ndarray,
        times: np.ndarray,
        first: int,
        readings: np.ndarray,
    ) -> np.ndarray:
        """The rows of ``idx`` whose time is readable and moves forward; dead letters for
        the others (``readings`` per row of ``idx``)."""
        t = times[idx]
        unreadable = np.isnan(t)
        col = self.spec.time_column
        if unreadable.any():
            rows = idx[unreadable]
            texts = ", ".join(repr(str(x)) for x in self._raw_time(rows)[:SHOWN_ROWS])
            batch.items.append(
                self.dead(
                    f"unreadable time ({texts}); not ISO-8601 with the declared zone, or a local "
                    "time that is ambiguous or does not exist at a DST change",
                    first + rows,
                    twin,
                    self.last.get((twin, key), 0.0),
                    int(readings[unreadable].sum()),
                    column=col,
                )
            )
        keep = idx[~unreadable]
        r = readings[~unreadable]
        t = t[~unreadable]
        if t.size == 0:
            return np.asarray(keep)
        last = self.last.get((twin, key), -np.inf)
        back, dup, ahead = out_of_order(t, last)
        for mask, what in (
            (back, "time goes backwards: earlier than an earlier row's time for this twin"),
            (dup, "duplicate timestamp: an earlier row has the same time for this twin"),
            (ahead, "time jumps ahead of the rows that follow it for this twin (a clock jump)"),
        ):
            if mask.any():
                sig = f" and signal {key!r}" if key else ""
                batch.items.append(
                    self.dead(
                        what + sig,
                        first + keep[mask],
                        twin,
                        float(t[mask][0]),
                        int(r[mask].sum()),
                        column=col,
                    )
                )
        good = ~(back | dup | ahead)
        self.last[(twin, key)] = float(max(last, t[good].max(initial=-np.inf)))
        return np.asarray(keep[good])

    def _raw_time(self, rows: np.ndarray) -> list[object]:
        return (
            [None] * rows.size
            if self._times_raw is None
            else self._times_raw.gather(rows).to_list()
        )

    _times_raw: pl.Series | None = None

    def _wide(
        self,
        batch: Batch,
        twin: str,
        ttype: TwinType,
        idx: np.ndarray,
        times: np.ndarray,
        cells: list[_Cells],
        first: int,
        label: np.ndarray | None,
    ) -> None:
        present = np.zeros(idx.size, dtype=np.int64)
        for c in cells:
            present += c.present[idx]
        rows = self.ordered(batch, twin, "", idx, times, first, present)
        if rows.size == 0:
            return
        t = times[rows]
        known = {sig.name for sig in ttype.signals}
        signals: dict[str, np.ndarray] = {}
        for c in cells:
            if c.mapping.signal not in known:
                n = int(c.present[rows].sum())
                if n:
                    batch.items.append(
                        self.dead(
                            f"maps to signal {c.mapping.signal!r}, which twin type "
                            f"{ttype.name!r} does not have (its signals: "
                            f"{', '.join(sorted(known))}); map the column in replay.columns or "
                            "list it in replay.ignore",
                            first + rows[c.present[rows]],
                            twin,
                            float(t[0]),
                            n,
                            column=c.name,
                        )
                    )
                continue
            bad = c.bad[rows]
            if bad.any():
                shown = c.raw.gather(rows[bad][:SHOWN_ROWS]).to_list()
                batch.items.append(
                    self.dead(
                        f"not a number ({', '.join(repr(x) for x in shown)}); left out, the rest "
                        "of each row is replayed",
                        first + rows[bad],
                        twin,
                        float(t[bad][0]),
                        int(bad.sum()),
                        column=c.name,
                    )
                )
            signals[c.mapping.signal] = c.values[rows]
        if label is not None:
            self.labels.add(twin, t, label[rows])
        self.frames(batch, twin, ttype, t, signals)

    def frames(
        self,
        batch: Batch,
        twin: str,
        ttype: TwinType,
        t: np.ndarray,
        signals: dict[str, np.ndarray],
    ) -> None:
        if not signals or t.size == 0:
            return
        step = self.spec.frame_rows
        source = f"replay:{self.path.name}"
        for a in range(0, t.size, step):
            part = {k: v[a : a + step] for k, v in signals.items()}
            frame = TelemetryFrame(twin, ttype.name, t[a : a + step], part, source=source)
            batch.items.append(frame)
            batch.readings += frame.readings
        latest = float(t.max())
        batch.latest = latest if batch.latest is None else max(batch.latest, latest)

    def dead(
        self,
        what: str,
        rows: np.ndarray,
        twin: str | None,
        at: float,
        readings: int,
        column: str | None = None,
    ) -> DeadLetter:
        listed = ", ".join(str(int(r)) for r in rows[:SHOWN_ROWS])
        more = f" and {rows.size - SHOWN_ROWS} more" if rows.size > SHOWN_ROWS else ""
        col = f", column {column!r}" if column else ""
        word = "row" if rows.size == 1 else "rows"
        return DeadLetter(
            stage="decode",
            reason=f"{self.file}: {word} {listed}{more}{col}: {what}",
            source=f"replay:{self.path.name}",
            time=utc(at if np.isfinite(at) else 0.0),
            twin_id=twin,
            readings=readings,
        )


__all__ = ["Batch", "RecordingReader", "ReplayError", "scan"]
