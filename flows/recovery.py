"""Bytewax recovery for ``twinflow run --recovery-dir DIR``: set the store up, then resume.

Bytewax keeps each worker's state snapshots (per-twin state, windows, models, alarm and
policy state, Kafka offsets, file sink positions) in SQLite partitions under ``DIR``. The
first run creates them; a later run with the same ``DIR`` resumes from the last snapshot and
replays the input since then, which the idempotent sinks absorb (see ``connectors/postgres``
and ``connectors/files.py``). Sources that cannot replay (MQTT, OPC UA, Modbus) resume live.

Snapshots are pickles, so whoever can write them runs code at the next resume: the directory
is created 0700 and its files 0600, and a resume refuses a directory or partition that is not
owned by the user running the flow or that others may write.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from bytewax.recovery import RecoveryConfig, init_db_dir

from twinflow.core.errors import ConfigError

#: Partitions created in a new recovery directory. Bytewax spreads them over the workers of
#: every later run, so this bounds how many workers a resumed flow can use.
DEFAULT_PARTITIONS = 4


def partitions_in(db_dir: Path) -> int:
    """How many recovery partitions ``db_dir`` holds (0 for a new or empty directory)."""
    return len(list(db_dir.glob("part-*.sqlite3"))) if db_dir.is_dir() else 0


def check_owner(db_dir: Path, uid: int | None = None) -> None:
    """Refuse ``db_dir`` when it or a file in it belongs to another user or others may write it.

    >>> import tempfile
    >>> check_owner(Path(tempfile.mkdtemp()))
    >>> check_owner(Path(tempfile.mkdtemp()), uid=os.getuid() + 1)
    Traceback (most recent call last):
    ...
    twinflow.core.errors.ConfigError: --recovery-dir ... is owned by user ..., not by ...
    """
    me = os.getuid() if uid is None else uid
    for p in (db_dir, *sorted(db_dir.iterdir())):
        st = p.lstat()
        if st.st_uid != me:
            raise ConfigError(
                f"--recovery-dir {p} is owned by user {st.st_uid}, not by {me} who runs the flow; "
                "its snapshots would run another user's code at resume: refused"
            )
        if stat.S_ISLNK(st.st_mode) or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise ConfigError(
                f"--recovery-dir {p} is a link or writable by others (mode "
                f"{stat.S_IMODE(st.st_mode):o}); its snapshots cannot be trusted: refused "
                "(chmod go-w, or start from a new directory)"
            )


def make_private(db_dir: Path) -> None:
    """Mode 0700 for ``db_dir`` and 0600 for its files."""
    db_dir.chmod(0o700)
    for f in db_dir.iterdir():
        if f.is_file() and not f.is_symlink():
            f.chmod(0o600)


def recovery_config(db_dir: Path, workers: int = 1) -> RecoveryConfig:
    """A :class:`RecoveryConfig` for ``db_dir``, creating its partitions on first use.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()) / "recovery"
    >>> cfg = recovery_config(d)
    >>> partitions_in(d)
    4
    >>> partitions_in(Path(recovery_config(d).db_dir))  # a second run reuses them
    4
    """
    if db_dir.exists() and not db_dir.is_dir():
        raise ConfigError(f"--recovery-dir {db_dir} exists and is not a directory")
    if partitions_in(db_dir) == 0:
        if db_dir.is_dir() and any(db_dir.iterdir()):
            raise ConfigError(
                f"--recovery-dir {db_dir} holds files but no recovery partitions "
                "(part-*.sqlite3); give an empty or new directory"
            )
        db_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # bytewax.recovery's stubs carry no annotations
        init_db_dir(db_dir, max(DEFAULT_PARTITIONS, workers))  # type: ignore[no-untyped-call]
        make_private(db_dir)
    check_owner(db_dir)
    return RecoveryConfig(db_dir)  # type: ignore[no-untyped-call]
