"""Problems found in DTDL model files, and the error that carries all of them at once."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from twinflow.core.errors import ConfigError


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    """One broken rule: where (file and element), which rule, and what to do about it.

    ``rule`` is a short stable code (``name-syntax``, ``unit-mismatch``...) that tests and
    tools can match on; ``message`` is the sentence for a person.

    >>> str(Problem("a.json", "dtmi:x:A;1 contents[0]", "name-syntax", "fix it"))
    'a.json: dtmi:x:A;1 contents[0]: name-syntax: fix it'
    """

    file: str
    element: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.element}: {self.rule}: {self.message}"


class DtdlError(ConfigError):
    """A set of DTDL model files is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        n = len(self.problems)
        head = "\n".join(str(p) for p in self.problems[:20])
        more = f"\n... and {n - 20} more" if n > 20 else ""
        super().__init__(f"{n} problem{'s' if n != 1 else ''} in the DTDL models:\n{head}{more}")
