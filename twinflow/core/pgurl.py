"""PostgreSQL connection strings without psycopg: their ``sslmode`` and whether they hold a
password. Both forms are understood: ``postgresql://...?sslmode=...`` and libpq's
``host=... sslmode=...`` keywords.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from twinflow.core.redact import redact

#: libpq's ``sslmode`` values, weakest first.
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
#: The modes that never fall back to plaintext.
ENCRYPTED = frozenset({"require", "verify-ca", "verify-full"})

_SSLMODE = re.compile(r"(?i)(^|[?&\s])sslmode\s*=\s*([\w-]*)")


def is_url(conninfo: str) -> bool:
    """Whether ``conninfo`` is a URL rather than libpq keywords."""
    return conninfo.startswith(("postgresql://", "postgres://"))


def sslmode_of(conninfo: str, env: Mapping[str, str] | None = None) -> str:
    """The ``sslmode`` a connection will use (``PGSSLMODE``, then libpq's ``prefer``).

    >>> sslmode_of("postgresql://db/plant?sslmode=verify-full")
    'verify-full'
    >>> sslmode_of("host=db sslmode=require")
    'require'
    >>> sslmode_of("postgresql://db/plant", {"PGSSLMODE": "disable"})
    'disable'
    """
    m = _SSLMODE.search(conninfo)
    if m:
        return m.group(2).lower()
    return (env or {}).get("PGSSLMODE") or "prefer"


def with_sslmode(conninfo: str, mode: str | None) -> str:
    """``conninfo`` with ``sslmode`` set to ``mode`` (unchanged when ``mode`` is None).

    >>> with_sslmode("postgresql://db/plant", "verify-full")
    'postgresql://db/plant?sslmode=verify-full'
    >>> with_sslmode("postgresql://db/plant?sslmode=disable&x=1", "require")
    'postgresql://db/plant?sslmode=require&x=1'
    >>> with_sslmode("host=db", "require")
    'host=db sslmode=require'
    """
    if not mode:
        return conninfo
    if _SSLMODE.search(conninfo):
        return _SSLMODE.sub(lambda m: f"{m.group(1)}sslmode={mode}", conninfo, count=1)
    if is_url(conninfo):
        return f"{conninfo}{'&' if '?' in conninfo else '?'}sslmode={mode}"
    return f"{conninfo} sslmode={mode}"


def has_password(conninfo: str) -> bool:
    """Whether ``conninfo`` carries a password (what :func:`redact` would hide).

    >>> has_password("postgresql://twin:pw@db/plant"), has_password("postgresql://twin@db")
    (True, False)
    """
    return redact(conninfo) != conninfo


__all__ = ["ENCRYPTED", "SSLMODES", "has_password", "is_url", "sslmode_of", "with_sslmode"]
