"""OPC UA bindings checked and grouped by server, and asyncua clients opened for them.

Bindings that share an endpoint URL, security settings and user share one client: one
session and one subscription per server, however many twins it serves. Everything a user
can get wrong in a binding is refused here, at construction, with a :class:`ConfigError`
that names the twin and the field.

asyncua is imported here, behind the check that names the ``opcua`` extra; the package's
other modules take ``Client`` and ``ua`` from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from twinflow.connectors.bindings import OpcUaBinding, OpcUaSecurity
from twinflow.connectors.opcua.trust import POLICIES, check_trusted, load_trust
from twinflow.connectors.sections import each_binding
from twinflow.core.errors import ConfigError
from twinflow.core.optional import needs
from twinflow.core.redact import redact
from twinflow.operators.twin_type import TwinType

with needs("opcua", "the OPC UA connector"):
    from asyncua import ua
    from asyncua.client import Client
    from asyncua.client.client import _first_cert_from_chain
    from asyncua.crypto.security_policies import (
        SecurityPolicy,
        SecurityPolicyAes128Sha256RsaOaep,
        SecurityPolicyAes256Sha256RsaPss,
        SecurityPolicyBasic256Sha256,
        SecurityPolicyNone,
    )

#: The asyncua class of each security policy a binding may name.
_POLICY_CLASSES: dict[str, type[SecurityPolicy]] = {
    "Basic256Sha256": SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": SecurityPolicyAes128Sha256RsaOaep,
    "Aes256_Sha256_RsaPss": SecurityPolicyAes256Sha256RsaPss,
}

__all__ = [
    "Client",
    "Endpoint",
    "check_bindings",
    "close_quietly",
    "group_by_endpoint",
    "link_key",
    "open_client",
    "parse_node",
    "public_url",
    "ua",
]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One server connection: its URL, security and user, and the twins bound to it."""

    key: str
    url: str
    security: OpcUaSecurity | None
    username: str | None
    password: str | None
    bindings: tuple[OpcUaBinding, ...]

    @property
    def label(self) -> str:
        """The URL without credentials, for logs and metric labels."""
        return public_url(self.url)

    @property
    def reads(self) -> bool:
        """Whether a source reads this server: a binding names a node to read."""
        return any(b.nodes for b in self.bindings)


def link_key(endpoint: Endpoint) -> tuple[object, ...]:
    """What makes two endpoints one connection, for
    :mod:`twinflow.connectors.shared_connections` (the source's session lent to the sink)."""
    return endpoint.url, endpoint.security, endpoint.username, endpoint.password


def public_url(url: str) -> str:
    """``url`` without any ``user:password@`` part.

    >>> public_url("opc.tcp://op:secret@10.0.0.5:4840/plc")
    'opc.tcp://10.0.0.5:4840/plc'
    """
    return redact(url, drop_userinfo=True)


def parse_node(node: str, twin_id: str, field: str) -> ua.NodeId:
    """A node id string such as ``ns=2;s=m1.load_pct`` as a NodeId, or a ConfigError."""
    try:
        if not isinstance(node, str) or not node:
            raise ValueError("empty")
        return ua.NodeId.from_string(node)
    except Exception:
        raise ConfigError(
            f"OPC UA binding of twin {twin_id!r}: {field} {node!r} is not a node id; write it "
            "as 'ns=<index>;s=<name>' or 'ns=<index>;i=<number>'"
        ) from None


def check_bindings(bindings: Sequence[OpcUaBinding], *, commands: bool = False) -> None:
    """Refuse bindings a connector cannot use; ``commands`` also checks the command writes."""
    if not bindings:
        raise ConfigError("no OPC UA bindings given; bind at least one twin to a server")
    for b, where, kind in each_binding(bindings, OpcUaBinding, "OPC UA"):
        if urlparse(b.endpoint).scheme != "opc.tcp" or not urlparse(b.endpoint).hostname:
            raise ConfigError(
                f"{where}: endpoint {redact(b.endpoint)!r} is not an OPC UA URL; write it as "
                "'opc.tcp://host:port[/path]'"
            )
        if not _positive(b.sampling_interval_ms):
            raise ConfigError(
                f"{where}: sampling_interval_ms must be a positive number of milliseconds, "
                f"got {b.sampling_interval_ms!r}"
            )
        if not (_positive(b.deadband) or b.deadband == 0):
            raise ConfigError(
                f"{where}: deadband must be a number >= 0 (absolute, in the signal's unit), "
                f"got {b.deadband!r}"
            )
        scalar = {s.name for s in kind.scalar_signals}
        for signal, node in b.nodes.items():
            if signal not in scalar:
                raise ConfigError(
                    f"{where}: nodes has signal {signal!r}, which is not a scalar signal of "
                    f"{b.twin_type!r}; use one of: {', '.join(sorted(scalar))}"
                )
            parse_node(node, b.twin_id, f"nodes[{signal!r}]")
        if commands:
            _check_commands(b, kind)
        _check_security(b)


def _check_commands(b: OpcUaBinding, kind: TwinType) -> None:
    where = f"OPC UA binding of twin {b.twin_id!r}"
    for name, write in b.commands.items():
        actuators = {a.name: a for a in kind.actuators}
        if name not in actuators:
            raise ConfigError(
                f"{where}: commands has {name!r}, which {b.twin_type!r} does not accept; "
                f"it accepts: {', '.join(actuators) or 'none'}"
            )
        if write.param not in actuators[name].params:
            raise ConfigError(
                f"{where}: commands[{name!r}].param is {write.param!r}; command {name!r} takes "
                f"{', '.join(actuators[name].params)}"
            )
        parse_node(write.node, b.twin_id, f"commands[{name!r}].node")


def _check_security(b: OpcUaBinding) -> None:
    sec = b.security
    if sec is None:
        return
    where = f"OPC UA binding of twin {b.twin_id!r}: security"
    if sec.policy not in POLICIES:
        raise ConfigError(
            f"{where}.policy must be one of {', '.join(POLICIES)}, got {sec.policy!r}"
        )
    if sec.mode not in ("Sign", "SignAndEncrypt"):
        raise ConfigError(f"{where}.mode must be 'Sign' or 'SignAndEncrypt', got {sec.mode!r}")
    files = {"certificate": sec.certificate, "private_key": sec.private_key}
    if sec.server_certificate is not None:
        files["server_certificate"] = sec.server_certificate
    for field, path in files.items():
        if not path:
            raise ConfigError(f"{where}.{field} is empty; give the path of a PEM or DER file")
        if not Path(path).is_file():
            raise ConfigError(f"{where}.{field} {path!r} is not a readable file")
    if sec.trust is not None:
        load_trust(sec.trust)  # raises naming the file or folder
    if not sec.trust and not sec.server_certificate:
        raise ConfigError(
            f"{where}: give trust (CA or server certificates) or server_certificate; without "
            "them any server's certificate would be accepted"
        )


def _positive(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def group_by_endpoint(bindings: Sequence[OpcUaBinding]) -> list[Endpoint]:
    """Bindings grouped by (URL, security, user), in order of first appearance."""
    groups: dict[tuple[str, OpcUaSecurity | None, str | None, str | None], list[OpcUaBinding]]
    groups = {}
    for b in bindings:
        groups.setdefault((b.endpoint, b.security, b.username, b.password), []).append(b)
    out: list[Endpoint] = []
    keys: set[str] = set()
    for (url, security, username, password), members in groups.items():
        key = public_url(url)
        if security is not None:
            key += f" [{security.policy} {security.mode}]"
        if username:
            key += f" [user {username}]"
        unique, n = key, 1
        while unique in keys:  # same server and user, other credentials
            n += 1
            unique = f"{key} #{n}"
        keys.add(unique)
        out.append(Endpoint(unique, url, security, username, password, tuple(members)))
    return out


def application_uri(certificate: str) -> str | None:
    """The first URI in a certificate's SubjectAltName (the OPC UA application URI), if any."""
    from cryptography import x509

    data = Path(certificate).read_bytes()
    cert = (
        x509.load_pem_x509_certificate(data)
        if b"-----BEGIN" in data
        else x509.load_der_x509_certificate(data)
    )
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


async def open_client(endpoint: Endpoint, timeout_s: float, session_timeout_s: float) -> Client:
    """A connected asyncua client with the endpoint's security and user (raises on failure).

    With security, the client presents its certificate and key under the configured policy
    and mode; its application URI is taken from the certificate, as servers expect. The
    server's certificate is the pinned ``server_certificate``, or the one its endpoints
    present, accepted only when the trust list vouches for it (:class:`UntrustedServer`).
    """
    client = Client(endpoint.url, timeout=timeout_s, watchdog_intervall=max(timeout_s, 1.0))
    client.name = client.description = "twinflow"
    client.session_timeout = int(session_timeout_s * 1000)
    if endpoint.username:
        client.set_user(endpoint.username)
    if endpoint.password:
        client.set_password(endpoint.password)
    try:
        sec = endpoint.security
        if sec is not None:
            uri = application_uri(sec.certificate)
            if uri:
                client.application_uri = uri
            policy = _POLICY_CLASSES[sec.policy]
            mode = getattr(ua.MessageSecurityMode, sec.mode)
            server: str | bytes | None = sec.server_certificate
            if sec.trust is not None:
                presented = await _presented_certificate(client, policy, mode)
                check_trusted(presented, load_trust(sec.trust))
                server = server or presented  # pinned: asyncua refuses any other
            await client.set_security(
                policy,
                certificate=sec.certificate,
                private_key=sec.private_key,
                server_certificate=server,
                mode=mode,
            )
        await client.connect()
    except BaseException:
        await close_quietly(client, timeout_s)
        raise
    return client


async def _presented_certificate(
    client: Client, policy: type[SecurityPolicy], mode: ua.MessageSecurityMode
) -> bytes:
    """The certificate (DER) the server's endpoint for ``policy`` and ``mode`` presents."""
    none = SecurityPolicyNone()  # type: ignore[no-untyped-call]  # asyncua: no annotations
    client.security_policy = none
    client.uaclient.security_policy = none
    endpoints = await client.connect_and_get_server_endpoints()
    endpoint = Client.find_endpoint(endpoints, mode, policy.URI)
    return bytes(_first_cert_from_chain(endpoint.ServerCertificate))


async def close_quietly(client: Client, timeout_s: float) -> None:
    """Close session, channel and socket as far as the peer allows; never raises."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.disconnect(), timeout_s)
    with contextlib.suppress(Exception):
        client.disconnect_socket()
