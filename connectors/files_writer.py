"""A background writer for one Parquet sink partition: builds and writes parts off the
dataflow's worker thread.

The worker hands over whole buffers (:meth:`PartWriter.submit`); a bounded queue makes it
wait when the writer falls behind (back-pressure instead of unbounded memory), and every wait
has a timeout that ends in :class:`SinkStalled`, naming the sink, instead of a hung flow. An
error in the writer is raised again in the worker at its next call, so nothing is dropped
silently. :meth:`PartWriter.wait` blocks until everything submitted is on disk (a recovery
snapshot and the close need that).

After a job the writer gives glibc's free heap pages back to the system (``malloc_trim``), at
most once a second for the whole process (:class:`HeapTrim`): the worker frees decoded frames
and buffered items all the time, and glibc kept 50-90 MiB of them at 10,000 twins. With it,
``bench_e2e.py --memory 10000 --rounds 2`` peaked at 771 MiB (767-775) against 829 (828-830)
without, readings/s 0.97x with the ranges overlapping.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import queue
import threading
import time
from collections.abc import Callable

from twinflow.core.errors import TwinflowError

Job = Callable[[], None]


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or ``None`` where the C library has none (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


#: glibc's ``malloc_trim`` of this process (``None`` without glibc).
MALLOC_TRIM = _malloc_trim()


class HeapTrim:
    """Calls ``trim(0)`` (glibc's ``malloc_trim``) at most once every ``every_s`` seconds,
    whichever thread asks; returns whether it did."""

    def __init__(
        self, every_s: float = 1.0, trim: Callable[[int], int] | None = MALLOC_TRIM
    ) -> None:
        self.every_s = every_s
        self._trim = trim
        self._last = -float("inf")
        self._lock = threading.Lock()

    def __call__(self) -> bool:
        if self._trim is None:
            return False
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.every_s:
                return False
            self._last = now
        self._trim(0)
        return True


#: The process's one trim: every writer asks it after each job.
TRIM = HeapTrim()


class SinkStalled(TwinflowError):
    """A file sink's writer did not keep up within its timeout (disk full, hung mount, ...)."""


class PartWriter:
    """Runs submitted jobs in order on one daemon thread; at most ``depth`` wait in line."""

    def __init__(
        self,
        name: str,
        depth: int = 2,
        timeout_s: float = 120.0,
        trim: Callable[[], object] | None = TRIM,
    ) -> None:
        self.name = name
        self._trim = trim
        self.depth = depth
        self.timeout_s = timeout_s
        self._jobs: queue.Queue[Job | None] = queue.Queue(maxsize=depth)
        self._done = threading.Condition()
        self._submitted = 0
        self._finished = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"twinflow-{name}", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        """Queue ``job``; waits (up to the timeout) while ``depth`` jobs are already queued."""
        self._raise()
        try:
            self._jobs.put(job, timeout=self.timeout_s)
        except queue.Full:
            raise SinkStalled(
                f"{self.name}: the Parquet writer has not taken a part for {self.timeout_s:g} s "
                "(is the disk full or the folder on a hung mount?)"
            ) from None
        with self._done:
            self._submitted += 1

    def wait(self) -> None:
        """Block until every submitted job has run (or raise its error, or time out)."""
        with self._done:
            target = self._submitted
            ok = self._done.wait_for(
                lambda: self._finished >= target or self._error is not None, self.timeout_s
            )
        self._raise()
        if not ok:
            raise SinkStalled(
                f"{self.name}: Parquet parts not written within {self.timeout_s:g} s "
                "(is the disk full or the folder on a hung mount?)"
            )

    def close(self) -> None:
        """Run what is queued, then stop the thread."""
        self.wait()
        self._jobs.put(None, timeout=self.timeout_s)
        self._thread.join(self.timeout_s)

    @property
    def backlog(self) -> int:
        """Jobs submitted and not finished yet."""
        with self._done:
            return self._submitted - self._finished

    def _raise(self) -> None:
        if self._error is not None:
            raise TwinflowError(f"{self.name}: writing a Parquet part failed: {self._error}") from (
                self._error
            )

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                if self._error is None:
                    job()
            except BaseException as exc:  # kept and raised in the worker
                with self._done:
                    self._error = exc
                    self._done.notify_all()
            with self._done:
                self._finished += 1
                self._done.notify_all()
            if self._trim is not None:
                self._trim()
