"""MQTT in deployment files (``services.mqtt``, ``twins[].mqtt``) and its connector spec.

paho-mqtt is imported only by the factories, so deployment files load without the extra.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlparse

from twinflow.connectors.bindings import FieldMap, MqttBinding, MqttSettings, TlsSettings
from twinflow.connectors.sections import check_sent, check_signal
from twinflow.connectors.simulator.settings import SimulatorSettings
from twinflow.connectors.spec import BindingContext, ConnectorSpec, SimulatedDevices
from twinflow.core.config import (
    Flag,
    Names,
    Number,
    OptionalText,
    Part,
    Schema,
    Section,
    Text,
    Whole,
)
from twinflow.core.errors import ConfigError
from twinflow.core.records import TelemetryFrame
from twinflow.core.redact import redact
from twinflow.core.transport import refuse_plain_password

SERVICE = Schema(
    "services.mqtt",
    "The MQTT broker and the session twinflow keeps there (`MQTT_URL` overrides `url`).",
    (
        Text(
            "url",
            "Broker address: `mqtt://host:port` or `mqtts://host:port` (TLS).",
            "mqtt://127.0.0.1:1883",
        ),
        Text(
            "client_id",
            "Client id of the flow's session (fixed: the broker keeps its queue).",
            "twinflow",
        ),
        OptionalText("username", "User name (or in the URL: `mqtt://user:pass@host`)."),
        OptionalText("password", "Password (or in the URL)."),
        Part("tls", "TLS settings; implied by `mqtts://`.", see="services.mqtt.tls"),
        Whole("qos", "QoS of subscriptions and command publishes.", 1, 0, 2),
        Whole("keepalive_s", "Seconds between keep-alive pings.", 30, 5, 3600),
        Whole(
            "shared_subscriptions",
            "Sessions that share the telemetry subscriptions (MQTT v5 "
            "`$share/<client_id>/<topic>`, client ids `<client_id>-0`...), spread over a "
            "cluster's workers; 0: one session under `client_id`.",
            0,
            0,
            1024,
        ),
        Whole(
            "partitions",
            "Sessions that each read a fixed share of the twins (by a hash of the twin id; "
            "client ids `<client_id>-p0`...), spread over a cluster's workers; a twin keeps its "
            "order; 0: one session under `client_id`. Not with `shared_subscriptions`.",
            0,
            0,
            1024,
        ),
        Flag(
            "allow_insecure",
            "Allow a password over plain `mqtt://` (without TLS it travels in the clear).",
            False,
        ),
    ),
)
TLS = Schema(
    "services.mqtt.tls",
    "TLS of the broker connection; empty paths mean the system defaults.",
    (
        OptionalText("ca_file", "CA certificate file (PEM) that signed the broker's."),
        OptionalText("cert_file", "Client certificate file (PEM), for mutual TLS."),
        OptionalText("key_file", "Client private key file (PEM)."),
        Flag("insecure", "Skip the broker's host name check (testing only).", False),
    ),
)
BINDING = Schema(
    "twins[].mqtt",
    "A twin's MQTT topics and payload mapping (all optional).",
    (
        Text(
            "telemetry_topic",
            "Topic the twin publishes telemetry to.",
            "",
            shown="`plant/<site>/<id>/telemetry`",
        ),
        Text(
            "command_topic",
            "Topic twinflow publishes the twin's commands to.",
            "",
            shown="`plant/<site>/<id>/commands`",
        ),
        Text(
            "response_topic",
            "Topic the twin answers commands on.",
            "",
            shown="`plant/<site>/<id>/responses`",
        ),
        Part(
            "fields",
            "Payload field name to signal; empty: field names are signal names.",
            kind="mapping of field name to signal name or field map",
            see="twins[].mqtt.fields.<field>",
        ),
        Text("time_field", "Payload field with the reading time (epoch s or ISO-8601).", "ts"),
        Names(
            "signals",
            "The scalar signals the twin sends; staleness and dropout judge only these.",
            (),
            what="signal names",
            shown="every scalar signal of its type",
        ),
    ),
)
FIELD = Schema(
    "twins[].mqtt.fields.<field>",
    "One payload field that carries a signal: `value = raw * scale + offset` "
    "(a bare string is the signal name).",
    (
        Text("signal", "The signal (a Telemetry of the twin's model).", "", required=True),
        Number("scale", "Factor applied to the raw value.", 1.0),
        Number("offset", "Added after scaling.", 0.0),
    ),
)


def mqtt_settings(s: Section, env: Mapping[str, str]) -> MqttSettings:
    """``services.mqtt``; ``MQTT_URL`` in ``env`` overrides the URL."""
    s.check_keys(SERVICE)
    url = env.get("MQTT_URL") or s.get(SERVICE["url"])
    parsed = urlparse(url)
    if parsed.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parsed.hostname:
        raise ConfigError(
            f"{s.file}: {s.path('url')} (or MQTT_URL) = {redact(url)!r}: expected mqtt://host:port "
            "or mqtts://host:port"
        )
    secure = parsed.scheme in ("mqtts", "ssl")
    tls = None
    if "tls" in s.data or secure:
        t = s.section("tls")
        t.check_keys(TLS)
        tls = TlsSettings(*(t.get(f) for f in TLS.fields))
    password = parsed.password or s.get(SERVICE["password"])
    refuse_plain_password(
        f"{s.file}: {s.where or 'services.mqtt'}",
        password=bool(password),
        encrypted=tls is not None,
        allow_insecure=s.get(SERVICE["allow_insecure"]),
        fix="use mqtts:// or a tls: section",
    )
    shared, partitions = s.get(SERVICE["shared_subscriptions"]), s.get(SERVICE["partitions"])
    if shared and partitions:
        raise ConfigError(
            f"{s.file}: {s.path('partitions')} and {s.path('shared_subscriptions')} are both "
            "set: choose one way to spread MQTT (partitions keep each twin's order)"
        )
    return MqttService(
        host=parsed.hostname,
        port=parsed.port or (8883 if secure else 1883),
        client_id=s.get(SERVICE["client_id"]),
        username=parsed.username or s.get(SERVICE["username"]),
        password=password,
        tls=tls,
        qos=s.get(SERVICE["qos"]),
        keepalive_s=s.get(SERVICE["keepalive_s"]),
        shared_subscriptions=shared,
        partitions=partitions,
    )


@dataclass(frozen=True, slots=True)
class MqttService(MqttSettings):
    """``services.mqtt``: the broker settings and how many sessions read telemetry."""

    shared_subscriptions: int = 0
    partitions: int = 0


def mqtt_binding(s: Section, ctx: BindingContext) -> MqttBinding:
    """``twins[i].mqtt``: topics default to ``plant/<site>/<id>/...``."""
    s.check_keys(BINDING)
    base = f"plant/{ctx.site}/{ctx.twin_id}"
    fields_raw = s.section("fields")
    fmap: dict[str, FieldMap] = {}
    for name, spec in fields_raw.data.items():
        f = Section(
            {"signal": spec} if isinstance(spec, str) else spec, fields_raw.path(str(name)), s.file
        )
        f.check_keys(FIELD)
        signal = f.get(FIELD["signal"])
        check_signal(f, "signal", signal, ctx.type)
        fmap[str(name)] = FieldMap(signal, f.get(FIELD["scale"]), f.get(FIELD["offset"]))
    return MqttBinding(
        twin_id=ctx.twin_id,
        twin_type=ctx.twin_type,
        telemetry_topic=s.get(BINDING["telemetry_topic"], f"{base}/telemetry"),
        command_topic=s.get(BINDING["command_topic"], f"{base}/commands"),
        response_topic=s.get(BINDING["response_topic"], f"{base}/responses"),
        fields=fmap,
        time_field=s.get(BINDING["time_field"]),
        signals=_sent(s, ctx),
        kind=ctx.kind,
    )


def _sent(s: Section, ctx: BindingContext) -> tuple[str, ...]:
    """``twins[i].mqtt.signals``: the scalar signals the twin sends (empty: all of them)."""
    return check_sent(s, "signals", s.get(BINDING["signals"]), ctx.type, "MQTT")


class _Devices(SimulatedDevices):
    def __init__(self, devices: Any) -> None:
        self._devices = devices
        self._twins = set(devices.bindings)

    async def start(self) -> None:
        self._devices.start()

    async def send(self, frame: TelemetryFrame) -> None:
        self._devices.publish(frame)

    async def stop(self) -> None:
        self._devices.stop()

    def serves(self, twin_id: str) -> bool:
        return twin_id in self._twins


class MqttSpec(ConnectorSpec):
    """MQTT twins: JSON telemetry in, commands out, answers back, on one broker session."""

    name = "mqtt"
    doc = "JSON telemetry over an MQTT broker; commands published to the twin's command topic."
    binding_type = MqttBinding
    binding_schemas = (BINDING, FIELD)
    service_schemas = (SERVICE, TLS)
    service_env = "MQTT_URL"
    metrics = (
        "twinflow_mqtt_reconnects",
        "twinflow_mqtt_messages",
        "twinflow_mqtt_connected",
        "twinflow_mqtt_commands",
        "twinflow_mqtt_command_responses",
    )
    metrics_module = "twinflow.connectors.mqtt"

    def parse_service(self, section: Section, env: Mapping[str, str]) -> MqttSettings:
        return mqtt_settings(section, env)

    def signals(self, binding: Any, scalar: frozenset[str]) -> frozenset[str]:
        sent = cast(MqttBinding, binding).signals
        return frozenset(sent) if sent else scalar

    def parse_binding(self, section: Section, ctx: BindingContext) -> MqttBinding:
        return mqtt_binding(section, ctx)

    def check(self, service: Any, twins: int, file: Path) -> None:
        if twins and service is None:
            raise ConfigError(
                f"{file}: twins use MQTT but services.mqtt is missing (or set MQTT_URL)"
            )

    def source(self, service: Any, bindings: Sequence[Any], **limits: Any) -> Any | None:
        if not bindings:
            return None
        from twinflow.connectors.mqtt import MqttSource

        spread = {
            "shared": getattr(service, "shared_subscriptions", 0),
            "partitions": getattr(service, "partitions", 0),
        }
        return MqttSource(service, bindings, **{**spread, **limits})

    def command_sink(self, service: Any, bindings: Sequence[Any], **retry: Any) -> Any | None:
        if not bindings:
            return None
        from twinflow.connectors.mqtt import MqttCommandSink

        return MqttCommandSink(service, bindings, **retry)

    def devices(
        self, plant: Any, service: Any, simulator: SimulatorSettings, bindings: Sequence[Any]
    ) -> SimulatedDevices | None:
        if not bindings:
            return None
        from twinflow.connectors.simulator.devices.mqtt import MqttDevices

        assert service is not None
        return _Devices(MqttDevices(plant, service, bindings))


SPEC = MqttSpec()
