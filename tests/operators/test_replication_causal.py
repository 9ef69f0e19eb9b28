"""Causal delivery: property-based over random interleavings, duplication and reordering
across three replicas, and the hold buffer's edges (timeout, overflow, duplicates, encoding).

The oracle is independent of the dependencies a write carries: when a replica makes a causal
write, the test records what that replica then showed for every other property of the twin
(its registers). No replica may ever show the write while it shows an older value of one of
those properties.
"""

from __future__ import annotations

import json
import random
from importlib import resources

import jsonschema
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinflow.operators.replication import PropertyKey, Stamp, TwinReplica, Write
from twinflow.operators.replication.compact import batch, decode_payload, encode_row
from twinflow.operators.replication.replica import Applied, converge
from twinflow.operators.replication.update import decode_update, encode_update, update_doc

T0 = 1_767_225_600_000
REPLICAS = ("central", "edge-a", "edge-b")
TWINS = ("pump-1", "pump-2")
CAUSAL = ("mode", "speed")
PROPS = (("desired", "mode"), ("desired", "speed"), ("desired", "limit"), ("reported", "speed"))


def is_causal(key: PropertyKey) -> bool:
    return key.kind == "desired" and key.name in CAUSAL


def replica(name: str, clocks: dict[str, int], hold_ms: int = 10**9) -> TwinReplica:
    return TwinReplica(name, now_ms=lambda: clocks[name], causal=is_causal, hold_ms=hold_ms)


write_step = st.tuples(
    st.just("write"), st.sampled_from(REPLICAS), st.sampled_from(TWINS),
    st.sampled_from(PROPS), st.integers(0, 9),
)  # fmt: skip
# deliver one of the writes made so far (chosen by index, any writer) to a replica: a
# random subset in a random order, and duplicates, like a relay through central would.
deliver_step = st.tuples(st.just("deliver"), st.integers(0, 10**6), st.sampled_from(REPLICAS))
time_step = st.tuples(st.just("time"), st.sampled_from(REPLICAS), st.integers(0, 3))
steps = st.lists(st.one_of(write_step, deliver_step, deliver_step, time_step), max_size=60)


def shows(r: TwinReplica) -> dict[PropertyKey, Stamp]:
    """What a replica exposes: each property's winning stamp."""
    return {k: w[0].stamp for k, w in r.registers().items()}


def check_causal(r: TwinReplica, seen: dict[Write, dict[PropertyKey, Stamp]]) -> None:
    """No exposed causal write at ``r`` shows while a property its writer had seen is older."""
    now = shows(r)
    for writes in r.registers().values():
        for w in writes:
            for key, stamp in seen.get(w, {}).items():
                assert key in now and now[key] >= stamp, (
                    f"{r.replica_id} exposes {w.key.name}@{w.stamp.text()} but shows "
                    f"{key.name} older than {stamp.text()}"
                )


@given(steps, st.randoms(use_true_random=False))
def test_no_replica_exposes_a_causal_write_before_its_dependencies_and_all_converge(
    schedule: list[tuple[object, ...]], rnd: random.Random
) -> None:
    clocks = {r: T0 for r in REPLICAS}
    replicas = {r: replica(r, clocks) for r in REPLICAS}
    made: list[Write] = []
    seen: dict[Write, dict[PropertyKey, Stamp]] = {}
    for step in schedule:
        if step[0] == "write":
            _, name, twin, (kind, prop), value = step
            r = replicas[str(name)]
            w = r.write(str(twin), kind, prop, value)  # type: ignore[has-type]
            made.append(w)
            if is_causal(w.key):
                seen[w] = {
                    k: s for k, s in shows(r).items()
                    if k.twin_id == w.key.twin_id and k.kind == w.key.kind and k != w.key
                }  # fmt: skip
                assert {n for n, _ in w.deps} == {k.name for k in seen[w]}
            else:
                assert not w.deps
        elif step[0] == "deliver" and made:
            _, i, dst = step
            w = made[int(i) % len(made)]  # type: ignore[call-overload]
            outcome = replicas[str(dst)].apply(w)
            assert outcome is not Applied.HELD or is_causal(w.key)  # eventual: never held
        elif step[0] == "time":
            _, name, ms = step
            clocks[str(name)] += int(ms)  # type: ignore[call-overload]
        for r in replicas.values():
            check_causal(r, seen)
    # then every write reaches every replica, in any order, some twice
    for r in replicas.values():
        delivery = made + rnd.sample(made, k=len(made) // 2)
        rnd.shuffle(delivery)
        for w in delivery:
            r.apply(w)
            check_causal(r, seen)
        assert r.held() == [] and all(why == "ready" for _, _, why in r.take_released())
    reference = TwinReplica("reference", now_ms=lambda: T0 + 10_000)
    reference.apply_many(sorted(made, key=Write.order))
    assert converge([*replicas.values(), reference])


def test_a_causal_write_waits_for_its_dependency_and_is_then_released() -> None:
    clocks = {"central": T0, "edge-a": T0}
    central, edge = replica("central", clocks), replica("edge-a", clocks)
    mode = central.write("pump-1", "desired", "mode", "manual")
    clocks["central"] += 1
    speed = central.write("pump-1", "desired", "speed", 900)
    limit = central.write("pump-1", "desired", "limit", 5)  # eventual: no deps, not held
    assert speed.deps == (("mode", mode.stamp),) and limit.deps == ()
    assert edge.apply(speed) is Applied.HELD
    assert edge.apply(speed) is Applied.DUPLICATE
    assert edge.apply(limit) is Applied.WON
    [held] = edge.held()
    assert held.reason() == f"desired/mode@{mode.stamp.text()}"
    assert edge.twin("pump-1") == {"desired": {"limit": 5}}
    assert edge.apply(mode) is Applied.WON
    assert edge.take_released() == [(speed, Applied.WON, "ready")]
    assert edge.twin("pump-1") == {"desired": {"mode": "manual", "speed": 900, "limit": 5}}
    assert edge.held() == [] and edge.take_released() == []


def test_a_newer_value_of_the_dependency_satisfies_it() -> None:
    clocks = {"central": T0, "edge-a": T0, "edge-b": T0}
    central, a, b = (replica(n, clocks) for n in ("central", "edge-a", "edge-b"))
    old = central.write("pump-1", "desired", "mode", "manual")
    speed = central.write("pump-1", "desired", "speed", 900)
    clocks["edge-a"] += 5
    a.apply(old)
    newer = a.write("pump-1", "desired", "mode", "auto")
    assert b.apply(newer) is Applied.WON and b.apply(speed) is Applied.WON  # not held


def test_a_held_write_times_out_or_overflows_and_is_exposed_anyway() -> None:
    clocks = {"central": T0, "edge-a": T0}
    central = replica("central", clocks)
    central.write("pump-1", "desired", "mode", "manual")
    speeds = [central.write("pump-1", "desired", "speed", v) for v in (1, 2, 3)]
    edge = TwinReplica("edge-a", now_ms=lambda: clocks["edge-a"], hold_ms=1_000, max_held=2)
    assert [edge.apply(w) for w in speeds] == [Applied.HELD] * 3
    assert edge.take_released() == [(speeds[0], Applied.WON, "overflow")]
    clocks["edge-a"] += 999
    assert edge.take_released() == []
    clocks["edge-a"] += 1
    got = edge.take_released()
    assert {(w.value, why) for w, _, why in got} == {(2, "timeout"), (3, "timeout")}
    assert edge.get("pump-1", "desired", "speed").value == 3  # type: ignore[union-attr]
    assert edge.held() == []


def test_held_writes_are_part_of_the_state_sent_and_saved() -> None:
    clocks = {"central": T0, "edge-a": T0}
    central, edge = replica("central", clocks), replica("edge-a", clocks)
    mode = central.write("pump-1", "desired", "mode", "manual")
    speed = central.write("pump-1", "desired", "speed", 900)
    edge.apply(speed)
    assert list(edge.writes()) == [speed]  # held: a replica that loads it holds it again
    again = replica("edge-b", {"edge-b": T0, **clocks})
    assert again.apply_many(list(edge.writes())) == [Applied.HELD]
    assert again.apply_many([mode]) == [Applied.WON] and again.take_released()[0][0] == speed


def test_deps_round_trip_in_both_documents_and_follow_the_schemas() -> None:
    clocks = {"central": T0}
    central = replica("central", clocks)
    central.write("pump-1", "desired", "mode", "manual")
    central.write("pump-1", "desired", "limit", 3)
    speed = central.write("pump-1", "desired", "speed", 900)
    assert [n for n, _ in speed.deps] == ["limit", "mode"]
    plain = central.write("pump-1", "desired", "limit", 4)
    schemas = resources.files("twinflow.operators").joinpath("schemas")
    v1 = json.loads(schemas.joinpath("twin_update.v1.json").read_text())
    v2 = json.loads(schemas.joinpath("twin_updates.v2.json").read_text())
    assert decode_update(encode_update(speed)) == speed
    jsonschema.validate(update_doc(speed), v1)
    assert "deps" not in update_doc(plain)  # eventual documents are unchanged
    doc = batch([encode_row(speed), encode_row(plain)])
    jsonschema.validate(orjson.loads(doc), v2)
    assert decode_payload(doc) == [speed, plain]
    assert len(orjson.loads(encode_row(plain))) == 10 and len(orjson.loads(encode_row(speed))) == 11


@pytest.mark.parametrize(
    "deps",
    [[], [["speed", T0, 0, "c"]], [["mode", T0 + 5, 0, "c"]], [["mode", T0, 0, ""]], "x"],
)
def test_bad_deps_in_a_v1_document_are_refused(deps: object) -> None:
    from twinflow.operators.replication import UpdateError

    w = Write.make(PropertyKey("pump-1", "desired", "speed"), 1, Stamp(T0 + 1, 0, "c"), None)
    doc = update_doc(w) | {"deps": deps}
    with pytest.raises(UpdateError, match=r"deps|dependency"):
        decode_update(orjson.dumps(doc))


def test_a_held_write_makes_its_property_pending_with_lag_and_what_it_waits_for() -> None:
    from twinflow.operators.replication.status import SyncState, SyncTracker

    clocks = {"central": T0, "edge-a": T0}
    central, edge = replica("central", clocks), replica("edge-a", clocks)
    mode = central.write("pump-1", "desired", "mode", "manual")
    speed = central.write("pump-1", "desired", "speed", 900)
    edge.apply(speed)
    tracker = SyncTracker("edge-a")
    [s] = tracker.status(edge, now_ms=T0 + 250)
    assert (s.prop, s.state, s.consistency, s.lag_ms) == ("speed", SyncState.PENDING, "causal", 250)
    assert s.waiting_for == f"desired/mode@{mode.stamp.text()}"
    schema = resources.files("twinflow.operators").joinpath("schemas/replication_sync.v1.json")
    jsonschema.validate(s.to_json(), json.loads(schema.read_text()))
    edge.apply(mode)
    for w, outcome, _ in edge.take_released():
        assert outcome is Applied.WON
        tracker.received(w, T0 + 300, "causal")
    tracker.received(mode, T0 + 300, "causal")
    states = {x.prop: (x.state, x.waiting_for) for x in tracker.status(edge, now_ms=T0 + 400)}
    assert states == {"mode": (SyncState.IN_SYNC, None), "speed": (SyncState.IN_SYNC, None)}
    assert "waiting_for" not in tracker.status(edge, now_ms=T0 + 400)[0].to_json()
