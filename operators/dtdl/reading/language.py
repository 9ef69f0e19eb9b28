"""What differs between DTDL v2 and v3: contexts, classes, member names and limits.

A document names its language version in ``@context`` (``dtmi:dtdl:context;2`` or ``;3``);
the readers look the version's facts up here. The v3 limits live in :mod:`.limits` (so a
test can lower one); v2's are constants below, as DTDL v2 states them.
"""

from __future__ import annotations

from functools import cache

from twinflow.operators.dtdl import quantities, semantics_v2
from twinflow.operators.dtdl.reading import limits
from twinflow.operators.dtdl.reading.vocabulary import (
    CLASSES,
    GEOSPATIAL,
    PRIMITIVES,
    PROPERTY_NAMES,
)

CONTEXTS = {"dtmi:dtdl:context;2": 2, "dtmi:dtdl:context;3": 3}
CONTEXT_OF = {v: k for k, v in CONTEXTS.items()}

#: Classes of each version (v2 has one CommandPayload where v3 has request and response).
CLASSES_BY_VERSION = {
    3: CLASSES - {"CommandPayload"},
    2: CLASSES - {"CommandRequest", "CommandResponse"},
}

#: The members DTDL itself defines; each may also be written as its IRI
#: ``dtmi:dtdl:property:<term>;<version>``.
PROPERTY_TERMS = PROPERTY_NAMES
#: v2 defines ``unit`` itself (v3 leaves it to the QuantitativeTypes extension).
PROPERTY_TERMS_BY_VERSION = {3: PROPERTY_TERMS, 2: PROPERTY_TERMS | {"unit"}}

#: Strings DTDL keeps for itself beyond its classes and members (not usable as co-types).
RESERVED = frozenset(
    [
        "AdjunctType",
        "Alias",
        "aliasFor",
        "asynchronous",
        "Boolean",
        "CommandPayload",
        "CommandType",
        "ComplexSchema",
        "Content",
        "Date",
        "DateTime",
        "Double",
        "DtdlExtension",
        "Duration",
        "Entity",
        "exponent",
        "Float",
        "Integer",
        "languageMajorVersion",
        "LatentType",
        "Long",
        "metamodel",
        "model",
        "NamedEntity",
        "NamedLatentType",
        "NumericSchema",
        "PrimitiveSchema",
        "Schema",
        "SchemaField",
        "SemanticType",
        "SemanticUnit",
        "String",
        "symbol",
        "synchronous",
        "TemporalSchema",
        "Time",
        "Unit",
        "UnitAttribute",
    ]
)


@cache
def reserved_terms(version: int) -> frozenset[str]:
    """Every term DTDL reserves (classes, members, schemas...): none is a free co-type.

    DTDL v2 also reserves its semantic types, unit types and units.
    """
    words = CLASSES | PROPERTY_NAMES | PRIMITIVES | GEOSPATIAL | RESERVED
    if version == 2:
        units = {u for us in semantics_v2.UNITS.values() for u in us}
        words |= set(semantics_v2.UNITS) | set(quantities.UNIT_TYPES) | units | {"unit"}
    return frozenset(words)


def property_iri(term: str, version: int) -> str:
    """The IRI spelling of a DTDL member name, e.g. ``dtmi:dtdl:property:schema;3``."""
    return f"dtmi:dtdl:property:{term};{version}"


def name_limit(version: int) -> int:
    """Longest ``name`` (v3 raised v2's 64 to 512)."""
    return limits.MAX_NAME if version == 3 else V2_MAX_NAME


def display_name_limit(version: int) -> int:
    """Longest ``displayName`` text (v3 raised v2's 64 to 512)."""
    return limits.MAX_DISPLAY_NAME if version == 3 else V2_MAX_NAME


V2_MAX_NAME = 64
#: DTDL v2: at most 300 contents and 2 ``extends`` per Interface; an Enum has 1 to 100
#: values and an Object 1 to 30 fields; a Relationship's maxMultiplicity is at most 500.
V2_MAX_CONTENTS = 300  # also a Relationship's properties
V2_MAX_MULTIPLICITY = 500
V2_MAX_EXTENDS = 2
V2_ENUM_VALUES = (1, 100)
V2_OBJECT_FIELDS = (1, 30)
