"""``twinflow simulate CONFIG``: the simulated plant as real devices.

The twins of the deployment file are taken from a simulated plant (same ids and types) and
served over their protocols: MQTT twins publish telemetry to the broker, OPC UA twins are
variables of an OPC UA server, Modbus twins are units of a Modbus TCP server. Commands that
reach a device over its protocol change what the plant produces from then on.

Time: the plant starts at the wall clock and runs ``speed`` times faster than real time, so
its timestamps run ahead of the wall clock when ``speed > 1`` (the flow's ``max_future_s``
must allow for that). Vibration bursts are not carried over these protocols.

The simulator plays only the bundled twin types (its own physics): twins of a type from the
deployment's ``models:`` folders are left out with a warning (their real devices may publish
beside it), and a deployment with no twin of a bundled type is refused.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from twinflow.connectors import registry
from twinflow.connectors.simulator import Plant, PlantConfig
from twinflow.connectors.spec import SimulatedDevices
from twinflow.core.errors import ConfigError
from twinflow.core.records import TelemetryFrame
from twinflow.flows.deployment import Deployment, TwinSpec
from twinflow.flows.metrics import RunStats
from twinflow.operators.catalog import CATALOG

log = logging.getLogger(__name__)


def _not_played(dep: Deployment) -> list[TwinSpec]:
    """The twins whose type is not one the simulator plays (a type of ``models:``)."""
    return [t for t in dep.twins if t.twin_type not in CATALOG]


def _played_types() -> str:
    return ", ".join(sorted(CATALOG))


def playable(dep: Deployment) -> Deployment:
    """The deployment without the twins the simulator cannot play, each left out with a
    warning; a :class:`ConfigError` when no twin is left."""
    left_out = _not_played(dep)
    if not left_out:
        return dep
    for t in left_out:
        log.warning(
            "%s: twin %r is a %s, a type of the deployment's models: folders; twinflow "
            "simulate plays only the bundled types (%s) and serves no device for it",
            dep.path, t.twin_id, t.twin_type, _played_types(),
        )  # fmt: skip
    twins = tuple(t for t in dep.twins if t.twin_type in CATALOG)
    if not twins:
        raise ConfigError(
            f"{dep.path}: twinflow simulate plays only the bundled twin types "
            f"({_played_types()}), and every twin here is of the deployment's own types: "
            + ", ".join(f"{t.twin_id!r} ({t.twin_type})" for t in left_out)
            + "; run their real devices (or publish their telemetry) beside `twinflow run`"
        )
    return replace(dep, twins=twins)


def plant_for(dep: Deployment, start: datetime | None = None) -> Plant:
    """The simulated plant of a deployment, checked against the deployment's twins (of the
    bundled types only: see :func:`playable`)."""
    for t in _not_played(dep):
        raise ConfigError(
            f"{dep.path}: twin {t.twin_id!r} is a {t.twin_type}, a type of the deployment's "
            f"models: folders; the simulated plant has only the bundled types "
            f"({_played_types()})"
        )
    sim = dep.simulator
    chunk_s = float(max(1, math.ceil(sim.speed / 10)))
    now = start or datetime.fromtimestamp(math.floor(time.time()), tz=UTC)
    plant = Plant(
        PlantConfig(
            n_twins=sim.twins,
            duration_s=sim.duration_s,
            seed=sim.seed,
            start=now,
            chunk_s=chunk_s,
            bad_message_rate=0.0,
            raw_message_rate=0.0,
        )
    )
    types = dict(plant.twins)
    for twin in dep.twins:
        if twin.twin_id not in types:
            raise ConfigError(
                f"{dep.path}: twin {twin.twin_id!r} is not a twin of the simulated plant "
                f"(simulator.twins = {sim.twins}: {', '.join(list(types)[:6])}...)"
            )
        if types[twin.twin_id] != twin.twin_type:
            raise ConfigError(
                f"{dep.path}: twin {twin.twin_id!r} is a {types[twin.twin_id]} in the simulated "
                f"plant, not a {twin.twin_type}"
            )
    return plant


class Devices:
    """The simulated devices of every protocol the deployment's twins use."""

    def __init__(self, dep: Deployment, plant: Plant):
        self.dep = dep
        self.plant = plant
        self.protocol = {t.twin_id: t.protocol for t in dep.twins}
        self.started: list[SimulatedDevices] = []

    async def start(self) -> None:
        """Bring each protocol's devices up, in registration order."""
        dep = self.dep
        for name in dep.protocols():
            spec = registry.spec(name)
            bindings = dep.bindings(name)
            devices = spec.devices(self.plant, dep.services.get(name), dep.simulator, bindings)
            if devices is not None:
                await devices.start()
                self.started.append(devices)

    async def send(self, frame: TelemetryFrame) -> None:
        for devices in self.started:
            if devices.serves(frame.twin_id):
                await devices.send(frame)
                return

    async def stop(self) -> None:
        for devices in self.started:
            await devices.stop()


async def simulate(
    dep: Deployment,
    *,
    stop: threading.Event | None = None,
    on_chunk: Callable[[float], None] | None = None,
    on_start: Callable[[Plant], None] | None = None,
    stats: RunStats | None = None,
) -> Plant:
    """Run the plant as devices until its duration is over or ``stop`` is set (from any
    thread); ``on_start`` gets the plant once every device is up; ``stats`` counts the
    readings published. Twins of the deployment's own types are left out (:func:`playable`)."""
    dep = playable(dep)
    plant = plant_for(dep)
    devices = Devices(dep, plant)
    await devices.start()
    if on_start is not None:
        on_start(plant)
    part = plant.partition(0, 1)
    speed = dep.simulator.speed
    t0_sim = plant.config.start.timestamp()
    t0_wall = time.monotonic()
    try:
        while not part.done and not (stop is not None and stop.is_set()):
            items = part.next_chunk()
            for item in items:
                if isinstance(item, TelemetryFrame) and item.twin_id in devices.protocol:
                    await devices.send(item)
                    if stats is not None:
                        stats.add_readings(item.twin_type, item.readings)
            sim_now = plant.now()
            if on_chunk is not None:
                on_chunk(sim_now)
            lag = t0_wall + (sim_now - t0_sim) / speed - time.monotonic()
            if lag > 0:
                await asyncio.sleep(lag)
            else:
                await asyncio.sleep(0)
    finally:
        await devices.stop()
    return plant
