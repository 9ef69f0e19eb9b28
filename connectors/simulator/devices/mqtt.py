"""The simulated plant's MQTT twins acting as real devices on a broker: :class:`MqttDevices`.

Telemetry: :meth:`MqttDevices.publish` sends a frame's rows for its twin to the twin's
telemetry topic as JSON in the binding's format (field map applied backwards:
``raw = (value - offset) / scale``; the time field in epoch seconds; a NaN reading left
out), one message per row (default) or one batch message per frame, at the settings' QoS
(at least 1). Commands: every twin's command topic is subscribed; a received command JSON
(``Command.to_json()``) becomes a :class:`~twinflow.core.records.Command`, is checked against
the twin's type and handed to :meth:`Plant.apply`, and responses
``{"command_id", "status", "detail"}`` go to the response topic: ``acknowledged`` then
``succeeded`` for a command the plant took on, ``failed`` alone for one it refused.
A repeated command id (a QoS 1 redelivery, a replayed flow) is answered again, not reapplied.

The client id is ``<settings.client_id>-devices``, so a deployment's one MQTT section can
serve both the flow and the simulator without the two taking each other's session. It
speaks MQTT v3.1.1, as most field devices do. The API is synchronous around paho's network
thread.

>>> import numpy as np
>>> from twinflow.connectors.bindings import FieldMap, MqttBinding
>>> from twinflow.core.records import TelemetryFrame
>>> b = MqttBinding("wt-1", "wind_turbine", "t", "c", "r",
...                 fields={"power_w": FieldMap("power_kw", scale=0.001)})
>>> f = TelemetryFrame("wt-1", "wind_turbine", np.array([10.0, 11.0]),
...                    {"power_kw": np.array([0.5, np.nan]), "pitch_deg": np.array([1.5, 2.0])})
>>> encode_rows(f, b)
[b'{"ts":10.0,"power_w":500.0,"pitch_deg":1.5}', b'{"ts":11.0,"pitch_deg":2.0}']
>>> encode_batch(f, b)
b'{"ts":[10.0,11.0],"power_w":[500.0,null],"pitch_deg":[1.5,2.0]}'
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from twinflow.connectors.bindings import MqttBinding, MqttSettings
from twinflow.connectors.mqtt.client import (
    CONNECTED,
    MESSAGES,
    RECONNECTS,
    PublishTracker,
    is_failure,
    make_client,
)
from twinflow.connectors.mqtt.payloads import PayloadDecoder
from twinflow.connectors.mqtt.topics import bindings_by_twin, concrete_topic
from twinflow.connectors.simulator.commands import ACTIONABLE, rejection
from twinflow.connectors.simulator.plant import Plant
from twinflow.core.records import Command, CommandStatus, TelemetryFrame
from twinflow.core.times import utc

log = logging.getLogger(__name__)

#: Command ids remembered to answer repeats without applying them again.
REMEMBER_COMMANDS = 10_000


def _field_names(binding: MqttBinding) -> dict[str, tuple[str, float, float]]:
    """Signal -> (payload field, scale, offset): the field map read backwards (the first
    field of a signal wins; an unmapped signal is sent under its own name)."""
    out: dict[str, tuple[str, float, float]] = {}
    for name, fm in binding.fields.items():
        out.setdefault(fm.signal, (name, float(fm.scale), float(fm.offset)))
    return out


def _columns(frame: TelemetryFrame, binding: MqttBinding) -> list[tuple[str, list[Any]]]:
    """(field, raw values with None for NaN) per signal of the frame."""
    names = _field_names(binding)
    cols = []
    for signal, values in frame.signals.items():
        field, scale, offset = names.get(signal, (signal, 1.0, 0.0))
        raw = values if scale == 1.0 and offset == 0.0 else (values - offset) / scale
        cols.append((field, [v if math.isfinite(v) else None for v in raw.tolist()]))
    return cols


def encode_rows(frame: TelemetryFrame, binding: MqttBinding) -> list[bytes]:
    """One JSON reading set per row of the frame (rows without any reading are left out)."""
    cols = _columns(frame, binding)
    tf = binding.time_field
    out = []
    for i, t in enumerate(frame.times.tolist()):
        row: dict[str, Any] = {tf: t}
        for field, values in cols:
            if values[i] is not None:
                row[field] = values[i]
        if len(row) > 1:
            out.append(json.dumps(row, separators=(",", ":")).encode())
    return out


def encode_batch(frame: TelemetryFrame, binding: MqttBinding) -> bytes:
    """The whole frame as one JSON batch: equal-length arrays, ``null`` for no reading."""
    msg: dict[str, Any] = {binding.time_field: frame.times.tolist()}
    for field, values in _columns(frame, binding):
        msg[field] = values
    return json.dumps(msg, separators=(",", ":")).encode()


class CommandFormatError(ValueError):
    """A command payload that is not a valid ``twinflow.command`` v1 object."""


def parse_command(payload: bytes) -> Command:
    """A :class:`Command` from its versioned JSON, or :class:`CommandFormatError` saying why."""
    try:
        obj = json.loads(payload)
    except ValueError as e:
        raise CommandFormatError(f"command is not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise CommandFormatError(f"command is a JSON {type(obj).__name__}, expected an object")
    if obj.get("schema", Command.SCHEMA) != Command.SCHEMA:
        raise CommandFormatError(f"schema {obj.get('schema')!r} is not {Command.SCHEMA!r}")
    if obj.get("version", Command.VERSION) != Command.VERSION:
        raise CommandFormatError(
            f"command version {obj.get('version')!r} is not supported (only {Command.VERSION})"
        )

    def text(key: str, default: str | None = None) -> str:
        value = obj.get(key, default)
        if not isinstance(value, str) or (default is None and not value):
            raise CommandFormatError(f"command field {key!r} must be a non-empty string")
        return value

    def when(key: str) -> datetime:
        raw = text(key)
        try:
            dt = datetime.fromisoformat(raw)
        except ValueError:
            raise CommandFormatError(f"command field {key!r} = {raw!r} is not ISO-8601") from None
        if dt.tzinfo is None:
            raise CommandFormatError(f"command field {key!r} = {raw!r} has no time zone")
        return dt

    params = obj.get("params")
    if not isinstance(params, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in params.values()
    ):
        raise CommandFormatError("command field 'params' must be an object of numbers")
    try:
        status = CommandStatus(obj.get("status", CommandStatus.ISSUED.value))
    except ValueError:
        raise CommandFormatError(f"command status {obj.get('status')!r} is unknown") from None
    return Command(
        command_id=text("command_id"),
        twin_id=text("twin_id"),
        twin_type=text("twin_type"),
        name=text("name"),
        params={str(k): float(v) for k, v in params.items()},
        issued_at=when("issued_at"),
        expires_at=when("expires_at"),
        reason=text("reason", ""),
        status=status,
        detail=text("detail", ""),
    )


class MqttDevices:
    """Publish the plant's telemetry and obey commands over MQTT, for the bound twins.

    ``batch`` sends one message per frame instead of one per row; ``qos`` defaults to the
    settings' (at least 1). Every topic must be concrete (``{twin_id}`` may appear).
    ``check_expiry`` refuses commands whose ``expires_at`` lies before the plant's clock
    (off by default: a plant simulated faster than real time runs ahead of the flow's
    commands, and the flow's command tracking decides expiry).
    """

    def __init__(
        self,
        plant: Plant,
        settings: MqttSettings,
        bindings: Sequence[MqttBinding],
        *,
        batch: bool = False,
        qos: int | None = None,
        max_inflight: int = 1000,
        check_expiry: bool = False,
    ) -> None:
        self.plant = plant
        self.settings = settings
        self.bindings = bindings_by_twin(bindings)
        self.batch = batch
        self.check_expiry = check_expiry
        self.qos = qos if qos is not None else max(1, settings.qos)
        self.client_id = f"{settings.client_id}-devices"
        types = dict(plant.twins)
        for b in self.bindings.values():
            PayloadDecoder(b)  # the same checks of the field map as the flow's source
            if types.get(b.twin_id, b.twin_type) != b.twin_type:
                log.warning(
                    "twin %r is bound over MQTT as a %s but the plant simulates a %s",
                    b.twin_id,
                    b.twin_type,
                    types[b.twin_id],
                )
        self._types = types
        self._telemetry = {
            t: concrete_topic(b.telemetry_topic, b, "telemetry_topic")
            for t, b in self.bindings.items()
        }
        self._responses = {
            t: concrete_topic(b.response_topic, b, "response_topic")
            for t, b in self.bindings.items()
        }
        self._by_command_topic = {
            concrete_topic(b.command_topic, b, "command_topic"): b for b in self.bindings.values()
        }
        self._answered: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._answer_lock = threading.Lock()
        self._ready = threading.Event()
        self._tracker = PublishTracker()
        self._connections = 0
        self._stopping = False
        self._published = MESSAGES.labels(self.client_id, "published")
        self._client = make_client(
            settings, self.client_id, v5=False, persistent=True, max_inflight=max_inflight
        )
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_publish = self._tracker.on_publish
        self._started = False

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout_s: float = 10.0) -> bool:
        """Start connecting; wait up to ``timeout_s`` until the command topics are
        subscribed. ``False`` if not yet (paho keeps trying in the background)."""
        if not self._started:
            self._client.loop_start()
            self._started = True
        return self._ready.wait(timeout_s)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until the broker acknowledged everything published; ``False`` on timeout."""
        return self._tracker.wait(timeout_s) == 0

    def stop(self, timeout_s: float = 5.0) -> None:
        """Flush (bounded), then disconnect."""
        if not self._started:
            return
        self.flush(timeout_s)
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()
        self._started = False
        CONNECTED.labels(self.client_id).set(0)

    @property
    def connected(self) -> bool:
        return bool(self._client.is_connected())

    # ------------------------------------------------------------------ telemetry

    def publish(self, frame: TelemetryFrame) -> int:
        """Publish the frame of an MQTT-bound twin; how many messages (0: twin not bound).

        Messages are queued by paho and sent while connected; QoS 1 ones are resent after a
        reconnect until the broker acknowledges them.
        """
        binding = self.bindings.get(frame.twin_id)
        if binding is None:
            return 0
        payloads = [encode_batch(frame, binding)] if self.batch else encode_rows(frame, binding)
        self._send(self._telemetry[frame.twin_id], payloads)
        return len(payloads)

    def publish_payload(self, twin_id: str, payload: bytes) -> None:
        """Publish any payload (e.g. a deliberately bad one) to a twin's telemetry topic."""
        self._send(self._telemetry[twin_id], [payload])

    def _send(self, topic: str, payloads: list[bytes]) -> None:
        client, qos, track = self._client, self.qos, self._tracker.published
        for p in payloads:
            info = client.publish(topic, p, qos=qos)
            if qos > 0:
                track(info.mid)
        self._published.inc(len(payloads))

    # ------------------------------------------------------------------ paho's thread

    def _on_connect(self, client: Any, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if is_failure(reason):
            log.error("MQTT devices %r: connection refused: %s", self.client_id, reason)
            return
        self._connections += 1
        if self._connections > 1:
            RECONNECTS.labels(self.client_id).inc()
        CONNECTED.labels(self.client_id).set(1)
        client.subscribe([(t, max(1, self.settings.qos)) for t in self._by_command_topic])

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, reasons: Any, _p: Any) -> None:
        if is_failure(reasons):
            log.error("MQTT devices %r: command subscriptions refused: %s", self.client_id, reasons)
            return
        self._ready.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        CONNECTED.labels(self.client_id).set(0)
        if not self._stopping:
            log.warning(
                "MQTT devices %r lost the broker (%s); reconnecting", self.client_id, reason
            )

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        binding = self._by_command_topic.get(msg.topic)
        if binding is None:
            log.warning("MQTT devices: message on unexpected topic %r ignored", msg.topic)
            return
        command_id, status, detail = self.handle_command(binding, msg.payload)
        answers = [{"command_id": command_id, "status": status, "detail": detail}]
        if status == "succeeded":  # the device took it on, then acted on it
            ack = {"command_id": command_id, "status": "acknowledged", "detail": "accepted"}
            answers.insert(0, ack)
        self._send(
            self._responses[binding.twin_id],
            [json.dumps(a, separators=(",", ":")).encode() for a in answers],
        )

    def handle_command(self, binding: MqttBinding, payload: bytes) -> tuple[str | None, str, str]:
        """Decide on one command payload for ``binding``'s twin: ``(command_id, status,
        detail)``; an accepted command is handed to the plant."""
        try:
            cmd = parse_command(payload)
        except CommandFormatError as e:
            command_id = _sniff_id(payload)
            log.warning("twin %r: bad command refused: %s", binding.twin_id, e)
            return command_id, "failed", str(e)
        if cmd.twin_id != binding.twin_id:
            detail = (
                f"command for twin {cmd.twin_id!r} arrived on the command topic of "
                f"{binding.twin_id!r}"
            )
            return cmd.command_id, "failed", detail
        with self._answer_lock:
            seen = self._answered.get(cmd.command_id)
            if seen is not None:
                return cmd.command_id, *seen
            status, detail = self._decide(cmd)
            self._answered[cmd.command_id] = (status, detail)
            while len(self._answered) > REMEMBER_COMMANDS:
                self._answered.popitem(last=False)
        log.info("twin %r: command %s %s: %s", cmd.twin_id, cmd.command_id, status, detail)
        return cmd.command_id, status, detail

    def _decide(self, cmd: Command) -> tuple[str, str]:
        if cmd.status not in ACTIONABLE:
            return "failed", f"status {cmd.status.value!r} is not a request"
        now = self.plant.now()
        if self.check_expiry and cmd.expires_at.timestamp() < now:
            return "failed", (
                f"command expired at {cmd.expires_at.isoformat()}; the device's clock is at "
                f"{utc(now).isoformat()}"
            )
        reason = rejection(cmd, self._types)
        if not self.plant.apply(cmd):
            return "failed", reason or "refused by the plant"
        params = ", ".join(f"{k}={v:g}" for k, v in cmd.params.items())
        return "succeeded", f"{cmd.name}({params}) accepted; acts from the twin's next chunk"


def _sniff_id(payload: bytes) -> str | None:
    """The command id of a payload that failed to parse, when it can be read at all."""
    try:
        obj = json.loads(payload)
    except ValueError:
        return None
    cid = obj.get("command_id") if isinstance(obj, Mapping) else None
    return cid if isinstance(cid, str) else None


__all__ = ["CommandFormatError", "MqttDevices", "encode_batch", "encode_rows", "parse_command"]
