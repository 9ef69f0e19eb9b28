"""Model files: finding them, reading them, and the documents (one Interface or a list).

A file may start with a UTF-8 byte-order mark (many published ontologies do). Any JSON
nesting depth ends in a verdict: deeper than DTDL can use is one clear problem, never a
``RecursionError``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from twinflow.core.errors import ConfigError
from twinflow.operators.dtdl.reading import limits
from twinflow.operators.dtdl.reading.interfaces import InterfaceReader
from twinflow.operators.dtdl.reading.notation import is_interface
from twinflow.operators.dtdl.reading.place import At

_UTF16_32 = {
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}


def find_model_files(paths: Iterable[str | Path]) -> list[Path]:
    """The ``*.json`` files named or found (recursively) under the folders named, each once.

    Raises :class:`ConfigError` for a path that does not exist.
    """
    files: dict[Path, Path] = {}  # resolved -> as given, so a file named twice is read once
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*.json") if f.is_file())
        elif p.is_file():
            found = [p]
        else:
            raise ConfigError(
                f"no such file or folder: {str(p)!r}; pass DTDL model files or folders"
            )
        for f in found:
            files.setdefault(f.resolve(), f)
    return list(files.values())


def read_file(reader: InterfaceReader, path: Path) -> None:
    """Read one model file into ``reader``; a file that cannot be read is a problem too."""
    at = At(str(path), "(file)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        reader.add(at, "file-read", f"cannot read the file: {exc}")
        return
    for mark, encoding in _UTF16_32.items():
        if data.startswith(mark):
            reader.add(
                at,
                "file-read",
                f"the file is {encoding} (its byte-order mark says so); save it as UTF-8",
            )
            return
    try:
        text = data.decode("utf-8-sig")  # a UTF-8 byte-order mark is dropped
    except UnicodeDecodeError as exc:
        reader.add(at, "file-read", f"the file is not UTF-8: {exc}; save it as UTF-8")
        return
    read_document(reader, str(path), text)


def read_document(reader: InterfaceReader, file: str, text: str) -> None:
    """Read a document's Interfaces: one JSON object, or a JSON array of them."""
    at = At(file, "(file)")
    try:
        doc = json.loads(text.removeprefix("\ufeff"))
    except json.JSONDecodeError as exc:
        reader.add(
            at,
            "json-syntax",
            f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}; "
            "fix the JSON syntax",
        )
        return
    except RecursionError:  # nested beyond what the JSON decoder itself handles
        doc, deep = None, True
    else:
        deep = too_deep(doc, limits.MAX_JSON_DEPTH)
    if deep:
        reader.add(
            at,
            "json-depth",
            f"the JSON is nested more than {limits.MAX_JSON_DEPTH} levels deep; no DTDL model "
            "needs that (complex schemas nest at most 5, 'extends' 10): flatten it",
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
        if len(text) > limits.MAX_INTERFACE_BYTES and own_size(item) > limits.MAX_INTERFACE_BYTES:
            reader.add(
                at,
                "interface-size",
                f"an Interface's text is limited to {limits.MAX_INTERFACE_BYTES} bytes; split "
                "it into several Interfaces joined by 'extends' or Components",
            )
        reader.normalize(item, at, None)
        reader.interface(item, at)


def own_size(interface: dict[str, Any]) -> int:
    """Bytes of an Interface's compact JSON text, less the Interfaces written inside it."""

    def without_inner(value: Any, top: bool) -> Any:
        if isinstance(value, dict):
            if not top and is_interface(value):
                return None
            return {k: without_inner(v, False) for k, v in value.items()}
        if isinstance(value, list):
            return [without_inner(v, False) for v in value]
        return value

    return len(json.dumps(without_inner(interface, True), separators=(",", ":")).encode())


def too_deep(doc: Any, limit: int) -> bool:
    """True when ``doc`` nests objects and arrays more than ``limit`` levels (no recursion)."""
    stack: list[tuple[Any, int]] = [(doc, 1)] if isinstance(doc, (dict, list)) else []
    while stack:
        value, depth = stack.pop()
        for child in value.values() if isinstance(value, dict) else value:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False
