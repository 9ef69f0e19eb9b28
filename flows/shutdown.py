"""A clean stop on Ctrl-C and SIGTERM: the sources end, the flow drains, the outputs flush.

Bytewax stops a dataflow with a panic when a signal handler raises (Python's default for
SIGINT raises ``KeyboardInterrupt``). Instead, :func:`stop_on_signals` installs handlers that
only set a :class:`threading.Event`; every source of the flow is wrapped by :func:`stoppable`,
whose partitions end (``StopIteration``) once the event is set. With every input ended,
Bytewax finishes the dataflow the ordinary way: the stateful steps flush, every sink writes
what it holds and closes, and ``cli_main`` returns. A second signal stops the process at
once (exit status 130) for a flow that cannot drain, e.g. a sink retrying an unreachable
service.

The wrappers also let an observer see every batch a partition emits (``tap``), which is how
:mod:`twinflow.flows.observe` follows Kafka offsets and arrival times without touching the
connectors.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any, TextIO

from bytewax.inputs import (
    DynamicSource,
    FixedPartitionedSource,
    Source,
    StatefulSourcePartition,
    StatelessSourcePartition,
)

#: Sees each batch a partition emitted: ``(step_id, partition key, inner partition, items)``.
Tap = Callable[[str, str, Any, list[Any]], None]

#: The longest a stop request waits for a partition that asked not to be polled for a while.
POLL_CAP = timedelta(seconds=0.5)


class _Partition:
    """What both kinds of wrapped partition share: the stop check and the awake cap."""

    def __init__(self, inner: Any, stop: threading.Event, tap: Tap | None, where: tuple[str, str]):
        self.inner = inner
        self.stop = stop
        self.tap = tap
        self.where = where
        self.awake: datetime | None = None

    def _next(self) -> list[Any]:
        if self.stop.is_set():
            raise StopIteration
        if self.awake is not None and datetime.now(UTC) < self.awake:
            return []  # polled early because of the cap below; the inner asked to wait
        items = list(self.inner.next_batch())
        if self.tap is not None and items:
            self.tap(self.where[0], self.where[1], self.inner, items)
        return items

    def _awake(self) -> datetime | None:
        self.awake = self.inner.next_awake()
        if self.awake is None:
            return None
        return min(self.awake, datetime.now(UTC) + POLL_CAP)


class _Stateful(_Partition, StatefulSourcePartition[Any, Any]):
    def next_batch(self) -> Iterable[Any]:
        return self._next()

    def next_awake(self) -> datetime | None:
        return self._awake()

    def snapshot(self) -> Any:
        return self.inner.snapshot()

    def close(self) -> None:
        self.inner.close()


class _Stateless(_Partition, StatelessSourcePartition[Any]):
    def next_batch(self) -> Iterable[Any]:
        return self._next()

    def next_awake(self) -> datetime | None:
        return self._awake()

    def close(self) -> None:
        self.inner.close()


class StoppableFixed(FixedPartitionedSource[Any, Any]):
    """A fixed-partition source whose partitions end when ``stop`` is set."""

    def __init__(
        self, inner: FixedPartitionedSource[Any, Any], stop: threading.Event, tap: Tap | None
    ):
        self.inner, self.stop, self.tap = inner, stop, tap

    def list_parts(self) -> list[str]:
        return self.inner.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _Stateful:
        part = self.inner.build_part(step_id, for_part, resume_state)
        return _Stateful(part, self.stop, self.tap, (step_id, for_part))


class StoppableDynamic(DynamicSource[Any]):
    """A dynamic source whose partitions end when ``stop`` is set."""

    def __init__(self, inner: DynamicSource[Any], stop: threading.Event, tap: Tap | None):
        self.inner, self.stop, self.tap = inner, stop, tap

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Stateless:
        part = self.inner.build(step_id, worker_index, worker_count)
        return _Stateless(part, self.stop, self.tap, (step_id, str(worker_index)))


def stoppable(source: Source[Any], stop: threading.Event, tap: Tap | None = None) -> Source[Any]:
    """``source`` ending when ``stop`` is set; its recovery state and partitions unchanged."""
    if isinstance(source, FixedPartitionedSource):
        return StoppableFixed(source, stop, tap)
    if isinstance(source, DynamicSource):
        return StoppableDynamic(source, stop, tap)
    raise TypeError(f"not a Bytewax source: {source!r}")


def _name(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


@contextlib.contextmanager
def stop_on_signals(
    stop: threading.Event, stream: TextIO | None = sys.stderr
) -> Iterator[threading.Event]:
    """SIGINT and SIGTERM set ``stop`` (a clean stop); a second one exits at once with 130.

    Only the main thread may install handlers; elsewhere (a test's thread) nothing is
    installed and ``stop`` is only set by whoever holds it. The previous handlers come back
    on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handle(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            if stream is not None:
                print(f"\n{_name(signum)} again: stopping at once; outputs may be incomplete",
                      file=stream, flush=True)  # fmt: skip
            os._exit(130)
        stop.set()
        if stream is not None:
            print(f"\n{_name(signum)}: stopping: the sources end, outputs are flushed "
                  "(again to stop at once)", file=stream, flush=True)  # fmt: skip

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
