"""``@context``: an Interface's names DTDL v3 first, then the extensions it switches on.

An element inside an Interface may repeat an ``@context``; that one is checked but adds no
terms (an extension must be named on the Interface to be in force).
"""

from __future__ import annotations

from typing import Any

from twinflow.operators.dtdl import quantities
from twinflow.operators.dtdl.reading.place import At, Report
from twinflow.operators.dtdl.reading.vocabulary import as_list

DTDL_CONTEXT = "dtmi:dtdl:context;3"
#: Extension contexts this parser understands (their terms are checked, not ignored).
KNOWN_EXTENSIONS = frozenset({quantities.CONTEXT})


def interface_contexts(
    report: Report, raw: dict[str, Any], at: At, inherited: tuple[str, ...] | None
) -> tuple[str, ...]:
    """The contexts in force for an Interface; an inline one inherits its parent's."""
    if "@context" not in raw:
        if inherited is None:
            report.add(at, "context-missing", f'no @context; add "@context": "{DTDL_CONTEXT}"')
            return (DTDL_CONTEXT,)
        return inherited
    values = as_list(raw["@context"])
    if not values or not all(isinstance(v, str) for v in values):
        report.add(at.key("@context"), "property-type", "@context must be a DTMI or a list of them")
        return (DTDL_CONTEXT,)
    if values[0] != DTDL_CONTEXT:
        report.add(
            at.key("@context"),
            "context-version",
            f"the first @context must be {DTDL_CONTEXT!r} (this parser reads DTDL v3), "
            f"got {values[0]!r}",
        )
    for extra in values[1:]:
        if extra not in KNOWN_EXTENSIONS:
            report.add(at.key("@context"), "context-extension", _unsupported(extra))
    return tuple(values)


def check_nested_context(report: Report, value: Any, at: At) -> None:
    """Check an ``@context`` inside an Interface: DTDL v3 or a supported extension only.

    An empty list is allowed (it adds nothing).
    """
    values = as_list(value)
    if not all(isinstance(v, str) for v in values):
        report.add(at, "property-type", "@context must be a DTMI or a list of them")
        return
    for v in values:
        if v == DTDL_CONTEXT or v in KNOWN_EXTENSIONS:
            continue
        if v.startswith("dtmi:dtdl:context;"):
            report.add(
                at,
                "context-version",
                f"{v!r} inside a DTDL v3 Interface: this parser reads DTDL v3 only; "
                f"remove it or use {DTDL_CONTEXT!r}",
            )
        else:
            report.add(at, "context-extension", _unsupported(v))


def _unsupported(extension: str) -> str:
    return f"unsupported language extension {extension!r}; supported: " + ", ".join(
        sorted(KNOWN_EXTENSIONS)
    )
