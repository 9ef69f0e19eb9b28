"""DTMI syntax (property-based) and payload validation against DTDL schemas."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinflow.operators.dtdl import is_dtmi, parse_dtmi, parse_text, validate_payload
from twinflow.operators.dtdl.model import (
    ArraySchema,
    EnumSchema,
    EnumValue,
    Field,
    MapSchema,
    ObjectSchema,
    PrimitiveSchema,
)

segment = st.from_regex(r"[A-Za-z]([A-Za-z0-9_]{0,10}[A-Za-z0-9])?", fullmatch=True)
version = st.integers(1, 999_999_999)


@given(st.lists(segment, min_size=1, max_size=5), version, st.none() | st.integers(1, 999_999))
def test_valid_dtmis_round_trip(path: list[str], major: int, minor: int | None) -> None:
    text = "dtmi:" + ":".join(path) + f";{major}" + (f".{minor}" if minor else "")
    d = parse_dtmi(text)
    assert str(d) == text and d.path == tuple(path) and not d.is_system


@given(st.lists(segment, min_size=1, max_size=3), st.sampled_from(["1", "_", "9x"]))
def test_segments_starting_with_a_digit_or_ending_with_underscore_are_rejected(
    path: list[str], bad: str
) -> None:
    broken = bad + path[0] if bad != "_" else path[0] + "_"
    assert not is_dtmi("dtmi:" + ":".join([broken, *path[1:]]) + ";1")


@pytest.mark.parametrize(
    "text",
    [
        "dtmi:a;0",
        "dtmi:a;01",
        "dtmi:a;1.0",
        "dtmi:a;1234567890",
        "dtmi:a;1.1234567",
        "DTMI:a;1",
        "dtmi:;1",
        "dtmi:a:;1",
        "dtmi:a;",
        "dtmi:_;1",
    ],
)
def test_invalid_dtmis(text: str) -> None:
    assert not is_dtmi(text)
    with pytest.raises(ValueError):
        parse_dtmi(text)


def test_versionless_and_system_dtmis() -> None:
    assert parse_dtmi("dtmi:com:example").major is None
    assert parse_dtmi("dtmi:foo_bar:_16:baz33:qux;12").is_system


D = PrimitiveSchema(name="double")


@pytest.mark.parametrize(
    ("schema", "good", "bad"),
    [
        (D, 1.5, float("inf")),
        (D, 3, True),
        (PrimitiveSchema(name="integer"), 7, 2**40),
        (PrimitiveSchema(name="long"), 2**40, 1.5),
        (PrimitiveSchema(name="float"), 1.0, 1e300),
        (PrimitiveSchema(name="boolean"), False, 0),
        (PrimitiveSchema(name="string"), "x", 1),
        (PrimitiveSchema(name="date"), "2024-05-01", "01/05/2024"),
        (PrimitiveSchema(name="dateTime"), "2024-05-01T10:00:00Z", "2024-05-01T10:00:00"),
        (PrimitiveSchema(name="time"), "10:00:00", "25:00"),
        (PrimitiveSchema(name="duration"), "PT1H30M", "P"),
        (PrimitiveSchema(name="point"), {"type": "Point", "coordinates": [1, 2]}, {"x": 1}),
        (
            EnumSchema(value_schema="integer", values=(EnumValue(name="on", value=1),)),
            1,
            2,
        ),
        (ArraySchema(element_schema=D), [1.0, 2.0], [1.0, "x"]),
        (MapSchema(key_name="k", value_name="v", value_schema=D), {"a": 1.0}, {"a": None}),
        (ObjectSchema(fields=(Field(name="f", schema=D),)), {"f": 1.0}, {}),
    ],
)
def test_validate_payload(schema, good, bad) -> None:  # type: ignore[no-untyped-def]
    assert validate_payload(schema, good) == []
    assert validate_payload(schema, bad) != []


def test_payload_problems_name_the_path() -> None:
    inner = ObjectSchema(fields=(Field(name="x", schema=D),))
    schema = ArraySchema(element_schema=inner)
    assert validate_payload(schema, [{"x": 1.0}, {"x": "no"}]) == [
        "$[1].x: expected a finite number (double), got str"
    ]


def test_telemetry_value_against_parsed_schema() -> None:
    m = parse_text(
        '{"@context": "dtmi:dtdl:context;3", "@id": "dtmi:ex:A;1", "@type": "Interface",'
        ' "contents": [{"@type": "Telemetry", "name": "t", "schema": "integer"}]}'
    )
    schema = m.telemetry("dtmi:ex:A;1", "t").schema
    assert validate_payload(schema, 3) == [] and validate_payload(schema, 3.5) != []
