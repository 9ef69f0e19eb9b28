"""Deployment files: one YAML file says which twins exist, how each is reached and where the
outputs go. :func:`load_deployment` validates all of it at start and names the bad field.

Service addresses come from the file and can be overridden by the environment:
``MQTT_URL`` (``mqtt://host:port`` or ``mqtts://``), ``KAFKA_BOOTSTRAP`` (``host:port,...``) and
``DATABASE_URL``. See ``infra/examples/plant.yaml`` for a complete, commented example and
``docs/reference/deployment.md`` for every field. The protocol sections are parsed by their
connectors (:mod:`twinflow.connectors.registry`); this module reads the file around them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from twinflow.connectors import registry
from twinflow.connectors.simulator.settings import SimulatorSettings, simulator_settings
from twinflow.connectors.spec import BindingContext
from twinflow.core.config import (
    Choice,
    Field,
    Flag,
    Names,
    OptionalText,
    Part,
    Schema,
    Section,
    Text,
    Whole,
)
from twinflow.core.errors import ConfigError
from twinflow.core.pgurl import ENCRYPTED, SSLMODES, has_password, sslmode_of, with_sslmode
from twinflow.core.transport import refuse_plain_password
from twinflow.flows.config import FLOW, FlowConfig
from twinflow.flows.deployment import AssetSpec, Deployment, TwinSpec
from twinflow.flows.placement import PLACEMENT, assets, placement
from twinflow.flows.replication_config import replication_settings
from twinflow.operators.catalog import Catalogue, load_catalogue
from twinflow.operators.maintenance.settings import read_maintenance
from twinflow.operators.profile import profile_from

TOP = Schema(
    "",
    "The top level of a deployment file.",
    (
        Whole(
            "version",
            "Version of the deployment format (the only one so far).",
            1,
            1,
            1,
            expect="1",
        ),
        Text("site", "Id of the site every asset and twin sits in.", "site1"),
        Names(
            "models",
            "Folders of DTDL Interfaces and twin-type profiles, relative to this file; their "
            "types join the bundled ones.",
            (),
            what="folder paths",
        ),
        Part(
            "types",
            "Twin-type profiles kept in this file: type name -> a profile in the format of a "
            "profile file (`name` may be left out); their DTDL Interfaces come from `models:`.",
            kind="mapping",
        ),
        Part("services", "How to reach the services.", see="services"),
        Part("simulator", "What `twinflow simulate` simulates.", see="simulator"),
        Part("flow", "Settings of the telemetry flow.", see="flow"),
        Part("assets", "Assets that report no telemetry.", kind="list", see="assets[]"),
        Part("twins", "The twins (at least one).", kind="list", see="twins[]"),
        Part(
            "replay",
            "How `twinflow replay` reads recordings for this deployment (a `--spec` file and "
            "flags take precedence); `run` and `simulate` ignore it.",
            see="replay",
        ),
        Part(
            "maintenance",
            "Costs, crews and windows for maintenance planning (`twinflow plan`).",
            see="maintenance",
        ),
        Part(
            "replication",
            "Run as an edge or the central instance of replicated twins (`twinflow run`).",
            see="replication",
        ),
    ),
)
DATABASE = Schema(
    "services.database",
    "PostgreSQL/TimescaleDB that stores the outputs (`DATABASE_URL` overrides `url`).",
    (
        OptionalText("url", "Connection URL, e.g. `postgresql://user@host/db`."),
        Choice(
            "sslmode",
            "libpq `sslmode`, added to the URL; `verify-full` checks the server's certificate "
            "and host name (set `PGSSLROOTCERT` or `sslrootcert` in the URL to its CA).",
            "",
            choices=SSLMODES,
            shown="the URL's, else libpq's `prefer`",
        ),
        Flag(
            "allow_insecure",
            "Allow a password without `sslmode` require, verify-ca or verify-full.",
            False,
        ),
    ),
)


def services_schema() -> Schema:
    """``services:``: one section per protocol with a service, and the database."""
    parts: list[Field[Any]] = [
        Part(n, f"The {n} service.", see=f"services.{n}") for n in registry.services()
    ]
    parts.append(Part("database", "The database.", see="services.database"))
    return Schema("services", "How to reach the services.", tuple(parts))


def twin_schema(bound: tuple[str, ...] | None = None) -> Schema:
    """``twins[]``: id, type, protocol, the protocol's binding section and placement.

    ``bound`` lists the protocols with a binding section; by default every protocol's key is
    accepted (so the loader imports no spec to check keys; a spec without bindings refuses it).
    """
    sections = registry.names() if bound is None else bound
    return Schema(
        "twins[]",
        "One twin: its type, protocol, binding and where it sits.",
        (
            Text("id", "Unique twin id.", "", required=True),
            Text(
                "type",
                "Twin type: the short name its profile declares, or its model's DTMI "
                "(the bundled types are listed in the twin-types guide).",
                "",
                required=True,
            ),
            Choice(
                "protocol",
                "How its telemetry arrives (and commands leave).",
                "",
                required=True,
                choices=registry.names(),
            ),
            *(
                Part(n, f"Its {n} binding (only with `protocol: {n}`).", see=f"twins[].{n}")
                for n in sections
            ),
            *PLACEMENT,
        ),
    )


def load_deployment(path: Path | str, env: Mapping[str, str] | None = None) -> Deployment:
    """Read and validate a deployment file; ``env`` (default ``os.environ``) overrides addresses."""
    file = Path(path)
    env = os.environ if env is None else env
    top = Section(_read(file), "", file)
    top.check_keys(TOP)
    if top.data.get("version", 1) != 1:
        raise top.fail("version", "1 (the only version of the deployment format so far)")
    site = top.get(TOP["site"])
    types = catalogue(top)
    services, database_url = _services(top.section("services"), env)
    sim = simulator_settings(top.section("simulator"))
    flow = _flow(top.section("flow"))
    twins = _twins(top, site, sim, types)
    places = assets(top, site, types)
    dep = Deployment(file, twins, services, database_url, flow, sim, site, places, types)
    rep = replication_settings(top.section("replication"), site)
    if rep is not None and rep.link not in services:
        raise ConfigError(
            f"{file}: replication.link is {rep.link} but services.{rep.link} is not set"
        )
    dep = replace(dep, replication=rep)
    dep.registry()  # validates containment and relationships
    ids, owners = {t.twin_id for t in twins}, {site, *(a.asset_id for a in places)}
    read_maintenance(top.section("maintenance"), ids, owners)  # `twinflow plan` reads it again
    for name in registry.names():
        users = sum(t.protocol == name for t in twins)
        if users or name in services:
            registry.spec(name).check(services.get(name), users, file)
    return dep


def catalogue(top: Section) -> Catalogue:
    """The bundled twin types, those of the ``models:`` folders (relative to the file) and
    the profiles under ``types:``."""
    folders = [top.file.parent / f for f in top.get(TOP["models"])]
    for i, f in enumerate(folders):
        if not f.is_dir():
            raise ConfigError(
                f"{top.file}: models[{i}] = {str(f)!r}: expected a folder of DTDL Interfaces "
                "and twin-type profiles"
            )
    types = top.section("types")
    profiles = [
        profile_from(data, top.file, types.path(str(name)), str(name))
        for name, data in types.data.items()
    ]
    return load_catalogue(folders, profiles=profiles)


def _read(file: Path) -> object:
    try:
        return yaml.safe_load(file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"deployment file {file} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from None


def _services(s: Section, env: Mapping[str, str]) -> tuple[dict[str, Any], str | None]:
    """Each protocol's service settings (from its section, or its environment variable alone)
    and the database URL."""
    s.check_keys(services_schema())
    out: dict[str, Any] = {}
    for name in registry.services():
        variable = registry.service_env(name)
        if name in s.data or (variable and env.get(variable)):
            out[name] = registry.spec(name).parse_service(s.section(name), env)
    db = s.section("database")
    db.check_keys(DATABASE)
    return out, _database_url(db, env)


def _database_url(db: Section, env: Mapping[str, str]) -> str | None:
    """``services.database``: the URL with its ``sslmode``; a password needs encryption."""
    url = env.get("DATABASE_URL") or db.get(DATABASE["url"])
    if not url:
        return None
    url = with_sslmode(url, db.get(DATABASE["sslmode"]) or None)
    refuse_plain_password(
        f"{db.file}: {db.where or 'services.database'}",
        password=has_password(url),
        encrypted=sslmode_of(url, env) in ENCRYPTED,
        allow_insecure=db.get(DATABASE["allow_insecure"]),
        fix="set sslmode: verify-full (or require)",
    )
    return url


def _flow(s: Section) -> FlowConfig:
    s.check_keys(FLOW)
    values: dict[str, Any] = {}
    for key, raw in s.data.items():
        value = s.get(FLOW[key])
        # numbers keep the file's int or float, as before the settings table existed
        values[key] = raw if isinstance(value, float) else value
    try:
        return FlowConfig(**values)
    except ConfigError as exc:
        raise ConfigError(f"{s.file}: {s.where}: {exc}") from None


def _twins(
    top: Section, site: str, sim: SimulatorSettings, types: Catalogue
) -> tuple[TwinSpec, ...]:
    raw = top.data.get("twins")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{top.file}: twins must be a non-empty list of twins")
    schema = twin_schema()
    twins: list[TwinSpec] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        section = Section(item, f"twins[{i}]", top.file)
        spec = replace(_twin(section, schema, site, sim, types), **placement(section))
        if spec.twin_id in seen:
            raise ConfigError(f"{top.file}: twins[{i}].id {spec.twin_id!r} appears twice")
        seen.add(spec.twin_id)
        twins.append(spec)
    return tuple(twins)


def _twin(
    s: Section, schema: Schema, site: str, sim: SimulatorSettings, types: Catalogue
) -> TwinSpec:
    s.check_keys(schema)
    twin_id = s.get(schema["id"])
    kind = types.resolve(s.get(schema["type"]))
    if kind is None:
        raise s.fail(
            "type", f"one of {', '.join(sorted(types))} or the DTMI of one (a type of your own "
            "needs its folder of DTDL and profile under models:)"
        )  # fmt: skip
    twin_type = kind.name
    protocol = s.get(schema["protocol"])
    for other in registry.names():
        if other != protocol and other in s.data:
            raise ConfigError(
                f"{s.file}: {s.path(other)} is set but twin {twin_id!r} uses protocol "
                f"{protocol!r}; remove it or change the protocol"
            )
    spec = registry.spec(protocol)
    if spec.binding_type is None:
        if protocol in s.data:
            raise ConfigError(
                f"{s.file}: {s.path(protocol)}: twins of protocol {protocol!r} take no binding "
                "section; remove it"
            )
        return TwinSpec(twin_id, twin_type, protocol)
    ctx = BindingContext(twin_id, twin_type, site, sim, kind)
    return TwinSpec(twin_id, twin_type, protocol, spec.parse_binding(s.section(protocol), ctx))


__all__ = ["AssetSpec", "Deployment", "SimulatorSettings", "TwinSpec", "load_deployment"]
