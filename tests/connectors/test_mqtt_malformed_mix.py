"""Issue 11: MQTT merges a twin's messages into one frame per batch; malformed messages among
legitimate ones (bad, future, past and unrepresentable timestamps, huge numbers, bad JSON)
must cost no legitimate reading. Decoder and validator only: no broker."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from twinflow.connectors.bindings import MqttBinding
from twinflow.connectors.mqtt.frames import MessageDecoder
from twinflow.core.records import DeadLetter, TelemetryFrame
from twinflow.operators.pipeline import check_item
from twinflow.operators.validate import Validator

NOW = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
TOPIC = "plant/p1/telemetry"

MALFORMED = [
    b'{"ts": %d, "flow_m3h": 5}' % (NOW + 10_000),  # beyond max_future_s
    b'{"ts": %d, "flow_m3h": 5}' % (NOW - 30 * 86400),  # beyond max_past_s
    b'{"ts": "9999-12-31T23:59:59-23:59", "flow_m3h": 5}',
    b'{"ts": "0001-01-01T00:00:00+23:59", "flow_m3h": 5}',
    b'{"ts": "yesterday", "flow_m3h": 5}',
    b'{"ts": 1e999, "flow_m3h": 5}',
    b'{"ts": ' + b"9" * 400 + b', "flow_m3h": 5}',
    b'{"ts": %d, "flow_m3h": ' % NOW + b"1" * 5000 + b"}",
    b'{"ts": [%d, %d], "flow_m3h": [1]}' % (NOW, NOW),
    b"[" * 5000,
    b"\xff\xfe",
    b'{"flow_m3h": 5}',
]


def test_malformed_mix_loses_no_legitimate_reading() -> None:
    rng = random.Random(11)
    decoder = MessageDecoder([MqttBinding("P1", "pump", TOPIC, "c", "r")])
    validator = Validator(twins={"P1": "pump"})
    legit = 0
    kept: list[float] = []
    t = NOW - 3000.0
    for _ in range(200):  # 200 batches
        batch = []
        for _ in range(rng.randint(1, 30)):
            if rng.random() < 0.5:
                batch.append((TOPIC, rng.choice(MALFORMED)))
            else:
                t += 1.0
                legit += 1
                batch.append((TOPIC, b'{"ts": %r, "flow_m3h": 250, "suction_bar": 1.5}' % t))
        rng.shuffle(batch)
        for item in decoder.decode(batch, now=NOW):
            for out in check_item(item, validator, NOW):
                if isinstance(out, TelemetryFrame):
                    finite = out.signals["flow_m3h"] == out.signals["flow_m3h"]
                    kept.extend(out.times[finite].tolist())
                else:
                    assert isinstance(out, DeadLetter) and out.reason
    assert legit > 1000
    assert len(kept) == legit  # 0 legitimate readings lost
