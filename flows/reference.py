"""The deployment-file reference, generated from the settings' own definitions.

``python -m twinflow.flows.reference > docs/reference/deployment.md`` rewrites the page; a
test fails when the committed page differs from what this prints, so it cannot drift from
the parsers (they read the same :class:`~twinflow.core.config.Schema` tables).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

from twinflow.connectors import registry
from twinflow.connectors.recorded.spec import COLUMN, REPLAY, TIME
from twinflow.connectors.simulator.settings import SIMULATOR
from twinflow.core.config import Schema
from twinflow.flows.config import FLOW
from twinflow.flows.deploy import DATABASE, TOP, services_schema, twin_schema
from twinflow.flows.placement import ASSET
from twinflow.flows.replication_config import REPLICATION
from twinflow.operators.maintenance.settings import SCHEMAS as MAINTENANCE_SCHEMAS

COMMAND = "python -m twinflow.flows.reference > docs/reference/deployment.md"

_INTRO = f"""\
# Deployment file reference

*Generated from the settings' own definitions by `{COMMAND}`; edit those, not this page.*

A deployment file (YAML) says which twins exist, how each is reached and where the outputs
go; `twinflow run` and `twinflow simulate` read it and refuse a file with an unknown field, a
wrong type or a value out of range, naming the file and the field. `infra/examples/plant.yaml`
is a complete, commented example.

Paths below are dotted: `twins[]` is each item of the `twins` list, `<signal>` stands for a
key you choose. The environment overrides service addresses: `MQTT_URL`, `KAFKA_BOOTSTRAP`
and `DATABASE_URL`.
"""


def schemas() -> list[Schema]:
    """Every section of a deployment file, in the order of the page."""
    specs = registry.specs()
    out = [TOP, services_schema()]
    for spec in specs:
        out += spec.service_schemas
    out += [DATABASE, SIMULATOR, FLOW, ASSET, REPLAY, TIME, COLUMN]
    out += list(MAINTENANCE_SCHEMAS)
    out.append(REPLICATION)
    out.append(twin_schema(tuple(s.name for s in specs if s.binding_type is not None)))
    for spec in specs:
        out += spec.binding_schemas
    return out


def _cell(text: str) -> str:
    return text.replace("\n", " ").replace("|", "\\|") if "\\|" not in text else text


def _protocols() -> Iterator[str]:
    yield "## Protocols"
    yield ""
    yield "The values of `twins[].protocol`, and what each connector exports."
    yield ""
    yield "| Protocol | What | Service section | Metrics |"
    yield "| --- | --- | --- | --- |"
    for spec in registry.specs():
        service = f"`services.{spec.name}`" if spec.service_schemas else "none"
        metrics = ", ".join(f"`{m}`" for m in spec.metrics) or "none"
        yield f"| `{spec.name}` | {_cell(spec.doc)} | {service} | {metrics} |"
    yield ""


def _section(schema: Schema) -> Iterator[str]:
    yield f"## `{schema.path}`" if schema.path else "## Top level"
    yield ""
    yield schema.doc
    yield ""
    yield "| Field | Type | Default | Description |"
    yield "| --- | --- | --- | --- |"
    for f in schema.fields:
        yield (
            f"| `{f.key}` | {_cell(f.type_text())} | {_cell(f.default_text())} | {_cell(f.doc)} |"
        )
    yield ""


def render() -> str:
    """The whole page."""
    lines = [_INTRO, *_protocols()]
    for schema in schemas():
        lines += _section(schema)
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
