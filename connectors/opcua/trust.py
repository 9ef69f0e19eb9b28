"""The server certificate check of OPC UA connections: a trust list of CA or server
certificates, and the security policies offered.

A binding's ``security.trust`` names a PEM/DER file (PEM may hold several certificates) or a
folder of them. The certificate a server presents is accepted when it is valid now and is
either in the list or chained to a CA certificate in it, directly or through intermediate CAs
the server sends after its own certificate (see :func:`check_trusted`).
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


#: Longest chain followed from the server's certificate to the trust list.
MAX_CHAIN = 8


def split_der(blob: bytes) -> list[bytes]:
    """The DER certificates in ``blob``: OPC UA servers may send their certificate followed
    by the intermediates of its chain, concatenated.

    >>> split_der(bytes([0x30, 0x01, 0xAA, 0x30, 0x81, 0x01, 0xBB]))
    [b'0\\x01\\xaa', b'0\\x81\\x01\\xbb']
    """
    out, i = [], 0
    while i < len(blob):
        if blob[i] != 0x30 or i + 2 > len(blob):
            raise UntrustedServer("the server's certificate is not DER (no SEQUENCE at its start)")
        first = blob[i + 1]
        head, size = 2, first
        if first & 0x80:  # long form: the next (first & 0x7F) bytes hold the length
            n = first & 0x7F
            if n == 0 or n > 4 or i + 2 + n > len(blob):
                raise UntrustedServer("the server's certificate has a malformed DER length")
            head, size = 2 + n, int.from_bytes(blob[i + 2 : i + 2 + n], "big")
        if i + head + size > len(blob):
            raise UntrustedServer("the server's certificate is truncated")
        out.append(blob[i : i + head + size])
        i += head + size
    if not out:
        raise UntrustedServer("the server presented no certificate")
    return out


def check_trusted(
    der: bytes, trusted: Sequence[x509.Certificate], now: datetime | None = None
) -> x509.Certificate:
    """The server certificate in ``der`` if the trust list vouches for it, else raise
    :class:`UntrustedServer` saying why.

    ``der`` is the server's certificate, possibly followed by the intermediates of its chain.
    It is accepted when it is in the trust list, or when a chain leads from it, through
    intermediate CAs the server sent, to a CA certificate in the list: every link's signature
    checks, every certificate is valid now, every issuer is a CA (basic constraints) whose
    path length allows the CAs below it.
    """
    from cryptography import x509

    try:
        chain = [x509.load_der_x509_certificate(c) for c in split_der(der)]
    except ValueError as exc:
        raise UntrustedServer(f"the server's certificate cannot be read: {exc}") from None
    now = now or datetime.now(UTC)
    leaf = chain[0]
    _check_time(leaf, now, "the server's certificate")
    if leaf in trusted:
        return leaf
    current, below = leaf, 0  # CAs between the current certificate and the leaf
    for _ in range(MAX_CHAIN):
        anchor = next((t for t in trusted if _issued(current, t, below)), None)
        if anchor is not None:
            _check_time(anchor, now, "the trusted CA certificate")
            return leaf
        step = next((c for c in chain[1:] if c != current and _issued(current, c, below)), None)
        if step is None:
            break
        _check_time(step, now, "the intermediate CA certificate")
        current, below = step, below + 1
    subject = leaf.subject.rfc4514_string()
    raise UntrustedServer(
        f"the server's certificate {subject!r} (issued by {leaf.issuer.rfc4514_string()!r}) "
        "is neither in the trust list nor signed by a certificate in it (directly or through "
        "intermediate CAs the server sent)"
    )


def _check_time(cert: x509.Certificate, now: datetime, what: str) -> None:
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise UntrustedServer(
            f"{what} {cert.subject.rfc4514_string()!r} is not valid now (valid "
            f"{cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d})"
        )


def _issued(cert: x509.Certificate, issuer: x509.Certificate, below: int) -> bool:
    """Whether ``issuer`` is a CA that signed ``cert``, with ``below`` CAs under ``cert``."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    if issuer.subject != cert.issuer:
        return False
    try:
        limits = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    if not limits.ca or (limits.path_length is not None and limits.path_length < below):
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


__all__ = ["MAX_CHAIN", "POLICIES", "UntrustedServer", "check_trusted", "load_trust", "split_der"]
