"""The deployment-file reference is generated from the settings' definitions and committed."""

from __future__ import annotations

from pathlib import Path

from twinflow.connectors import registry
from twinflow.connectors.modbus.codec import TYPES
from twinflow.connectors.modbus.deploy import REGISTER
from twinflow.core.config import Choice
from twinflow.flows.reference import COMMAND, render, schemas

PAGE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "deployment.md"


def test_the_committed_reference_is_what_the_generator_prints() -> None:
    committed = PAGE.read_text() if PAGE.exists() else ""
    assert committed == render(), (
        f"{PAGE} is out of date with the settings' definitions; regenerate it with: {COMMAND}"
    )


def test_every_section_and_field_has_a_description() -> None:
    paths = [s.path for s in schemas()]
    assert len(paths) == len(set(paths))
    for schema in schemas():
        assert schema.doc, schema.path
        for f in schema.fields:
            assert f.doc.strip(), f"{schema.path}.{f.key}"


def test_every_registered_protocol_has_its_spec_and_sections() -> None:
    for spec in registry.specs():
        assert spec.name in registry.names()
        if spec.binding_type is not None:
            assert spec.binding_schemas[0].path == f"twins[].{spec.name}"
        if spec.service_schemas:
            assert spec.service_schemas[0].path == f"services.{spec.name}"


def test_the_register_table_knows_the_codec_types() -> None:
    register_type = REGISTER["type"]
    assert isinstance(register_type, Choice)
    assert set(register_type.choices) == set(TYPES)
