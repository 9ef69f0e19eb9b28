"""A background writer for one Parquet sink partition: builds and writes parts off the
dataflow's worker thread.

The worker hands over whole buffers (:meth:`PartWriter.submit`); a bounded queue makes it
wait when the writer falls behind (back-pressure instead of unbounded memory), and every wait
has a timeout that ends in :class:`SinkStalled`, naming the sink, instead of a hung flow. An
error in the writer is raised again in the worker at its next call, so nothing is dropped
silently. :meth:`PartWriter.wait` blocks until everything submitted is on disk (a recovery
snapshot and the close need that).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from twinflow.core.errors import TwinflowError

Job = Callable[[], None]


class SinkStalled(TwinflowError):
    """A file sink's writer did not keep up within its timeout (disk full, hung mount, ...)."""


class PartWriter:
    """Runs submitted jobs in order on one daemon thread; at most ``depth`` wait in line."""

    def __init__(self, name: str, depth: int = 2, timeout_s: float = 120.0) -> None:
        self.name = name
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
