"""Digital Twin Model Identifiers (DTMI): syntax and length rules of DTDL v3.

A DTMI is ``dtmi:<segment>(:<segment>)*`` with an optional ``;<major>`` or ``;<major>.<minor>``
version. Segments hold letters, digits and underscores, do not start with a digit and do not
end with an underscore; a segment starting with an underscore makes a *system* DTMI, which
models may not use as an ``@id``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeGuard

#: Longest DTMI of any kind, of a user DTMI, and of an Interface's ``@id``.
MAX_LENGTH = 4096
MAX_USER_LENGTH = 2048
MAX_INTERFACE_LENGTH = 128
#: Prefixes the DTDL language keeps for itself.
RESERVED_PREFIXES = ("dtmi:dtdl:", "dtmi:standard:")

_SEGMENT = r"(?:[A-Za-z]|[A-Za-z_][A-Za-z0-9_]*[A-Za-z0-9])"
_VERSION = r"(?:;(?P<major>[1-9][0-9]{0,8})(?:\.(?P<minor>[1-9][0-9]{0,5}))?)?"
_DTMI = re.compile(rf"dtmi:(?P<path>{_SEGMENT}(?::{_SEGMENT})*){_VERSION}")


@dataclass(frozen=True, slots=True)
class Dtmi:
    """A parsed DTMI: its path segments and its optional major and minor version.

    >>> d = parse_dtmi("dtmi:com:example:Pump;2.1")
    >>> d.path, d.major, d.minor, d.is_system
    (('com', 'example', 'Pump'), 2, 1, False)
    """

    path: tuple[str, ...]
    major: int | None = None
    minor: int | None = None

    @property
    def is_system(self) -> bool:
        return any(s.startswith("_") for s in self.path)

    def __str__(self) -> str:
        version = "" if self.major is None else f";{self.major}"
        if self.minor is not None:
            version += f".{self.minor}"
        return "dtmi:" + ":".join(self.path) + version


def parse_dtmi(text: str) -> Dtmi:
    """Parse ``text`` as a DTMI, raising ``ValueError`` with the reason when it is not one."""
    problem = dtmi_problem(text)
    if problem is not None:
        raise ValueError(problem)
    m = _DTMI.fullmatch(text)
    assert m is not None
    major, minor = m.group("major"), m.group("minor")
    return Dtmi(
        tuple(m.group("path").split(":")),
        int(major) if major else None,
        int(minor) if minor else None,
    )


def is_dtmi(text: object) -> TypeGuard[str]:
    """True when ``text`` is a syntactically valid DTMI (system or user, any length rule).

    >>> is_dtmi("dtmi:foo_bar:_16:baz33:qux;12"), is_dtmi("dtmi:1abc;1"), is_dtmi("dtmi:a;01")
    (True, False, False)
    """
    return isinstance(text, str) and len(text) <= MAX_LENGTH and _DTMI.fullmatch(text) is not None


def dtmi_problem(text: str) -> str | None:
    """Why ``text`` is not a valid DTMI (``None`` when it is); length limits are checked apart."""
    if not text.startswith("dtmi:"):
        return f"{text!r} is not a DTMI: it must start with 'dtmi:', e.g. 'dtmi:com:example:Pump;1'"
    if _DTMI.fullmatch(text) is None:
        return (
            f"{text!r} is not a valid DTMI: segments are letters, digits and underscores, "
            "start with a letter or underscore and do not end with an underscore; the "
            "version (optional) is ';N' or ';N.M' with no leading zeros, N up to 9 digits "
            "and M up to 6"
        )
    return None


def length_limit(*, interface: bool) -> int:
    """The longest allowed ``@id`` of a model element (an Interface's is shorter)."""
    return MAX_INTERFACE_LENGTH if interface else MAX_USER_LENGTH
