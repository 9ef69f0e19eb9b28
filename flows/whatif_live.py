"""What-ifs answered inside a running flow, from each twin's live state, off the hot path.

The ``decide.whatif`` step is keyed by twin, so it runs where the twin's frames are: it
keeps the twin's recent telemetry (``flow.whatif_history_s``; not part of recovery
snapshots, it refills after a restart) and, on a :class:`WhatIfRequest`, builds the twin's
state from it as ``twinflow whatif`` does from a run's outputs
(:func:`~twinflow.flows.whatif_state.state_from_rows`) and hands the what-if to a
:class:`WhatIfPool`. The pool runs :func:`~twinflow.flows.whatif.predict` in worker
*processes* (a what-if runs the flow's analysis once per scenario: seconds of CPU that in a
thread would hold the interpreter lock and stall telemetry) and holds at most
``flow.whatif_queue`` requests waiting or running; one more is answered ``rejected`` with
reason ``busy`` at once. The workers run at a lower priority (``nice`` 10) so that, on a
busy machine, the flow keeps the CPU it needs. The step polls its requests (every
:data:`POLL_S` of wall time) and emits each :class:`WhatIfResult` when it is ready.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
from bytewax.operators import StatefulLogic

from twinflow.core.errors import ConfigError
from twinflow.core.records import TelemetryFrame
from twinflow.flows.config import FlowConfig
from twinflow.flows.whatif_state import TwinNow, state_from_rows
from twinflow.operators.catalog import TwinType
from twinflow.operators.whatif import WhatIf
from twinflow.operators.whatif.request import (
    BUSY,
    DONE,
    FAILED,
    REJECTED,
    WhatIfRequest,
    WhatIfResult,
)

LOG = logging.getLogger("twinflow.whatif")
#: Wall-clock seconds between checks for finished what-ifs while a twin has some running.
POLL_S = 0.2
#: Wall-clock seconds the flow's end waits for what-ifs still running (then: ``failed``).
EOF_WAIT_S = 30.0


def run_whatif_job(
    twin: TwinNow, whatif: WhatIf, catalog: Mapping[str, TwinType], config: FlowConfig
) -> tuple[str, str | None, dict[str, Any] | None]:
    """A what-if in a worker process: ``(status, reason, report)``; never raises."""
    from twinflow.flows.whatif import predict

    try:
        report = predict(twin, whatif, catalog, config)
    except ConfigError as exc:
        return REJECTED, str(exc), None
    except Exception as exc:  # a what-if must not take the flow with it
        return FAILED, f"{type(exc).__name__}: {exc}"[:500], None
    return DONE, None, report.to_json()


def _background() -> None:
    """A worker process yields the CPU to the flow: what-ifs are background work."""
    with contextlib.suppress(OSError):
        os.nice(10)


def _ready() -> bool:
    import twinflow.flows.whatif  # noqa: F401  (what a what-if needs, imported once)

    return True


class WhatIfPool:
    """Worker processes (started on first use) with a bound on what waits or runs;
    ``threads=True`` runs them in threads instead (what the stall benchmark compares)."""

    def __init__(self, workers: int, queue: int, *, threads: bool = False) -> None:
        self.workers = workers
        self.queue = queue
        self.threads = threads
        self._lock = threading.Lock()
        self._running = 0
        self._executor: Executor | None = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any] | None:
        """The job's future, or ``None`` when ``queue`` jobs are already waiting or running."""
        with self._lock:
            if self._running >= self.queue:
                return None
            self._running += 1
            if self._executor is None and self.threads:
                self._executor = ThreadPoolExecutor(self.workers, "twinflow-whatif")
            elif self._executor is None:  # spawn: forking a multi-threaded flow is unsafe
                ctx = multiprocessing.get_context("spawn")
                self._executor = ProcessPoolExecutor(
                    self.workers, mp_context=ctx, initializer=_background
                )
            executor = self._executor
        future = executor.submit(fn, *args)
        future.add_done_callback(self._done)
        return future

    def warm(self) -> None:
        """Start the workers and import the what-if code in each now (a spawned worker
        takes seconds to start, which the first request would otherwise wait for)."""
        futures = [self.submit(_ready) for _ in range(self.workers)]
        wait_all([f for f in futures if f is not None])

    def _done(self, _future: Future[Any]) -> None:
        with self._lock:
            self._running -= 1

    @property
    def running(self) -> int:
        with self._lock:
            return self._running

    def close(self) -> None:
        """Stop the worker processes (the pool starts new ones if used again)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


def _result(
    req: WhatIfRequest, status: str, reason: str | None, report: dict[str, Any] | None = None
) -> WhatIfResult:
    return WhatIfResult(
        req.request_id, req.twin_id, req.twin_type, status, req.issued_at, reason, report
    )


def live_state(
    twin_id: str, kind: TwinType, frames: Iterable[TelemetryFrame], history_s: float
) -> TwinNow:
    """The twin's state at its newest reading, from its recent frames (time-ordered)."""
    held = sorted(frames, key=lambda f: float(f.times[0]) if len(f.times) else 0.0)
    times = np.concatenate([f.times for f in held]) if held else np.array([])
    if times.size == 0:
        raise ConfigError(f"twin {twin_id!r} has no telemetry in the flow yet")
    order = np.argsort(times, kind="stable")
    keep = order[times[order] > times[order][-1] - history_s]
    signals = [s.name for s in kind.scalar_signals]
    cols: dict[str, Any] = {
        "time": pl.Series((times[keep] * 1e6).astype(np.int64)).cast(pl.Datetime("us", "UTC"))
    }
    for s in signals:
        parts = [f.signals.get(s, np.full(len(f.times), np.nan)) for f in held]
        cols[s] = np.concatenate(parts).astype(np.float64)[keep]
    return state_from_rows(pl.DataFrame(cols), twin_id, kind)


@dataclass(frozen=True)
class WhatIfStep:
    """The builder ``decide.whatif`` (stateful) calls per twin; shares one pool."""

    pool: WhatIfPool
    config: FlowConfig
    catalog: Mapping[str, TwinType]
    twin_types: Mapping[str, TwinType] | None = None
    clock: Callable[[], float] = time.time
    eof_wait_s: float = EOF_WAIT_S

    def __call__(self, resume: None) -> WhatIfLogic:
        return WhatIfLogic(self)


class WhatIfLogic(StatefulLogic[Any, WhatIfResult, None]):
    """One twin's recent frames and its what-ifs in flight."""

    def __init__(self, step: WhatIfStep) -> None:
        self.step = step
        self.frames: deque[TelemetryFrame] = deque()
        self.pending: list[tuple[WhatIfRequest, Future[Any]]] = []

    def on_item(self, value: Any) -> tuple[Iterable[WhatIfResult], bool]:
        if isinstance(value, TelemetryFrame):
            self._keep(value)
            return self._collect(), StatefulLogic.RETAIN
        if isinstance(value, WhatIfRequest):
            return [*self._submit(value), *self._collect()], StatefulLogic.RETAIN
        return [], StatefulLogic.RETAIN

    def _keep(self, frame: TelemetryFrame) -> None:
        if not len(frame.times):
            return
        self.frames.append(frame)
        newest = float(frame.times[-1])
        history = self.step.config.whatif_history_s
        while self.frames and float(self.frames[0].times[-1]) <= newest - history:
            self.frames.popleft()

    def _submit(self, req: WhatIfRequest) -> list[WhatIfResult]:
        if req.expires_at.timestamp() <= self.step.clock():
            return [WhatIfResult.rejected(req, "expired before it was run")]
        kind = (self.step.twin_types or {}).get(req.twin_id) or self.step.catalog[req.twin_type]
        history = self.step.config.whatif_history_s
        try:
            twin = live_state(req.twin_id, kind, self.frames, history)
        except ConfigError as exc:
            return [WhatIfResult.rejected(req, str(exc))]
        catalog = {kind.name: kind}
        future = self.step.pool.submit(run_whatif_job, twin, req.whatif, catalog, self.step.config)
        if future is None:
            return [WhatIfResult.rejected(req, BUSY)]
        self.pending.append((req, future))
        return []

    def _collect(self, wait_s: float = 0.0) -> list[WhatIfResult]:
        if not self.pending:
            return []
        if wait_s > 0:
            wait_all([f for _r, f in self.pending], timeout=wait_s)
        out, left = [], []
        for req, future in self.pending:
            if not future.done():
                left.append((req, future))
                continue
            try:
                status, reason, report = future.result()
            except Exception as exc:  # the worker process died, or the pool was closed
                status, reason, report = FAILED, f"{type(exc).__name__}: {exc}"[:500], None
            out.append(_result(req, status, reason, report))
        self.pending = left
        return out

    def on_notify(self) -> tuple[Iterable[WhatIfResult], bool]:
        return self._collect(), StatefulLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[WhatIfResult], bool]:
        out = self._collect(self.step.eof_wait_s)
        for req, _f in self.pending:
            LOG.warning("what-if %s of %s still running at the end", req.request_id, req.twin_id)
            out.append(_result(req, FAILED, "the flow ended before it finished"))
        self.pending = []
        return out, StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        if not self.pending:
            return None
        return datetime.now(UTC) + timedelta(seconds=POLL_S)

    def snapshot(self) -> None:
        return None  # the history refills from telemetry; what-ifs in flight are not resumed


__all__ = ["POLL_S", "WhatIfLogic", "WhatIfPool", "WhatIfStep", "live_state", "run_whatif_job"]
