"""Bytewax recovery for ``twinflow run --recovery-dir DIR``: set the store up, then resume.

Bytewax keeps each worker's state snapshots (per-twin state, windows, models, alarm and
policy state, Kafka offsets, file sink positions) in SQLite partitions under ``DIR``. The
first run creates them; a later run with the same ``DIR`` resumes from the last snapshot and
replays the input since then, which the idempotent sinks absorb (see ``connectors/postgres``
and ``connectors/files.py``). Sources that cannot replay (MQTT, OPC UA, Modbus) resume live.
"""

from __future__ import annotations

from pathlib import Path

from bytewax.recovery import RecoveryConfig, init_db_dir

from twinflow.core.errors import ConfigError

#: Partitions created in a new recovery directory. Bytewax spreads them over the workers of
#: every later run, so this bounds how many workers a resumed flow can use.
DEFAULT_PARTITIONS = 4


def partitions_in(db_dir: Path) -> int:
    """How many recovery partitions ``db_dir`` holds (0 for a new or empty directory)."""
    return len(list(db_dir.glob("part-*.sqlite3"))) if db_dir.is_dir() else 0


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
        db_dir.mkdir(parents=True, exist_ok=True)
        # bytewax.recovery's stubs carry no annotations
        init_db_dir(db_dir, max(DEFAULT_PARTITIONS, workers))  # type: ignore[no-untyped-call]
    return RecoveryConfig(db_dir)  # type: ignore[no-untyped-call]
