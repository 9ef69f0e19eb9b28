"""One redaction for every URL shape (twinflow.core.redact)."""

from __future__ import annotations

import string

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from twinflow.core.redact import HIDDEN, redact

SCHEMES = ["postgresql", "postgres", "mqtt", "mqtts", "tcp", "ssl", "opc.tcp", "ftp", "bad"]
# every printable character but whitespace: raw '@', ':', '/', '?', '#', '%' included
PASSWORD = st.text(
    alphabet=string.ascii_letters + string.digits + string.punctuation, min_size=4, max_size=30
)
USER = st.text(alphabet=string.ascii_letters + string.digits + "._-", max_size=12)
HOST = st.sampled_from(["db", "127.0.0.1", "broker.example.com", "[::1]", "plc-1"])
TAIL = st.sampled_from(["", ":5432", ":1883/", "/plant", ":5432/plant?sslmode=require", "/a#f"])


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://twin:s3cret@db:5432/plant", "postgresql://twin:***@db:5432/plant"),
        ("postgresql://:s3cret@db/plant", "postgresql://:***@db/plant"),
        ("postgresql://twin:p@ss@db/plant", "postgresql://twin:***@db/plant"),
        ("mqtt://u:a/b@broker", "mqtt://u:***@broker"),
        ("ftp://u:pw@broker:1883", "ftp://u:***@broker:1883"),
        ("postgresql://twin@db/plant", "postgresql://twin@db/plant"),
        (
            "postgresql://db/plant?password=x&sslmode=require",
            "postgresql://db/plant?password=***&sslmode=require",
        ),
        ("host=db password=s3cret user=twin", "host=db password=*** user=twin"),
        ("host=db password = 'a \\' b' user=twin", "host=db password = *** user=twin"),
        ("sslpassword=k", "sslpassword=***"),
        ("url = 'mqtt://u:pw@h:1883' is wrong", "url = 'mqtt://u:***@h:1883' is wrong"),
        ("opc.tcp://plc:4840", "opc.tcp://plc:4840"),
    ],
)
def test_shapes(url: str, expected: str) -> None:
    assert redact(url) == expected


@given(st.sampled_from(SCHEMES), USER, PASSWORD, HOST, TAIL)
def test_url_password_never_printed(
    scheme: str, user: str, password: str, host: str, tail: str
) -> None:
    url = f"{scheme}://{user}:{password}@{host}{tail}"
    assume(password not in f"{scheme}://{user}:@{host}{tail}{HIDDEN}")
    out = redact(url)
    assert password not in out
    assert out.startswith(f"{scheme}://{user}:{HIDDEN}@")


@given(st.sampled_from(SCHEMES), USER, PASSWORD, HOST, TAIL)
def test_url_in_a_message(scheme: str, user: str, password: str, host: str, tail: str) -> None:
    url = f"{scheme}://{user}:{password}@{host}{tail}"
    assume(password not in f"cannot reach {scheme}://{user}:@{host}{tail}: refused{HIDDEN}")
    assert password not in redact(f"cannot reach {url}: refused")


@given(PASSWORD.filter(lambda p: "'" not in p and "\\" not in p), st.booleans())
def test_keyword_password_never_printed(password: str, quoted: bool) -> None:
    value = f"'{password} x'" if quoted else password
    dsn = f"host=db user=twin password={value} dbname=plant"
    assume(password not in "host=db user=twin password= dbname=plant" + HIDDEN)
    out = redact(dsn)
    assert password not in out
    if not quoted and not any(c in password for c in "&;"):
        assert out == f"host=db user=twin password={HIDDEN} dbname=plant"


@given(USER, HOST, TAIL)
def test_no_password_unchanged(user: str, host: str, tail: str) -> None:
    url = f"postgresql://{user}@{host}{tail}" if user else f"postgresql://{host}{tail}"
    assert redact(url) == url
