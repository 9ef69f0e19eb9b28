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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import ModuleType
from typing import Any

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


def lazy_exports(
    package: str, where: Mapping[str, str], *, extra: str = "", what: str = "twinflow"
) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: name ``n`` comes from submodule ``where[n]``,
    imported on first use, so importing the package needs none of its optional libraries;
    with ``extra``, a library missing then is a :class:`MissingExtra` naming that extra.

    >>> getattr_ = lazy_exports("twinflow.core", {"Backoff": "backoff"})
    >>> getattr_("Backoff").__name__
    'Backoff'
    >>> getattr_("nothing")
    Traceback (most recent call last):
    ...
    AttributeError: module 'twinflow.core' has no attribute 'nothing'
    """

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if not extra:
            return getattr(importlib.import_module(f"{package}.{module}"), name)
        return getattr(require(f"{package}.{module}", extra=extra, what=what), name)

    return __getattr__


__all__ = ["MissingExtra", "lazy_exports", "needs", "require"]
