"""``services.kafka.requests``: the issuers of command requests, their keys and their grants.

Keys never sit in the deployment file: an issuer names an environment variable
(``key_env``) or a secret file (``key_file``, relative to the deployment file) that holds it.
Errors name the file and field, never the key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from twinflow.connectors.kafka.request_auth import ANY, MAX_VALIDITY_S, Grant, Key, RequestAuth
from twinflow.core.config import Duration, Names, OptionalText, Schema, Section, Text
from twinflow.core.errors import ConfigError
from twinflow.core.fields import Part
from twinflow.operators.twin_type import TwinType
from twinflow.operators.whatif.request import WHATIF

#: Shortest key accepted (bytes).
MIN_KEY_BYTES = 16

REQUESTS = Schema(
    "services.kafka.requests",
    "Authentication and authorisation of command requests (see the Security guide). Unset: "
    "any request on the topic is carried out (insecure; a warning is logged at start).",
    (
        Part(
            "issuers",
            "Who may sign requests, by name (the `twinflow-issuer` header).",
            kind="mapping of issuer name to section",
            see="services.kafka.requests.issuers.<name>",
        ),
        Part(
            "allow",
            "Grants: what each issuer may ask of which twins; nothing else is allowed.",
            kind="list of sections",
            see="services.kafka.requests.allow[]",
        ),
        Duration(
            "max_validity",
            "Longest a signed request may stay valid after it is read: one whose `expires_at` "
            "lies further ahead is rejected, which bounds how long a copied message could be "
            "replayed (the twin's command book remembers request ids until they expire).",
            MAX_VALIDITY_S,
            shown="`15m`",
        ),
    ),
)

ISSUER = Schema(
    "services.kafka.requests.issuers.<name>",
    "One issuer's HMAC-SHA256 key, from the environment or a secret file (exactly one).",
    (
        OptionalText("key_env", "Environment variable that holds the key."),
        OptionalText("key_file", "File that holds the key (relative to the deployment file)."),
    ),
)

ALLOW = Schema(
    "services.kafka.requests.allow[]",
    "One grant: the issuer may send these commands or desired properties to these twins, "
    'twins of these types or twins within these assets (`"*"`: any command, twin or type).',
    (
        Text("issuer", "The issuer granted (a name under `issuers`).", "", required=True),
        Names(
            "commands",
            "Commands it may send (`whatif`: ask what-ifs of those twins).",
            (),
            what="command names",
        ),
        Names("properties", "Desired properties it may change.", (), what="property names"),
        Names("twins", "Twin ids it may address.", (), what="twin ids"),
        Names("types", "Twin types whose twins it may address.", (), what="type names"),
        Names(
            "assets",
            "Assets (or the site) whose twins, at any depth, it may address.",
            (),
            what="asset ids",
        ),
    ),
)

SCHEMAS = (REQUESTS, ISSUER, ALLOW)


def request_auth(s: Section, env: Mapping[str, str]) -> RequestAuth | None:
    """The parsed section (``None`` when absent: requests are not authenticated)."""
    if not s.data:
        return None
    s.check_keys(REQUESTS)
    issuers = s.section("issuers")
    if not issuers.data:
        raise s.error("issuers", " is empty; name at least one issuer and its key_env or key_file")
    keys = {str(name): _key(issuers.section(str(name)), env) for name in issuers.data}
    raw = s.data.get("allow") or []
    if not isinstance(raw, list):
        raise s.fail("allow", "a list of grants")
    grants = tuple(
        _grant(Section(g, f"{s.path('allow')}[{i}]", s.file), keys) for i, g in enumerate(raw)
    )
    return RequestAuth(keys, grants, max_validity_s=s.get(REQUESTS["max_validity"]))


def _key(s: Section, env: Mapping[str, str]) -> Key:
    s.check_keys(ISSUER)
    name, path = s.get(ISSUER["key_env"]), s.get(ISSUER["key_file"])
    if (name is None) == (path is None):
        raise ConfigError(f"{s.file}: {s.where} needs exactly one of key_env or key_file")
    if name is not None:
        secret = env.get(name, "").encode()
        where = f"{s.path('key_env')}: environment variable {name!r}"
    else:
        assert path is not None
        file = Path(path) if Path(path).is_absolute() else s.file.parent / path
        try:
            secret = file.read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise ConfigError(
                f"{s.file}: {s.path('key_file')}: cannot read {file}: {exc.strerror}"
            ) from None
        where = f"{s.path('key_file')}: {file}"
    if len(secret) < MIN_KEY_BYTES:
        state = "is not set" if not secret else f"holds fewer than {MIN_KEY_BYTES} bytes"
        raise ConfigError(f"{s.file}: {where} {state}; the key needs {MIN_KEY_BYTES}+ bytes")
    return Key(secret)


def _grant(s: Section, keys: Mapping[str, Key]) -> Grant:
    s.check_keys(ALLOW)
    issuer = s.get(ALLOW["issuer"])
    if issuer not in keys:
        raise s.error("issuer", f" = {issuer!r} is not under issuers ({', '.join(sorted(keys))})")
    kinds = ("commands", "properties", "twins", "types", "assets")
    lists = {k: frozenset(s.get(ALLOW[k])) for k in kinds}
    if not (lists["commands"] or lists["properties"]):
        raise ConfigError(f"{s.file}: {s.where} grants nothing; list commands or properties")
    if not (lists["twins"] or lists["types"] or lists["assets"]):
        raise ConfigError(
            f"{s.file}: {s.where} names no twins, types or assets; list them (or twins: ['*'])"
        )
    return Grant(issuer, **lists, where=f"{s.file}: {s.where}")


def check_grants(
    auth: RequestAuth,
    twins: Mapping[str, str],
    catalog: Mapping[str, TwinType],
    within: Mapping[str, frozenset[str]],
) -> None:
    """Refuse grants that name what the deployment does not have: a twin, a type, an asset
    holding no twin, or a command or property that no type it covers declares (a typo would
    otherwise grant nothing, silently)."""
    assets = frozenset().union(*within.values()) if within else frozenset()
    for g in auth.grants:
        for kind, names, known in (
            ("twin", g.twins, twins.keys()),
            ("type", g.types, catalog.keys()),
            ("asset", g.assets, assets),
        ):
            unknown = sorted(names - {ANY} - set(known))
            if unknown:
                raise ConfigError(
                    f"{g.where}: {kind} {unknown[0]!r} is not in the deployment (known "
                    f"{kind}s: {_some(known)})"
                )
        covered = _covered_types(g, twins, catalog, within)
        for what, names, declared in (
            # `whatif` lets the issuer ask what-ifs of those twins (the `whatif` request kind)
            ("command", g.commands, {WHATIF, *(a.name for t in covered for a in t.actuators)}),
            ("property", g.properties, {p.name for t in covered for p in t.properties}),
        ):
            unknown = sorted(names - {ANY} - declared)
            if unknown:
                raise ConfigError(
                    f"{g.where}: {what} {unknown[0]!r} is not declared by the types it covers "
                    f"({', '.join(sorted(t.name for t in covered)) or 'none'}; their "
                    f"{what}s: {_some(declared)})"
                )


def _covered_types(
    g: Grant,
    twins: Mapping[str, str],
    catalog: Mapping[str, TwinType],
    within: Mapping[str, frozenset[str]],
) -> list[TwinType]:
    """The twin types of every twin the grant addresses."""
    if ANY in g.twins or ANY in g.types:
        return list(catalog.values())
    names = set(g.types) | {twins[t] for t in g.twins if t in twins}
    names |= {kind for t, kind in twins.items() if within.get(t, frozenset()) & g.assets}
    return [catalog[n] for n in sorted(names) if n in catalog]


def _some(names: Iterable[str]) -> str:
    shown = sorted(names)
    return ", ".join(shown[:12]) + (", ..." if len(shown) > 12 else "") if shown else "none"


__all__ = ["ALLOW", "ISSUER", "REQUESTS", "SCHEMAS", "check_grants", "request_auth"]
