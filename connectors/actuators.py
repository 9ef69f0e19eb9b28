"""Route each command to the sink of the protocol its twin is bound to.

The flow has one stream of commands; a deployment mixes MQTT, OPC UA and Modbus twins.
:class:`CommandRouter` is a Bytewax ``DynamicSink`` that hands every command to the sink of its
twin's protocol, and counts commands for twins it has no route for (they are not sent).

Each protocol sink is built with the process's
:class:`~twinflow.connectors.feedback.CommandFeedback` and reports its own outcomes there;
the router, given the same hub, reports a queued command for a twin without a route as
REJECTED, and refuses at construction a route whose sink reports to another hub (or to
none), so that no protocol is silently left out.

In a flow, :meth:`CommandRouter.placed` splits the router: the protocols whose sinks can be
placed by device connection (OPC UA, Modbus) get a
:class:`~twinflow.connectors.placement.PlacedCommands` sink each, written on the worker that
reads the twin's device; the router keeps the others (MQTT: any worker publishes, the broker
is the connection) and the rejection of twins without a route.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Any

from bytewax.outputs import DynamicSink, Sink, StatelessSinkPartition
from prometheus_client import Counter

from twinflow.connectors.feedback import CommandFeedback, report
from twinflow.connectors.placement import placed_sinks
from twinflow.core.errors import ConfigError
from twinflow.core.records import Command, CommandStatus

log = logging.getLogger(__name__)

UNROUTED = Counter("twinflow_commands_unrouted", "Commands for twins bound to no actuator protocol")


class _RouterPartition(StatelessSinkPartition[Command]):
    def __init__(
        self,
        parts: Mapping[str, StatelessSinkPartition[Command]],
        twin_protocol: Mapping[str, str],
        feedback: CommandFeedback | None,
        elsewhere: Collection[str] = (),
    ):
        self._parts = parts
        self._twin_protocol = twin_protocol
        self._feedback = feedback
        self._elsewhere = frozenset(elsewhere)

    def write_batch(self, items: list[Command]) -> None:
        batches: dict[str, list[Command]] = {}
        for cmd in items:
            protocol = self._twin_protocol.get(cmd.twin_id)
            if protocol in self._elsewhere:
                continue  # a placed sink of the flow sends it
            if protocol is None or protocol not in self._parts:
                UNROUTED.inc()
                log.warning(
                    "command %s for twin %r not sent: no actuator route for it",
                    cmd.command_id,
                    cmd.twin_id,
                )
                if cmd.status is CommandStatus.QUEUED:
                    detail = f"twin {cmd.twin_id!r} is bound to no actuator protocol; not sent"
                    report(self._feedback, cmd, CommandStatus.REJECTED, detail)
                continue
            batches.setdefault(protocol, []).append(cmd)
        for protocol, batch in batches.items():
            self._parts[protocol].write_batch(batch)

    def close(self) -> None:
        for part in self._parts.values():
            part.close()


class CommandRouter(DynamicSink[Command]):
    """Commands to ``routes[protocol]``, the protocol looked up by twin id.

    With ``feedback``, every route's sink must have been built with that same hub. Commands
    of twins whose protocol is in ``elsewhere`` are left alone (another sink sends them).
    """

    def __init__(
        self,
        routes: Mapping[str, DynamicSink[Command]],
        twin_protocol: Mapping[str, str],
        feedback: CommandFeedback | None = None,
        elsewhere: Collection[str] = (),
    ):
        self.routes = dict(routes)
        self.twin_protocol = dict(twin_protocol)
        self.feedback = feedback
        self.elsewhere = frozenset(elsewhere)
        if feedback is not None:
            for name, sink in self.routes.items():
                if getattr(sink, "feedback", None) is not feedback:
                    raise ConfigError(
                        f"the {name!r} command sink reports to another command feedback hub "
                        f"than the router; build it with feedback=<the router's hub>"
                    )

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RouterPartition:
        parts = {
            name: sink.build(f"{step_id}_{name}", worker_index, worker_count)
            for name, sink in self.routes.items()
        }
        return _RouterPartition(parts, self.twin_protocol, self.feedback, self.elsewhere)

    def placed(self) -> list[Sink[Any]]:
        """The flow's actuator sinks: one placed sink per protocol that can be placed by
        device connection, then this router for the other protocols (and the twins without
        a route). Each sink takes every queued command and sends only its own."""
        placed = placed_sinks(self.routes)
        rest = {n: s for n, s in self.routes.items() if n not in placed}
        router = CommandRouter(rest, self.twin_protocol, self.feedback, elsewhere=placed)
        return [*placed.values(), router]
