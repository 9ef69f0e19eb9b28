"""Checks the protocol connectors share: signal and command names against the catalogue, and
the walk over a list of bindings.

A binding may only name the Telemetry and Commands of its twin type's DTDL model; the errors
say which model and list what it declares.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from twinflow.core.config import Section
from twinflow.core.errors import ConfigError
from twinflow.operators.catalog import CATALOG, TwinType

B = TypeVar("B")


def each_binding(
    bindings: Sequence[Any], kind: type[B], protocol: str
) -> Iterator[tuple[B, str, TwinType]]:
    """Each binding with the ``where`` its errors start with and its twin type, after the
    checks every protocol makes: the right binding class, each twin bound once, a known type.
    """
    seen: set[str] = set()
    for b in bindings:
        if not isinstance(b, kind):
            raise ConfigError(
                f"expected {kind.__module__}.{kind.__name__} items, got {type(b).__name__}"
            )
        twin_id, twin_type = getattr(b, "twin_id"), getattr(b, "twin_type")  # noqa: B009
        where = f"{protocol} binding of twin {twin_id!r}"
        if twin_id in seen:
            raise ConfigError(f"{where}: the twin is bound twice; keep one binding per twin")
        seen.add(twin_id)
        twin = CATALOG.get(twin_type)
        if twin is None:
            raise ConfigError(
                f"{where}: unknown twin_type {twin_type!r}; known: {', '.join(sorted(CATALOG))}"
            )
        yield b, where, twin


def signal_names(twin_type: str) -> set[str]:
    """Every signal of a twin type (scalar and burst)."""
    return {sp.name for sp in CATALOG[twin_type].signals}


def check_signal(s: Section, key: str, name: str, twin_type: str) -> None:
    """Refuse ``name`` at ``s.key`` unless it is a Telemetry of the twin type's model."""
    known = signal_names(twin_type)
    if name not in known:
        raise ConfigError(
            f"{s.file}: {s.path(key)}: {name!r} is not a Telemetry of {twin_type}'s model "
            f"{CATALOG[twin_type].model_id}; known: {', '.join(sorted(known))}"
        )


def check_command(s: Section, key: str, name: str, param: str, twin_type: str) -> None:
    """Refuse a command mapping unless the model declares command ``name`` with ``param``."""
    model = CATALOG[twin_type].model_id
    actuators = {a.name: a for a in CATALOG[twin_type].actuators}
    if name not in actuators:
        raise ConfigError(
            f"{s.file}: {s.path(key)}: {twin_type}'s model {model} "
            f"declares no command {name!r}; it declares {', '.join(sorted(actuators))}"
        )
    if param not in actuators[name].params:
        raise ConfigError(
            f"{s.file}: {s.path(key)}: command {name!r} of {model} has "
            f"no request field {param!r}; it takes {', '.join(sorted(actuators[name].params))}"
        )


__all__ = ["check_command", "check_signal", "signal_names"]
