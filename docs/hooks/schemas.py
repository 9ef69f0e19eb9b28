"""mkdocs hook: a line ``<!-- schema: NAME -->`` in a page becomes the JSON Schema
``operators/schemas/NAME`` as a code block, read when the site is built, so the data-contract
page always shows the schemas the package ships.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

MARKER = re.compile(r"^<!-- schema: ([A-Za-z0-9_.]+\.json) -->$", re.MULTILINE)


def on_page_markdown(markdown: str, *, page: Any, config: Any, files: Any) -> str:
    schemas = Path(config.config_file_path).resolve().parent / "operators" / "schemas"

    def inline(match: re.Match[str]) -> str:
        path = schemas / match.group(1)
        if not path.is_file():
            raise PluginError(f"{page.file.src_path}: no schema {match.group(1)} in {schemas}")
        return f"```json\n{path.read_text(encoding='utf-8').rstrip()}\n```"

    return MARKER.sub(inline, markdown)
