"""The simulator's Bytewax edges: the partitioned source, recovery, and the command sink."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
import numpy as np
import pytest
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from twinflow.connectors.simulator import (
    Plant,
    PlantConfig,
    SimulatedPlantSource,
    SimulatorCommandSink,
)
from twinflow.core.errors import ConfigError
from twinflow.core.records import Command, Incoming, TelemetryFrame, WaveformFrame
from twinflow.core.times import utc


def item_key(item: Incoming) -> tuple[Any, ...]:
    if isinstance(item, TelemetryFrame):
        sig = tuple((k, v.tobytes()) for k, v in item.signals.items())
        return ("T", item.twin_id, item.times.tobytes(), sig)
    if isinstance(item, WaveformFrame):
        return ("W", item.twin_id, item.start, item.samples.tobytes())
    return ("R", item.payload, item.received)


def causes(err: BaseException) -> str:
    """Messages of an exception and its causes (Bytewax wraps errors raised in steps)."""
    parts = []
    cur: BaseException | None = err
    while cur is not None:
        parts.append(str(cur))
        cur = cur.__cause__ or cur.__context__
    return " | ".join(parts)


def config(**overrides: Any) -> PlantConfig:
    kwargs: dict[str, Any] = {
        "n_twins": 7,
        "duration_s": 600,
        "seed": 21,
        "bad_message_rate": 0.05,
        "raw_message_rate": 0.1,
    }
    kwargs.update(overrides)
    return PlantConfig(**kwargs)


def test_source_emits_what_the_plant_generates() -> None:
    expected = Counter(item_key(i) for i in Plant(config()).items())
    out: list[Incoming] = []
    flow = Dataflow("sim_source")
    op.output(
        "out", op.input("sim", flow, SimulatedPlantSource(Plant(config()), 3)), TestingSink(out)
    )
    run_main(flow)
    assert Counter(item_key(i) for i in out) == expected


def test_source_refuses_a_bad_partition_count() -> None:
    with pytest.raises(ConfigError, match="partitions"):
        SimulatedPlantSource(Plant(config()), partitions=0)


def test_recovery_resumes_from_the_snapshot(tmp_path: Path) -> None:
    expected = Counter(item_key(i) for i in Plant(config()).items())
    init_db_dir(tmp_path, 1)
    recovery = RecoveryConfig(str(tmp_path))
    crash_after = {"items": 40}

    def build(out: list[Incoming]) -> Dataflow:
        flow = Dataflow("sim_recovery")
        items = op.input("sim", flow, SimulatedPlantSource(Plant(config()), 2))

        def maybe_crash(item: Incoming) -> Incoming:
            crash_after["items"] -= 1
            if crash_after["items"] == 0:
                raise RuntimeError("simulated crash")
            return item

        op.output("out", op.map("crash", items, maybe_crash), TestingSink(out))
        return flow

    first: list[Incoming] = []
    with pytest.raises(RuntimeError) as crash:
        run_main(build(first), epoch_interval=timedelta(0), recovery_config=recovery)
    assert "simulated crash" in causes(crash.value)
    crash_after["items"] = -1  # no crash this time
    second: list[Incoming] = []
    run_main(build(second), epoch_interval=timedelta(0), recovery_config=recovery)

    assert 0 < len(second) < sum(expected.values())  # resumed, not restarted
    got = {item_key(i) for i in first} | {item_key(i) for i in second}
    assert got == set(expected)
    # what the second run emits is exactly the continuation (at-least-once: replays allowed)
    assert set(Counter(item_key(i) for i in second)) <= set(expected)


def test_closed_loop_derate_cools_an_overheating_motor() -> None:
    cfg = config(
        n_twins=3,
        duration_s=2 * 3600,
        seed=1,
        fault_fraction=0.0,
        bad_message_rate=0.0,
        raw_message_rate=0.0,
    )
    threshold = 70.0

    def run(with_loop: bool) -> tuple[Plant, list[Incoming]]:
        plant = Plant(cfg)
        out: list[Incoming] = []
        flow = Dataflow("sim_loop")
        items = op.input("sim", flow, SimulatedPlantSource(plant, 2))
        op.output("frames", items, TestingSink(out))
        if with_loop:
            sent: set[str] = set()

            def decide(item: Incoming) -> Command | None:
                if not isinstance(item, TelemetryFrame) or item.twin_type != "motor":
                    return None
                if item.twin_id in sent or item.signals["winding_temp"].mean() < threshold:
                    return None
                sent.add(item.twin_id)
                issued = utc(item.end)
                return Command(
                    Command.make_id(item.twin_id, "derate", issued),
                    item.twin_id,
                    "motor",
                    "derate",
                    {"fraction": 0.5},
                    issued,
                    issued + timedelta(minutes=5),
                    "winding_temp high",
                )

            commands = op.filter_map("decide", items, decide)
            op.output("commands", commands, SimulatorCommandSink(plant))
        run_main(flow)
        return plant, out

    def winding(items: list[Incoming]) -> np.ndarray:
        frames = [i for i in items if isinstance(i, TelemetryFrame) and i.twin_type == "motor"]
        frames.sort(key=lambda f: f.start)
        return np.concatenate([f.signals["winding_temp"] for f in frames])

    plant, looped = run(with_loop=True)
    _, free = run(with_loop=False)
    (record,) = plant.command_log
    assert record.accepted and record.twin_id == "motor-003"
    assert plant.config.start_epoch < record.applied_at < plant.end
    assert winding(free)[-600:].mean() > threshold
    assert winding(looped)[-600:].mean() < winding(free)[-600:].mean() - 30


def test_command_sink_applies_commands_and_refuses_other_items() -> None:
    plant = Plant(config(n_twins=3))
    t = utc(plant.config.start_epoch)
    good = Command(
        Command.make_id("pump-002", "set_flow", t),
        "pump-002",
        "pump",
        "set_flow",
        {"m3h": 120.0},
        t,
        t + timedelta(minutes=1),
        "test",
    )
    bad = Command(
        Command.make_id("pump-002", "set_load", t),
        "pump-002",
        "pump",
        "set_load",
        {"percent": 50.0},
        t,
        t + timedelta(minutes=1),
        "test",
    )
    flow = Dataflow("sim_sink")
    op.output(
        "commands", op.input("in", flow, TestingSource([good, bad])), SimulatorCommandSink(plant)
    )
    run_main(flow)
    assert [(r.command_id, r.accepted) for r in plant.command_log] == [(bad.command_id, False)]
    part = plant.partition(0, 1)
    part.next_chunk()
    assert [(r.command_id, r.accepted) for r in plant.command_log][-1] == (good.command_id, True)

    flow = Dataflow("sim_sink_wrong")
    op.output(
        "commands",
        op.input("in", flow, TestingSource(["not a command"])),
        SimulatorCommandSink(plant),
    )
    with pytest.raises(RuntimeError) as err:
        run_main(flow)
    assert "takes twinflow.core.records.Command items, got str" in causes(err.value)
