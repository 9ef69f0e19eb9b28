"""The server certificate check of OPC UA connections: a trust list of CA or server
certificates, and the security policies offered.

A binding's ``security.trust`` names a PEM/DER file (PEM may hold several certificates) or a
folder of them. The certificate a server presents is accepted when it is valid now and is
either in the list or directly signed by a certificate in it (put intermediates in the list).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from twinflow.core.errors import ConfigError, TwinflowError

if TYPE_CHECKING:  # cryptography comes with the opcua extra; deployment files load without
    from cryptography import x509

#: Security policies by their deployment-file name (asyncua class names).
POLICIES = ("Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss")
_SUFFIXES = {".pem", ".crt", ".cer", ".der"}


class UntrustedServer(TwinflowError):
    """The server presented a certificate the trust list does not vouch for."""


def _read(data: bytes, where: Path) -> list[x509.Certificate]:
    from cryptography import x509

    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise ConfigError(f"trust list {where}: not a PEM or DER certificate ({exc})") from None


def load_trust(path: str | Path) -> list[x509.Certificate]:
    """The certificates of a trust file or of every certificate file in a trust folder."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in _SUFFIXES and f.is_file())
    elif p.is_file():
        files = [p]
    else:
        raise ConfigError(f"trust list {p} is neither a certificate file nor a folder")
    certs = [c for f in files for c in _read(f.read_bytes(), f)]
    if not certs:
        raise ConfigError(f"trust list {p} holds no certificate (.pem, .crt, .cer, .der)")
    return certs


def check_trusted(
    der: bytes, trusted: Sequence[x509.Certificate], now: datetime | None = None
) -> x509.Certificate:
    """The server certificate ``der`` if the trust list vouches for it, else raise
    :class:`UntrustedServer` saying why."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise UntrustedServer(f"the server's certificate cannot be read: {exc}") from None
    now = now or datetime.now(UTC)
    subject = cert.subject.rfc4514_string()
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise UntrustedServer(
            f"the server's certificate {subject!r} is not valid now (valid "
            f"{cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d})"
        )
    for t in trusted:
        if t == cert:
            return cert
        if t.subject == cert.issuer:
            try:
                cert.verify_directly_issued_by(t)
            except (InvalidSignature, ValueError, TypeError):
                continue
            return cert
    raise UntrustedServer(
        f"the server's certificate {subject!r} (issued by {cert.issuer.rfc4514_string()!r}) "
        "is neither in the trust list nor signed by a certificate in it"
    )


__all__ = ["POLICIES", "UntrustedServer", "check_trusted", "load_trust"]
