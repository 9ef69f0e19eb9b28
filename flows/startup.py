"""Startup checks: every service a deployment names is probed before the flow starts.

Each service (the MQTT broker, the Kafka bootstrap servers, PostgreSQL, every OPC UA server
and Modbus device) gets one line: up, or unreachable with its address and what to check.
The probe is a TCP connection with a short time-out: it tells that something listens, not
that credentials or topics are right (the connectors report those when they connect).

:func:`check_services` then waits, re-probing with a visible countdown, for at most
``wait_s`` seconds. What happens when a service is still unreachable depends on whether the
flow can start without it: the connectors of MQTT, OPC UA, Modbus and PostgreSQL reconnect
in the background, so the flow starts and says so (unless ``require`` asks to exit); the
Kafka source cannot even list its partitions, so Kafka unreachable while it is a source (or
with ``require``) is a :class:`ServiceUnavailable` error with what to check.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TextIO
from urllib.parse import urlsplit

from twinflow.core.errors import TwinflowError
from twinflow.core.redact import redact
from twinflow.flows.deployment import Deployment

#: Seconds a probe waits for a TCP connection.
PROBE_TIMEOUT_S = 3.0


class ServiceUnavailable(TwinflowError):
    """A service the flow cannot start without is unreachable."""


@dataclass(frozen=True)
class Service:
    """One address to probe: ``what`` it is, ``where`` (host, port), ``hint`` if it fails, and
    whether the flow can start while it is away (its connector retries)."""

    what: str
    host: str
    port: int
    hint: str
    can_wait: bool = True

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def _host_port(text: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(text if "//" in text else f"//{text}")
    return parts.hostname or "127.0.0.1", parts.port or default_port


def services_of(dep: Deployment) -> list[Service]:
    """Every service the deployment's flow connects to, each address once."""
    out: list[Service] = []
    mqtt = dep.mqtt
    if mqtt is not None and any(t.protocol == "mqtt" for t in dep.twins):
        out.append(Service("MQTT broker", mqtt.host, mqtt.port,
                           "check that the broker runs and that services.mqtt (or MQTT_URL) "
                           "names it"))  # fmt: skip
    kafka = dep.kafka
    if kafka is not None:
        source = bool(kafka.telemetry_topics or kafka.command_requests_topic)
        for server in kafka.bootstrap.split(","):
            host, port = _host_port(server.strip(), 9092)
            out.append(Service("Kafka broker", host, port,
                               "check services.kafka.bootstrap (or KAFKA_BOOTSTRAP) and that "
                               "the broker listens there", can_wait=not source))  # fmt: skip
    if dep.database_url:
        host, port = _host_port(dep.database_url, 5432)
        out.append(Service("PostgreSQL", host, port,
                           "check the database URL (or DATABASE_URL) and that the server "
                           "accepts TCP connections"))  # fmt: skip
    for t in dep.twins:
        if t.opcua is not None:
            host, port = _host_port(t.opcua.endpoint, 4840)
            out.append(Service("OPC UA server", host, port,
                               f"check the endpoint of twin {t.twin_id!r} and that the server "
                               "runs"))  # fmt: skip
        if t.modbus is not None:
            out.append(Service("Modbus device", t.modbus.host, t.modbus.port,
                               f"check host and port of twin {t.twin_id!r} and that the device "
                               "answers"))  # fmt: skip
    seen: set[tuple[str, str]] = set()
    unique = []
    for s in out:
        if (s.what, s.address) not in seen:
            seen.add((s.what, s.address))
            unique.append(s)
    return unique


def probe(service: Service, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """``None`` when something accepts a TCP connection at the address, else why not."""
    try:
        with socket.create_connection((service.host, service.port), timeout=timeout_s):
            return None
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def _line(service: Service, problem: str | None) -> str:
    if problem is None:
        return f"  {service.what} at {redact(service.address)}: up"
    return f"  {service.what} at {redact(service.address)}: UNREACHABLE ({problem}); {service.hint}"


def check_services(
    dep: Deployment,
    stream: TextIO,
    *,
    wait_s: float = 0.0,
    require: bool = False,
    every_s: float = 2.0,
    prober: Callable[[Service], str | None] = probe,
    stop: Callable[[], bool] = lambda: False,
    only: Collection[str] | None = None,
) -> list[Service]:
    """Probe every service (or those whose ``what`` is in ``only``) and print a line each;
    wait up to ``wait_s`` for the unreachable ones (a countdown line, re-probing every
    ``every_s``). Returns those still unreachable when the flow may start anyway; raises
    :class:`ServiceUnavailable` otherwise."""
    services = [s for s in services_of(dep) if only is None or s.what in only]
    if not services:
        return []
    print("checking services:", file=stream, flush=True)
    problems = {s: prober(s) for s in services}
    for s in services:
        print(_line(s, problems[s]), file=stream, flush=True)
    failing = [s for s in services if problems[s] is not None]
    deadline = time.monotonic() + wait_s
    live = stream.isatty()
    while failing and time.monotonic() < deadline and not stop():
        left = deadline - time.monotonic()
        text = f"  waiting for {', '.join(f'{s.what} at {s.address}' for s in failing)}: " \
               f"{left:.0f} s left"  # fmt: skip
        print(("\r" + text) if live else text, end="" if live else "\n", file=stream, flush=True)
        time.sleep(min(every_s, max(left, 0.0)))
        back = [s for s in failing if prober(s) is None]
        for s in back:
            print(("\n" if live else "") + _line(s, None), file=stream, flush=True)
        failing = [s for s in failing if s not in back]
    if live and wait_s > 0 and failing:
        print(file=stream)
    fatal = [s for s in failing if require or not s.can_wait]
    if fatal:
        names = "; ".join(f"{s.what} at {redact(s.address)}: {s.hint}" for s in fatal)
        why = "" if require else " (the Kafka source cannot start without its broker)"
        raise ServiceUnavailable(
            f"unreachable{why}: {names}"
            + (f" (waited {wait_s:g} s)" if wait_s > 0 else "; --wait-for-services waits")
        )
    if failing:
        print("  starting anyway: the connectors keep retrying in the background",
              file=stream, flush=True)  # fmt: skip
    return failing
