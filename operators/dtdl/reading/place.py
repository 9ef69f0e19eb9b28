"""Where an element stands, and the report that collects problems in the order found."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from twinflow.operators.dtdl.errors import Problem


@dataclass(frozen=True, slots=True)
class At:
    """Where an element is: its file, the nearest ``@id`` (or item index) and a JSON path."""

    file: str
    anchor: str
    path: str = ""

    @property
    def label(self) -> str:
        return f"{self.anchor} {self.path}" if self.path else self.anchor

    def key(self, name: str) -> At:
        return At(self.file, self.anchor, f"{self.path}.{name}" if self.path else name)

    def index(self, i: int) -> At:
        return At(self.file, self.anchor, f"{self.path}[{i}]")

    def at_id(self, dtmi: str) -> At:
        return At(self.file, dtmi)


class Ref(NamedTuple):
    """A reference to an Interface, resolved in the second pass once every file is read."""

    at: At
    kind: str  # "extends" or "component": the rule code is f"{kind}-unresolved"
    target: str


class Report:
    """Every problem found, in the order found (the order the errors list them in)."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, at: At, rule: str, message: str) -> None:
        self.problems.append(Problem(at.file, at.label, rule, message))
