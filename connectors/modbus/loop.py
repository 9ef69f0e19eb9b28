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
                tasks = asyncio.all_tasks(self.loop)
                for task in tasks:
                    task.cancel()
                if tasks:
                    gathered = asyncio.gather(*tasks, return_exceptions=True)
                    self.loop.run_until_complete(gathered)
                # one more turn, so transports closed by that cleanup release their sockets
                self.loop.run_until_complete(asyncio.sleep(0))
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                self.loop.close()


__all__ = ["LoopThread"]
