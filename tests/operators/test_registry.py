"""The twin registry: containment and relationship queries, and every consistency error."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinflow.connectors.simulator.types import MOTOR, PUMP, WIND_TURBINE
from twinflow.core.errors import ConfigError, TwinflowError
from twinflow.operators.catalog import RelationshipSpec
from twinflow.operators.registry import (
    COMPONENT_OF,
    PART_OF,
    RegistryEntry,
    RegistryError,
    TwinRegistry,
    UnknownTwinError,
)

E = RegistryEntry.make


def plant() -> TwinRegistry:
    return TwinRegistry(
        [
            E("site1", "site"),
            E("line-a", "line", part_of="site1"),
            E("skid-1", "pump_skid", part_of="line-a", model_id="dtmi:plant:PumpSkid;1"),
            E(
                "pump-002",
                "pump",
                protocol="opcua",
                part_of="skid-1",
                relationships={"drivenBy": ["motor-003"], "feeds": "wt-001"},
            ),
            E("motor-003", "motor", protocol="modbus", component_of="skid-1"),
            E("wt-001", "wind_turbine", protocol="mqtt", part_of="site1"),
        ],
        source="plant.yaml",
    )


def test_containment_queries() -> None:
    reg = plant()
    assert reg.parent("motor-003") == "skid-1" and reg.parent("site1") is None
    assert reg.get("motor-003").containment == COMPONENT_OF
    assert reg.get("pump-002").containment == PART_OF
    assert reg.children("site1") == ("line-a", "wt-001")
    assert reg.children("skid-1") == ("pump-002", "motor-003")
    assert reg.ancestors("motor-003") == ("skid-1", "line-a", "site1")
    assert reg.descendants("site1") == ("line-a", "skid-1", "pump-002", "motor-003", "wt-001")
    assert reg.descendants("pump-002") == ()
    assert reg.twins_under("line-a") == ("pump-002", "motor-003")
    assert reg.twins_under("wt-001") == ("wt-001",)
    assert {reg.site_of(e.id) for e in reg} == {"site1"}


def test_named_relationships_both_ways() -> None:
    reg = plant()
    assert reg.related("pump-002", "drivenBy") == ("motor-003",)
    assert reg.related("pump-002", "feeds") == ("wt-001",)
    assert reg.related("motor-003", "drivenBy", inverse=True) == ("pump-002",)
    assert reg.related("motor-003", "feeds") == ()
    assert reg.related("skid-1", PART_OF, inverse=True) == ("pump-002",)
    assert set(reg.relationship_names("pump-002")) == {"drivenBy", "feeds", PART_OF}


def test_twins_assets_and_model_ids() -> None:
    reg = plant()
    assert [e.id for e in reg.twins()] == ["pump-002", "motor-003", "wt-001"]
    assert [e.id for e in reg.assets()] == ["site1", "line-a", "skid-1"]
    assert reg.get("skid-1").model_id == "dtmi:plant:PumpSkid;1"
    assert len(reg) == 6 and "pump-002" in reg and "pump-9" not in reg
    assert pickle.loads(pickle.dumps(reg)).get("pump-002") == reg.get("pump-002")


def test_site_of_without_a_site_entry_is_the_root() -> None:
    reg = TwinRegistry([E("plant", "area"), E("m1", "motor", protocol="mqtt", part_of="plant")])
    assert reg.site_of("m1") == "plant"


def test_an_unknown_id_is_named_with_a_suggestion() -> None:
    with pytest.raises(UnknownTwinError, match=r"no twin or asset 'pump-02'.*'pump-002'") as exc:
        plant().children("pump-02")
    assert isinstance(exc.value, KeyError) and isinstance(exc.value, TwinflowError)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (
            [E("s", "site"), E("m1", "motor", protocol="mqtt", part_of="skid-9")],
            "registry: m1.part_of: 'skid-9' is not a declared twin or asset",
        ),
        (
            [E("s", "site"), E("skid-1", "skid"), E("m1", "motor", part_of="skid-2")],
            "did you mean 'skid-1'?",
        ),
        (
            [E("s", "site"), E("m1", "motor", relationships={"feeds": ["nowhere"]})],
            "m1.relationships.feeds: 'nowhere' is not a declared twin or asset",
        ),
        (
            [E("s", "site"), E("m1", "motor", where="twins[0]"), E("m1", "pump", where="twins[3]")],
            "twins[3].id: id 'm1' is declared twice (also at twins[0])",
        ),
        (
            [E("s", "site"), E("k", "skid"), E("m1", "motor", part_of="s", component_of="k")],
            "m1.part_of: 'm1' has more than one parent (part_of 's', component_of 'k')",
        ),
        (
            [E("s", "site"), E("m1", "motor", part_of="s", relationships={PART_OF: ["s"]})],
            "has more than one parent",
        ),
        (
            [E("a", "area", part_of="b"), E("b", "area", part_of="c"), E("c", "area", part_of="a")],
            "a.part_of: containment cycle a -> b -> c -> a",
        ),
        ([E("a", "area", part_of="a")], "'a' cannot relate to itself"),
        ([E("a", "area", relationships={"1bad name": ["a"]})], "relationship name '1bad name'"),
        ([E("a", "area", model_id="pump;1")], "'pump;1' is not a DTMI"),
        ([E("", "area")], "an id is required"),
        ([E("a", "")], "'a' needs a type"),
    ],
)
def test_inconsistent_entries_are_refused(entries: list[RegistryEntry], message: str) -> None:
    with pytest.raises(RegistryError) as exc:
        TwinRegistry(entries)
    assert message in str(exc.value)
    assert isinstance(exc.value, ConfigError)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(RegistryError) as exc:
        TwinRegistry(
            [
                E("a", "area", part_of="b", where="assets[0]"),
                E("b", "area", part_of="a", where="assets[1]"),
                E("m", "motor", part_of="zz", where="twins[0]"),
            ],
            source="plant.yaml",
        )
    lines = str(exc.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("plant.yaml: twins[0].part_of: 'zz' is not a declared")
    assert lines[1].startswith("plant.yaml: assets[0].part_of: containment cycle a -> b -> a")


@given(st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=30))
def test_a_random_tree_answers_consistently(picks: list[int]) -> None:
    """Node i hangs under a random earlier node: ancestors and descendants mirror each other."""
    entries = [E("n0", "site")]
    for i, p in enumerate(picks, start=1):
        entries.append(E(f"n{i}", "area", part_of=f"n{p % i}"))
    reg = TwinRegistry(entries)
    for e in reg:
        for a in reg.ancestors(e.id):
            assert e.id in reg.descendants(a)
        assert len(reg.descendants(e.id)) == len(set(reg.descendants(e.id)))
        assert reg.site_of(e.id) == "n0"
    assert len(reg.descendants("n0")) == len(picks)


def test_a_flat_site_holds_every_twin() -> None:
    reg = TwinRegistry.flat("site1", {"wt-001": "wind_turbine", "pump-002": "pump"})
    assert reg.children("site1") == ("wt-001", "pump-002")
    assert reg.get("pump-002").is_twin and reg.site_of("pump-002") == "site1"


# -- free relationships against the DTDL models ----------------------------------------------

P, M, WT = PUMP.model_id, MOTOR.model_id, WIND_TURBINE.model_id


def modelled(**pump_rels: list[str]) -> list[RegistryEntry]:
    """A skid with a pump and two motors, the twins carrying their DTDL model ids."""
    return [
        E("site1", "site", where="site"),
        E("skid-1", "pump_skid", part_of="site1", where="assets[0]"),
        E(
            "pump-1",
            "pump",
            protocol="opcua",
            model_id=P,
            part_of="skid-1",
            relationships=pump_rels,
            where="twins[0]",
        ),
        E(
            "motor-1",
            "motor",
            protocol="modbus",
            model_id=M,
            component_of="skid-1",
            relationships={"drives": ["pump-1"]},
            where="twins[1]",
        ),
        E("motor-2", "motor", protocol="modbus", model_id=M, where="twins[2]"),
        E("wt-1", "wind_turbine", protocol="mqtt", model_id=WT, where="twins[3]"),
    ]


def refused(entries: list[RegistryEntry], **kw: object) -> list[str]:
    with pytest.raises(RegistryError) as exc:
        TwinRegistry(entries, source="plant.yaml", **kw)  # type: ignore[arg-type]
    return str(exc.value).splitlines()


def test_declared_relationships_pass_and_answer_queries() -> None:
    reg = TwinRegistry(modelled(drivenBy=["motor-1"], feeds=["skid-1", "wt-1"]))
    assert reg.related("pump-1", "drivenBy") == ("motor-1",)
    assert reg.related("pump-1", "drives", inverse=True) == ("motor-1",)
    assert reg.related("pump-1", "feeds") == ("skid-1", "wt-1")  # feeds: any target
    assert reg.models[P] == PUMP.relationships
    assert pickle.loads(pickle.dumps(reg)).models == reg.models


def test_an_undeclared_relationship_names_the_model_and_what_to_do() -> None:
    lines = refused(modelled(driven_by=["motor-1"]))
    assert lines == [
        f"plant.yaml: twins[0].relationships.driven_by: the model of 'pump-1', {P}, declares "
        "no Relationship 'driven_by' (it declares: drivenBy, feeds); did you mean 'drivenBy'? "
        "use a declared one, or add a Relationship named 'driven_by' to the model"
    ]
    # a model that declares no Relationship at all
    entries = [
        *modelled(),
        E(
            "wt-2",
            "wind_turbine",
            protocol="mqtt",
            model_id=WT,
            relationships={"feeds": ["pump-1"]},
            where="twins[4]",
        ),
    ]
    (line,) = refused(entries)
    assert line.startswith(f"plant.yaml: twins[4].relationships.feeds: the model of 'wt-2', {WT}")
    assert "(it declares: none)" in line


def test_a_target_of_the_wrong_model_is_refused() -> None:
    (line,) = refused(modelled(drivenBy=["wt-1"]))
    assert line == (
        f"plant.yaml: twins[0].relationships.drivenBy: 'wt-1' has model {WT}, but Relationship "
        f"'drivenBy' of {P} targets {M}; name a twin of {M} or fix the id"
    )
    (line,) = refused(modelled(drivenBy=["skid-1"]))
    assert "twins[0].relationships.drivenBy: 'skid-1' has no DTDL model" in line


def test_more_targets_than_max_multiplicity_are_refused() -> None:
    (line,) = refused(modelled(drivenBy=["motor-1", "motor-2"]))
    assert line == (
        "plant.yaml: twins[0].relationships.drivenBy: 'pump-1' names 2 targets "
        f"(motor-1, motor-2) but Relationship 'drivenBy' of {P} allows at most 1; keep at most "
        "1 or raise maxMultiplicity in the model"
    )
    # no maxMultiplicity: any number
    entries = modelled()
    entries.append(E("pump-2", "pump", protocol="opcua", model_id=P, where="twins[4]"))
    entries.append(
        E(
            "m9",
            "motor",
            protocol="modbus",
            model_id=M,
            relationships={"drives": ["pump-1", "pump-2"]},
        )
    )
    assert TwinRegistry(entries).related("m9", "drives") == ("pump-1", "pump-2")


def test_model_problems_are_reported_with_the_others_at_once() -> None:
    lines = refused(modelled(drivenBy=["motor-1", "wt-1"], feed=["wt-1"], feeds=["nowhere"]))
    assert len(lines) == 4
    assert "twins[0].relationships.feeds: 'nowhere' is not a declared twin or asset" in lines[0]
    assert "twins[0].relationships.drivenBy: 'pump-1' names 2 targets" in lines[1]
    assert "twins[0].relationships.drivenBy: 'wt-1' has model" in lines[2]
    assert "twins[0].relationships.feed: the model of 'pump-1'" in lines[3]


def test_containment_and_bad_names_are_not_checked_against_the_model() -> None:
    # part_of/component_of are twinflow's own: no model declares them
    reg = TwinRegistry(modelled())
    assert reg.parent("pump-1") == "skid-1" and reg.parent("motor-1") == "skid-1"
    # an invalid name is reported once, for its spelling
    (line,) = refused(modelled(**{"1bad": ["motor-1"]}))
    assert "relationship name '1bad'" in line


def test_entries_without_a_dtdl_model_keep_free_relationships_unchecked() -> None:
    entries = [
        *modelled(),
        E("line-a", "line", relationships={"anything": ["pump-1", "motor-1", "motor-2"]}),
        E(
            "skid-2",
            "pump_skid",
            model_id="dtmi:plant:PumpSkid;1",
            relationships={"supplies": ["wt-1"]},
        ),
        E("pump-x", "pump", protocol="opcua", relationships={"whatever": ["wt-1"]}),
    ]
    reg = TwinRegistry(entries)
    assert reg.related("line-a", "anything") == ("pump-1", "motor-1", "motor-2")
    assert reg.related("skid-2", "supplies") == ("wt-1",)
    assert reg.related("pump-x", "whatever") == ("wt-1",)


def test_a_twin_of_an_unknown_model_cannot_have_relationships() -> None:
    other = "dtmi:plant:Valve;1"
    entries = [
        *modelled(),
        E(
            "v1",
            "valve",
            protocol="mqtt",
            model_id=other,
            relationships={"feeds": ["pump-1"]},
            where="twins[4]",
        ),
    ]
    (line,) = refused(entries)
    assert line.startswith(
        f"plant.yaml: twins[4].relationships.feeds: 'v1' has model {other}, which the registry "
        "does not know"
    )
    assert M in line and "give it a twin type with a DTDL model" in line
    # without free relationships there is nothing to check
    entries[-1] = E("v1", "valve", protocol="mqtt", model_id=other)
    assert "v1" in TwinRegistry(entries)


def test_models_can_be_given() -> None:
    skid = "dtmi:plant:PumpSkid;1"
    models = {skid: [RelationshipSpec("supplies", P, 1)]}
    entries = [
        E("pump-1", "pump", protocol="opcua", model_id=P),
        E("skid-2", "pump_skid", model_id=skid, relationships={"supplies": ["pump-1"]}),
    ]
    assert TwinRegistry(entries, models=models).related("skid-2", "supplies") == ("pump-1",)
    entries[1] = E("skid-2", "pump_skid", model_id=skid, relationships={"feeds": ["pump-1"]})
    (line,) = refused(entries, models=models)
    assert f"skid-2.relationships.feeds: the model of 'skid-2', {skid}, declares" in line
    # the catalogue's models are not used when others are given: pump-1's model is unknown
    entries[1] = E("pump-1b", "pump", protocol="opcua", model_id=P, relationships={"x": ["pump-1"]})
    (line,) = refused(entries, models=models)
    assert "which the registry does not know" in line
