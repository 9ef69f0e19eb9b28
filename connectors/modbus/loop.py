"""An asyncio event loop in its own daemon thread.

pymodbus's async client lives on an event loop, while Bytewax calls sources and sinks from
its worker threads and must never block. Each Modbus source partition and command sink
runs its clients on one :class:`LoopThread`; the worker only hands coroutines over
(:meth:`submit`) or drains what the loop produced. :meth:`stop` cancels what is still
running, lets it clean up (close sockets) and closes the loop.

>>> import asyncio
>>> lt = LoopThread("doc").start()
>>> lt.run(asyncio.sleep(0, result=42), timeout=5)
42
>>> lt.stop()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """Runs one event loop in a daemon thread named ``name``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._stopped = False

    def start(self) -> LoopThread:
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop; returns a thread-safe future of its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coro`` on the loop and wait (at most ``timeout`` s) for its result."""
        return self.submit(coro).result(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel every task, let them finish their cleanup, close the loop; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
        elif not self.loop.is_closed():
            self.loop.close()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            try:
                self._cancel_all()
                # one more turn, so transports closed by that cleanup release their sockets
                self.loop.run_until_complete(asyncio.sleep(0))
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                self.loop.close()

    def _cancel_all(self, limit_s: float = 5.0) -> None:
        """Cancel every task until all are done (bounded).

        Cancelling once is not enough on Python 3.11: ``asyncio.wait_for`` (which pymodbus
        awaits answers with) drops a cancellation that races with the answer arriving, and
        the task carries on. Hence cancel again until the tasks are done.
        """
        deadline = time.monotonic() + limit_s
        tasks = asyncio.all_tasks(self.loop)
        while tasks and time.monotonic() < deadline:
            for task in tasks:
                task.cancel()
            self.loop.run_until_complete(asyncio.wait(tasks, timeout=0.25))
            tasks = {t for t in tasks if not t.done()}


__all__ = ["LoopThread"]
