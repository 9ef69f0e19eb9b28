"""Parse DTDL v3 model files into a :class:`ModelSet`, reporting every broken rule at once.

Each problem names the file, the element (its ``@id``, or the nearest ``@id`` followed by a
JSON path such as ``contents[3].schema``) and a stable rule code. Parsing runs in two passes:
the first reads each file on its own (:mod:`~twinflow.operators.dtdl.reading.documents`
and the readers below it), the second resolves what crosses files (``extends``, Component
schemas) and checks inheritance (cycles, depth, clashing names) in
:mod:`~twinflow.operators.dtdl.reading.resolve`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from twinflow.operators.dtdl.errors import DtdlError, Problem
from twinflow.operators.dtdl.model import ModelSet
from twinflow.operators.dtdl.reading.documents import find_model_files, read_document, read_file
from twinflow.operators.dtdl.reading.interfaces import InterfaceReader
from twinflow.operators.dtdl.reading.resolve import resolve

__all__ = ["check_paths", "find_model_files", "parse_files", "parse_text"]


def parse_files(paths: Iterable[str | Path]) -> ModelSet:
    """Parse DTDL v3 files and folders together; raise :class:`DtdlError` listing all problems.

    References (``extends``, Component schemas) resolve across every file given.
    """
    return _valid(*_parse(paths))


def check_paths(paths: Iterable[str | Path]) -> list[Problem]:
    """Every problem in the DTDL files and folders given (an empty list when all are valid)."""
    return _parse(paths)[1]


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


def _parse(paths: Iterable[str | Path]) -> tuple[ModelSet, list[Problem]]:
    reader = InterfaceReader()
    for path in find_model_files(paths):
        read_file(reader, path)
    return _finish(reader)


def _valid(models: ModelSet, problems: list[Problem]) -> ModelSet:
    if problems:
        raise DtdlError(problems)
    return models


def _finish(reader: InterfaceReader) -> tuple[ModelSet, list[Problem]]:
    """The second pass over what ``reader`` read: the models and every problem found."""
    resolve(reader, reader.interfaces, reader.refs, reader.counts)
    return ModelSet(dict(reader.interfaces)), reader.problems
