"""Who may command what: authenticated command requests and the deployment's grants.

Wire format: a request message carries two Kafka headers,

- ``twinflow-issuer``: the issuer's name as declared in ``services.kafka.requests.issuers``;
- ``twinflow-signature``: ``sha256=`` and the lower-case hex HMAC-SHA256 of the message
  value (the exact bytes of the JSON request) under that issuer's key.

A request whose issuer is unknown, whose signature is missing or does not match, or that no
grant of its issuer allows (the command, or the desired property, for the twin, its type or
an asset or site it lies in) ends ``rejected`` on the commands stream with the reason, and is
counted in ``twinflow_command_requests_refused_total{reason}``.

Replays: the signature covers ``request_id`` and ``expires_at``, so a copied message is the
same command (same id) and only until it expires; a signed request may expire at most
``max_validity`` after it is read (default 15 min), and the twin's command book remembers the
id of every external request until it expires (:mod:`twinflow.operators.command_book`), so a
replayed message is never carried out twice. Keys come from the environment or a secret file,
never the deployment file.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from twinflow.core.records import Command, DesiredChange
from twinflow.core.times import epoch
from twinflow.operators.whatif.request import WhatIfRequest

ISSUER_HEADER = "twinflow-issuer"
SIGNATURE_HEADER = "twinflow-signature"
#: The prefix of the signature header's value.
SCHEME = "sha256="
#: Matches any command, property, twin or type in a grant.
ANY = "*"
#: How long after it is read a signed request may stay valid, by default (seconds).
MAX_VALIDITY_S = 900.0

#: Kafka message headers as the client gives them (a list of pairs, a mapping or none).
Headers = Mapping[str, bytes | str | None] | Sequence[tuple[str, bytes | str | None]] | None


class Key:
    """An issuer's HMAC key; never shown in a repr or a log."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def sign(self, payload: bytes) -> str:
        """The signature header's value for ``payload``."""
        return SCHEME + hmac.new(self._secret, payload, hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return "Key(<secret>)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Key) and hmac.compare_digest(self._secret, other._secret)

    def __hash__(self) -> int:
        return hash(Key)


@dataclass(frozen=True)
class Grant:
    """What one issuer may ask: commands and desired properties, for twins, types or assets.

    >>> g = Grant("ops", commands=frozenset({"set_flow"}), types=frozenset({"pump"}))
    >>> g.allows("set_flow", None, "P1", "pump"), g.allows("derate", None, "P1", "pump")
    (True, False)
    """

    issuer: str
    commands: frozenset[str] = frozenset()
    properties: frozenset[str] = frozenset()
    twins: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()
    assets: frozenset[str] = frozenset()
    #: Where the grant was declared (file and field), for error messages.
    where: str = field(default="", compare=False)

    def allows(
        self,
        command: str | None,
        prop: str | None,
        twin: str,
        kind: str,
        within: frozenset[str] = frozenset(),
    ) -> bool:
        """Whether this grant covers the command (or desired property) for the twin, of type
        ``kind``, that lies in the assets ``within``."""
        what = self.commands if prop is None else self.properties
        if not (ANY in what or (prop if prop is not None else command) in what):
            return False
        return bool({ANY, twin} & self.twins or {ANY, kind} & self.types or within & self.assets)


def _headers(raw: Headers) -> dict[str, str]:
    pairs = raw.items() if isinstance(raw, Mapping) else (raw or ())
    out: dict[str, str] = {}
    for key, value in pairs:
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        if key not in out and value is not None:
            out[key] = value[:200]
    return out


@dataclass(frozen=True)
class RequestAuth:
    """The issuers' keys and the grants; :meth:`refusal` judges one request."""

    keys: Mapping[str, Key]
    grants: tuple[Grant, ...] = ()
    #: Each twin's containing assets and site (from the deployment's placement).
    within: Mapping[str, frozenset[str]] = field(default_factory=lambda: MappingProxyType({}))
    #: Longest a signed request may stay valid after it is read (seconds).
    max_validity_s: float = MAX_VALIDITY_S

    def refusal(
        self,
        payload: bytes,
        headers: Headers,
        item: Command | DesiredChange | WhatIfRequest,
        now: float,
    ) -> tuple[str, str] | None:
        """``(reason label, detail)`` when the request may not pass; ``None`` when it may.

        ``now`` is when the request was read (wall clock, epoch seconds): a signed request
        that expires more than ``max_validity_s`` later is refused, which bounds how long a
        copied message could be replayed.
        """
        h = _headers(headers)
        issuer = h.get(ISSUER_HEADER)
        if issuer is None:
            return "unsigned", f"not authenticated: no {ISSUER_HEADER} header"
        key = self.keys.get(issuer)
        if key is None:
            return "unknown_issuer", f"not authenticated: unknown issuer {issuer[:64]!r}"
        given = h.get(SIGNATURE_HEADER)
        if given is None:
            return "unsigned", f"not authenticated: no {SIGNATURE_HEADER} header"
        if not hmac.compare_digest(given.encode(), key.sign(payload).encode()):
            return "bad_signature", f"not authenticated: signature does not match issuer {issuer!r}"
        ahead = epoch(item.expires_at) - now
        if ahead > self.max_validity_s:
            return "too_long", (
                f"refused: expires_at lies {ahead:.0f} s ahead; a signed request may stay valid "
                f"for at most {self.max_validity_s:g} s (services.kafka.requests.max_validity)"
            )
        command, prop = (None, item.prop) if isinstance(item, DesiredChange) else (item.name, None)
        for grant in self.grants:
            within = self.within.get(item.twin_id, frozenset())
            if grant.issuer == issuer and grant.allows(
                command, prop, item.twin_id, item.twin_type, within
            ):
                return None
        what = f"desired property {prop!r}" if prop is not None else f"command {command!r}"
        return "forbidden", (
            f"not authorised: issuer {issuer!r} may not send {what} to twin {item.twin_id!r}"
        )


__all__ = [
    "ANY",
    "ISSUER_HEADER",
    "MAX_VALIDITY_S",
    "SCHEME",
    "SIGNATURE_HEADER",
    "Grant",
    "Headers",
    "Key",
    "RequestAuth",
]
