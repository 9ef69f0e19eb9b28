"""Connections to PostgreSQL: opening them, telling passing failures from real ones, backoff.

psycopg is imported here and only here at module level: it is an optional dependency (the
``postgres`` extra), so importing :mod:`twinflow.connectors.postgres` without it fails with an error
that names the extra.

A failure is *retryable* when waiting and reconnecting can cure it: the connection was lost,
the server is restarting or starting up, it is out of connections or disk, a transaction was
chosen as a deadlock victim, or a failover left us on a read-only standby. Anything else (a
missing table, a value the column refuses) is a bug or a setup error that retrying would
only hide.
"""

from __future__ import annotations

from typing import Any

from twinflow.core.errors import TwinflowError
from twinflow.core.optional import needs
from twinflow.core.redact import redact

with needs("postgres", "the PostgreSQL connector (psycopg 3)"):
    import psycopg
    from psycopg import errors as pg_errors


class PostgresError(TwinflowError):
    """Root of the PostgreSQL connector's errors."""


class PostgresUnavailable(PostgresError):
    """The database could not be reached (and the caller did not ask to wait for it)."""


#: SQLSTATE classes/codes that are not OperationalError in psycopg but heal with a retry.
_RETRYABLE_STATES = frozenset(
    {
        "25006",  # read_only_sql_transaction: a failover put us on a standby
    }
)


def is_retryable(exc: BaseException) -> bool:
    """Whether ``exc`` is a passing failure that a reconnect and a retry can cure.

    >>> is_retryable(psycopg.OperationalError("server closed the connection"))
    True
    >>> is_retryable(psycopg.errors.UndefinedTable("relation does not exist"))
    False
    """
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return True
    if isinstance(exc, psycopg.Error):
        return getattr(exc, "sqlstate", None) in _RETRYABLE_STATES
    return isinstance(exc, ConnectionError | TimeoutError)


def connect(
    url: str,
    *,
    application_name: str = "twinflow",
    connect_timeout_s: float = 5.0,
    autocommit: bool = True,
) -> psycopg.Connection[Any]:
    """Open a connection with TCP keepalives (so a vanished server is noticed within ~25 s,
    and one that stops acknowledging what is sent within 30 s: ``tcp_user_timeout``).

    Raises :class:`PostgresUnavailable` naming the (redacted) URL when the server cannot be
    reached, and lets other psycopg errors (bad credentials, unknown database) through.
    """
    try:
        return psycopg.connect(
            url,
            autocommit=autocommit,
            application_name=application_name,
            connect_timeout=max(1, round(connect_timeout_s)),
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
            tcp_user_timeout=30_000,
        )
    except psycopg.OperationalError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise PostgresUnavailable(
            f"cannot connect to PostgreSQL at {redact(url)}: {first}. Is the server running, "
            "and is the URL (DATABASE_URL) right?"
        ) from exc


__all__ = [
    "PostgresError",
    "PostgresUnavailable",
    "connect",
    "is_retryable",
    "pg_errors",
    "psycopg",
    "redact",
]
