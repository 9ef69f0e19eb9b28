"""How each twin is bound to a protocol, and how to reach each service: frozen settings.

Each protocol's deployment-section parser (``connectors/<protocol>/deploy.py``, run by the
loader in ``flows/deploy.py``) builds these from YAML and the environment and validates them;
connectors take them as they are and never read files or variables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from twinflow.operators.twin_type import TwinType


def _frozen() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """TLS for a client connection; empty paths mean the system defaults."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False


# --------------------------------------------------------------------------- MQTT


@dataclass(frozen=True, slots=True)
class FieldMap:
    """One JSON payload field that carries a signal: ``value = raw * scale + offset``."""

    signal: str
    scale: float = 1.0
    offset: float = 0.0


@dataclass(frozen=True, slots=True)
class MqttBinding:
    """A twin's MQTT topics and payload mapping.

    Telemetry payloads are JSON objects such as ``{"ts": 1767225600.0, "wind": 7.1, ...}``
    (one reading set) or ``{"ts": [...], "wind": [...]}`` (a batch). ``fields`` maps payload
    field names to signals; when empty, field names are signal names. ``time_field`` holds
    epoch seconds or ISO-8601 with a zone.
    """

    twin_id: str
    twin_type: str
    telemetry_topic: str
    command_topic: str
    response_topic: str
    fields: Mapping[str, FieldMap] = field(default_factory=_frozen)
    time_field: str = "ts"
    #: The signals this twin sends (empty: every scalar signal of its type).
    signals: tuple[str, ...] = ()
    #: The twin's type as the deployment defines it (``None``: the bundled type by name).
    kind: TwinType | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """An MQTT broker and the session twinflow keeps there."""

    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "twinflow"
    username: str | None = None
    password: str | None = None
    tls: TlsSettings | None = None
    qos: int = 1
    keepalive_s: int = 30
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    max_payload_bytes: int = 1_048_576


# --------------------------------------------------------------------------- OPC UA


@dataclass(frozen=True, slots=True)
class OpcUaSecurity:
    """Security policy, mode and the client's certificate (PEM or DER paths)."""

    policy: Literal["Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"] = (
        "Basic256Sha256"
    )
    mode: Literal["Sign", "SignAndEncrypt"] = "SignAndEncrypt"
    certificate: str = ""
    private_key: str = ""
    server_certificate: str | None = None
    #: CA or server certificates (a file or a folder) the server's certificate must match.
    trust: str | None = None


@dataclass(frozen=True, slots=True)
class OpcUaWrite:
    """A command as a node write: ``params[param]`` is written to ``node``."""

    node: str
    param: str


@dataclass(frozen=True, slots=True)
class OpcUaBinding:
    """A twin's OPC UA server, the node of each signal and the nodes its commands write."""

    twin_id: str
    twin_type: str
    endpoint: str
    nodes: Mapping[str, str]
    commands: Mapping[str, OpcUaWrite] = field(default_factory=_frozen)
    sampling_interval_ms: float = 1000.0
    deadband: float = 0.0
    security: OpcUaSecurity | None = None
    username: str | None = None
    password: str | None = None
    #: The twin's type as the deployment defines it (``None``: the bundled type by name).
    kind: TwinType | None = field(default=None, compare=False, repr=False)


# --------------------------------------------------------------------------- Modbus

RegisterKind = Literal["holding", "input", "coil", "discrete"]
RegisterType = Literal["int16", "uint16", "int32", "uint32", "float32", "bool"]
Order = Literal["big", "little"]


@dataclass(frozen=True, slots=True)
class Register:
    """Where a value lives in a Modbus device and how to decode it.

    ``value = raw * scale + offset``; 32-bit types span two registers whose order is
    ``word_order``; ``byte_order`` is the order of the two bytes inside each register.
    """

    address: int
    kind: RegisterKind = "holding"
    type: RegisterType = "uint16"
    word_order: Order = "big"
    byte_order: Order = "big"
    scale: float = 1.0
    offset: float = 0.0

    @property
    def count(self) -> int:
        """Registers (or bits) the value occupies."""
        return 2 if self.type in ("int32", "uint32", "float32") else 1


@dataclass(frozen=True, slots=True)
class ModbusWrite:
    """A command as a register or coil write of ``params[param]`` (range-checked first)."""

    register: Register
    param: str


@dataclass(frozen=True, slots=True)
class ModbusBinding:
    """A twin's Modbus TCP device, its register map and poll interval."""

    twin_id: str
    twin_type: str
    host: str
    port: int
    unit: int
    registers: Mapping[str, Register]
    commands: Mapping[str, ModbusWrite] = field(default_factory=_frozen)
    poll_interval_s: float = 1.0
    timeout_s: float = 1.0
    #: The twin's type as the deployment defines it (``None``: the bundled type by name).
    kind: TwinType | None = field(default=None, compare=False, repr=False)


# --------------------------------------------------------------------------- Kafka


@dataclass(frozen=True, slots=True)
class KafkaBinding:
    """A telemetry-only Kafka twin (``protocol: kafka``): which signals it sends.

    Its telemetry arrives on the service's telemetry topics; there is no actuator route.
    """

    twin_id: str
    twin_type: str
    #: The signals this twin sends (empty: every scalar signal of its type).
    signals: tuple[str, ...] = ()
    #: The twin's type as the deployment defines it (``None``: the bundled type by name).
    kind: TwinType | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    """A Kafka cluster; ``extra`` passes librdkafka settings through (SASL, TLS...)."""

    bootstrap: str = "127.0.0.1:9092"
    extra: Mapping[str, str] = field(default_factory=_frozen)
    telemetry_topics: tuple[str, ...] = ()
    group_id: str = "twinflow"
    alerts_topic: str | None = "twinflow.alerts"
    commands_topic: str | None = "twinflow.commands"
    twin_state_topic: str | None = "twinflow.twin-state"
    command_requests_topic: str | None = None
    #: asset roll-ups (asset_rollup.v1), keyed by asset id; ``None``: not written to Kafka
    rollups_topic: str | None = None
