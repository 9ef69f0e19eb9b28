"""paho-mqtt clients built from ``MqttSettings``, and the metrics.

One place decides how twinflow talks to a broker: paho's VERSION2 callbacks, a fixed
client id, username/password and TLS when configured, reconnection with exponential backoff
between ``reconnect_min_s`` and ``reconnect_max_s`` (paho doubles the wait after each failed
attempt and resets it after a successful CONNACK), and, for the consumers, a persistent
session: MQTT v5 with ``clean_start=False`` and a session expiry, so the broker keeps the
subscriptions and queues QoS 1 messages while the client is away.

paho-mqtt is imported here, on first use, with an error that names the extra to install.
"""

from __future__ import annotations

import logging
import ssl
import threading
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge

from twinflow.connectors.bindings import MqttSettings
from twinflow.core.errors import ConfigError
from twinflow.core.optional import require

if TYPE_CHECKING:
    from paho.mqtt.client import Client

log = logging.getLogger(__name__)

#: How long the broker keeps a consumer's session (subscriptions, queued messages) after it
#: disconnects, in seconds: a week of downtime before queued telemetry is dropped.
SESSION_EXPIRY_S = 7 * 86400

RECONNECTS = Counter(
    "twinflow_mqtt_reconnects",
    "MQTT connections re-established after the first one (broker restarts, network losses)",
    ["client"],
)
MESSAGES = Counter(
    "twinflow_mqtt_messages",
    "MQTT messages handled, by outcome: decoded, dead_letter, redelivered (a duplicate of one "
    "already handed to the flow, acknowledged and dropped), published",
    ["client", "outcome"],
)
CONNECTED = Gauge("twinflow_mqtt_connected", "1 while the MQTT client is connected", ["client"])


def paho() -> Any:
    """The ``paho.mqtt.client`` module, or an error that says which extra to install."""
    return require("paho.mqtt.client", extra="mqtt", what="the MQTT connector")


def make_client(
    settings: MqttSettings,
    client_id: str,
    *,
    v5: bool = True,
    persistent: bool = False,
    session_expiry_s: int = SESSION_EXPIRY_S,
    receive_maximum: int | None = None,
    manual_ack: bool = False,
    max_inflight: int = 20,
    max_queued: int = 0,
) -> Client:
    """A configured, not yet connected paho client; :func:`start` connects it.

    ``persistent`` asks for a session that outlives the connection (v5: clean start off and
    ``session_expiry_s``; v3.1.1: clean session off). ``receive_maximum`` (v5) caps how many
    unacknowledged QoS 1 messages the broker sends at once. ``max_queued`` bounds paho's
    queue of outgoing messages (0: unbounded).
    """
    mqtt = paho()
    if settings.qos not in (0, 1, 2):
        raise ConfigError(f"MQTT qos must be 0, 1 or 2, got {settings.qos!r}")
    if not 0 < settings.reconnect_min_s <= settings.reconnect_max_s:
        raise ConfigError(
            "MQTT reconnect_min_s must be > 0 and <= reconnect_max_s, got "
            f"{settings.reconnect_min_s!r} and {settings.reconnect_max_s!r}"
        )
    kwargs: dict[str, Any] = {"client_id": client_id, "manual_ack": manual_ack}
    if v5:
        kwargs["protocol"] = mqtt.MQTTv5
    else:
        kwargs["protocol"] = mqtt.MQTTv311
        kwargs["clean_session"] = not persistent
    client: Client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
    client.suppress_exceptions = True  # a bug in a callback is logged; the loop goes on
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls is not None:
        tls = settings.tls
        client.tls_set(
            ca_certs=tls.ca_file,
            certfile=tls.cert_file,
            keyfile=tls.key_file,
            cert_reqs=ssl.CERT_NONE if tls.insecure else ssl.CERT_REQUIRED,
        )
        if tls.insecure:
            client.tls_insecure_set(True)
    # paho annotates whole seconds, but its reconnect timer takes fractions too.
    client.reconnect_delay_set(settings.reconnect_min_s, settings.reconnect_max_s)  # type: ignore[arg-type]
    client.max_inflight_messages_set(max_inflight)
    client.max_queued_messages_set(max_queued)
    connect: dict[str, Any] = {"keepalive": settings.keepalive_s}
    if v5:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = session_expiry_s if persistent else 0
        if receive_maximum is not None:
            props.ReceiveMaximum = max(1, min(receive_maximum, 65535))
        connect["clean_start"] = not persistent
        connect["properties"] = props
    client.connect_async(settings.host, settings.port, **connect)
    return client


def subscribe_options(qos: int) -> Any:
    """v5 subscription options: ``qos``; retained messages only for a new subscription (so a
    reconnect with the session kept does not replay the retained value as a new reading)."""
    from paho.mqtt.subscribeoptions import SubscribeOptions

    return SubscribeOptions(qos=qos, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)


def is_failure(reason_code: Any) -> bool:
    """Whether a paho VERSION2 reason code (or a list of them, for SUBACK) is a failure."""
    if isinstance(reason_code, list):
        return any(is_failure(rc) for rc in reason_code)
    return bool(getattr(reason_code, "is_failure", False))


class PublishTracker:
    """QoS>0 publishes not yet acknowledged by the broker, to wait for them (flush, close).

    Call :meth:`published` with each ``publish()`` result and wire :meth:`on_publish` as the
    client's ``on_publish``. paho may acknowledge a message before ``publish()`` returns (its
    network thread is concurrent), hence the set of early acknowledgements. paho calls
    ``on_publish`` holding its own lock, so no lock of ours is held around ``publish()``.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._inflight: set[int] = set()
        self._early: set[int] = set()

    def published(self, mid: int) -> None:
        with self._cond:
            if mid in self._early:
                self._early.discard(mid)
            else:
                self._inflight.add(mid)

    def on_publish(self, _c: Any, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
        with self._cond:
            if mid in self._inflight:
                self._inflight.discard(mid)
            else:
                self._early.add(mid)
            self._cond.notify_all()

    def wait(self, timeout_s: float) -> int:
        """Wait until all are acknowledged or ``timeout_s`` passed; how many are still out."""
        with self._cond:
            self._cond.wait_for(lambda: not self._inflight, timeout_s)
            return len(self._inflight)

    def __len__(self) -> int:
        with self._cond:
            return len(self._inflight)
