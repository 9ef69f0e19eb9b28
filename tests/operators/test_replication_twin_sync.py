"""Sync status in the twin-state documents (``twin_state.v3``'s optional ``replication``)."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from datetime import UTC, datetime
from importlib import resources

import jsonschema

from twinflow.connectors.kafka.documents import twin_state_json
from twinflow.core.records import PropertyState, SyncStatus, TwinState
from twinflow.operators.replication.status import PropertySync, SyncState
from twinflow.operators.replication.twin_sync import TwinSync

T0 = 1_767_225_600_000
AT = datetime(2026, 1, 1, tzinfo=UTC)
SCHEMA = json.loads(
    resources.files("twinflow.operators").joinpath("schemas/twin_state.v3.json").read_text()
)


def state(readings: int = 1) -> TwinState:
    props = {"power_limit": PropertyState(1200.0, 1, AT, in_sync=False)}
    return TwinState(
        "wt-001", "wind_turbine", AT, SyncStatus.SYNCHRONIZED, {}, readings, properties=props
    )


def status(prop: str, st: SyncState, lag: int = 0, **kw: object) -> PropertySync:
    return PropertySync(
        "edge-a", "wt-001", "desired", prop, st, "strong", lag, None, at_ms=T0 + lag, **kw
    )  # type: ignore[arg-type]


def test_states_carry_the_sync_status_and_a_change_re_emits_the_newest_state() -> None:
    t = TwinSync()
    assert t.update(status("power_limit", SyncState.PENDING)) == []  # no state yet
    [first] = t.update(state(1))
    assert first.sync is not None and first.readings == 1
    doc = twin_state_json(first)
    jsonschema.validate(doc, SCHEMA)
    assert doc["replication"]["replica"] == "edge-a"
    assert doc["replication"]["properties"]["power_limit"]["state"] == "pending"
    assert t.update(status("power_limit", SyncState.PENDING, lag=900)) == []  # only the lag
    down = status("power_limit", SyncState.LINK_DOWN, lag=1000, link_down_since_ms=T0)
    [again] = t.update(down)
    assert again.readings == 1 and again.time == first.time  # the newest state, again
    doc = twin_state_json(again)
    jsonschema.validate(doc, SCHEMA)
    assert doc["replication"]["link_down_since"] == "2026-01-01T00:00:00Z"
    assert doc["replication"]["properties"]["power_limit"]["lag_ms"] == 1000
    held = status("mode", SyncState.PENDING, lag=5, waiting_for="desired/x@1.0@c")
    [third] = t.update(held)
    props = twin_state_json(third)["replication"]["properties"]
    assert sorted(props) == ["mode", "power_limit"]
    assert props["mode"]["waiting_for"] == "desired/x@1.0@c"
    [fourth] = t.update(state(2))  # a new state carries what is known
    assert fourth.readings == 2 and fourth.sync == third.sync


def test_without_replication_the_document_is_as_before() -> None:
    doc = twin_state_json(state())
    assert "replication" not in doc
    jsonschema.validate(doc, SCHEMA)


def test_a_state_pickled_before_sync_existed_unpickles_with_none() -> None:
    s = replace(state(), sync={"replica": "x"})
    old = s.__getstate__()[:-1]  # the fields of a state pickled before ``sync``
    back = TwinState.__new__(TwinState)
    back.__setstate__(old)
    assert back.sync is None and back.readings == s.readings
    assert pickle.loads(pickle.dumps(s)) == s
