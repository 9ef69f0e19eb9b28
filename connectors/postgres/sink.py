"""A Bytewax sink that stores the flow's records in PostgreSQL (or TimescaleDB).

It takes the items of any of the flow's outputs, as ``(twin_id, item)`` pairs:
:class:`TelemetryFrame` (raw readings, one row per twin, signal and time),
:class:`WaveformFrame` (only with ``waveforms=True``: high-rate samples are usually kept as
window features, not rows), :class:`WindowFeatures`, :class:`TwinState`, :class:`Alert`,
:class:`Command`, :class:`DeadLetter`, :class:`AssetRollup` (as ``(asset_id, roll-up)``
pairs: one row per asset and time, plus the latest per asset), and a central instance's
:class:`SiteStatus` (as ``(site, summary)`` pairs: one row per distinct summary, plus the
latest per site). Items are spread over
``partitions`` partitions by their key; each partition has its own writer thread (see
:mod:`twinflow.connectors.postgres.writer`), and the writers of every sink of the process that
store into one database share one bounded pool of ``pool_size`` connections
(:mod:`twinflow.connectors.postgres.pool`).

Outages: a database that is away does not stop the flow. The partition's writer keeps the
rows it accepted (up to ``max_buffer_rows``, then the flow waits: back-pressure), retries
with backoff, and reports the outage once in the log and in the ``twinflow_output_*``
metrics (:mod:`twinflow.connectors.outage`); when the database is back it writes them all.

Recovery: a Bytewax snapshot calls :meth:`PostgresSinkPartition.snapshot`, which gives the
writer up to ``snapshot_wait_s`` to commit what it holds while the database answers (not at
all while it is down) and returns the rows still uncommitted as the partition's state
(usually none). A flow resumed with ``--recovery-dir`` writes those rows first, then Bytewax
replays the items since the snapshot; the tables' unique keys make rows written twice land
once. So every row accepted before a crash is stored at least once and kept once. Without
recovery, rows still uncommitted when the process ends are lost (``close`` waits for them).

>>> sink = PostgresSink("postgresql://localhost/twins", partitions=2)  # doctest: +SKIP
>>> FlowOutputs(telemetry=sink, windows=sink, twin_states=sink, alerts=sink,
...             commands=sink, dead_letters=sink, rollups=sink)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from twinflow.connectors.placement_keys import PlacedParts
from twinflow.connectors.postgres import rows
from twinflow.connectors.postgres.batches import Piece, WriterSettings
from twinflow.connectors.postgres.tables import (
    ALERTS,
    COMMANDS,
    DEAD_LETTERS,
    FLEET_STATUS,
    REPLICATED,
    ROLLUPS,
    SYNC_STATUS,
    TELEMETRY,
    TWIN_STATES,
    WINDOWS,
)
from twinflow.connectors.postgres.writer import BatchWriter, PostgresSinkError
from twinflow.connectors.replication.node import Received
from twinflow.core.records import (
    Alert,
    AssetRollup,
    Command,
    DeadLetter,
    TelemetryFrame,
    TwinState,
    WaveformFrame,
    WindowFeatures,
)
from twinflow.operators.replication.fleet_status import SiteStatus
from twinflow.operators.replication.status import PropertySync

_ACCEPTED = (
    "TelemetryFrame, WaveformFrame, WindowFeatures, TwinState, Alert, Command, DeadLetter, "
    "AssetRollup, SiteStatus, PropertySync, Received"
)


#: A partition's resume state: the rows it held uncommitted at the snapshot (or None).
Held = list[Piece] | None


class PostgresSinkPartition(StatefulSinkPartition[Any, Held]):
    """One partition: encodes items into rows and hands them to its :class:`BatchWriter`."""

    def __init__(self, sink: PostgresSink, name: str, resume: Held = None) -> None:
        self.sink = sink
        self.name = name
        self.writer = BatchWriter(sink.settings(name), name)
        self._seq = 0
        if resume:
            self.writer.add(resume)

    def encode(self, values: list[Any]) -> list[Piece]:
        """Rows of the items, as pieces for the writer. Telemetry and waveform frames go as
        they are: the writer thread encodes a whole batch of them at once
        (:mod:`~twinflow.connectors.postgres.copy_columns`)."""
        pieces: list[Piece] = []
        for v in values:
            self._seq += 1
            seq = self._seq
            if isinstance(v, TelemetryFrame):
                if self.sink.telemetry:
                    pieces.append((TELEMETRY.name, v, v.readings))
            elif isinstance(v, WaveformFrame):
                if self.sink.waveforms:
                    pieces.append((TELEMETRY.name, v, v.readings))
            elif isinstance(v, WindowFeatures):
                pieces.append((WINDOWS.name, rows.window_row(seq, v), 1))
            elif isinstance(v, TwinState):
                pieces.append((TWIN_STATES.name, rows.state_row(seq, v), 1))
            elif isinstance(v, Alert):
                pieces.append((ALERTS.name, rows.alert_row(seq, v), 1))
            elif isinstance(v, Command):
                pieces.append((COMMANDS.name, rows.command_row(seq, v), 1))
            elif isinstance(v, DeadLetter):
                pieces.append((DEAD_LETTERS.name, rows.dead_letter_row(v), 1))
            elif isinstance(v, AssetRollup):
                pieces.append((ROLLUPS.name, rows.rollup_row(seq, v), 1))
            elif isinstance(v, SiteStatus):  # a central instance's site or fleet summary
                pieces.append((FLEET_STATUS.name, rows.fleet_status_row(seq, v), 1))
            elif isinstance(v, PropertySync):  # replication's sync status
                pieces.append((SYNC_STATUS.name, rows.sync_status_row(v), 1))
            elif isinstance(v, Received):  # a write received from another replica
                pieces.append((REPLICATED.name, rows.replicated_row(v), 1))
            else:
                raise PostgresSinkError(
                    f"PostgresSink ({self.name}) cannot store a {type(v).__name__}: it takes "
                    f"{_ACCEPTED} (wire it to a FlowOutputs field that carries those)"
                )
        return pieces

    def write_batch(self, values: list[Any]) -> None:
        self.writer.add(self.encode(values))

    def snapshot(self) -> Held:
        """The rows not committed after a bounded wait (None: all are in the database)."""
        wait = self.sink.snapshot_wait_s if self.writer.health.is_up else 0.0
        if self.writer.flush(wait):
            return None
        return self.writer.held() or None

    def close(self) -> None:
        self.writer.close()


class PostgresSink(PlacedParts, FixedPartitionedSink[Any, Held]):
    """Store twinflow records in the ``twinflow`` schema (create it with ``migrate`` first).

    - ``partitions``: independent writers, items spread by twin (or asset) id (in a cluster,
      :func:`~twinflow.connectors.placement_keys.place` sends a twin's rows to a writer on
      the worker that holds its state).
    - ``pool_size``: connections the process's sinks into this database share at most
      (default ``partitions + 2``; the largest asked for wins). A writer that finds them all
      busy waits, and the flow with it once ``max_buffer_rows`` are held.
    - ``batch_rows`` / ``max_latency_s``: a partition commits when this many rows wait, or
      when its oldest row has waited this long, whichever comes first.
    - ``max_buffer_rows``: rows a partition holds uncommitted before the flow blocks.
    - ``telemetry`` / ``waveforms``: store the readings of telemetry frames (default yes) and
      the samples of high-rate waveform frames (default no).
    - ``optimistic_copy``: COPY telemetry straight into its table, falling back to the
      staging table when a batch holds rows already stored (see the writer's docstring).
    - ``retry_initial_s`` / ``retry_max_s``: backoff between retries of a failed flush;
      ``give_up_after_s``: fail the flow after that long (``None``: keep trying, holding the
      rows, until the database is back; the flow waits only when ``max_buffer_rows`` is hit).
    - ``snapshot_wait_s``: how long a snapshot waits for the rows to commit while the
      database answers; what is left goes into the snapshot's state. ``close_wait_s``: how
      long the end of a run waits for a database that is away before giving its rows up.
    """

    def __init__(
        self,
        url: str,
        *,
        partitions: int = 1,
        batch_rows: int = 50_000,
        max_latency_s: float = 1.0,
        max_buffer_rows: int = 200_000,
        telemetry: bool = True,
        waveforms: bool = False,
        optimistic_copy: bool = True,
        retry_initial_s: float = 0.1,
        retry_max_s: float = 5.0,
        give_up_after_s: float | None = None,
        connect_timeout_s: float = 5.0,
        snapshot_wait_s: float = 5.0,
        close_wait_s: float = 30.0,
        pool_size: int | None = None,
    ) -> None:
        if partitions < 1:
            raise PostgresSinkError(f"PostgresSink partitions must be at least 1, got {partitions}")
        if pool_size is not None and pool_size < 1:
            raise PostgresSinkError(f"PostgresSink pool_size must be at least 1, got {pool_size}")
        if batch_rows < 1 or max_buffer_rows < batch_rows:
            raise PostgresSinkError(
                "PostgresSink needs 1 <= batch_rows <= max_buffer_rows, got "
                f"batch_rows={batch_rows}, max_buffer_rows={max_buffer_rows}"
            )
        if max_latency_s <= 0:
            raise PostgresSinkError(f"PostgresSink max_latency_s must be > 0, got {max_latency_s}")
        self.url = url
        self.partitions = partitions
        self.batch_rows = batch_rows
        self.max_latency_s = max_latency_s
        self.max_buffer_rows = max_buffer_rows
        self.telemetry = telemetry
        self.waveforms = waveforms
        self.optimistic_copy = optimistic_copy
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.give_up_after_s = give_up_after_s
        self.connect_timeout_s = connect_timeout_s
        self.snapshot_wait_s = snapshot_wait_s
        self.close_wait_s = close_wait_s
        self.pool_size = partitions + 2 if pool_size is None else pool_size

    def settings(self, name: str) -> WriterSettings:
        """The frozen settings a partition's writer runs with."""
        return WriterSettings(
            url=self.url,
            batch_rows=self.batch_rows,
            max_latency_s=self.max_latency_s,
            max_buffer_rows=self.max_buffer_rows,
            optimistic_copy=self.optimistic_copy,
            retry_initial_s=self.retry_initial_s,
            retry_max_s=self.retry_max_s,
            give_up_after_s=self.give_up_after_s,
            connect_timeout_s=self.connect_timeout_s,
            application_name=f"twinflow-sink {name}"[:63],
            close_wait_s=self.close_wait_s,
            pool_size=self.pool_size,
        )

    def list_parts(self) -> list[str]:
        return [f"pg-{i}" for i in range(self.partitions)]

    def build_part(self, step_id: str, for_part: str, resume_state: Held) -> PostgresSinkPartition:
        return PostgresSinkPartition(self, f"{step_id}/{for_part}", resume_state)
