"""Bounds (issue 11): metric labels only from declared names; dead letters capped with a hash."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from prometheus_client import REGISTRY

from twinflow.core.records import DeadLetter, capped_payload
from twinflow.flows.metrics import OTHER, RunStats

SCHEMAS = Path(__file__).parents[2] / "operators" / "schemas"
DEAD_V1 = Draft202012Validator(json.loads((SCHEMAS / "deadletter.v1.json").read_text()))


def command_series() -> set[str]:
    return {
        s.labels["name"]
        for m in REGISTRY.collect()
        if m.name == "twinflow_commands"
        for s in m.samples
    }


def test_undeclared_command_names_share_one_label() -> None:
    stats = RunStats()
    stats.declare_commands(["derate", "stop"])
    before = command_series()
    for i in range(3000):
        stats.add_command(f"evil-{i}", "rejected")
    stats.add_command("derate", "queued")
    added = command_series() - before
    assert added <= {OTHER, "derate"}
    assert stats.commands == {f"{OTHER}:rejected": 3000, "derate:queued": 1}


def test_build_flow_declares_the_catalogue_commands() -> None:
    from bytewax.testing import TestingSource

    from twinflow.flows.config import FlowConfig
    from twinflow.flows.telemetry import FlowOutputs, build_flow
    from twinflow.operators.catalog import CATALOG

    stats = RunStats()
    from bytewax.testing import TestingSink

    sinks = FlowOutputs(TestingSink([]), TestingSink([]), TestingSink([]))
    build_flow(TestingSource([]), sinks, FlowConfig(), stats=stats)
    names = {a.name for t in CATALOG.values() for a in t.actuators}
    assert names and stats.command_names == names


def letter(payload: str, reason: str = "bad") -> DeadLetter:
    return DeadLetter("decode", reason, "kafka", datetime(2026, 1, 1, tzinfo=UTC), None, payload)


def test_a_megabyte_payload_makes_a_small_dead_letter() -> None:
    payload = '{"x": "' + "y" * 1_000_000 + '"}'
    d = letter(payload, reason="r" * 100_000)
    digest = hashlib.sha256(payload.encode()).hexdigest()
    assert len(d.payload) == DeadLetter.MAX_PAYLOAD and d.payload.startswith('{"x": "yyy')
    assert d.payload.endswith(f"[{len(payload)} bytes, sha256 {digest}]")
    assert len(d.reason) == DeadLetter.MAX_REASON
    DEAD_V1.validate(d.to_json())
    assert len(json.dumps(d.to_json())) < 4000


def test_small_payloads_stay_as_they_are() -> None:
    assert letter("abc").payload == "abc"
    assert letter("é" * DeadLetter.MAX_PAYLOAD).payload == "é" * DeadLetter.MAX_PAYLOAD


@given(st.text(max_size=5000), st.integers(min_value=100, max_value=3000))
def test_capped_payload_bounds(text: str, limit: int) -> None:
    out = capped_payload(text, limit)
    assert len(out) <= limit
    if len(text) <= limit:
        assert out == text
    else:
        raw = text.encode("utf-8", "surrogatepass")
        assert hashlib.sha256(raw).hexdigest() in out


@given(st.binary(max_size=5000))
def test_capped_bytes_payload(raw: bytes) -> None:
    out = capped_payload(raw, 2048)
    assert len(out) <= 2048
    if len(raw) > 2048:
        assert hashlib.sha256(raw).hexdigest() in out
    DEAD_V1.validate(letter(out).to_json())


def frame(twin: str, t0: float, n: int = 3) -> Any:
    from twinflow.core.records import TelemetryFrame

    times = t0 + np.arange(n, dtype=float)
    return TelemetryFrame(twin, "pump", times, {"flow_m3h": np.ones(n)})


def test_duplicate_frames_are_stored_once_in_parquet(tmp_path: Path) -> None:
    from twinflow.connectors.files import read_parquet_dir
    from twinflow.flows.config import FlowConfig
    from twinflow.flows.outputs import file_outputs

    sink = file_outputs(FlowConfig(out_dir=tmp_path))
    assert sink.telemetry is not None
    part = sink.telemetry.build_part("t", "p0", None)
    a, b = frame("P1", 1.7e9), frame("P1", 1.7e9 + 3)
    part.write_batch([a, a, b, frame("P2", 1.7e9)])
    state = part.snapshot()
    part.write_batch([b])  # a Kafka message read again
    part.close()
    df = read_parquet_dir(tmp_path / "telemetry")
    assert df.height == 9 and df.select(["twin_id", "time"]).is_unique().all()
    # a resume remembers what the snapshot had written
    again = sink.telemetry.build_part("t", "p0", state)
    again.write_batch([a, frame("P1", 1.7e9 + 6)])
    again.close()
    df = read_parquet_dir(tmp_path / "telemetry")
    assert df.height == 12 and df.select(["twin_id", "time"]).is_unique().all()


def test_older_parquet_snapshots_resume() -> None:
    from twinflow.connectors.files import ParquetSink

    sink = ParquetSink(Path("/nonexistent/x"), lambda v: None, str, fingerprint=lambda v: ("k", v))
    part = sink.build_part("s", "p0", 3)  # a snapshot of before: the part number alone
    assert part.snapshot() == (3, {})


def test_recent_forgets_beyond_its_size() -> None:
    from twinflow.connectors.files import Recent

    r = Recent(2)
    assert [r.repeated("k", x) for x in (1, 2, 1, 3, 1, 3)] == [
        False,
        False,
        True,
        False,
        False,  # 1 was forgotten when 3 came
        True,
    ]
    r2 = Recent(2)
    assert [r2.repeated("k", x) for x in (1, 2, 3, 1)] == [False, False, False, False]
    assert Recent(2, r2.state()).repeated("k", 3) is True
