"""The table of protocols: one line per connector, naming the module that holds its spec.

The deployment loader, ``twinflow run`` and ``twinflow simulate`` iterate this table instead
of switching on protocol names; adding a protocol means writing its package (with a
``deploy`` module that defines ``SPEC``, a :class:`~twinflow.connectors.spec.ConnectorSpec`)
and adding its line here. A spec module is imported the first time it is asked for, so a
deployment that does not use a protocol never imports its package (nor needs its extra).

>>> names()
('mqtt', 'opcua', 'modbus', 'kafka', 'replay')
>>> spec("mqtt").service_env
'MQTT_URL'
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import NamedTuple

from twinflow.connectors.spec import ConnectorSpec
from twinflow.core.errors import ConfigError


class Entry(NamedTuple):
    """Where a protocol's spec lives, and what the loader must know before importing it:
    whether it has a ``services.<name>`` section and which variable can stand in for it."""

    module: str
    service: bool = False
    env: str | None = None


PROTOCOLS: dict[str, Entry] = {
    "mqtt": Entry("twinflow.connectors.mqtt.deploy", service=True, env="MQTT_URL"),
    "opcua": Entry("twinflow.connectors.opcua.deploy"),
    "modbus": Entry("twinflow.connectors.modbus.deploy"),
    "kafka": Entry("twinflow.connectors.kafka.deploy", service=True, env="KAFKA_BOOTSTRAP"),
    "replay": Entry("twinflow.connectors.recorded.deploy"),
}


def names() -> tuple[str, ...]:
    """Every registered protocol, in registration order."""
    return tuple(PROTOCOLS)


def services() -> tuple[str, ...]:
    """The protocols that have a ``services.<name>`` section."""
    return tuple(n for n, e in PROTOCOLS.items() if e.service)


def service_env(name: str) -> str | None:
    """The environment variable that configures the protocol's service, without importing it."""
    return PROTOCOLS[name].env


@cache
def spec(name: str) -> ConnectorSpec:
    """The spec of protocol ``name`` (imports its module on first use)."""
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    entry = PROTOCOLS[name]
    found = getattr(importlib.import_module(entry.module), "SPEC", None)
    if not isinstance(found, ConnectorSpec) or found.name != name:
        raise TypeError(f"{entry.module}.SPEC is not the ConnectorSpec of {name!r}")
    if (found.service_env, bool(found.service_schemas)) != (entry.env, entry.service):
        raise TypeError(f"{name}: the registry line and {entry.module}.SPEC disagree")
    return found


def specs() -> tuple[ConnectorSpec, ...]:
    """Every spec (imports every protocol's module; the reference generator uses this)."""
    return tuple(spec(n) for n in PROTOCOLS)


__all__ = ["PROTOCOLS", "Entry", "names", "service_env", "services", "spec", "specs"]
