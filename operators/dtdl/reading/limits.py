"""Limits stated by the DTDL v3 language reference.

The readers look these up as ``limits.NAME`` when they check, so a test can lower one.
"""

from __future__ import annotations

MAX_NAME = 512
MAX_DISPLAY_NAME = 512
MAX_DESCRIPTION = 512
MAX_COMMENT = 512
MAX_EXTENDS_DEPTH = 10
MAX_EXTENDS_COUNT = 1024
MAX_CONTENTS = 100_000
MAX_SCHEMA_DEPTH = 5
MAX_INTERFACE_BYTES = 1 << 20
#: Deepest JSON nesting read (DTDL's own limits stop far sooner; deeper is refused whole).
MAX_JSON_DEPTH = 128
