"""OPC UA server certificates checked against a trust list; the current security policies
(issue 11)."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asyncua import Server, ua
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.services.opcua_certs import make_cert
from twinflow.connectors.bindings import OpcUaBinding, OpcUaSecurity
from twinflow.connectors.opcua.connection import close_quietly, group_by_endpoint, open_client
from twinflow.connectors.opcua.trust import UntrustedServer, check_trusted, load_trust
from twinflow.core.errors import ConfigError
from twinflow.flows.deploy import load_deployment

SERVER_URI = "urn:twinflow:test:trust-server"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(
    directory: Path, name: str = "plant-ca"
) -> tuple[Path, x509.Certificate, rsa.RSAPrivateKey]:
    key = _key()
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, cert, key


def server_cert_signed_by(
    directory: Path, ca: x509.Certificate, ca_key: rsa.RSAPrivateKey, *, days: int = 30
) -> tuple[Path, Path]:
    key = _key()
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("plc"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=2))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(SERVER_URI), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "plc.der", directory / "plc.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_check_trusted(tmp_path: Path) -> None:
    ca_path, ca, ca_key = make_ca(tmp_path / "trust")
    cert_path, _ = server_cert_signed_by(tmp_path, ca, ca_key)
    der = cert_path.read_bytes()
    assert check_trusted(der, load_trust(ca_path)).subject == _name("plc")
    assert check_trusted(der, load_trust(tmp_path / "trust")).subject == _name("plc")  # folder
    pinned = make_cert(tmp_path / "pin", "server", "urn:x", server=True)
    pinned_der = Path(pinned.certificate).read_bytes()
    assert check_trusted(pinned_der, load_trust(pinned.certificate))  # a server cert itself
    _, other, _ = make_ca(tmp_path / "other", "other-ca")
    with pytest.raises(UntrustedServer, match="neither in the trust list nor signed"):
        check_trusted(der, [other])
    with pytest.raises(UntrustedServer, match="neither in the trust list"):
        check_trusted(pinned_der, [ca])
    with pytest.raises(UntrustedServer, match="not valid now"):
        check_trusted(der, [ca], now=datetime.now(UTC) + timedelta(days=60))
    # an impostor CA with the same name but another key
    _, impostor, impostor_key = make_ca(tmp_path / "impostor", "plant-ca")
    forged, _ = server_cert_signed_by(tmp_path / "impostor", impostor, impostor_key)
    with pytest.raises(UntrustedServer):
        check_trusted(forged.read_bytes(), [ca])


def test_trust_list_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither a certificate file nor a folder"):
        load_trust(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no certificate"):
        load_trust(tmp_path / "empty")
    (tmp_path / "bad.pem").write_text("-----BEGIN CERTIFICATE-----\nnope\n")
    with pytest.raises(ConfigError, match=r"bad\.pem: not a PEM or DER"):
        load_trust(tmp_path / "bad.pem")


TWIN = """\
version: 1
twins:
  - id: m1
    type: motor
    protocol: opcua
    opcua:
      endpoint: opc.tcp://plc:4840
      security: {certificate: c.der, private_key: k.pem%s}
"""


def test_deployment_security_needs_a_trust_list(tmp_path: Path) -> None:
    p = tmp_path / "plant.yaml"
    p.write_text(TWIN % "")
    with pytest.raises(ConfigError, match=r"twins\[0\]\.opcua\.security: name the server"):
        load_deployment(p, env={})
    p.write_text(TWIN % ", trust: ca/, policy: Aes256_Sha256_RsaPss")
    sec = load_deployment(p, env={}).twins[0].opcua.security  # type: ignore[union-attr]
    assert sec is not None and (sec.trust, sec.policy) == ("ca/", "Aes256_Sha256_RsaPss")
    p.write_text(TWIN % ", server_certificate: s.der, policy: Aes128_Sha256_RsaOaep")
    sec = load_deployment(p, env={}).twins[0].opcua.security  # type: ignore[union-attr]
    assert sec is not None and sec.server_certificate == "s.der"
    p.write_text(TWIN % ", trust: ca/, policy: Basic128Rsa15")
    with pytest.raises(ConfigError, match="policy"):
        load_deployment(p, env={})


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _serve(url: str, cert: Path, key: Path, policies: list[ua.SecurityPolicyType]) -> Server:
    server = Server()
    await server.init()
    server.set_endpoint(url)
    await server.load_certificate(str(cert))
    await server.load_private_key(str(key))
    await server.set_application_uri(SERVER_URI)
    server.set_security_policy(policies)
    await server.start()
    return server


@pytest.mark.services
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("policy", "served"),
    [
        ("Aes128_Sha256_RsaOaep", ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt),
        ("Aes256_Sha256_RsaPss", ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt),
        ("Basic256Sha256", ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt),
    ],
)
def test_connects_only_to_a_trusted_server(
    tmp_path: Path, policy: str, served: ua.SecurityPolicyType
) -> None:
    ca_path, ca, ca_key = make_ca(tmp_path / "trust")
    cert, key = server_cert_signed_by(tmp_path, ca, ca_key)
    client = make_cert(tmp_path, "client", "urn:twinflow:test:client", server=False)
    other_ca, _, _ = make_ca(tmp_path / "other", "other-ca")
    url = f"opc.tcp://127.0.0.1:{_port()}"

    def endpoint(trust: Path) -> object:
        sec = OpcUaSecurity(
            policy=policy,  # type: ignore[arg-type]
            certificate=client.certificate,
            private_key=client.private_key,
            trust=str(trust),
        )
        b = OpcUaBinding("m1", "motor", url, {}, security=sec)
        [ep] = group_by_endpoint([b])
        return ep

    async def scenario() -> None:
        server = await _serve(url, cert, key, [served])
        try:
            c = await open_client(endpoint(ca_path), 5.0, 30.0)  # type: ignore[arg-type]
            try:
                assert c.security_policy.URI.rsplit("#", 1)[1] == policy
                await c.nodes.server.read_browse_name()
            finally:
                await close_quietly(c, 2.0)
            with pytest.raises(UntrustedServer, match="neither in the trust list"):
                await open_client(endpoint(other_ca), 5.0, 30.0)  # type: ignore[arg-type]
        finally:
            await server.stop()

    asyncio.run(scenario())


def _ca(
    name: str, issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None, path_length: int | None
) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key, now = _key(), datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(issuer[0].subject if issuer else _name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .sign(issuer[1] if issuer else key, hashes.SHA256())
    )
    return cert, key


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def test_a_chain_through_intermediates_the_server_sends_reaches_the_trusted_root(
    tmp_path: Path,
) -> None:
    root = _ca("root-ca", None, path_length=1)
    site = _ca("site-ca", root, path_length=0)
    leaf_path, _ = server_cert_signed_by(tmp_path, site[0], site[1])
    leaf = leaf_path.read_bytes()
    assert check_trusted(leaf + _der(site[0]), [root[0]]).subject == _name("plc")
    with pytest.raises(UntrustedServer, match="through intermediate CAs"):
        check_trusted(leaf, [root[0]])  # the intermediate was not sent
    strict = _ca("root-ca", None, path_length=0)  # allows no CA below it
    strict_site = _ca("site-ca", strict, path_length=0)
    (tmp_path / "strict").mkdir()
    strict_leaf, _ = server_cert_signed_by(tmp_path / "strict", *strict_site)
    with pytest.raises(UntrustedServer):
        check_trusted(strict_leaf.read_bytes() + _der(strict_site[0]), [strict[0]])
    # a certificate that is not a CA cannot vouch for another, even when the list trusts it
    (tmp_path / "pin").mkdir()
    pinned = make_cert(tmp_path / "pin", "server", "urn:x", server=True)
    pinned_cert = x509.load_der_x509_certificate(Path(pinned.certificate).read_bytes())
    with pytest.raises(UntrustedServer):
        check_trusted(leaf + _der(site[0]), [pinned_cert])


@pytest.mark.parametrize("blob", [b"", b"\x31\x00", b"\x30\x85\x00\x00\x00\x00\x01", b"\x30\x05ab"])
def test_malformed_certificate_bytes_are_refused_with_a_reason(blob: bytes) -> None:
    with pytest.raises(UntrustedServer):
        check_trusted(blob, [])
