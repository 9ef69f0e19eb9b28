"""One redaction for every URL or connection string twinflow prints.

:func:`redact` hides the password of ``scheme://user:password@host...`` (also an empty user,
``scheme://:password@host``, and a password holding a raw ``@``, ``/`` or ``:``) and the value
of every ``password=`` / ``sslpassword=`` setting (libpq keyword strings and URL queries). When
a URL is ambiguous it hides more rather than less.
"""

from __future__ import annotations

import re

#: ``scheme://`` then the userinfo up to the last ``@`` of the whitespace-free token.
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<rest>\S*)")
#: ``password=value`` in a URL query: the value ends at ``&`` or ``#``.
_QUERY = re.compile(r"(?i)([?&](?:ssl)?password=)([^\s&#]*)")
#: ``password=value`` in keyword strings, quoted or bare (to the next blank).
_SETTING = re.compile(r"(?i)(password\s*=\s*)(?!\*\*\*(?:[\s&#]|$))('(?:[^'\\]|\\.)*'?|\S*)")

HIDDEN = "***"


def _userinfo(m: re.Match[str], drop: bool) -> str:
    head, rest = m.group("head"), m.group("rest")
    at = rest.rfind("@")
    if at < 0:
        return head + rest
    userinfo, host = rest[:at], rest[at:]
    if drop:
        return head + host[1:]
    user, colon, _ = userinfo.partition(":")
    if not colon:  # a user name alone carries no password
        return head + rest
    return f"{head}{user}:{HIDDEN}{host}"


def redact(text: str, *, drop_userinfo: bool = False) -> str:
    """``text`` with the password of every URL and every ``password=`` setting hidden.

    ``drop_userinfo`` removes the whole ``user:password@`` part (for metric labels).

    >>> redact("postgresql://twin:s3cret@db:5432/plant")
    'postgresql://twin:***@db:5432/plant'
    >>> redact("postgresql://:s3cret@db/plant")
    'postgresql://:***@db/plant'
    >>> redact("mqtt://user:p@ss@broker:1883")
    'mqtt://user:***@broker:1883'
    >>> redact("host=db user=twin password='a b' dbname=plant")
    'host=db user=twin password=*** dbname=plant'
    >>> redact("opc.tcp://plc:4840")
    'opc.tcp://plc:4840'
    >>> redact("opc.tcp://op:p@w@10.0.0.5:4840/plc", drop_userinfo=True)
    'opc.tcp://10.0.0.5:4840/plc'
    """
    text = _USERINFO.sub(lambda m: _userinfo(m, drop_userinfo), text)
    text = _QUERY.sub(lambda m: m.group(1) + HIDDEN, text)
    return _SETTING.sub(lambda m: m.group(1) + HIDDEN, text)


__all__ = ["HIDDEN", "redact"]
