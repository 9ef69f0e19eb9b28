"""Shared test settings, and the guard that keeps the quick tier free of services.

Test tiers (docs/internals/testing.md): a test that starts a real peer carries the marker
``services``: mosquitto, PostgreSQL or a Kafka-protocol broker (tests/services/), or the
simulator's OPC UA or Modbus TCP devices on a loopback port. ``infra/dev quick`` runs
``pytest -m "not services"``; ``infra/dev test`` runs everything.

So that a missing marker cannot go unnoticed, starting one of those peers from a test that is
not marked ``services`` fails that test, in either tier, with a message that says what to add.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import warnings
from collections.abc import Callable, Generator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=30, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


class UnmarkedServiceError(RuntimeError):
    """A test that is not marked ``services`` started a service."""


_running: pytest.Item | None = None

#: (module, class) of everything that starts a peer; ``start`` is guarded.
_STARTERS = (
    ("tests.services.mosquitto", "Mosquitto"),
    ("tests.services.postgres", "Postgres"),
    ("tests.services.kafka", "KafkaBroker"),
    ("twinflow.connectors.simulator.devices.opcua", "OpcUaDevices"),
    ("twinflow.connectors.simulator.devices.modbus", "ModbusDevices"),
)


def _check(what: str) -> None:
    item = _running
    if item is not None and item.get_closest_marker("services") is None:
        raise UnmarkedServiceError(
            f"{item.nodeid} starts {what} but is not marked services: add "
            "@pytest.mark.services (or pytestmark = pytest.mark.services for the module)"
        )


def _guard(cls: type[Any]) -> None:
    start: Callable[..., Any] = cls.start
    what = cls.__name__
    if getattr(start, "_tier_guard", False):
        return
    if inspect.iscoroutinefunction(start):

        @functools.wraps(start)
        async def guarded_async(self: Any, *args: Any, **kwargs: Any) -> Any:
            _check(what)
            return await start(self, *args, **kwargs)

        guarded: Any = guarded_async
    else:

        @functools.wraps(start)
        def guarded_sync(self: Any, *args: Any, **kwargs: Any) -> Any:
            _check(what)
            return start(self, *args, **kwargs)

        guarded = guarded_sync
    guarded._tier_guard = True
    cls.start = guarded


def pytest_configure(config: pytest.Config) -> None:
    for module, name in _STARTERS:
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:  # moved or renamed: say so, do not hide it
            warnings.warn(
                f"tests/conftest.py cannot guard {module}.{name}.start ({exc}); update _STARTERS",
                pytest.PytestConfigWarning,
                stacklevel=1,
            )
            continue
        _guard(cls)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    global _running
    _running = item
    try:
        yield
    finally:
        _running = None
