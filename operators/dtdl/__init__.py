"""DTDL v3 and v2: parse twin models, check them with the rule named in every error.

Pure Python, no Bytewax: ``parse_files`` reads files and folders of Interfaces into a
:class:`ModelSet` (raising :class:`DtdlError` with every problem at once), ``check_paths``
returns the problems instead (``parser.check`` also counts files, elements and time), and
``validate_payload`` checks a value against a schema.
The bundled twin types live as DTDL files in ``operators/types/``.
"""

from __future__ import annotations

from pathlib import Path

from twinflow.operators.dtdl.dtmi import Dtmi, is_dtmi, parse_dtmi
from twinflow.operators.dtdl.errors import DtdlError, Problem
from twinflow.operators.dtdl.model import (
    ArraySchema,
    Command,
    CommandPayload,
    Component,
    Content,
    EnumSchema,
    EnumValue,
    Field,
    Interface,
    MapSchema,
    ModelSet,
    ObjectSchema,
    PrimitiveSchema,
    Property,
    Relationship,
    Schema,
    Telemetry,
)
from twinflow.operators.dtdl.parser import check_paths, find_model_files, parse_files, parse_text
from twinflow.operators.dtdl.schemas import validate_payload

#: Folder of the bundled twin types (DTDL v3 Interfaces and their profiles).
INTERFACES_DIR = Path(__file__).parent.parent / "types"

__all__ = [
    "INTERFACES_DIR",
    "ArraySchema",
    "Command",
    "CommandPayload",
    "Component",
    "Content",
    "DtdlError",
    "Dtmi",
    "EnumSchema",
    "EnumValue",
    "Field",
    "Interface",
    "MapSchema",
    "ModelSet",
    "ObjectSchema",
    "PrimitiveSchema",
    "Problem",
    "Property",
    "Relationship",
    "Schema",
    "Telemetry",
    "check_paths",
    "find_model_files",
    "is_dtmi",
    "parse_dtmi",
    "parse_files",
    "parse_text",
    "validate_payload",
]
