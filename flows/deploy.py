"""Deployment files: one YAML file says which twins exist, how each is reached and where the
outputs go. :func:`load_deployment` validates all of it at start and names the bad field.

Service addresses come from the file and can be overridden by the environment:
``MQTT_URL`` (``mqtt://host:port`` or ``mqtts://``), ``KAFKA_BOOTSTRAP`` (``host:port,...``) and
``DATABASE_URL``. See ``infra/examples/plant.yaml`` for a complete, commented example.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from twinflow.connectors.bindings import (
    FieldMap,
    KafkaSettings,
    ModbusBinding,
    ModbusWrite,
    MqttBinding,
    MqttSettings,
    OpcUaBinding,
    OpcUaSecurity,
    OpcUaWrite,
    Register,
    TlsSettings,
)
from twinflow.core.errors import ConfigError
from twinflow.flows.config import FlowConfig, parse_duration
from twinflow.operators.catalog import CATALOG, TwinType
from twinflow.operators.registry import (
    COMPONENT_OF,
    CONTAINMENT,
    PART_OF,
    SITE,
    RegistryEntry,
    TwinRegistry,
)

PROTOCOLS = ("mqtt", "opcua", "modbus")
#: Twins whose telemetry arrives on the Kafka telemetry topics (bridged from elsewhere); they
#: have no binding and no actuator route, so their commands only go out on the commands topic.
KAFKA_ONLY = "kafka"


@dataclass(frozen=True)
class SimulatorSettings:
    """What ``twinflow simulate`` simulates: the plant's size, seed and pace."""

    twins: int = 6
    seed: int = 7
    speed: float = 1.0
    """Simulated seconds per wall-clock second (1 = real time)."""
    duration_s: float = 6 * 3600.0
    """Simulated time the plant runs for; injected faults develop within it."""
    opcua_endpoint: str = "opc.tcp://127.0.0.1:4840/twinflow/"
    modbus_host: str = "127.0.0.1"
    modbus_port: int = 5020


@dataclass(frozen=True)
class TwinSpec:
    """One twin of the deployment and its protocol binding."""

    twin_id: str
    twin_type: str
    protocol: str
    mqtt: MqttBinding | None = None
    opcua: OpcUaBinding | None = None
    modbus: ModbusBinding | None = None
    part_of: str | None = None
    """The asset (or twin) this twin sits in; ``None``: directly in the site."""
    containment: str = PART_OF
    """``partOf``, or ``isComponentOf`` when declared with ``component_of``."""
    relationships: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Named relationships to other twins or assets, e.g. ``{"feeds": ("motor-003",)}``."""


@dataclass(frozen=True)
class AssetSpec:
    """An asset that reports no telemetry (an area, a line, a skid) and where it sits."""

    asset_id: str
    asset_type: str
    part_of: str | None = None
    containment: str = PART_OF
    relationships: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    model_id: str | None = None


@dataclass(frozen=True)
class Deployment:
    """A validated deployment file."""

    path: Path
    twins: tuple[TwinSpec, ...]
    mqtt: MqttSettings | None
    kafka: KafkaSettings | None
    database_url: str | None
    flow: FlowConfig
    simulator: SimulatorSettings = field(default_factory=SimulatorSettings)
    site: str = "site1"
    assets: tuple[AssetSpec, ...] = ()

    def registry(self) -> TwinRegistry:
        """The site, its assets and twins with their containment and relationships.

        Raises a :class:`~twinflow.operators.registry.RegistryError` naming the file and field when
        a target is unknown, an id repeats, or containment loops.
        """
        entries = [RegistryEntry.make(self.site, SITE, where="site")]
        for i, a in enumerate(self.assets):
            entries.append(
                _entry(a.asset_id, a.asset_type, None, a.model_id, a, self.site, f"assets[{i}]")
            )
        for i, t in enumerate(self.twins):
            model_id = getattr(CATALOG.get(t.twin_type), "model_id", None) or None
            entries.append(
                _entry(t.twin_id, t.twin_type, t.protocol, model_id, t, self.site, f"twins[{i}]")
            )
        return TwinRegistry(entries, source=str(self.path))

    @property
    def twin_types(self) -> dict[str, str]:
        return {t.twin_id: t.twin_type for t in self.twins}

    def deployed_types(self) -> dict[str, TwinType]:
        """Each twin's type limited to the signals its binding carries."""
        out = {}
        for t in self.twins:
            full = CATALOG[t.twin_type]
            if t.opcua is not None:
                bound = set(t.opcua.nodes)
            elif t.modbus is not None:
                bound = set(t.modbus.registers)
            else:  # MQTT payloads carry the scalar signals; bursts are not sent over MQTT
                bound = {s.name for s in full.scalar_signals}
            out[t.twin_id] = replace(
                full, signals=tuple(s for s in full.signals if s.name in bound)
            )
        return out

    def bindings(self, protocol: str) -> list[Any]:
        return [getattr(t, protocol) for t in self.twins if getattr(t, protocol) is not None]


class _Section:
    """A mapping from the file with its dotted path, for errors that name the field."""

    def __init__(self, data: Any, where: str, file: Path):
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{file}: {where} must be a mapping, got {type(data).__name__}")
        self.data = dict(data)
        self.where = where
        self.file = file

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, expected: str) -> ConfigError:
        return ConfigError(
            f"{self.file}: {self.path(key)} = {self.data.get(key)!r}: expected {expected}"
        )

    def check_keys(self, allowed: set[str] | frozenset[str] | tuple[str, ...]) -> None:
        for key in self.data:
            if key not in allowed:
                near = difflib.get_close_matches(str(key), [str(a) for a in allowed], n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                raise ConfigError(
                    f"{self.file}: unknown field {self.path(str(key))!r}{hint} "
                    f"(allowed: {', '.join(sorted(allowed))})"
                )

    def section(self, key: str) -> _Section:
        return _Section(self.data.get(key), self.path(key), self.file)

    def str(self, key: str, default: str | None = None) -> str | None:
        v = self.data.get(key, default)
        if v is not None and not isinstance(v, str):
            raise self.fail(key, "a string")
        return v

    def req_str(self, key: str) -> str:
        v = self.str(key)
        if not v:
            raise ConfigError(f"{self.file}: {self.path(key)} is required (a non-empty string)")
        return v

    def num(self, key: str, default: float, low: float | None = None) -> float:
        v = self.data.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self.fail(key, "a number")
        if low is not None and v < low:
            raise self.fail(key, f"a number >= {low:g}")
        return float(v)

    def int(self, key: str, default: int, low: int | None = None, high: int | None = None) -> int:
        v = self.data.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(key, "a whole number")
        if (low is not None and v < low) or (high is not None and v > high):
            raise self.fail(key, f"a whole number in [{low}, {high}]")
        return v

    def bool(self, key: str, default: bool) -> bool:
        v = self.data.get(key, default)
        if not isinstance(v, bool):
            raise self.fail(key, "true or false")
        return v


def load_deployment(path: Path | str, env: Mapping[str, str] | None = None) -> Deployment:
    """Read and validate a deployment file; ``env`` (default ``os.environ``) overrides addresses."""
    file = Path(path)
    env = os.environ if env is None else env
    try:
        raw = yaml.safe_load(file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"deployment file {file} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from None
    top = _Section(raw, "", file)
    top.check_keys({"version", "site", "services", "simulator", "flow", "assets", "twins"})
    if top.data.get("version", 1) != 1:
        raise top.fail("version", "1 (the only version of the deployment format so far)")
    site = top.str("site", "site1") or "site1"
    services = top.section("services")
    services.check_keys({"mqtt", "kafka", "database"})

    mqtt = _mqtt_settings(services.section("mqtt"), env) if "mqtt" in services.data else None
    if mqtt is None and env.get("MQTT_URL"):
        mqtt = _mqtt_settings(_Section({}, "services.mqtt", file), env)
    kafka = _kafka_settings(services.section("kafka"), env) if "kafka" in services.data else None
    if kafka is None and env.get("KAFKA_BOOTSTRAP"):
        kafka = _kafka_settings(_Section({}, "services.kafka", file), env)
    db = services.section("database")
    db.check_keys({"url"})
    database_url = env.get("DATABASE_URL") or db.str("url")

    sim = _simulator(top.section("simulator"))
    flow = _flow(top.section("flow"))
    twins_raw = top.data.get("twins")
    if not isinstance(twins_raw, list) or not twins_raw:
        raise ConfigError(f"{file}: twins must be a non-empty list of twins")
    twins: list[TwinSpec] = []
    seen: set[str] = set()
    for i, item in enumerate(twins_raw):
        section = _Section(item, f"twins[{i}]", file)
        spec = replace(_twin(section, site, sim), **_placement(section))
        if spec.twin_id in seen:
            raise ConfigError(f"{file}: twins[{i}].id {spec.twin_id!r} appears twice")
        seen.add(spec.twin_id)
        twins.append(spec)
    assets = _assets(top, site)
    dep = Deployment(file, tuple(twins), mqtt, kafka, database_url, flow, sim, site, assets)
    dep.registry()  # validates containment and relationships
    if dep.bindings("mqtt") and mqtt is None:
        raise ConfigError(f"{file}: twins use MQTT but services.mqtt is missing (or set MQTT_URL)")
    if any(t.protocol == KAFKA_ONLY for t in twins) and not (kafka and kafka.telemetry_topics):
        raise ConfigError(
            f"{file}: twins use protocol kafka but services.kafka.telemetry_topics is not set; "
            "list the topics that carry their telemetry"
        )
    return dep


def _mqtt_settings(s: _Section, env: Mapping[str, str]) -> MqttSettings:
    s.check_keys({"url", "client_id", "username", "password", "tls", "qos", "keepalive_s"})
    url = env.get("MQTT_URL") or s.str("url", "mqtt://127.0.0.1:1883") or ""
    parsed = urlparse(url)
    if parsed.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parsed.hostname:
        raise ConfigError(
            f"{s.file}: {s.path('url')} (or MQTT_URL) = {url!r}: expected mqtt://host:port "
            "or mqtts://host:port"
        )
    secure = parsed.scheme in ("mqtts", "ssl")
    tls = None
    if "tls" in s.data or secure:
        t = s.section("tls")
        t.check_keys({"ca_file", "cert_file", "key_file", "insecure"})
        tls = TlsSettings(
            ca_file=t.str("ca_file"),
            cert_file=t.str("cert_file"),
            key_file=t.str("key_file"),
            insecure=t.bool("insecure", False),
        )
    return MqttSettings(
        host=parsed.hostname,
        port=parsed.port or (8883 if secure else 1883),
        client_id=s.str("client_id", "twinflow") or "twinflow",
        username=parsed.username or s.str("username"),
        password=parsed.password or s.str("password"),
        tls=tls,
        qos=s.int("qos", 1, 0, 2),
        keepalive_s=s.int("keepalive_s", 30, 5, 3600),
    )


def _kafka_settings(s: _Section, env: Mapping[str, str]) -> KafkaSettings:
    s.check_keys(
        {
            "bootstrap",
            "extra",
            "telemetry_topics",
            "group_id",
            "alerts_topic",
            "commands_topic",
            "twin_state_topic",
            "command_requests_topic",
            "rollups_topic",
        }
    )
    bootstrap = env.get("KAFKA_BOOTSTRAP") or s.str("bootstrap", "127.0.0.1:9092") or ""
    for part in bootstrap.split(","):
        host, _, port = part.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(
                f"{s.file}: {s.path('bootstrap')} (or KAFKA_BOOTSTRAP) = {bootstrap!r}: "
                "expected host:port[,host:port...]"
            )
    extra = s.data.get("extra") or {}
    if not isinstance(extra, Mapping) or not all(isinstance(k, str) for k in extra):
        raise s.fail("extra", "a mapping of librdkafka settings")
    topics = s.data.get("telemetry_topics") or []
    if not isinstance(topics, list) or not all(isinstance(t, str) and t for t in topics):
        raise s.fail("telemetry_topics", "a list of topic names")
    return KafkaSettings(
        bootstrap=bootstrap,
        extra={str(k): str(v) for k, v in extra.items()},
        telemetry_topics=tuple(topics),
        group_id=s.str("group_id", "twinflow") or "twinflow",
        alerts_topic=s.str("alerts_topic", "twinflow.alerts"),
        commands_topic=s.str("commands_topic", "twinflow.commands"),
        twin_state_topic=s.str("twin_state_topic", "twinflow.twin-state"),
        command_requests_topic=s.str("command_requests_topic"),
        rollups_topic=s.str("rollups_topic"),
    )


def _simulator(s: _Section) -> SimulatorSettings:
    s.check_keys(
        {
            "twins",
            "seed",
            "speed",
            "duration",
            "opcua_endpoint",
            "modbus_host",
            "modbus_port",
        }
    )
    d = SimulatorSettings()
    duration = s.data.get("duration", d.duration_s)
    try:
        duration_s = parse_duration(duration, s.path("duration"))
    except ConfigError as exc:
        raise ConfigError(f"{s.file}: {exc}") from None
    return SimulatorSettings(
        twins=s.int("twins", d.twins, 1, 100_000),
        seed=s.int("seed", d.seed),
        speed=s.num("speed", d.speed, 0.001),
        duration_s=duration_s,
        opcua_endpoint=s.str("opcua_endpoint", d.opcua_endpoint) or d.opcua_endpoint,
        modbus_host=s.str("modbus_host", d.modbus_host) or d.modbus_host,
        modbus_port=s.int("modbus_port", d.modbus_port, 1, 65535),
    )


def _flow(s: _Section) -> FlowConfig:
    allowed = set(FlowConfig.field_names()) - {"out_dir"}
    s.check_keys(allowed)
    kinds = {f.name: f.type for f in fields(FlowConfig)}
    values: dict[str, Any] = {}
    for key, v in s.data.items():
        want = str(kinds[key])
        if "bool" in want and not isinstance(v, bool):
            raise s.fail(key, "true or false")
        if ("float" in want or "int" in want) and (
            isinstance(v, bool) or not isinstance(v, int | float)
        ):
            raise s.fail(key, "a number")
        values[key] = int(v) if "int" in want and "float" not in want else v
    try:
        return FlowConfig(**values)
    except ConfigError as exc:
        raise ConfigError(f"{s.file}: {s.where}: {exc}") from None


def _twin(s: _Section, site: str, sim: SimulatorSettings) -> TwinSpec:
    s.check_keys({"id", "type", "protocol", *PROTOCOLS, *_PLACEMENT_KEYS})
    twin_id = s.req_str("id")
    twin_type = s.req_str("type")
    if twin_type not in CATALOG:
        raise s.fail("type", f"one of {', '.join(sorted(CATALOG))}")
    protocol = s.req_str("protocol")
    if protocol not in PROTOCOLS and protocol != KAFKA_ONLY:
        raise s.fail("protocol", f"one of {', '.join(PROTOCOLS)}, {KAFKA_ONLY}")
    for other in PROTOCOLS:
        if other != protocol and other in s.data:
            raise ConfigError(
                f"{s.file}: {s.path(other)} is set but twin {twin_id!r} uses protocol "
                f"{protocol!r}; remove it or change the protocol"
            )
    if protocol == KAFKA_ONLY:
        return TwinSpec(twin_id, twin_type, protocol)
    b = s.section(protocol)
    if protocol == "mqtt":
        binding: Any = _mqtt_binding(b, twin_id, twin_type, site)
    elif protocol == "opcua":
        binding = _opcua_binding(b, twin_id, twin_type, sim)
    else:
        binding = _modbus_binding(b, twin_id, twin_type, sim)
    return TwinSpec(twin_id, twin_type, protocol, **{protocol: binding})


def _signal_names(twin_type: str) -> set[str]:
    return {sp.name for sp in CATALOG[twin_type].signals}


def _check_signal(s: _Section, key: str, name: str, twin_type: str) -> None:
    if name not in _signal_names(twin_type):
        raise ConfigError(
            f"{s.file}: {s.path(key)}: {name!r} is not a Telemetry of {twin_type}'s model "
            f"{CATALOG[twin_type].model_id}; known: {', '.join(sorted(_signal_names(twin_type)))}"
        )


def _check_command(s: _Section, key: str, name: str, param: str, twin_type: str) -> None:
    actuators = {a.name: a for a in CATALOG[twin_type].actuators}
    if name not in actuators:
        raise ConfigError(
            f"{s.file}: {s.path(key)}: {twin_type}'s model {CATALOG[twin_type].model_id} "
            f"declares no command {name!r}; it declares {', '.join(sorted(actuators))}"
        )
    if param not in actuators[name].params:
        raise ConfigError(
            f"{s.file}: {s.path(key)}: command {name!r} of {CATALOG[twin_type].model_id} has "
            f"no request field {param!r}; it takes {', '.join(sorted(actuators[name].params))}"
        )


def _mqtt_binding(s: _Section, twin_id: str, twin_type: str, site: str) -> MqttBinding:
    s.check_keys({"telemetry_topic", "command_topic", "response_topic", "fields", "time_field"})
    base = f"plant/{site}/{twin_id}"
    fields_raw = s.section("fields")
    fmap: dict[str, FieldMap] = {}
    for name, spec in fields_raw.data.items():
        if isinstance(spec, str):
            spec = {"signal": spec}
        f = _Section(spec, fields_raw.path(str(name)), s.file)
        f.check_keys({"signal", "scale", "offset"})
        signal = f.req_str("signal")
        _check_signal(f, "signal", signal, twin_type)
        fmap[str(name)] = FieldMap(signal, f.num("scale", 1.0), f.num("offset", 0.0))
    return MqttBinding(
        twin_id=twin_id,
        twin_type=twin_type,
        telemetry_topic=s.str("telemetry_topic", f"{base}/telemetry") or f"{base}/telemetry",
        command_topic=s.str("command_topic", f"{base}/commands") or f"{base}/commands",
        response_topic=s.str("response_topic", f"{base}/responses") or f"{base}/responses",
        fields=fmap,
        time_field=s.str("time_field", "ts") or "ts",
    )


def _opcua_binding(
    s: _Section, twin_id: str, twin_type: str, sim: SimulatorSettings
) -> OpcUaBinding:
    s.check_keys(
        {
            "endpoint",
            "nodes",
            "commands",
            "sampling_interval_ms",
            "deadband",
            "security",
            "username",
            "password",
        }
    )
    from twinflow.connectors.simulator.devices.opcua import default_commands, default_nodes

    nodes_raw = s.section("nodes")
    nodes = dict(default_nodes(twin_id, twin_type)) if not nodes_raw.data else {}
    for signal, node in nodes_raw.data.items():
        _check_signal(nodes_raw, str(signal), str(signal), twin_type)
        if not isinstance(node, str) or not node:
            raise nodes_raw.fail(str(signal), "a node id string such as 'ns=2;s=pump-1.flow'")
        nodes[str(signal)] = node
    cmds_raw = s.section("commands")
    commands = dict(default_commands(twin_id, twin_type)) if not cmds_raw.data else {}
    for name, spec in cmds_raw.data.items():
        c = _Section(spec, cmds_raw.path(str(name)), s.file)
        c.check_keys({"node", "param"})
        w = OpcUaWrite(c.req_str("node"), c.req_str("param"))
        _check_command(cmds_raw, str(name), str(name), w.param, twin_type)
        commands[str(name)] = w
    security = None
    if "security" in s.data:
        sec = s.section("security")
        sec.check_keys({"policy", "mode", "certificate", "private_key", "server_certificate"})
        if sec.str("policy", "Basic256Sha256") != "Basic256Sha256":
            raise sec.fail("policy", "Basic256Sha256")
        mode = sec.str("mode", "SignAndEncrypt")
        if mode not in ("Sign", "SignAndEncrypt"):
            raise sec.fail("mode", "Sign or SignAndEncrypt")
        security = OpcUaSecurity(
            mode=mode,  # type: ignore[arg-type]
            certificate=sec.req_str("certificate"),
            private_key=sec.req_str("private_key"),
            server_certificate=sec.str("server_certificate"),
        )
    return OpcUaBinding(
        twin_id=twin_id,
        twin_type=twin_type,
        endpoint=s.str("endpoint", sim.opcua_endpoint) or sim.opcua_endpoint,
        nodes=nodes,
        commands=commands,
        sampling_interval_ms=s.num("sampling_interval_ms", 1000.0, 1.0),
        deadband=s.num("deadband", 0.0, 0.0),
        security=security,
        username=s.str("username"),
        password=s.str("password"),
    )


_REGISTER_KEYS = {"address", "kind", "type", "word_order", "byte_order", "scale", "offset"}
_KINDS = ("holding", "input", "coil", "discrete")
_TYPES = ("int16", "uint16", "int32", "uint32", "float32", "bool")


def _register(r: _Section) -> Register:
    r.check_keys(_REGISTER_KEYS)
    kind = r.str("kind", "holding")
    if kind not in _KINDS:
        raise r.fail("kind", f"one of {', '.join(_KINDS)}")
    typ = r.str("type", "uint16")
    if typ not in _TYPES:
        raise r.fail("type", f"one of {', '.join(_TYPES)}")
    orders = {}
    for key in ("word_order", "byte_order"):
        v = r.str(key, "big")
        if v not in ("big", "little"):
            raise r.fail(key, "big or little")
        orders[key] = v
    return Register(
        address=r.int("address", -1, 0, 65535),
        kind=kind,  # type: ignore[arg-type]
        type=typ,  # type: ignore[arg-type]
        word_order=orders["word_order"],  # type: ignore[arg-type]
        byte_order=orders["byte_order"],  # type: ignore[arg-type]
        scale=r.num("scale", 1.0),
        offset=r.num("offset", 0.0),
    )


def _modbus_binding(
    s: _Section, twin_id: str, twin_type: str, sim: SimulatorSettings
) -> ModbusBinding:
    s.check_keys({"host", "port", "unit", "registers", "commands", "poll_interval_s", "timeout_s"})
    from twinflow.connectors.simulator.devices.modbus import default_register_map

    default_regs, default_cmds = default_register_map(twin_type)
    regs_raw = s.section("registers")
    registers = dict(default_regs) if not regs_raw.data else {}
    for signal in regs_raw.data:
        _check_signal(regs_raw, str(signal), str(signal), twin_type)
        registers[str(signal)] = _register(regs_raw.section(str(signal)))
    cmds_raw = s.section("commands")
    commands = dict(default_cmds) if not cmds_raw.data else {}
    for name in cmds_raw.data:
        c = cmds_raw.section(str(name))
        c.check_keys({"register", "param"})
        param = c.req_str("param")
        _check_command(cmds_raw, str(name), str(name), param, twin_type)
        commands[str(name)] = ModbusWrite(_register(c.section("register")), param)
    if not registers:
        raise ConfigError(f"{s.file}: {s.path('registers')}: twin {twin_id!r} maps no register")
    return ModbusBinding(
        twin_id=twin_id,
        twin_type=twin_type,
        host=s.str("host", sim.modbus_host) or sim.modbus_host,
        port=s.int("port", sim.modbus_port, 1, 65535),
        unit=s.int("unit", 1, 0, 247),
        registers=registers,
        commands=commands,
        poll_interval_s=s.num("poll_interval_s", 1.0, 0.01),
        timeout_s=s.num("timeout_s", 1.0, 0.01),
    )


# -- assets and relationships ----------------------------------------------------------------

_PLACEMENT_KEYS = ("part_of", "component_of", "relationships")


def _placement(s: _Section) -> dict[str, Any]:
    """``part_of``/``component_of`` and ``relationships`` of a twin or an asset."""
    out: dict[str, Any] = {}
    for key, kind in (("component_of", COMPONENT_OF), ("part_of", PART_OF)):
        if key in s.data:
            v = s.data[key]
            if isinstance(v, list):
                raise s.fail(
                    key,
                    "one id: a twin or asset sits in one place; link the others with "
                    "relationships (e.g. feeds: [...])",
                )
            parent = s.req_str(key)
            if "part_of" in out:  # both keys: the registry reports the two parents
                out["relationships"] = {kind: (parent,)}
            else:
                out.update(part_of=parent, containment=kind)
    rels = s.section("relationships")
    named: dict[str, tuple[str, ...]] = dict(out.pop("relationships", {}))
    for name, targets in rels.data.items():
        if not isinstance(name, str):
            raise ConfigError(f"{s.file}: {rels.path(str(name))}: a relationship name is text")
        if name in (*CONTAINMENT, *_PLACEMENT_KEYS[:2]):
            raise ConfigError(
                f"{s.file}: {rels.path(name)}: containment is not a named relationship; "
                f"write part_of: <id> (or component_of: <id>) on the {s.where} entry instead"
            )
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, list) or not all(isinstance(t, str) and t for t in targets):
            raise rels.fail(name, "a twin or asset id, or a list of ids")
        named[name] = tuple(targets)
    if named:
        out["relationships"] = named
    return out


def _assets(top: _Section, site: str) -> tuple[AssetSpec, ...]:
    raw = top.data.get("assets")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise top.fail("assets", "a list of assets, each with an id and a type")
    out = []
    for i, item in enumerate(raw):
        s = _Section(item, f"assets[{i}]", top.file)
        s.check_keys({"id", "type", "model_id", *_PLACEMENT_KEYS})
        asset_id = s.req_str("id")
        if asset_id == site:
            raise ConfigError(
                f"{s.file}: {s.path('id')} {asset_id!r} is the deployment's site (top-level "
                "site:); assets sit in it without declaring it: remove this entry"
            )
        asset_type = s.req_str("type")
        if asset_type in CATALOG:
            raise ConfigError(
                f"{s.file}: {s.path('type')} = {asset_type!r} is a telemetry twin type; "
                "declare it under twins: with a protocol, or give the asset its own type "
                "(e.g. pump_skid, line, area)"
            )
        if asset_type == SITE:
            raise ConfigError(
                f"{s.file}: {s.path('type')} = 'site' is the top-level site:; use e.g. area "
                "for a part of the site"
            )
        out.append(AssetSpec(asset_id, asset_type, model_id=s.str("model_id"), **_placement(s)))
    return tuple(out)


def _entry(
    entry_id: str,
    entry_type: str,
    protocol: str | None,
    model_id: str | None,
    spec: TwinSpec | AssetSpec,
    site: str,
    where: str,
) -> RegistryEntry:
    """A registry entry; no ``part_of``/``component_of`` means directly in the site."""
    rels: dict[str, tuple[str, ...]] = dict(spec.relationships)
    parent = site if spec.part_of is None else spec.part_of
    rels[spec.containment] = (*rels.get(spec.containment, ()), parent)
    return RegistryEntry(entry_id, entry_type, protocol, model_id, rels, where)
