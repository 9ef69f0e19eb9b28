"""Run a flow as one process of a Bytewax cluster: options, environment, recovery partitions.

``twinflow run`` and ``twinflow replay`` take Bytewax's own scaling options and variables
(the ones ``python -m bytewax.run`` reads), so a process starts the same way under a shell,
a compose file or a Kubernetes StatefulSet:

=====================================  ==================================  =====================
option                                 variable                            default
=====================================  ==================================  =====================
``-w``/``--workers-per-process``       ``BYTEWAX_WORKERS_PER_PROCESS``     1
``-i``/``--process-id``                ``BYTEWAX_PROCESS_ID``, else the    none (one process)
                                       ordinal of ``BYTEWAX_POD_NAME``
                                       after ``BYTEWAX_STATEFULSET_NAME-``
``-a``/``--addresses`` (``;``-joined)  ``BYTEWAX_ADDRESSES``, else the     none
                                       lines of ``BYTEWAX_HOSTFILE_PATH``
=====================================  ==================================  =====================

An option given on the command line wins over its variable. A process id needs the addresses
of every process (its own included, in process-id order) and addresses need a process id.

Recovery (``--recovery-dir``) is per process: each process keeps its own directory, holding
its own share of the cluster's partitions (Bytewax spreads the partitions it finds on every
process over the whole cluster's workers, so two processes must never hold the same one).
:func:`cluster_recovery` creates process ``i``'s share on first use: partitions ``j`` of
``n`` with ``j % processes == i``, ``n`` the same on every process.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twinflow.core.errors import ConfigError

if TYPE_CHECKING:  # the CLI imports this module at start: its heavy imports wait for use
    from bytewax.recovery import RecoveryConfig

    from twinflow.connectors.recorded.source import ReplaySource
    from twinflow.connectors.recorded.spec import ReplaySpec
    from twinflow.operators.catalog import TwinType

#: The variables Bytewax's own runner reads, and the option each one stands for.
ENV_WORKERS = "BYTEWAX_WORKERS_PER_PROCESS"
ENV_PROCESS_ID = "BYTEWAX_PROCESS_ID"
ENV_ADDRESSES = "BYTEWAX_ADDRESSES"
ENV_HOSTFILE = "BYTEWAX_HOSTFILE_PATH"
ENV_POD_NAME = "BYTEWAX_POD_NAME"
ENV_STATEFULSET = "BYTEWAX_STATEFULSET_NAME"


@dataclass(frozen=True)
class Cluster:
    """Where this process stands in its cluster.

    >>> Cluster(2, 1, ("a:2101", "b:2101")).describe()
    'process 1 of 2, 2 worker(s) each (4 in all)'
    >>> Cluster(3).main_kwargs()
    {'workers_per_process': 3}
    """

    workers_per_process: int = 1
    process_id: int | None = None
    addresses: tuple[str, ...] = ()

    @property
    def processes(self) -> int:
        return len(self.addresses) if self.process_id is not None else 1

    @property
    def index(self) -> int:
        """This process's id (0 when it runs alone)."""
        return self.process_id or 0

    @property
    def workers(self) -> int:
        """Workers of the whole cluster."""
        return self.workers_per_process * self.processes

    def main_kwargs(self) -> dict[str, Any]:
        """The scaling keyword arguments of ``bytewax.run.cli_main``."""
        kwargs: dict[str, Any] = {"workers_per_process": self.workers_per_process}
        if self.process_id is not None:
            kwargs["process_id"] = self.process_id
            kwargs["addresses"] = list(self.addresses)
        return kwargs

    def describe(self) -> str:
        return (
            f"process {self.index} of {self.processes}, {self.workers_per_process} worker(s) "
            f"each ({self.workers} in all)"
        )


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """The scaling options of ``bytewax.run`` (defaults applied by :func:`cluster_from`)."""
    group = parser.add_argument_group(
        "cluster", "Bytewax scaling: threads per process, and the processes of a cluster"
    )
    group.add_argument(
        "-w",
        "--workers-per-process",
        "--workers",
        dest="workers",
        type=_whole(1),
        default=None,
        help=f"Bytewax worker threads in this process (default 1) [env: {ENV_WORKERS}]",
    )
    group.add_argument(
        "-i",
        "--process-id",
        type=_whole(0),
        default=None,
        help="this process's id in the cluster, from 0 [env: "
        f"{ENV_PROCESS_ID}, or the ordinal of {ENV_POD_NAME} in {ENV_STATEFULSET}]",
    )
    group.add_argument(
        "-a",
        "--addresses",
        default=None,
        help="host:port of every process, in process-id order, joined by ';' [env: "
        f"{ENV_ADDRESSES}, or one per line in the file {ENV_HOSTFILE}]",
    )


def cluster_from(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Cluster:
    """The options as parsed, completed from ``env`` (default ``os.environ``) as Bytewax does.

    >>> ns = argparse.Namespace(workers=None, process_id=None, addresses=None)
    >>> env = {"BYTEWAX_POD_NAME": "tf-1", "BYTEWAX_STATEFULSET_NAME": "tf",
    ...        "BYTEWAX_ADDRESSES": "tf-0.tf:2101;tf-1.tf:2101"}
    >>> cluster_from(ns, env).main_kwargs()
    {'workers_per_process': 1, 'process_id': 1, 'addresses': ['tf-0.tf:2101', 'tf-1.tf:2101']}
    """
    env = os.environ if env is None else env
    workers = args.workers
    if workers is None:
        workers = _from_env(env, ENV_WORKERS, 1) or 1
    process_id = args.process_id
    if process_id is None:
        process_id = _from_env(env, ENV_PROCESS_ID, 0)
    if process_id is None and env.get(ENV_POD_NAME) and env.get(ENV_STATEFULSET):
        process_id = _pod_ordinal(env[ENV_POD_NAME], env[ENV_STATEFULSET])
    text = args.addresses if args.addresses is not None else env.get(ENV_ADDRESSES)
    if not text and process_id is not None and env.get(ENV_HOSTFILE):
        text = ";".join(_hostfile(Path(env[ENV_HOSTFILE])))
    addresses = tuple(a.strip() for a in (text or "").split(";") if a.strip())
    return check_cluster(Cluster(workers, process_id, addresses))


def check_cluster(cluster: Cluster) -> Cluster:
    """Refuse a process id without addresses, addresses without a process id, an id out of
    range, a malformed or repeated address."""
    pid, addresses = cluster.process_id, cluster.addresses
    if pid is None and addresses:
        raise ConfigError(
            f"--addresses (or {ENV_ADDRESSES}) needs --process-id (or {ENV_PROCESS_ID}): "
            "which of the addresses is this process?"
        )
    if pid is None:
        return cluster
    if not addresses:
        raise ConfigError(
            f"--process-id {pid} needs --addresses (or {ENV_ADDRESSES}, or a {ENV_HOSTFILE} "
            "file): the host:port of every process of the cluster"
        )
    if pid >= len(addresses):
        raise ConfigError(
            f"--process-id {pid} is not below the number of --addresses ({len(addresses)}); "
            "process ids count from 0, one per address"
        )
    for a in addresses:
        host, sep, port = a.rpartition(":")
        if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError(f"--addresses: {a!r} is not host:port")
    if len(set(addresses)) != len(addresses):
        raise ConfigError(f"--addresses names a process twice: {';'.join(addresses)}")
    return cluster


def cluster_recovery(db_dir: Path, cluster: Cluster) -> RecoveryConfig:
    """This process's recovery directory, holding its share of the cluster's partitions.

    Alone, a process keeps every partition (:func:`~twinflow.flows.recovery.recovery_config`).
    In a cluster, a new directory gets partitions ``j`` of ``n = max(4, workers in all)``
    with ``j % processes == process id``. A directory that holds partitions must hold this
    process's share of the same cluster: one made for another number of processes (or
    another process id) is refused, since Bytewax would find a partition twice or miss one.

    >>> d = Path(tempfile.mkdtemp())
    >>> _ = cluster_recovery(d / "p1", Cluster(1, 1, ("h:1", "h:2")))
    >>> sorted(p.name for p in (d / "p1").iterdir())
    ['part-1.sqlite3', 'part-3.sqlite3']
    """
    from bytewax.recovery import RecoveryConfig, init_db_dir

    from twinflow.flows.recovery import (
        DEFAULT_PARTITIONS,
        check_owner,
        make_private,
        partitions_in,
        recovery_config,
    )

    if partitions_in(db_dir) > 0:
        check_owner(db_dir)
        check_share(db_dir, cluster)
    if cluster.processes == 1:
        return recovery_config(db_dir, cluster.workers_per_process)
    if db_dir.exists() and not db_dir.is_dir():
        raise ConfigError(f"--recovery-dir {db_dir} exists and is not a directory")
    if partitions_in(db_dir) == 0:
        if db_dir.is_dir() and any(db_dir.iterdir()):
            raise ConfigError(
                f"--recovery-dir {db_dir} holds files but no recovery partitions "
                "(part-*.sqlite3); give an empty or new directory"
            )
        db_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        total = max(DEFAULT_PARTITIONS, cluster.workers)
        scratch = Path(tempfile.mkdtemp(prefix=".init-", dir=db_dir))
        try:
            init_db_dir(scratch, total)  # type: ignore[no-untyped-call]  # no stub annotations
            for j in range(cluster.index, total, cluster.processes):
                (scratch / f"part-{j}.sqlite3").rename(db_dir / f"part-{j}.sqlite3")
        finally:
            shutil.rmtree(scratch)
        make_private(db_dir)
    check_owner(db_dir)
    return RecoveryConfig(db_dir)  # type: ignore[no-untyped-call]


def check_share(db_dir: Path, cluster: Cluster) -> None:
    """Refuse recovery partitions that are not this process's share of one cluster.

    >>> d = Path(tempfile.mkdtemp())
    >>> _ = cluster_recovery(d, Cluster(1, 0, ("h:1", "h:2")))
    >>> check_share(d, Cluster(1, 0, ("h:1", "h:2", "h:3")))
    Traceback (most recent call last):
    ...
    twinflow.core.errors.ConfigError: ... [0, 2] of 4, but process 0 of 3 keeps [0, 3]: ...
    """
    found: dict[int, int] = {}
    for part in sorted(db_dir.glob("part-*.sqlite3")):
        uri = f"{part.resolve().as_uri()}?mode=ro"
        try:
            with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
                rows = conn.execute("SELECT part_index, part_count FROM parts").fetchall()
        except sqlite3.Error as exc:
            raise ConfigError(f"--recovery-dir {part}: not a recovery partition ({exc})") from None
        found.update((int(i), int(n)) for i, n in rows)
    counts = set(found.values())
    if len(counts) != 1:
        raise ConfigError(
            f"--recovery-dir {db_dir} mixes partitions of different recovery stores "
            f"(counts {sorted(counts)}); give each process its own directory"
        )
    (n,) = counts
    mine = list(range(cluster.index, n, cluster.processes))
    if sorted(found) != mine:
        raise ConfigError(
            f"--recovery-dir {db_dir} holds partitions {sorted(found)} of {n}, but process "
            f"{cluster.index} of {cluster.processes} keeps {mine}: it was made for another "
            "cluster (number of processes or process id); restart with the same processes and "
            "ids, or start every process from a new directory"
        )


def replay_source(
    files: Sequence[Path],
    spec: ReplaySpec,
    types: Mapping[str, TwinType],
    cluster: Cluster,
    span_s: float = math.inf,
) -> ReplaySource:
    """The replay's source; in a cluster of several processes, one that paces only the files
    this process reads. A batch reaches at most ``span_s`` of event time (capped at the
    reader's own day) past the latest time read before it.

    A replay reads the file furthest behind in event time next. A process of a cluster sees
    only its own files advance, so it must not wait for the others' (it would wait for ever).
    """
    from twinflow.connectors.recorded.reader import SPAN_S
    from twinflow.connectors.recorded.source import ReplaySource

    span_s = min(span_s, SPAN_S)
    if cluster.processes == 1:
        return ReplaySource(files, spec, types, span_s)

    class LocalReplaySource(ReplaySource):
        def build_part(self, step_id: str, for_part: str, resume_state: None) -> Any:
            pace.built(int(for_part.removeprefix("file-")))
            return super().build_part(step_id, for_part, resume_state)

    source = LocalReplaySource(files, spec, types, span_s)
    pace = LocalPace(len(source.readers))
    source.pace = pace  # type: ignore[assignment]  # same methods as the source's own pace
    return source


class LocalPace:
    """Which of this process's files may read next: the one furthest behind in event time.

    >>> pace = LocalPace(3)
    >>> pace.built(0); pace.built(2)
    >>> pace.moved(0, 10.0); pace.may_read(0), pace.may_read(2)
    (False, True)
    >>> pace.finish(2); pace.may_read(0)
    True
    """

    def __init__(self, n: int) -> None:
        self.at = [-math.inf] * n
        self.local = [False] * n
        self.done = [False] * n
        self.lock = threading.Lock()

    def built(self, i: int) -> None:
        with self.lock:
            self.local[i] = True

    def may_read(self, i: int) -> bool:
        with self.lock:
            others = [
                a for j, a in enumerate(self.at) if self.local[j] and not self.done[j] and j != i
            ]
            return not others or self.at[i] <= min(others)

    def moved(self, i: int, latest: float | None) -> None:
        if latest is not None:
            with self.lock:
                self.at[i] = max(self.at[i], latest)

    def finish(self, i: int) -> None:
        with self.lock:
            self.done[i] = True


def _whole(least: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
        return value

    return parse


def _from_env(env: Mapping[str, str], name: str, least: int) -> int | None:
    text = env.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a whole number") from None
    if value < least:
        raise ConfigError(f"{name}={value} must be at least {least}")
    return value


def _pod_ordinal(pod: str, statefulset: str) -> int:
    """The ordinal of a StatefulSet's pod: ``web-3`` of ``web`` is 3."""
    ordinal = pod.removeprefix(statefulset + "-")
    if ordinal == pod or not ordinal.isdigit():
        raise ConfigError(
            f"{ENV_POD_NAME}={pod!r} is not a pod of {ENV_STATEFULSET}={statefulset!r} "
            "(expected <statefulset>-<ordinal>)"
        )
    return int(ordinal)


def _hostfile(path: Path) -> list[str]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"{ENV_HOSTFILE}={path}: cannot read it ({exc.strerror})") from None
    return [line.strip() for line in lines if line.strip()]


__all__ = [
    "Cluster",
    "add_cluster_arguments",
    "check_cluster",
    "cluster_from",
    "cluster_recovery",
    "replay_source",
]
