"""The OPC UA command sink borrows the session of the source partition in its process.

A simulated server behind a counting TCP relay: the sink's write goes over the source's
session (the server sees one client); while the source's session is down the sink retries
rather than open its own; with no source partition in the process it opens its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlparse

import pytest

from tests.connectors.test_opcua import (
    Loop,
    command,
    fast_source,
    free_port,
    metric,
    outcomes,
    partition,
    quiet_plant,
    send,
)
from tests.flows.test_cluster_commands import CountingRelay
from twinflow.connectors.bindings import OpcUaBinding
from twinflow.connectors.feedback import CommandFeedback
from twinflow.connectors.opcua import OpcUaCommandSink
from twinflow.connectors.simulator.devices.opcua import OpcUaDevices, default_binding
from twinflow.core.backoff import Backoff
from twinflow.core.records import CommandStatus

pytestmark = [pytest.mark.services, pytest.mark.timeout(45)]

WRITES = "twinflow_command_writes_total"


@pytest.fixture(scope="module")
def server() -> Iterator[OpcUaDevices]:
    """A quiet plant's three twins served at one endpoint."""
    loop, plant = Loop(), quiet_plant()
    url = f"opc.tcp://127.0.0.1:{free_port()}/twinflow/"
    devices = OpcUaDevices(plant, url, [default_binding(t, k, url) for t, k in plant.twins])
    loop.run(devices.start())
    yield devices
    loop.run(devices.stop())
    loop.close()


def through(relay_port: int, devices: OpcUaDevices) -> list[OpcUaBinding]:
    """The plant's bindings, reaching the server through a relay."""
    url = f"opc.tcp://127.0.0.1:{relay_port}/twinflow/"
    twins = [(b.twin_id, b.twin_type) for b in devices.bindings]
    return [default_binding(t, k, url, sampling_interval_ms=50.0) for t, k in twins]


def port_of(devices: OpcUaDevices) -> int:
    return int(urlparse(devices.endpoint).port or 0)


def test_the_sink_writes_over_the_source_session(server: OpcUaDevices) -> None:
    relay = CountingRelay(port_of(server))
    bindings = through(relay.port, server)
    feedback = CommandFeedback()
    derate = command("motor-003", "derate", 11, fraction=0.4)
    before = metric(WRITES, protocol="opcua", connection="source")
    try:
        with partition(fast_source(bindings)):
            send(OpcUaCommandSink(bindings, timeout_s=2.0, feedback=feedback), [derate])
    finally:
        relay.close()
    assert outcomes(feedback, derate) == [(CommandStatus.SENT, 1), (CommandStatus.ACKNOWLEDGED, 1)]
    assert server.commands[-1].params == {"fraction": 0.4}
    assert (relay.talked, relay.most) == (1, 1)  # the source's session only
    assert metric(WRITES, protocol="opcua", connection="source") == before + 1


def test_while_the_source_is_down_the_sink_retries_instead_of_connecting() -> None:
    url = f"opc.tcp://127.0.0.1:{free_port()}"  # nothing listens there
    bindings = [default_binding("motor-003", "motor", url)]
    feedback = CommandFeedback()
    sink = OpcUaCommandSink(
        bindings,
        timeout_s=0.5,
        backoff=Backoff(base_s=0.05, cap_s=0.1, max_attempts=3),
        feedback=feedback,
    )
    derate = command("motor-003", "derate", 12, fraction=0.5)
    own = metric(WRITES, protocol="opcua", connection="own")
    with partition(fast_source(bindings), connect=False):
        send(sink, [derate])
    [gave_up] = feedback.history(derate.command_id)
    assert (gave_up.status, gave_up.attempt) == (CommandStatus.FAILED, 3)
    assert "the source's connection to" in gave_up.detail and "is down" in gave_up.detail
    assert metric(WRITES, protocol="opcua", connection="own") == own


def test_without_a_source_in_the_process_the_sink_has_its_own_session(
    server: OpcUaDevices,
) -> None:
    relay = CountingRelay(port_of(server))
    bindings = through(relay.port, server)
    feedback = CommandFeedback()
    derate = command("motor-003", "derate", 13, fraction=0.6)
    own = metric(WRITES, protocol="opcua", connection="own")
    try:
        send(OpcUaCommandSink(bindings, timeout_s=2.0, feedback=feedback), [derate])
    finally:
        relay.close()
    assert outcomes(feedback, derate)[-1] == (CommandStatus.ACKNOWLEDGED, 1)
    assert relay.talked == 1  # the sink's own session
    assert metric(WRITES, protocol="opcua", connection="own") == own + 1
