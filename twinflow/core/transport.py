"""The one rule for credentials in transit: no password over an unencrypted connection.

A deployment that sends a password where anyone on the path can read it is refused at load,
unless its section says ``allow_insecure: true`` (a test bench, a loopback broker).
"""

from __future__ import annotations

from twinflow.core.errors import ConfigError


def refuse_plain_password(
    where: str, *, password: bool, encrypted: bool, allow_insecure: bool, fix: str
) -> None:
    """Raise :class:`ConfigError` when a password would travel unencrypted.

    ``where`` names the file and section, ``fix`` says how to encrypt the connection.

    >>> refuse_plain_password("p.yaml: services.mqtt", password=True, encrypted=True,
    ...                       allow_insecure=False, fix="")
    >>> refuse_plain_password("p.yaml: services.mqtt", password=True, encrypted=False,
    ...                       allow_insecure=False, fix="use mqtts://")
    Traceback (most recent call last):
    ...
    twinflow.core.errors.ConfigError: p.yaml: services.mqtt: a password over an unencrypted \
connection; use mqtts://, or set allow_insecure: true to send it in the clear
    """
    if password and not encrypted and not allow_insecure:
        raise ConfigError(
            f"{where}: a password over an unencrypted connection; {fix}, or set "
            "allow_insecure: true to send it in the clear"
        )


__all__ = ["refuse_plain_password"]
