"""Checks the protocol connectors share: signal and command names against the twin's type, and
the walk over a list of bindings.

A binding may only name the Telemetry and Commands of its twin type's DTDL model; the errors
say which model and list what it declares. A binding carries its type (``kind``, from the
deployment's catalogue); one built in code without it gets the bundled type of its name.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from twinflow.core.config import Section
from twinflow.core.errors import ConfigError, ValidationError
from twinflow.operators.catalog import twin_type as bundled_type
from twinflow.operators.twin_type import TwinType

B = TypeVar("B")


def kind_of(binding: Any) -> TwinType:
    """A binding's twin type: its ``kind``, else the bundled type of its ``twin_type`` name
    (a :class:`ConfigError` naming the twin when there is none)."""
    kind = getattr(binding, "kind", None)
    if isinstance(kind, TwinType):
        return kind
    try:
        return bundled_type(getattr(binding, "twin_type"))  # noqa: B009
    except ValidationError as exc:
        raise ConfigError(f"twin {getattr(binding, 'twin_id', '?')!r}: {exc}") from None


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
        twin_id = getattr(b, "twin_id")  # noqa: B009
        where = f"{protocol} binding of twin {twin_id!r}"
        if twin_id in seen:
            raise ConfigError(f"{where}: the twin is bound twice; keep one binding per twin")
        seen.add(twin_id)
        try:
            twin = kind_of(b)
        except ConfigError:
            raise ConfigError(
                f"{where}: unknown twin_type {getattr(b, 'twin_type')!r}; known: "  # noqa: B009
                f"{', '.join(sorted(_bundled()))}"
            ) from None
        yield b, where, twin


def _bundled() -> list[str]:
    from twinflow.operators.catalog import CATALOG

    return list(CATALOG)


def check_signal(s: Section, key: str, name: str, kind: TwinType) -> None:
    """Refuse ``name`` at ``s.key`` unless it is a Telemetry of the twin type's model."""
    known = kind.signal_names
    if name not in known:
        raise ConfigError(
            f"{s.file}: {s.path(key)}: {name!r} is not a Telemetry of {kind.name}'s model "
            f"{kind.model_id}; known: {', '.join(sorted(known))}"
        )


def check_sent(
    s: Section, key: str, names: tuple[str, ...], kind: TwinType, carrier: str
) -> tuple[str, ...]:
    """``names`` (at ``s.key``) as the scalar signals a twin sends over ``carrier``: each a
    Telemetry of the twin type's model and none a waveform; empty means all of them."""
    for i, name in enumerate(names):
        check_signal(s, f"{key}[{i}]", name, kind)
        if kind.signal(name).waveform:
            raise ConfigError(
                f"{s.file}: {s.path(f'{key}[{i}]')}: {name!r} is a waveform signal; {carrier} "
                "telemetry carries scalar signals"
            )
    return names


def check_command(s: Section, key: str, name: str, param: str, kind: TwinType) -> None:
    """Refuse a command mapping unless the model declares command ``name`` with ``param``."""
    model = kind.model_id
    actuators = {a.name: a for a in kind.actuators}
    if name not in actuators:
        raise ConfigError(
            f"{s.file}: {s.path(key)}: {kind.name}'s model {model} "
            f"declares no command {name!r}; it declares {', '.join(sorted(actuators))}"
        )
    if param not in actuators[name].params:
        raise ConfigError(
            f"{s.file}: {s.path(key)}: command {name!r} of {model} has "
            f"no request field {param!r}; it takes {', '.join(sorted(actuators[name].params))}"
        )


__all__ = ["check_command", "check_sent", "check_signal", "each_binding", "kind_of"]
