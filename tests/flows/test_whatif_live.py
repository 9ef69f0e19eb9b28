"""What-ifs answered inside the flow from a twin's live state (no broker: Bytewax testing
sources), the workers' bound (``busy``), and requests a flow does not serve."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.testing import TestingSink, run_main
from jsonschema import Draft202012Validator

from tests.flows.test_whatif import CONFIG, DERATE, TWIN, run_until
from twinflow.connectors.simulator import Plant
from twinflow.core.records import DeadLetter, TelemetryFrame
from twinflow.core.times import utc
from twinflow.flows.config import FlowConfig
from twinflow.flows.decide_steps import NOT_SERVED, Decide
from twinflow.flows.telemetry import FlowOutputs, build_flow
from twinflow.flows.whatif_live import WhatIfPool
from twinflow.operators.whatif import read_whatif
from twinflow.operators.whatif.request import BUSY, WhatIfRequest, WhatIfResult

SCHEMA = Path(__file__).parents[2] / "operators" / "schemas" / "whatif_result.v1.json"


class _Frames(StatelessSourcePartition[Any]):
    def __init__(self, items: Sequence[Any], done: threading.Event) -> None:
        self.items, self.done = list(items), done

    def next_batch(self) -> list[Any]:
        if not self.items:
            self.done.set()
            raise StopIteration
        out, self.items = self.items[:10], self.items[10:]
        return out


class Frames(DynamicSource[Any]):
    """The twin's frames; ``done`` is set once they are all read."""

    def __init__(self, items: Sequence[Any]) -> None:
        self.items, self.done = items, threading.Event()

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Frames:
        return _Frames(self.items if worker_index == 0 else [], self.done)


class _Later(StatelessSourcePartition[Any]):
    def __init__(self, items: Sequence[Any], after: threading.Event, wait_s: float) -> None:
        self.items, self.after, self.wait_s = list(items), after, wait_s
        self.at: float | None = None

    def next_batch(self) -> list[Any]:
        if self.at is None and self.after.is_set():
            self.at = time.time() + self.wait_s
        if self.at is None or time.time() < self.at:
            return []
        if not self.items:
            raise StopIteration
        out, self.items = self.items, []
        return out

    def next_awake(self) -> datetime | None:
        return datetime.now(UTC) + timedelta(seconds=0.05)


class Later(DynamicSource[Any]):
    """``items`` ``wait_s`` after ``after`` is set (the twin's telemetry is in by then)."""

    def __init__(self, items: Sequence[Any], after: threading.Event, wait_s: float) -> None:
        self.items, self.after, self.wait_s = items, after, wait_s

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Later:
        return _Later(self.items if worker_index == 0 else [], self.after, self.wait_s)


@cache
def history() -> tuple[TelemetryFrame, ...]:
    """motor-006's telemetry up to the middle of its overheating fault."""
    plant = Plant(CONFIG)
    (fault,) = [f for f in plant.fault_specs if f.twin_id == TWIN]
    frames, _ = run_until(plant, (fault.onset + fault.failure) / 2)
    return tuple(frames)


def request(rid: str, t0: float, **changes: Any) -> WhatIfRequest:
    whatif = read_whatif({**DERATE, "horizon": "30m", **changes}, Path(rid))
    return WhatIfRequest(rid, TWIN, "motor", whatif, utc(t0), utc(t0 + 600))


@pytest.fixture
def pool() -> Iterator[WhatIfPool]:
    p = WhatIfPool(1, 1)
    yield p
    p.close()


def run(asked: list[Any], decide: Decide | None) -> list[Any]:
    """The flow over the twin's history with ``asked`` coming later; its dead letters."""
    frames = history()
    t0 = float(frames[-1].times[-1])
    dead: list[Any] = []
    source = Frames(frames)
    flow = build_flow(
        source,
        FlowOutputs(dead_letters=TestingSink(dead), alerts=None, commands=None),
        FlowConfig(whatif_history_s=3600.0),
        clock=lambda: t0,
        twins={TWIN: "motor"},
        requests=[Later(asked, source.done, 0.5)],
        decide=decide,
    )
    run_main(flow)  # type: ignore[no-untyped-call]
    return [v for _k, v in dead]


def test_a_whatif_runs_from_the_live_state_and_a_second_at_once_is_busy(
    pool: WhatIfPool,
) -> None:
    t0 = float(history()[-1].times[-1])
    got: list[Any] = []
    decide = Decide(whatif_sinks=[TestingSink(got)], pool=pool)
    expired = WhatIfRequest("old", TWIN, "motor", request("x", t0).whatif, utc(t0), utc(t0 - 1))
    run([request("first", t0), request("second", t0), expired], decide)
    by_id = {r.request_id: r for _k, r in got}
    assert set(by_id) == {"first", "second", "old"}
    assert by_id["second"].status == "rejected" and by_id["second"].reason == BUSY
    assert by_id["old"].status == "rejected" and "expired" in str(by_id["old"].reason)
    first = by_id["first"]
    assert first.status == "done", first.reason
    doc = first.to_json()
    Draft202012Validator(json.loads(SCHEMA.read_text())).validate(doc)
    report = doc["report"]
    assert report["twin_id"] == TWIN and report["time"] == doc["requested_at"]
    names = [s["name"] for s in report["scenarios"]]
    assert names == ["no change", "derate now"]
    base, derated = (s["signals"]["winding_temp"] for s in report["scenarios"])
    assert len(base) == 2 and derated[-1] < base[-1]  # a derate cools the winding


def test_a_flow_that_serves_no_whatif_dead_letters_the_request() -> None:
    t0 = float(history()[-1].times[-1])
    rejected = WhatIfResult("bad", TWIN, "motor", "rejected", utc(t0), "scenarios: bad")
    dead = run([request("r1", t0), rejected], None)
    reasons = [d.reason for d in dead if isinstance(d, DeadLetter) and d.twin_id == TWIN]
    assert reasons == [NOT_SERVED, NOT_SERVED]
