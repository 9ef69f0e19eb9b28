"""Hybrid logical clocks, registers and the twin_update.v1 document (no broker needed)."""

from __future__ import annotations

import json
from importlib import resources

import jsonschema
import orjson
import pytest

from twinflow.operators.replication import (
    Applied,
    ClockDriftError,
    HybridClock,
    PropertyKey,
    Stamp,
    TwinReplica,
    UpdateError,
    Write,
    decode_update,
    encode_update,
)
from twinflow.operators.replication.update import update_doc

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in ms


class FakeTime:
    """A settable physical clock for the HLC (ms)."""

    def __init__(self, ms: int = T0) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def schema() -> dict[str, object]:
    text = resources.files("twinflow.operators").joinpath("schemas/twin_update.v1.json")
    return dict(json.loads(text.read_text()))


# -- hybrid logical clock ------------------------------------------------------------------


def test_tick_follows_physical_time_and_counts_when_it_stalls() -> None:
    t = FakeTime()
    clock = HybridClock("edge-a", now_ms=t)
    assert clock.tick() == Stamp(T0, 0, "edge-a")
    assert clock.tick() == Stamp(T0, 1, "edge-a")
    t.ms -= 500  # the machine's clock steps back: stamps still grow
    assert clock.tick() == Stamp(T0, 2, "edge-a")
    t.ms = T0 + 10
    assert clock.tick() == Stamp(T0 + 10, 0, "edge-a")


def test_observe_makes_later_local_stamps_larger_than_the_received_one() -> None:
    t = FakeTime()
    clock = HybridClock("edge-a", now_ms=t)
    clock.tick()
    remote = Stamp(T0 + 2_000, 7, "central")  # central's clock is 2 s ahead
    after = clock.observe(remote)
    assert after > remote
    assert clock.tick() > after
    # equal walls on both sides: the counter goes past both
    clock2 = HybridClock("b", now_ms=FakeTime(T0))
    clock2.tick()
    clock2.tick()  # (T0, 1)
    assert clock2.observe(Stamp(T0, 5, "c")) == Stamp(T0, 6, "b")
    assert clock2.observe(Stamp(T0, 2, "c")) == Stamp(T0, 7, "b")


def test_a_stamp_beyond_the_drift_bound_is_refused_with_the_sender_named() -> None:
    t = FakeTime()
    replica = TwinReplica("central", now_ms=t, max_drift_ms=1_000)
    before = replica.clock.last
    bad = Write.make(
        PropertyKey("pump-1", "desired", "speed"), 1, Stamp(T0 + 5_000, 0, "edge-b"), None
    )
    with pytest.raises(ClockDriftError, match=r"edge-b.*5000 ms ahead.*1000 ms"):
        replica.apply(bad)
    assert replica.values() == {}  # nothing applied
    assert replica.clock.last == before
    t.ms += 4_500  # once the local clock catches up, the same write is accepted
    assert replica.apply(bad) is Applied.WON


def test_invalid_clock_settings_and_stamps_are_refused() -> None:
    with pytest.raises(ValueError, match="replica id"):
        HybridClock("")
    with pytest.raises(ValueError, match="max_drift_ms"):
        HybridClock("a", max_drift_ms=0)
    with pytest.raises(ValueError, match="logical"):
        Stamp(T0, -1, "a")
    with pytest.raises(ValueError, match="kind 'wanted'"):
        PropertyKey("pump-1", "wanted", "speed")
    with pytest.raises(ValueError, match="keep"):
        TwinReplica("a", keep=0)
    with pytest.raises(ValueError, match="must be JSON"):
        TwinReplica("a").write("pump-1", "desired", "speed", object())


# -- registers and conflicts ---------------------------------------------------------------


def test_concurrent_desired_changes_resolve_by_stamp_and_the_loser_is_a_conflict() -> None:
    edge = TwinReplica("edge-a", now_ms=FakeTime(T0 + 5))
    central = TwinReplica("central", now_ms=FakeTime(T0))
    w_edge = edge.write("pump-1", "desired", "speed_rpm", 1500)  # later wall: wins
    w_central = central.write("pump-1", "desired", "speed_rpm", 1400)
    assert central.apply(w_edge) is Applied.WON
    assert edge.apply(w_central) is Applied.LOST
    assert edge.values() == central.values() == {("pump-1", "desired", "speed_rpm"): 1500}
    for r in (edge, central):
        [c] = r.conflicts("pump-1")
        assert (c.winner, c.loser) == (w_edge, w_central)
    assert central.apply(w_edge) is Applied.DUPLICATE


def test_equal_walls_break_ties_by_replica_id() -> None:
    a = TwinReplica("edge-a", now_ms=FakeTime())
    b = TwinReplica("edge-b", now_ms=FakeTime())
    wa = a.write("t", "desired", "p", "from a")
    wb = b.write("t", "desired", "p", "from b")
    a.apply(wb)
    b.apply(wa)
    assert a.get("t", "desired", "p") == b.get("t", "desired", "p") == wb


def test_a_write_that_saw_the_previous_one_is_no_conflict() -> None:
    t = FakeTime()
    edge, central = TwinReplica("edge-a", now_ms=t), TwinReplica("central", now_ms=t)
    first = edge.write("pump-1", "desired", "speed_rpm", 1500)
    central.apply(first)
    t.ms += 1
    second = central.write("pump-1", "desired", "speed_rpm", 1600)  # overrides knowingly
    assert second.base == first.stamp
    edge.apply(second)
    assert edge.conflicts() == central.conflicts() == []
    assert edge.twin("pump-1") == {"desired": {"speed_rpm": 1600}}


def test_history_is_bounded_and_old_writes_become_stale() -> None:
    t = FakeTime()
    r = TwinReplica("edge-a", keep=3, now_ms=t)
    writes = []
    for i in range(10):
        t.ms += 1
        writes.append(r.write("pump-1", "reported", "speed", i))
    assert len(r.registers()[PropertyKey("pump-1", "reported", "speed")]) == 3
    other = TwinReplica("central", keep=3, now_ms=t)
    for w in reversed(writes):
        other.apply(w)
    assert other.apply(writes[0]) is Applied.STALE
    assert other.registers() == r.registers()
    assert r.drop_twin("pump-1") == 1 and r.values() == {}


# -- the update document -------------------------------------------------------------------


def test_update_documents_follow_the_schema_and_round_trip() -> None:
    t = FakeTime()
    r = TwinReplica("edge-a", now_ms=t)
    first = r.write("pump-1", "metadata", "location", {"site": "north", "bay": [1, 2]})
    t.ms += 3
    second = r.write("pump-1", "metadata", "location", None)
    for w in (first, second):
        doc = update_doc(w)
        jsonschema.validate(doc, schema())
        assert decode_update(encode_update(w)) == w
    assert update_doc(second)["base"] == {"wall_ms": T0, "logical": 0, "replica": "edge-a"}
    assert update_doc(first)["update_id"] == update_doc(first)["update_id"]
    assert update_doc(first)["update_id"] != update_doc(second)["update_id"]


def good_doc() -> dict[str, object]:
    w = Write.make(
        PropertyKey("pump-1", "desired", "speed_rpm"), 1500, Stamp(T0, 1, "edge-a"), None
    )
    return update_doc(w)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema": "twinflow.alert"}, "is not 'twinflow.twin_update'"),
        ({"version": 2}, "version 2"),
        ({"kind": "wanted"}, "kind 'wanted'"),
        ({"twin_id": ""}, "'twin_id' must be a non-empty string"),
        ({"stamp": {"wall_ms": -1, "logical": 0, "replica": "a"}}, r"stamp.wall_ms must be"),
        ({"stamp": {"wall_ms": T0, "logical": 0, "replica": "a", "x": 1}}, "unknown field"),
        ({"base": {"wall_ms": T0 + 9, "logical": 0, "replica": "a"}}, "is not older than"),
        ({"update_id": "00000000-0000-0000-0000-000000000000"}, "does not match"),
        (
            {"value": 1600},
            None,
        ),  # a changed value keeps the id (the id names the write, not the value)
        ({"extra": 1}, "unknown field"),
    ],
)
def test_bad_update_documents_are_refused_with_the_field_named(
    change: dict[str, object], message: str | None
) -> None:
    doc = {**good_doc(), **change}
    if message is None:
        assert decode_update(orjson.dumps(doc)).value == 1600
        return
    with pytest.raises(UpdateError, match=message):
        decode_update(orjson.dumps(doc))
    if "does not match" in message or "not older" in message:
        jsonschema.validate(doc, schema())  # rules a JSON Schema cannot express
    else:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(doc, schema())


def test_missing_value_and_non_json_are_refused() -> None:
    doc = good_doc()
    del doc["value"]
    with pytest.raises(UpdateError, match="'value' is missing"):
        decode_update(orjson.dumps(doc))
    with pytest.raises(UpdateError, match="not JSON"):
        decode_update(b"{nope")
    with pytest.raises(UpdateError, match="expected a JSON object"):
        decode_update(b"[1]")


def test_update_ids_are_the_uuid5_of_property_and_stamp() -> None:
    import uuid

    from twinflow.operators.replication.update import UPDATE_NAMESPACE, update_id

    w = good_doc()
    stamp = w["stamp"]
    assert isinstance(stamp, dict)
    name = f"pump-1\x1fdesired\x1fspeed_rpm\x1f{stamp['wall_ms']}.{stamp['logical']}@edge-a"
    assert w["update_id"] == str(uuid.uuid5(UPDATE_NAMESPACE, name))
    assert update_id(decode_update(orjson.dumps(w))) == w["update_id"]


def test_a_merge_with_a_drifted_replica_changes_nothing() -> None:
    t = FakeTime()
    central = TwinReplica("central", now_ms=t, max_drift_ms=1_000)
    central.write("pump-1", "desired", "speed", 1)
    fast = TwinReplica("edge-f", now_ms=FakeTime(T0 + 60_000))
    fast.write("pump-1", "desired", "speed", 2)
    fast.write("pump-2", "desired", "speed", 3)
    before = central.registers()
    with pytest.raises(ClockDriftError, match="edge-f"):
        central.merge(fast)
    assert central.registers() == before


def test_a_batch_decodes_each_line_and_refuses_only_the_bad_ones() -> None:
    from twinflow.operators.replication.update import decode_updates

    good = good_doc()
    other = {**good, "twin_id": "pump-2"}  # its id no longer matches: refused
    lines = [orjson.dumps(good), b"", orjson.dumps(other), b"{nope", orjson.dumps(good)]
    out = decode_updates(b"\n".join(lines))
    assert [type(x).__name__ for x in out] == ["Write", "UpdateError", "UpdateError", "Write"]
    assert "does not match" in str(out[1]) and "not JSON" in str(out[2])
    # the same lines, all JSON: parsed in one go, same outcomes
    out = decode_updates(b"\n".join([orjson.dumps(good), orjson.dumps(other)]))
    assert isinstance(out[0], Write) and isinstance(out[1], UpdateError)


def test_the_fast_path_and_the_checked_path_agree() -> None:
    from twinflow.operators.replication.update import _checked, _fast

    good = good_doc()
    assert _fast(good) == _checked(good)
    odd = [{**good, "version": True}, {**good, "written_at": 5}, {**good, "base": None}]
    for doc in odd:  # the fast path passes them on; the checked one decides
        fast = _fast(doc)
        assert fast is None or fast == _checked(doc)


# -- the compact batch (twin_updates.v2) -----------------------------------------------------


def test_a_batch_round_trips_follows_its_schema_and_decodes_like_v1() -> None:
    from twinflow.operators.replication.compact import batch, decode_payload, encode_row

    t = FakeTime()
    r = TwinReplica("edge-a", now_ms=t)
    writes = [r.write("pump-1", "metadata", "location", {"site": "north", "bay": [1, 2]})]
    t.ms += 3
    writes.append(r.write("pump-1", "metadata", "location", None))
    writes.append(r.write("pump-2", "desired", "speed", 1450.5))
    doc = batch([encode_row(w) for w in writes])
    text = resources.files("twinflow.operators").joinpath("schemas/twin_updates.v2.json")
    jsonschema.validate(orjson.loads(doc), json.loads(text.read_text()))
    assert decode_payload(doc) == writes
    v1 = b"\n".join(encode_update(w) for w in writes)
    assert decode_payload(v1) == writes  # an older peer's documents still merge


GOOD = ["pump-1", "desired", "x", 1, T0, 5, "a", None, None, None]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (["pump-1", "wanted", "x", 1, T0, 0, "a", None, None, None], "kind one of"),
        (["", "desired", "x", 1, T0, 0, "a", None, None, None], "non-empty"),
        (["pump-1", "desired", "x", 1, -1, 0, "a", None, None, None], "stamp"),
        (["pump-1", "desired", "x", 1, T0, 0, "a", T0 + 1, 0, "a"], "is not a stamp older"),
        (["pump-1", "desired", "x", 1, T0, 0, "a", T0, 0, None], "is not a stamp older"),
        (["pump-1", "desired", "x", 1, T0, 0, "a"], "10 or 11 fields"),
        (["pump-1", "desired", "x", 1, T0, 0, "a", None, None, None, []], "non-empty list"),
        ([*GOOD, None], "non-empty list"),
        (
            ["pump-1", "desired", "x", 1, T0, 0, "a", None, None, None, [["x", 1, 0, "a"]]],
            "another property",
        ),
        (
            ["pump-1", "desired", "x", 1, T0, 0, "a", None, None, None, [["y", T0, 0, "a"]]],
            "older than",
        ),
        ([*GOOD, [["y", T0, 0, "a"], ["y", T0, 1, "a"]]], "property order"),
        ([["x"], "desired", "x", 1, T0, 0, "a", None, None, None], "non-empty"),
    ],
)
def test_a_bad_row_is_refused_with_the_reason_and_the_others_count(
    row: list[object], message: str
) -> None:
    from twinflow.operators.replication.compact import batch, decode_batch

    good = orjson.dumps(["pump-1", "desired", "x", 1, T0, 0, "a", None, None, None])
    out = decode_batch(batch([good, orjson.dumps(row), good]))
    assert isinstance(out[0], Write) and isinstance(out[2], Write)
    assert isinstance(out[1], UpdateError) and message in str(out[1])


def test_a_malformed_batch_is_one_error() -> None:
    from twinflow.operators.replication.compact import decode_batch

    for payload in (b"{nope", b'{"schema":"twinflow.twin_updates","version":2}', b"[1]"):
        out = decode_batch(payload)
        assert len(out) == 1 and isinstance(out[0], UpdateError)


def test_apply_many_gives_what_apply_gives_one_by_one() -> None:
    from tests.benchmarks.bench_replication import make_updates

    writes = make_updates(3_000)
    writes += writes[:500]  # duplicates
    one = TwinReplica("one", now_ms=lambda: T0 + 10**9)
    many = TwinReplica("many", now_ms=lambda: T0 + 10**9)
    assert [one.apply(w) for w in writes] == many.apply_many(writes)
    assert one.registers() == many.registers()
    late = TwinReplica("late", now_ms=FakeTime(), max_drift_ms=1_000)
    ahead = Write.make(PropertyKey("p", "desired", "x"), 1, Stamp(T0 + 5_000, 0, "f"), None)
    with pytest.raises(ClockDriftError):
        late.apply_many([good_write(), ahead])
    assert late.registers() == {}  # refused as a whole: nothing changed


def good_write() -> Write:
    return Write.make(PropertyKey("pump-1", "desired", "speed_rpm"), 1, Stamp(T0, 1, "e"), None)


def test_a_key_is_pickled_without_its_hash() -> None:
    import os
    import pickle
    import subprocess
    import sys

    key = PropertyKey("pump-1", "desired", "speed_rpm")
    blob = pickle.dumps(key)
    code = (
        "import pickle, sys; k = pickle.loads(sys.stdin.buffer.read()); "
        "print(hash(k) == hash(('pump-1', 'desired', 'speed_rpm')), {k: 1}[k])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # another process, other string hashes
    out = subprocess.run(
        [sys.executable, "-c", code], input=blob, capture_output=True, env=env, check=True
    )
    assert out.stdout.split() == [b"True", b"1"]


def test_sync_status_documents_follow_their_schema() -> None:
    from twinflow.operators.replication.status import SyncTracker

    t = FakeTime()
    r = TwinReplica("central", now_ms=t)
    tracker = SyncTracker("central")
    w = r.write("pump-1", "desired", "flow_setpoint", 120.0)
    tracker.wrote(w, "strong", T0)
    tracker.link(False, T0 + 5)
    text = resources.files("twinflow.operators").joinpath("schemas/replication_sync.v1.json")
    spec = json.loads(text.read_text())
    down = tracker.status(r, T0 + 40)
    assert [(s.state.value, s.lag_ms, s.link_down_since_ms) for s in down] == [
        ("link_down", 40, T0 + 5)
    ]
    tracker.link(True, T0 + 50)
    assert tracker.accepted(w.key, update_doc(w)["update_id"], T0 + 60)
    for s in (*down, *tracker.status(r, T0 + 70)):
        jsonschema.validate(s.to_json(), spec)
    assert tracker.status(r, T0 + 70)[0].state.value == "in_sync"
