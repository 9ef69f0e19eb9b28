"""The Modbus command sink borrows the connection of the source partition in its process.

Simulated devices behind a counting TCP relay: while a source partition polls the endpoint,
the sink's write goes over the poller's connection, between two polls (the device sees one
client, and polling goes on); with no source partition in the process the sink connects
itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from tests.connectors.test_modbus import (
    HOST,
    Served,
    collect,
    command,
    counter,
    free_port,
    make_plant,
    serve,
    statuses,
)
from tests.flows.test_cluster_commands import CountingRelay
from twinflow.connectors.feedback import CommandFeedback
from twinflow.connectors.modbus import ModbusCommandSink, ModbusSource
from twinflow.connectors.simulator.devices.modbus import default_bindings
from twinflow.core.records import CommandStatus

pytestmark = [pytest.mark.services, pytest.mark.timeout(45)]

WRITES = "twinflow_command_writes_total"


@pytest.fixture
def relayed() -> Iterator[tuple[Served, CountingRelay]]:
    """The plant's devices, and a relay in front of them that the bindings name."""
    plant = make_plant()
    port = free_port()
    served = serve(plant, default_bindings(plant, HOST, port, poll_interval_s=0.05), port)
    relay = CountingRelay(port)
    served.bindings = [replace(b, port=relay.port) for b in served.bindings]
    served.push_chunk()
    yield served, relay
    relay.close()
    served.stop()
    served.loop.stop()


def test_the_sink_writes_over_the_pollers_connection(
    relayed: tuple[Served, CountingRelay],
) -> None:
    served, relay = relayed
    source = ModbusSource(served.bindings, reconnect_min_s=0.05, reconnect_max_s=0.2)
    [key] = source.list_parts()
    part = source.build_part("in", key, None)
    feedback = CommandFeedback()
    sink = ModbusCommandSink(served.bindings, feedback=feedback)
    cmd = command("motor-003", "motor", "set_load", percent=60.0)
    before = counter(WRITES, protocol="modbus", connection="source")
    try:
        collect(part, lambda fs: len(fs) >= 3)  # polling
        sink.send([cmd])
        acked = feedback.wait_for(cmd.command_id, {CommandStatus.ACKNOWLEDGED}, 10)
        assert acked is not None, feedback.history(cmd.command_id)
        collect(part, lambda fs: len(fs) >= 3)  # and polling goes on
    finally:
        sink.close()
        source.stop()
        part.close()
    assert statuses(feedback, cmd) == [CommandStatus.SENT, CommandStatus.ACKNOWLEDGED]
    assert [c.name for c in served.devices.commands] == ["set_load"]
    assert (relay.talked, relay.most) == (1, 1)  # the poller's connection only
    assert counter(WRITES, protocol="modbus", connection="source") == before + 1


def test_without_a_source_in_the_process_the_sink_connects_itself(
    relayed: tuple[Served, CountingRelay],
) -> None:
    served, relay = relayed
    feedback = CommandFeedback()
    sink = ModbusCommandSink(served.bindings, feedback=feedback)
    cmd = command("motor-003", "motor", "set_load", percent=55.0)
    own = counter(WRITES, protocol="modbus", connection="own")
    sink.send([cmd])
    assert feedback.wait_for(cmd.command_id, {CommandStatus.ACKNOWLEDGED}, 10) is not None
    sink.close()
    assert relay.talked == 1
    assert counter(WRITES, protocol="modbus", connection="own") == own + 1
