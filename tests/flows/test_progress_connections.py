"""Command sinks report their connections: down while the peer is unreachable, forgotten when
closed (what the progress line and ``twinflow_connection_up`` show). Nothing listens on the
ports used here, so no peer is started."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main
from prometheus_client import REGISTRY

from tests.services.ports import free_port
from twinflow.connectors import connection_state
from twinflow.connectors.feedback import CommandFeedback
from twinflow.connectors.opcua import OpcUaCommandSink
from twinflow.connectors.simulator.devices.opcua import default_binding
from twinflow.core.backoff import Backoff
from twinflow.core.records import Command, CommandStatus


def _command(ttl_s: float) -> Command:
    now = datetime.now(UTC)
    return Command(
        command_id=f"cmd-{uuid.uuid4().hex[:10]}", twin_id="motor-003", twin_type="motor",
        name="derate", params={"fraction": 0.5}, issued_at=now,
        expires_at=now + timedelta(seconds=ttl_s), reason="test", status=CommandStatus.QUEUED,
    )  # fmt: skip


def test_an_opcua_command_sink_reports_its_server_down_while_unreachable() -> None:
    url = f"opc.tcp://127.0.0.1:{free_port()}/twinflow/"
    sink = OpcUaCommandSink(
        [default_binding("motor-003", "motor", url)],
        feedback=CommandFeedback(),
        backoff=Backoff(base_s=0.05, cap_s=0.1, max_attempts=1000),
        timeout_s=0.5,
    )
    flow = Dataflow("opcua-down")
    op.output("act", op.input("in", flow, TestingSource([_command(ttl_s=1.0)])), sink)
    run_main(flow)  # closing the sink waits until the command expired
    value = REGISTRY.get_sample_value(
        "twinflow_connection_up", {"protocol": "opcua", "role": "sink", "peer": url}
    )
    assert value == 0.0, "the gauge says the server was down"
    assert ("opcua", "sink", url) not in connection_state.down_peers(), "forgotten when closed"
