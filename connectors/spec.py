"""The connector interface: what one protocol contributes to deployments, runs and simulations.

A :class:`ConnectorSpec` bundles, for one protocol, its binding type, the parsers of its
deployment-file sections (``services.<name>`` and the per-twin ``twins[].<name>``), its source
and command-sink factories, the simulated devices ``twinflow simulate`` serves it with, and
the Prometheus metrics it exports. :mod:`twinflow.connectors.registry` lists the specs; the
deployment loader, ``twinflow run`` and ``twinflow simulate`` iterate them.

Factories import the protocol's library when called, so a spec module imports without the
protocol's extra installed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from twinflow.connectors.simulator.settings import SimulatorSettings
from twinflow.core.config import Schema, Section
from twinflow.core.errors import ConfigError
from twinflow.core.records import TelemetryFrame
from twinflow.operators.twin_type import TwinType


@dataclass(frozen=True)
class BindingContext:
    """What a twin's binding parser may need besides its section: the twin, its type (as the
    deployment's catalogue defines it) and the plant."""

    twin_id: str
    twin_type: str
    site: str
    simulator: SimulatorSettings
    kind: TwinType | None = None

    @property
    def type(self) -> TwinType:
        """The twin's type: :attr:`kind`, else the bundled type named :attr:`twin_type`."""
        from twinflow.operators.catalog import twin_type

        return self.kind if self.kind is not None else twin_type(self.twin_type)


class SimulatedDevices:
    """The simulated devices of one protocol, as ``twinflow simulate`` drives them."""

    async def start(self) -> None:
        """Bring the devices up (servers listening, clients connected)."""

    async def send(self, frame: TelemetryFrame) -> None:
        """Serve the values of one frame of a twin these devices hold."""

    async def stop(self) -> None:
        """Shut the devices down."""

    def serves(self, twin_id: str) -> bool:
        """Whether ``twin_id`` is one of these devices."""
        return False


class ConnectorSpec:
    """One protocol's part in twinflow; subclasses override what the protocol has.

    ``service`` is the settings object built from ``services.<name>`` (``None`` when the file
    has no such section); ``bindings`` are the twins' binding objects of this protocol.
    """

    name: ClassVar[str]
    """The protocol's name in deployment files (``protocol: <name>``)."""
    doc: ClassVar[str]
    """One line for the reference: what the protocol is used for."""
    binding_type: ClassVar[type[Any] | None] = None
    """The frozen binding a twin of this protocol gets (``None``: twins have no section)."""
    binding_schemas: ClassVar[tuple[Schema, ...]] = ()
    """``twins[].<name>`` and its nested sections, first the binding section itself."""
    service_schemas: ClassVar[tuple[Schema, ...]] = ()
    """``services.<name>`` and its nested sections, when the protocol has a service section."""
    service_env: ClassVar[str | None] = None
    """The environment variable that supplies (or overrides) the service's address."""
    metrics: ClassVar[tuple[str, ...]] = ()
    """Prometheus metric families the connector exports."""
    metrics_module: ClassVar[str | None] = None
    """The module that registers them (imported on demand)."""

    # -- deployment files ------------------------------------------------------------------

    def parse_service(self, section: Section, env: Mapping[str, str]) -> Any:
        """The service settings from ``services.<name>`` (and :attr:`service_env`)."""
        raise ConfigError(f"{section.file}: {section.where}: {self.name} has no service section")

    def parse_binding(self, section: Section, ctx: BindingContext) -> Any:
        """A twin's binding from its ``twins[i].<name>`` section (empty when absent)."""
        return None

    def check(self, service: Any, twins: int, file: Path) -> None:
        """Cross-section checks once the file is read: ``twins`` use this protocol."""

    def signals(self, binding: Any, scalar: frozenset[str]) -> frozenset[str]:
        """The signals a binding carries (default: the twin type's ``scalar`` signals)."""
        return scalar

    # -- twinflow run ----------------------------------------------------------------------

    def source(self, service: Any, bindings: Sequence[Any], **limits: Any) -> Any | None:
        """The telemetry source of these twins, or ``None`` when there is nothing to read."""
        return None

    def command_sink(self, service: Any, bindings: Sequence[Any], **retry: Any) -> Any | None:
        """The sink that sends commands to these twins, or ``None`` (no actuator route)."""
        return None

    def outputs(self, service: Any) -> dict[str, list[Any]]:
        """Extra sinks per output stream (e.g. Kafka topics), by stream name."""
        return {}

    def request_sources(self, service: Any, twins: Mapping[str, str], **limits: Any) -> list[Any]:
        """Sources of command requests from outside (e.g. a Kafka topic)."""
        return []

    # -- twinflow simulate -----------------------------------------------------------------

    def devices(
        self, plant: Any, service: Any, simulator: SimulatorSettings, bindings: Sequence[Any]
    ) -> SimulatedDevices | None:
        """The simulated devices that serve these twins, or ``None``."""
        return None

    @property
    def actuates(self) -> bool:
        """Whether twins of this protocol receive commands over it."""
        return type(self).command_sink is not ConnectorSpec.command_sink


__all__ = ["BindingContext", "ConnectorSpec", "SimulatedDevices"]
