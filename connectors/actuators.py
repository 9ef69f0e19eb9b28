"""Route each command to the sink of the protocol its twin is bound to.

The flow has one stream of commands; a deployment mixes MQTT, OPC UA and Modbus twins.
:class:`CommandRouter` is a Bytewax ``DynamicSink`` that hands every command to the sink of its
twin's protocol, and counts commands for twins it has no route for (they are not sent).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from prometheus_client import Counter

from operators.records import Command

log = logging.getLogger(__name__)

UNROUTED = Counter("twinflow_commands_unrouted", "Commands for twins bound to no actuator protocol")


class _RouterPartition(StatelessSinkPartition[Command]):
    def __init__(
        self,
        parts: Mapping[str, StatelessSinkPartition[Command]],
        twin_protocol: Mapping[str, str],
    ):
        self._parts = parts
        self._twin_protocol = twin_protocol

    def write_batch(self, items: list[Command]) -> None:
        batches: dict[str, list[Command]] = {}
        for cmd in items:
            protocol = self._twin_protocol.get(cmd.twin_id)
            if protocol is None or protocol not in self._parts:
                UNROUTED.inc()
                log.warning(
                    "command %s for twin %r not sent: no actuator route for it",
                    cmd.command_id,
                    cmd.twin_id,
                )
                continue
            batches.setdefault(protocol, []).append(cmd)
        for protocol, batch in batches.items():
            self._parts[protocol].write_batch(batch)

    def close(self) -> None:
        for part in self._parts.values():
            part.close()


class CommandRouter(DynamicSink[Command]):
    """Commands to ``routes[protocol]``, the protocol looked up by twin id."""

    def __init__(
        self, routes: Mapping[str, DynamicSink[Command]], twin_protocol: Mapping[str, str]
    ):
        self.routes = dict(routes)
        self.twin_protocol = dict(twin_protocol)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RouterPartition:
        parts = {
            name: sink.build(f"{step_id}_{name}", worker_index, worker_count)
            for name, sink in self.routes.items()
        }
        return _RouterPartition(parts, self.twin_protocol)
