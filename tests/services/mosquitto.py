"""A real mosquitto broker on a free loopback port, for tests and benchmarks.

:class:`Mosquitto` writes a config file into a temporary directory, starts ``mosquitto`` on
``127.0.0.1:<free port>`` with anonymous access and persistence in that directory, and waits
until the port accepts connections. :meth:`Mosquitto.restart` stops it gracefully (SIGTERM:
mosquitto saves its database) and starts it again on the same port with the same data, so
persistent sessions and their queued QoS 1 messages survive, as on a real broker restart.

If mosquitto is not installed, :func:`find_mosquitto` raises :class:`MosquittoMissing` with
what to install: the MQTT tests must exercise a real broker, so they fail rather than skip.

Usage::

    with Mosquitto() as broker:          # started, accepting connections
        connect_to(broker.host, broker.port)
        broker.restart()                 # same port, same sessions and queued messages

>>> 1024 <= free_port() <= 65535
True
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from tests.services.ports import free_port

#: Messages a persistent session may queue above the in-flight ones (mosquitto's default is
#: 1000, too few for the backlog tests and benchmarks let build while a client is away).
MAX_QUEUED = 200_000


class MosquittoMissing(RuntimeError):
    """The mosquitto binary is not installed."""


def find_mosquitto() -> str:
    """Path of the ``mosquitto`` binary: on PATH, else in /usr/sbin or /usr/local/sbin."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for folder in ("/usr/sbin", "/usr/local/sbin"):
        candidate = Path(folder) / "mosquitto"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise MosquittoMissing(
        "the MQTT tests need a real mosquitto broker, and none was found on PATH or in "
        "/usr/sbin: install it with `apt-get install mosquitto` (Debian/Ubuntu) or your "
        "system's package manager, then run the tests again"
    )


class Mosquitto:
    """One mosquitto process with its own port, config and persistence directory.

    ``extra_config`` lines are appended to the generated config, after the one listener (so
    ``cafile``/``certfile``/``keyfile`` lines make it a TLS listener, ``password_file`` adds
    users); ``allow_anonymous=False`` requires a user. ``autosave_interval_s`` is how often
    the database is saved besides at a graceful stop (0: only then; a save of a big backlog
    stalls the single-threaded broker). Use as a context manager, or call :meth:`start` and
    :meth:`stop`.
    """

    def __init__(
        self,
        data_dir: str | Path | None = None,
        port: int | None = None,
        extra_config: tuple[str, ...] = (),
        start_timeout_s: float = 10.0,
        allow_anonymous: bool = True,
        autosave_interval_s: int = 1,
    ) -> None:
        self.binary = find_mosquitto()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="twinflow-mosquitto-")
            data_dir = self._tmp.name
        self.data_dir = Path(data_dir)
        self.port = port if port is not None else free_port()
        self.host = "127.0.0.1"
        self.extra_config = extra_config
        self.allow_anonymous = allow_anonymous
        self.autosave_interval_s = autosave_interval_s
        self.start_timeout_s = start_timeout_s
        self.config_file = self.data_dir / "mosquitto.conf"
        self.log_file = self.data_dir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT``, the form ``MQTT_URL`` takes."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _write_config(self) -> None:
        user = pwd.getpwuid(os.getuid()).pw_name  # as root, mosquitto would drop to "mosquitto"
        lines = [
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            f"user {user}",
            "persistence true",
            f"persistence_location {self.data_dir}/",
            f"autosave_interval {self.autosave_interval_s}",
            "autosave_on_changes false",
            f"max_queued_messages {MAX_QUEUED}",
            f"log_dest file {self.log_file}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            *self.extra_config,
        ]
        self.config_file.write_text("\n".join(lines) + "\n")

    def start(self) -> Mosquitto:
        """Start the broker and wait (bounded) until it accepts connections."""
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(self.config_file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        pause = 0.005
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise RuntimeError(
                    f"mosquitto exited with code {self._proc.returncode} on port {self.port}: "
                    f"{err.strip()} {self._log_tail()}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(pause)  # a process start has no event to wait on: poll, briefly
                pause = min(pause * 2, 0.1)
        self.stop()
        raise RuntimeError(
            f"mosquitto did not accept connections on {self.host}:{self.port} within "
            f"{self.start_timeout_s:g} s. {self._log_tail()}"
        )

    def _log_tail(self) -> str:
        try:
            return "log: " + self.log_file.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop gracefully (SIGTERM; mosquitto saves its database); kill if it hangs."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout_s)
        if proc.stderr is not None:
            proc.stderr.close()

    def restart(self) -> Mosquitto:
        """Stop and start again on the same port with the same data directory."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop and remove the temporary directory (if this object made it)."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def running_broker() -> Iterator[Mosquitto]:
    """A started broker for a pytest fixture (``yield from running_broker()``), closed after;
    a missing mosquitto fails the test with the reason."""
    import pytest

    try:
        broker = Mosquitto().start()
    except MosquittoMissing as e:
        pytest.fail(str(e), pytrace=False)
    yield broker
    broker.close()
