"""The Bytewax source of a replay: one partition per file, merged in event time.

The partition whose file is furthest behind in event time reads its next batch, so files
that cover the same period advance together and an older file is read before a newer one.
:class:`EventClock` is the latest event time any partition has emitted: the reference clock
that judges ``max_past_s``/``max_future_s``, alert lag and command time-outs, as the
simulator's clock does in the demo.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from twinflow.connectors.recorded.reader import SPAN_S, Batch, Item, RecordingReader
from twinflow.connectors.recorded.spec import ReplaySpec
from twinflow.operators.catalog import TwinType


@dataclass
class Progress:
    """What the source has read so far (shared by its partitions; guarded by ``lock``)."""

    rows: int = 0
    readings: int = 0
    dead_letters: int = 0
    now: float = -math.inf
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class EventClock:
    """The replay's reference clock: the latest event time read (0 before any data)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def __call__(self) -> float:
        now = self.progress.now
        return now if math.isfinite(now) else 0.0


class _Pace:
    """Which partition may read next: the one furthest behind in event time."""

    def __init__(self, n: int) -> None:
        self.at = [-math.inf] * n
        self.done = [False] * n
        self.lock = threading.Lock()

    def may_read(self, i: int) -> bool:
        with self.lock:
            behind = [a for j, a in enumerate(self.at) if not self.done[j] and j != i]
            return not behind or self.at[i] <= min(behind)

    def moved(self, i: int, latest: float | None) -> None:
        if latest is not None:
            with self.lock:
                self.at[i] = max(self.at[i], latest)

    def finish(self, i: int) -> None:
        with self.lock:
            self.done[i] = True


class _Partition(StatefulSourcePartition[Item, None]):
    def __init__(self, source: ReplaySource, index: int) -> None:
        self.source, self.index = source, index
        self.reader = source.readers[index]
        self.batches: Iterator[Batch] = self.reader.batches()

    def next_batch(self) -> list[Item]:
        src = self.source
        if not src.pace.may_read(self.index):
            return []
        try:
            batch = next(self.batches)
        except StopIteration:
            src.pace.finish(self.index)
            raise
        except Exception as exc:
            src.error = exc  # the run re-raises it as is, past Bytewax's wrapping
            src.pace.finish(self.index)
            raise
        p = src.progress
        with p.lock:
            p.rows += batch.rows
            p.readings += batch.readings
            p.dead_letters += len(batch.items) - sum(1 for _ in _frames(batch))
            if batch.latest is not None:
                p.now = max(p.now, batch.latest)
        src.pace.moved(self.index, batch.latest)
        return batch.items

    def snapshot(self) -> None:
        return None  # a replay starts over; it keeps no recovery state


def _frames(batch: Batch) -> Iterator[Item]:
    return (i for i in batch.items if not hasattr(i, "stage"))


class ReplaySource(FixedPartitionedSource[Item, None]):
    """The files of a recording as telemetry frames and dead letters, in event time.

    ``types`` are the deployment's twin types by twin id; ``span_s`` bounds the event time
    one batch covers (:class:`RecordingReader`). Each file is opened (and its
    header checked) when the source is made, so a missing column fails before the flow runs.
    """

    def __init__(
        self,
        files: Sequence[Path],
        spec: ReplaySpec,
        types: Mapping[str, TwinType],
        span_s: float = SPAN_S,
    ):
        self.readers = [RecordingReader(Path(f), spec, types, span_s) for f in files]
        self.progress = Progress()
        self.clock = EventClock(self.progress)
        self.pace = _Pace(len(self.readers))
        self.error: Exception | None = None

    def list_parts(self) -> list[str]:
        return [f"file-{i}" for i in range(len(self.readers))]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Partition:
        return _Partition(self, int(for_part.removeprefix("file-")))

    def label_runs(self) -> dict[str, list[tuple[float, float]]]:
        """Every file's labelled spans per twin (after the run)."""
        out: dict[str, list[tuple[float, float]]] = {}
        for r in self.readers:
            for twin, spans in r.labels.close().items():
                out.setdefault(twin, []).extend(spans)
        return out

    def labelled_twins(self) -> set[str]:
        """Twins that had rows with a label (labelled 0 or 1)."""
        return set().union(*(r.labels.seen for r in self.readers))


__all__ = ["EventClock", "Progress", "ReplaySource"]
