"""Parse DTDL v3 and v2 model files into a :class:`ModelSet`, reporting every broken rule.

Each problem names the file, the element (its ``@id``, or the nearest ``@id`` followed by a
JSON path such as ``contents[3].schema``) and a stable rule code. Parsing runs in two passes:
the first reads each file on its own (:mod:`~twinflow.operators.dtdl.reading.documents`
and the readers below it), the second resolves what crosses files (``extends``, Component
schemas) and checks inheritance (cycles, depth, clashing names) in
:mod:`~twinflow.operators.dtdl.reading.resolve`.

``allow_undefined_extensions`` accepts a model that names a language extension this parser
does not know: its undefined co-types and members are then let through unchecked (the
model is *contextually incomplete*); by default such a model is refused.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from twinflow.operators.dtdl.errors import DtdlError, Problem
from twinflow.operators.dtdl.model import ModelSet
from twinflow.operators.dtdl.reading.documents import find_model_files, read_document, read_file
from twinflow.operators.dtdl.reading.interfaces import InterfaceReader
from twinflow.operators.dtdl.reading.resolve import resolve

__all__ = ["Checked", "check", "check_paths", "find_model_files", "parse_files", "parse_text"]


@dataclass(frozen=True, slots=True)
class Checked:
    """What :func:`check` found: the models, every problem, and how much was read, how fast."""

    models: ModelSet
    problems: list[Problem]
    files: int
    elements: int
    seconds: float


def check(paths: Iterable[str | Path], *, allow_undefined_extensions: bool = False) -> Checked:
    """Read the DTDL files and folders given and report on all of them together."""
    start = time.perf_counter()
    files = find_model_files(paths)
    reader = InterfaceReader(allow_undefined_extensions=allow_undefined_extensions)
    for path in files:
        read_file(reader, path)
    models, problems = _finish(reader)
    return Checked(models, problems, len(files), len(reader.active), time.perf_counter() - start)


def parse_files(
    paths: Iterable[str | Path], *, allow_undefined_extensions: bool = False
) -> ModelSet:
    """Parse DTDL files and folders together; raise :class:`DtdlError` listing all problems.

    References (``extends``, Component schemas) resolve across every file given.
    """
    found = check(paths, allow_undefined_extensions=allow_undefined_extensions)
    return _valid(found.models, found.problems)


def check_paths(
    paths: Iterable[str | Path], *, allow_undefined_extensions: bool = False
) -> list[Problem]:
    """Every problem in the DTDL files and folders given (an empty list when all are valid)."""
    return check(paths, allow_undefined_extensions=allow_undefined_extensions).problems


def parse_text(text: str, file: str = "<text>") -> ModelSet:
    """Parse one document held in a string (handy in tests and examples).

    >>> m = parse_text('{"@context": "dtmi:dtdl:context;3", "@id": "dtmi:ex:A;1", '
    ...     '"@type": "Interface", "contents": [{"@type": "Telemetry", "name": "t", '
    ...     '"schema": "double"}]}')
    >>> m.telemetry("dtmi:ex:A;1", "t").schema.name
    'double'
    """
    reader = InterfaceReader()
    read_document(reader, file, text)
    return _valid(*_finish(reader))


def _valid(models: ModelSet, problems: list[Problem]) -> ModelSet:
    if problems:
        raise DtdlError(problems)
    return models


def _finish(reader: InterfaceReader) -> tuple[ModelSet, list[Problem]]:
    """The second pass over what ``reader`` read: the models and every problem found."""
    resolve(reader)
    return ModelSet(dict(reader.interfaces)), reader.problems
