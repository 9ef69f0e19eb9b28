"""Secure by default: a password on an unencrypted connection is refused at load (issue 11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from twinflow.core.errors import ConfigError
from twinflow.flows.deploy import load_deployment

MQTT_TWIN = "  - {id: wt-001, type: wind_turbine, protocol: mqtt}\n"


def load(tmp_path: Path, services: str, twins: str = MQTT_TWIN, env: dict[str, str] | None = None):
    p = tmp_path / "plant.yaml"
    mqtt = "" if "mqtt:" in services or "MQTT_URL" in (env or {}) else "  mqtt: {}\n"
    p.write_text("version: 1\nservices:\n" + mqtt + services + "twins:\n" + twins)
    return load_deployment(p, env=env or {})


def test_mqtt_password_without_tls_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"services\.mqtt: a password over an unencrypted") as e:
        load(tmp_path, "  mqtt: {url: 'mqtt://u:s3cret@broker:1883'}\n")
    assert "s3cret" not in str(e.value)
    with pytest.raises(ConfigError, match="allow_insecure"):
        load(tmp_path, "  mqtt: {url: 'mqtt://broker:1883', username: u, password: pw}\n")
    with pytest.raises(ConfigError, match="allow_insecure"):
        load(tmp_path, "", env={"MQTT_URL": "mqtt://u:pw@broker"})


def test_mqtt_password_with_tls_or_allowed(tmp_path: Path) -> None:
    dep = load(tmp_path, "  mqtt: {url: 'mqtts://u:pw@broker'}\n")
    assert dep.mqtt is not None and dep.mqtt.password == "pw" and dep.mqtt.tls is not None
    dep = load(tmp_path, "  mqtt: {url: 'mqtt://u:pw@broker', tls: {ca_file: ca.pem}}\n")
    assert dep.mqtt is not None and dep.mqtt.tls is not None
    dep = load(tmp_path, "  mqtt: {url: 'mqtt://u:pw@broker', allow_insecure: true}\n")
    assert dep.mqtt is not None and dep.mqtt.password == "pw"
    dep = load(tmp_path, "  mqtt: {url: 'mqtt://u@broker'}\n")  # no password: fine
    assert dep.mqtt is not None and dep.mqtt.username == "u"


def test_mqtt_bad_scheme_is_printed_redacted(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected mqtt://") as e:
        load(tmp_path, "  mqtt: {url: 'http://u:p@ss@broker:1883'}\n")
    assert "p@ss" not in str(e.value) and "http://u:***@broker:1883" in str(e.value)


OPCUA_TWIN = """\
  - id: wt-001
    type: wind_turbine
    protocol: opcua
    opcua: {endpoint: 'opc.tcp://plc:4840', username: op, password: pw%s}
"""


def test_opcua_password_without_security_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"twins\[0\]\.opcua: a password over an unencrypted"):
        load(tmp_path, "", OPCUA_TWIN % "")
    dep = load(tmp_path, "", OPCUA_TWIN % ", allow_insecure: true")
    assert dep.twins[0].opcua is not None and dep.twins[0].opcua.password == "pw"
    sec = ", security: {certificate: c.der, private_key: k.pem, trust: ca.pem}"
    dep = load(tmp_path, "", OPCUA_TWIN % sec)
    assert dep.twins[0].opcua is not None and dep.twins[0].opcua.security is not None


def test_database_password_needs_ssl(tmp_path: Path) -> None:
    db = "  database: {url: 'postgresql://twin:pw@db/plant'%s}\n"
    with pytest.raises(ConfigError, match=r"services\.database: a password over an unencrypted"):
        load(tmp_path, db % "")
    with pytest.raises(ConfigError, match="sslmode: verify-full"):
        load(tmp_path, db % ", sslmode: prefer")
    with pytest.raises(ConfigError, match="allow_insecure"):
        load(tmp_path, "", env={"DATABASE_URL": "host=db password=pw"})
    dep = load(tmp_path, db % ", sslmode: verify-full")
    assert dep.database_url == "postgresql://twin:pw@db/plant?sslmode=verify-full"
    dep = load(tmp_path, db % ", allow_insecure: true")
    assert dep.database_url == "postgresql://twin:pw@db/plant"
    dep = load(tmp_path, "  database: {url: 'postgresql://twin:pw@db/plant?sslmode=require'}\n")
    assert dep.database_url is not None
    dep = load(
        tmp_path, "", env={"DATABASE_URL": "postgresql://twin:pw@db/p", "PGSSLMODE": "require"}
    )
    assert dep.database_url == "postgresql://twin:pw@db/p"
    dep = load(tmp_path, "  database: {url: 'postgresql://twin@db/plant', sslmode: disable}\n")
    assert dep.database_url == "postgresql://twin@db/plant?sslmode=disable"


def test_sslmode_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sslmode"):
        load(tmp_path, "  database: {url: 'postgresql://db/plant', sslmode: always}\n")


def test_a_password_of_the_wrong_kind_is_not_printed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"services\.mqtt\.password = '\*\*\*'") as e:
        load(tmp_path, "  mqtt: {url: 'mqtts://broker', password: 98765432}\n")
    assert "98765432" not in str(e.value)
    with pytest.raises(ConfigError) as e:
        load(tmp_path, "  mqtt: {url: 'mqtts://broker', qos: 'mqtt://u:hunter22@h'}\n")
    assert "hunter22" not in str(e.value)


def test_db_command_refuses_a_password_without_ssl(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from twinflow.flows.cli import main

    monkeypatch.delenv("PGSSLMODE", raising=False)
    assert main(["db", "status", "--url", "postgresql://twin:hunter22@127.0.0.1:9/x"]) == 2
    err = capsys.readouterr().err
    assert "a password over an unencrypted connection" in err and "hunter22" not in err
