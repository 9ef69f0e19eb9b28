"""The telemetry flow given its frames one at a time and in batches (the ``windows`` step then
judges a twin's frames of a batch together, ``judge_batch``): the same alerts and windows."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import pytest
from bytewax.testing import TestingSink, TestingSource, run_main

from twinflow.connectors.simulator import Plant, PlantConfig
from twinflow.flows.config import FlowConfig
from twinflow.flows.telemetry import FlowOutputs, build_flow


def run(batch: int) -> tuple[list[str], list[str]]:
    """Alerts and windows of a simulated plant (every twin with a fault), as sorted JSON lines."""
    plant = Plant(PlantConfig(n_twins=8, duration_s=7200.0, seed=11, chunk_s=10.0,
                              burst_interval_s=3600.0, fault_fraction=1.0))  # fmt: skip
    alerts: list[Any] = []
    windows: list[Any] = []
    outputs = FlowOutputs(dead_letters=None, alerts=TestingSink(alerts), commands=None,
                          windows=TestingSink(windows))  # fmt: skip
    flow = build_flow(TestingSource(list(plant.items()), batch_size=batch), outputs,
                      FlowConfig(), clock=plant.now, twins=dict(plant.twins))  # fmt: skip
    run_main(flow)

    def lines(items: list[Any]) -> list[str]:
        return sorted(json.dumps(asdict(x), sort_keys=True, default=str) for _k, x in items)

    return lines(alerts), lines(windows)


@pytest.mark.parametrize("batch", [100, 400])
def test_batches_give_the_alerts_and_windows_of_frames_one_at_a_time(batch: int) -> None:
    alerts, windows = run(1)
    assert alerts and windows
    assert run(batch) == (alerts, windows)


def test_the_windows_step_keeps_the_step_id_of_its_recovery_snapshots() -> None:
    """Recovery snapshots are keyed by step id: ``windows`` keeps the one ``op.stateful``
    gave it before it took batches, so that a snapshot taken then resumes."""
    flow = build_flow(TestingSource([]), FlowOutputs(None, None, None), FlowConfig())
    ids: list[str] = []
    todo = list(flow.substeps)
    while todo:
        step = todo.pop()
        ids.append(step.step_id)
        todo.extend(getattr(step, "substeps", []))
    assert "twinflow-telemetry.analytics.windows.stateful_batch" in ids
