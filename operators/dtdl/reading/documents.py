"""Model files: finding them, reading them, and the documents (one Interface or a list)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from twinflow.core.errors import ConfigError
from twinflow.operators.dtdl.reading import limits
from twinflow.operators.dtdl.reading.interfaces import InterfaceReader
from twinflow.operators.dtdl.reading.place import At


def find_model_files(paths: Iterable[str | Path]) -> list[Path]:
    """The ``*.json`` files named or found (recursively) under the folders named.

    Raises :class:`ConfigError` for a path that does not exist.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*.json") if f.is_file()))
        elif p.is_file():
            files.append(p)
        else:
            raise ConfigError(
                f"no such file or folder: {str(p)!r}; pass DTDL model files or folders"
            )
    return files


def read_file(reader: InterfaceReader, path: Path) -> None:
    """Read one model file into ``reader``; a file that cannot be read is a problem too."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reader.add(At(str(path), "(file)"), "file-read", f"cannot read the file: {exc}")
        return
    read_document(reader, str(path), text)


def read_document(reader: InterfaceReader, file: str, text: str) -> None:
    """Read a document's Interfaces: one JSON object, or a JSON array of them."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        reader.add(
            At(file, "(file)"),
            "json-syntax",
            f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}; "
            "fix the JSON syntax",
        )
        return
    items = doc if isinstance(doc, list) else [doc]
    for i, item in enumerate(items):
        at = At(file, f"[{i}]" if isinstance(doc, list) else "(root)")
        if not isinstance(item, dict):
            reader.add(
                at,
                "document-shape",
                "a model file holds one Interface (a JSON object) or a JSON array of "
                "Interfaces; replace this value with an Interface object",
            )
            continue
        if len(text) > limits.MAX_INTERFACE_BYTES and (
            len(json.dumps(item, separators=(",", ":")).encode()) > limits.MAX_INTERFACE_BYTES
        ):
            reader.add(
                at,
                "interface-size",
                f"an Interface's text is limited to {limits.MAX_INTERFACE_BYTES} bytes; split "
                "it into several Interfaces joined by 'extends' or Components",
            )
        reader.interface(item, at, None)
