"""The official DTDL v3 language extensions besides QuantitativeTypes (see ``quantities``).

Each extension, switched on by its context, defines *adjunct types*: co-types an element of
certain classes may carry, each adding members of its own. The facts below follow the
extension documents (Historization v1, Annotation v1, Overriding v1, MQTT v1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

HISTORIZATION = "dtmi:dtdl:extension:historization;1"
ANNOTATION = "dtmi:dtdl:extension:annotation;1"
OVERRIDING = "dtmi:dtdl:extension:overriding;1"
MQTT = "dtmi:dtdl:extension:mqtt;1"
#: DTDL v2's IoT Central extension: accepted in v2 models, its terms are not checked.
IOTCENTRAL = "dtmi:iotcentral:context;2"

#: MQTT ``payloadFormat`` values (also written as their IRIs, ``PAYLOAD_FORMAT_IRI`` + value).
PAYLOAD_FORMATS = frozenset({"avro", "cbor", "json", "proto2", "proto3", "raw"})
PAYLOAD_FORMAT_IRI = "dtmi:dtdl:extension:mqtt:v1:payloadFormat:"


@dataclass(frozen=True, slots=True)
class Adjunct:
    """An adjunct type: the classes it may co-type and the members it adds."""

    classes: frozenset[str]
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()


def _adjunct(classes: str, required: str = "", optional: str = "") -> Adjunct:
    return Adjunct(frozenset(classes.split()), tuple(required.split()), tuple(optional.split()))


#: Extension context -> adjunct type name -> its definition.
ADJUNCTS: Mapping[str, Mapping[str, Adjunct]] = MappingProxyType(
    {
        HISTORIZATION: {"Historized": _adjunct("Property Telemetry")},
        ANNOTATION: {"ValueAnnotation": _adjunct("Property Telemetry", "annotates")},
        OVERRIDING: {"Override": _adjunct("Property", "overrides")},
        MQTT: {
            "Mqtt": _adjunct("Interface", "payloadFormat", "commandTopic telemetryTopic"),
            "Idempotent": _adjunct("Command"),
            "Cacheable": _adjunct("Command", "ttl"),
            "Indexed": _adjunct("EnumValue Field Telemetry", "index"),
        },
    }
)


def adjuncts_in(contexts: tuple[str, ...]) -> dict[str, Adjunct]:
    """The adjunct types the extensions named in ``contexts`` define, by name.

    >>> sorted(adjuncts_in(("dtmi:dtdl:context;3", HISTORIZATION)))
    ['Historized']
    """
    found: dict[str, Adjunct] = {}
    for context in contexts:
        found.update(ADJUNCTS.get(context, {}))
    return found


def iri_terms(contexts: tuple[str, ...]) -> dict[str, str]:
    """The IRIs of the adjunct types and members in force, each mapped to its term.

    An extension's IRIs follow its context: ``dtmi:dtdl:extension:<name>:v1:<Type>`` for
    an adjunct type and ``...:<Type>:<member>`` for a member it adds.

    >>> iri_terms((OVERRIDING,))["dtmi:dtdl:extension:overriding:v1:Override:overrides"]
    'overrides'
    """
    terms: dict[str, str] = {}
    for context in contexts:
        base = context.split(";")[0] + ":v" + context.split(";")[-1] + ":"
        for name, adjunct in ADJUNCTS.get(context, {}).items():
            terms[base + name] = name
            for member in (*adjunct.required, *adjunct.optional):
                terms[f"{base}{name}:{member}"] = member
    return terms
