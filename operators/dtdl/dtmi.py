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
    """The one DTMI rule ``text`` breaks (``None`` when it is valid); lengths are checked apart.

    >>> dtmi_problem("dtmi:com:1pump;1")
    "'dtmi:com:1pump;1': segment '1pump' starts with a digit; a segment starts with a letter"
    """
    if not text.startswith("dtmi:"):
        return f"{text!r} is not a DTMI: it must start with 'dtmi:', e.g. 'dtmi:com:example:Pump;1'"
    if _DTMI.fullmatch(text) is not None:
        return None
    body, _, version = text[5:].partition(";")
    for segment in body.split(":"):
        reason = _segment_problem(segment)
        if reason is not None:
            return f"{text!r}: {reason}"
    if ";" in text:
        return f"{text!r}: {_version_problem(version)}"
    return f"{text!r} is not a valid DTMI"  # pragma: no cover - every case is named above


def _segment_problem(segment: str) -> str | None:
    if not segment:
        return "a path segment is empty (two ':' in a row, or ':' at an end)"
    bad = sorted({c for c in segment if not (c.isascii() and (c.isalnum() or c == "_"))})
    if bad:
        return (
            f"segment {segment!r} holds {''.join(bad)!r}; only letters, digits and '_' are allowed"
        )
    if segment[0].isdigit():
        return f"segment {segment!r} starts with a digit; a segment starts with a letter"
    if segment.endswith("_"):
        return f"segment {segment!r} ends with '_'; a segment ends with a letter or digit"
    return None


def _version_problem(version: str) -> str:
    major, _, minor = version.partition(".")
    for part, most, what in ((major, 9, "major"), (minor, 6, "minor")):
        if part is major or "." in version:
            if not part.isdigit() or not part.isascii():
                return f"the {what} version {part!r} is not a whole number"
            if part.startswith("0"):
                return f"the {what} version {part!r} starts with 0 (no leading zeros, not 0)"
            if len(part) > most:
                return f"the {what} version has {len(part)} digits; at most {most} are allowed"
    return "the version must be ';N' or ';N.M'"


def length_limit(*, interface: bool) -> int:
    """The longest allowed ``@id`` of a model element (an Interface's is shorter)."""
    return MAX_INTERFACE_LENGTH if interface else MAX_USER_LENGTH
