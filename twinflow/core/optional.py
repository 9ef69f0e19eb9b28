"""Imports of optional dependencies that say which extra to install when they fail.

The protocol connectors need libraries that only some deployments install (``twinflow[mqtt]``,
``[opcua]``, ``[modbus]``, ``[kafka]``, ``[postgres]``). Import them inside :func:`needs` (at
module level, keeping the static types) or through :func:`require` (lazily, as a module), and
a missing library becomes one :class:`MissingExtra` that names the ``pip install`` to run.

>>> require("json", extra="none").__name__
'json'
>>> try:
...     require("twinflow_no_such_module", extra="mqtt", what="the MQTT connector")
... except MissingExtra as exc:
...     print(exc)  # doctest: +ELLIPSIS
the MQTT connector needs twinflow_no_such_module, ...: pip install 'twinflow[mqtt]'
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from twinflow.core.errors import TwinflowError


class MissingExtra(TwinflowError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


@contextmanager
def needs(extra: str, what: str = "twinflow") -> Iterator[None]:
    """Turn an :class:`ImportError` in the block into :class:`MissingExtra` naming ``extra``;
    ``what`` says who needs it (e.g. "the OPC UA connector")."""
    try:
        yield
    except ImportError as exc:
        missing = exc.name or "a library"
        raise MissingExtra(
            f"{what} needs {missing}, which is not installed or failed to import ({exc}): "
            f"pip install 'twinflow[{extra}]'"
        ) from exc


def require(module: str, *, extra: str, what: str = "twinflow") -> ModuleType:
    """Import and return ``module``, or raise :class:`MissingExtra` naming ``extra``."""
    with needs(extra, what):
        found = importlib.import_module(module)
    return found


__all__ = ["MissingExtra", "needs", "require"]
