"""``@context``: which DTDL version and which language extensions are in force.

A top-level element names DTDL first (``dtmi:dtdl:context;3``, or ``;2`` for DTDL v2),
then the extensions it uses. A nested element may add its own ``@context``; the *active
context* combines it with its ancestors', the lowest one winning for the same identifier
without its version (so an inline ``dtmi:dtdl:context;2`` Interface is DTDL v2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twinflow.operators.dtdl import extensions, quantities
from twinflow.operators.dtdl.dtmi import dtmi_problem
from twinflow.operators.dtdl.reading.place import At, Report
from twinflow.operators.dtdl.reading.vocabulary import as_list

DTDL_CONTEXT = "dtmi:dtdl:context;3"
_DTDL = "dtmi:dtdl:context"
_VERSIONS = {"dtmi:dtdl:context;2": 2, DTDL_CONTEXT: 3}
#: Extension contexts understood per DTDL version (their terms are checked, not ignored).
KNOWN_EXTENSIONS = {
    3: frozenset({quantities.CONTEXT, *extensions.ADJUNCTS}),
    2: frozenset({extensions.IOTCENTRAL}),
}


@dataclass(frozen=True, slots=True)
class Active:
    """An element's active context: its DTDL version and the identifiers in force."""

    version: int
    contexts: tuple[str, ...]
    undefined: bool = False  # an unknown extension is in force (allowed by option)

    @property
    def quantitative(self) -> bool:
        return quantities.CONTEXT in self.contexts


DEFAULT = Active(3, (DTDL_CONTEXT,))
#: What a top-level element with no @context is read with: DTDL v3 and every extension, so
#: that the one problem reported is the missing @context.
_MISSING = Active(3, (DTDL_CONTEXT, *sorted(KNOWN_EXTENSIONS[3])))


def read_context(
    report: Report, raw: dict[str, Any], at: At, inherited: Active | None, allow_undefined: bool
) -> Active:
    """Check ``raw``'s ``@context`` (if any) and return its active context.

    DTDL v3 requires its context first; v2 only recommends it (a v2 model may name an
    extension first).
    """
    if "@context" not in raw:
        if inherited is None:
            report.add(at, "context-missing", f'no @context; add "@context": "{DTDL_CONTEXT}"')
            return _MISSING
        return inherited
    at = at.key("@context")
    values = as_list(raw["@context"])
    if not all(isinstance(v, str) for v in values):
        report.add(at, "property-type", "@context must be a DTMI or a list of them")
        return inherited or DEFAULT
    dtdl = [v for v in values if v.split(";")[0] == _DTDL]
    if inherited is None and not dtdl:
        report.add(
            at,
            "context-missing",
            f"a top-level @context must name DTDL first: {DTDL_CONTEXT!r} (or "
            "'dtmi:dtdl:context;2' for DTDL v2)",
        )
    elif DTDL_CONTEXT in values and values[0] != DTDL_CONTEXT:
        report.add(
            at,
            "context-order",
            f"{DTDL_CONTEXT!r} must be the only or the first value of @context, before the "
            "extensions",
        )
    combined = {c.split(";")[0]: c for c in (inherited or DEFAULT).contexts}
    for v in values:
        if dtmi_problem(v) is not None or ";" not in v:
            report.add(
                at, "context-syntax", f"{v!r} is not a versioned DTMI, e.g. {DTDL_CONTEXT!r}"
            )
            continue
        combined[v.split(";")[0]] = v
    version = _VERSIONS.get(combined.get(_DTDL, ""))
    if version is None:
        report.add(
            at,
            "context-version",
            f"{combined[_DTDL]!r} is not a DTDL version this parser reads; use {DTDL_CONTEXT!r} "
            "(DTDL v3) or 'dtmi:dtdl:context;2' (DTDL v2)",
        )
        version = 3
    known = KNOWN_EXTENSIONS[version]
    undefined = False
    for v in values:
        if v.split(";")[0] == _DTDL or v in known or ";" not in v:
            continue
        if allow_undefined:
            undefined = True
        else:
            report.add(at, "context-extension", _unsupported(v, version))
    ordered = [combined[_DTDL], *(c for k, c in combined.items() if k != _DTDL)]
    return Active(
        version, tuple(ordered), undefined or (inherited is not None and inherited.undefined)
    )


def _unsupported(extension: str, version: int) -> str:
    supported = ", ".join(sorted(KNOWN_EXTENSIONS[version])) or "none"
    return (
        f"unknown language extension {extension!r} for DTDL v{version}; the model cannot be "
        f"checked without its definition (supported: {supported})"
    )
