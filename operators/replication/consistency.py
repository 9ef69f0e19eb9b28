"""The ``replication:`` profile section: the consistency each property is replicated with.

``eventual`` (the default): a desired change counts as made once written; it reaches the
other replicas when the link carries it, and the newest write wins. ``causal``: as eventual,
but a desired write carries the stamps of its twin's other desired properties as its writer
held them, and a receiver applies it only once it holds those values or newer ones
(:mod:`~twinflow.operators.replication.causal`). ``strong``: a desired change made centrally
counts as made only when the owning edge has accepted it through its command loop (its
command was acknowledged or succeeded); until then its sync status is ``pending``.

>>> from twinflow.core.config import Section
>>> data = {"consistency": "causal", "properties": {"speed_setpoint": "strong"}}
>>> c = read_consistency(Section(data, "replication", "pump.yaml"))
>>> c.of("speed_setpoint"), c.of("anything_else")
('strong', 'causal')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from twinflow.core.config import Choice, Part, Schema, Section
from twinflow.operators.rulebook import section_of
from twinflow.operators.twin_type import TwinType

#: The consistency levels, weakest first.
LEVELS = ("eventual", "causal", "strong")

CONSISTENCY = Schema(
    "replication",
    "How the type's properties are replicated between an edge and a central instance.",
    (
        Choice("consistency", "Consistency of every property not named below.", "eventual",
               choices=LEVELS),
        Part("properties", "Property name -> `eventual`, `causal` or `strong`.",
             kind="mapping"),
    ),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Consistency:
    """A type's consistency per property; ``default`` for the properties not named."""

    default: str = "eventual"
    properties: Mapping[str, str] = field(default_factory=dict)

    def of(self, prop: str) -> str:
        """The consistency of property ``prop``."""
        return self.properties.get(prop, self.default)


def read_consistency(s: Section) -> Consistency:
    """``replication:``: a default consistency and one per named property."""
    s.check_keys(CONSISTENCY)
    default = s.get(CONSISTENCY["consistency"])
    props = s.section("properties")
    out: dict[str, str] = {}
    for name, level in props.data.items():
        if level not in LEVELS:
            raise props.error(str(name), f" = {level!r}: expected one of {', '.join(LEVELS)}")
        out[str(name)] = str(level)
    return Consistency(default, out)


EVENTUAL = Consistency()


def consistency_of(kind: TwinType, prop: str) -> str:
    """The consistency of a type's property, from its profile's ``replication:`` section."""
    return section_of(kind, "replication", EVENTUAL).of(prop)


__all__ = ["CONSISTENCY", "EVENTUAL", "LEVELS", "Consistency", "consistency_of", "read_consistency"]
