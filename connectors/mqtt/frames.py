"""Received MQTT messages to Bytewax items: one telemetry frame per twin, or dead letters.

:class:`MessageDecoder` turns the messages of one ``next_batch`` call into at most one
:class:`~twinflow.core.records.TelemetryFrame` per twin (rows sorted by time, a signal missing
in a row is NaN) plus one :class:`~twinflow.core.records.DeadLetter` per unusable message. Items
carry batches because each Bytewax item costs microseconds. Pure Python, no network.

>>> from twinflow.connectors.bindings import MqttBinding
>>> dec = MessageDecoder([MqttBinding("p1", "pump", "plant/p1/telemetry", "c", "r")])
>>> frame, dead = dec.decode([("plant/p1/telemetry", b'{"ts": 2, "flow_m3h": 5}'),
...                           ("plant/p1/telemetry", b'{"ts": 1, "suction_bar": 1.5}'),
...                           ("plant/p1/telemetry", b'{"ts": 3, "flow_m3h": "high"}')], now=9.0)
>>> frame.times.tolist(), frame.signals["flow_m3h"].tolist()
([1.0, 2.0], [nan, 5.0])
>>> dead.reason, dead.source
("field 'flow_m3h' must be a number or null, got str 'high'", 'mqtt:plant/p1/telemetry')
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from twinflow.connectors.bindings import MqttBinding
from twinflow.connectors.mqtt.payloads import PayloadDecoder, PayloadError
from twinflow.connectors.mqtt.topics import TopicRouter, bindings_by_twin
from twinflow.core.records import DeadLetter, TelemetryFrame, capped_payload
from twinflow.core.times import utc

log = logging.getLogger(__name__)

#: Characters a dead letter keeps of a payload: an excerpt, and for a longer one its size and
#: SHA-256.
EXCERPT_BYTES = 200


@dataclass(slots=True)
class _Pending:
    """What one twin received during one batch: single rows and whole blocks."""

    decoder: PayloadDecoder
    topic: str
    row_times: list[float] = field(default_factory=list)
    rows: list[dict[str, float]] = field(default_factory=list)
    blocks: list[tuple[np.ndarray, dict[str, np.ndarray]]] = field(default_factory=list)

    def frame(self) -> TelemetryFrame:
        blocks = list(self.blocks)
        if self.rows:
            row_names = {s for r in self.rows for s in r}
            nan = math.nan
            cols = {s: np.array([r.get(s, nan) for r in self.rows]) for s in row_names}
            blocks.insert(0, (np.array(self.row_times, dtype=np.float64), cols))
        order = self.decoder.order
        names = sorted({s for _, c in blocks for s in c}, key=order.__getitem__)
        if len(blocks) == 1:
            times, cols = blocks[0]
            signals = {s: cols[s] if s in cols else np.full(len(times), np.nan) for s in names}
        else:
            times = np.concatenate([t for t, _ in blocks])
            signals = {
                s: np.concatenate([c[s] if s in c else np.full(len(t), np.nan) for t, c in blocks])
                for s in names
            }
        if len(times) > 1 and bool((np.diff(times) < 0).any()):
            idx = np.argsort(times, kind="stable")
            times = times[idx]
            signals = {s: v[idx] for s, v in signals.items()}
        b = self.decoder.binding
        return TelemetryFrame(b.twin_id, b.twin_type, times, signals, source=f"mqtt:{self.topic}")


class MessageDecoder:
    """Decodes batches of ``(topic, payload)`` for the given bindings.

    Bindings are checked on creation (twin types, field maps, topic filters), so a bad
    deployment fails at start with a :class:`~twinflow.core.errors.ConfigError` naming the twin.
    """

    def __init__(self, bindings: Sequence[MqttBinding], max_payload_bytes: int = 1 << 20) -> None:
        self.bindings = bindings_by_twin(bindings)
        self.router = TopicRouter(self.bindings.values())
        self.max_payload_bytes = max_payload_bytes
        self._decoders = {t: PayloadDecoder(b) for t, b in self.bindings.items()}

    def decode(
        self, messages: Iterable[tuple[str | None, bytes]], now: float
    ) -> list[TelemetryFrame | DeadLetter]:
        """Frames (one per twin, in order of first appearance), then the dead letters.

        A ``None`` topic stands for one that was not valid UTF-8. ``now`` (epoch s) stamps
        the dead letters.
        """
        pending: dict[str, _Pending] = {}
        dead: list[DeadLetter] = []
        limit = self.max_payload_bytes
        for topic, payload in messages:
            binding = self.router.route(topic) if topic is not None else None
            if binding is None or topic is None:
                reason = (
                    self.router.why_unmapped(topic)
                    if topic is not None
                    else "topic is not valid UTF-8"
                )
                dead.append(_dead(reason, topic, None, payload, now))
                continue
            if len(payload) > limit:
                reason = f"payload of {len(payload)} bytes exceeds the limit of {limit} bytes"
                dead.append(_dead(reason, topic, binding.twin_id, payload, now))
                continue
            acc = pending.get(binding.twin_id)
            if acc is None:
                acc = pending[binding.twin_id] = _Pending(self._decoders[binding.twin_id], topic)
            try:
                stamp, values = acc.decoder.decode(payload)
            except PayloadError as e:
                dead.append(_dead(str(e), topic, binding.twin_id, payload, now))
                continue
            except Exception as e:  # a bug must not stop the flow: dead-letter and log it
                log.exception("MQTT payload of twin %r could not be decoded", binding.twin_id)
                reason = f"could not decode the payload: {type(e).__name__}: {e}"
                dead.append(_dead(reason, topic, binding.twin_id, payload, now))
                continue
            if isinstance(stamp, float):
                acc.row_times.append(stamp)
                acc.rows.append(values)  # type: ignore[arg-type]
            else:
                acc.blocks.append((stamp, values))  # type: ignore[arg-type]
        out: list[TelemetryFrame | DeadLetter] = [
            p.frame() for p in pending.values() if p.rows or p.blocks
        ]
        out.extend(dead)
        return out


def _dead(
    reason: str, topic: str | None, twin: str | None, payload: bytes, now: float
) -> DeadLetter:
    return DeadLetter(
        stage="decode",
        reason=reason,
        source=f"mqtt:{topic if topic is not None else '?'}",
        time=utc(now),
        twin_id=twin,
        payload=capped_payload(payload, EXCERPT_BYTES),
    )
