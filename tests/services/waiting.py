"""Waiting in tests for something a real peer does, with a deadline that fails the test."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest


def wait_until(what: str, check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    """Poll ``check`` every 50 ms; fail the test naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def came_true(check: Callable[[], bool], timeout_s: float, every_s: float = 0.1) -> bool:
    """Whether ``check`` came true within ``timeout_s`` (polled every ``every_s``), for a test
    that records the answer rather than failing at once."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(every_s)
    return True
