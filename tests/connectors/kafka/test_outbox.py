"""The Kafka sink's outbox: writes counted whole, bounded, freed oldest first, sent again whole."""

from __future__ import annotations

import pickle
from typing import Any

from twinflow.connectors.kafka.outbox import Held, HeldState, Outbox, Sent

seen_errors: list[tuple[Sent, Any]] = []


def on_error(sent: Sent, error: Any, msg: Any) -> None:
    seen_errors.append((sent, error))


def write(box: Outbox, generation: int, *values: bytes) -> Sent:
    sent = box.open(generation, on_error)
    for v in values:
        box.add(sent, b"k", v, [])
    box.seal(sent)
    return sent


def test_a_write_leaves_only_when_all_its_messages_are_acknowledged() -> None:
    box = Outbox(max_messages=10, max_bytes=1000)
    first = write(box, 0, b"a", b"b")
    second = write(box, 0, b"c")
    assert len(box) == 3 and box.bytes == 6
    first.report(None, None)
    assert box.collect() == 1 and len(box) == 3  # "a" acknowledged, "b" not: both held
    second.report(None, None)
    assert box.collect() == 2 and len(box) == 3  # "c" done, but behind the older write
    assert box.held() == [(b"k", b"a", []), (b"k", b"b", []), (b"k", b"c", [])]
    first.report(None, None)
    assert box.collect() == 3 and len(box) == 0 and box.bytes == 0 and box.held() == []


def test_an_open_write_never_leaves_and_an_empty_one_leaves_at_once() -> None:
    box = Outbox(max_messages=10, max_bytes=1000)
    sent = box.open(0, on_error)
    box.add(sent, b"k", b"a", [])
    sent.report(None, None)
    box.collect()
    assert len(box) == 1  # more messages may still join it
    box.seal(sent)
    box.collect()
    assert len(box) == 0
    empty = box.open(0, on_error)
    box.seal(empty)
    assert box.held() == [] and box.collect() == 1


def test_room_is_bounded_by_count_and_bytes() -> None:
    box = Outbox(max_messages=2, max_bytes=8)
    assert box.has_room(100)  # an empty outbox takes any one message
    write(box, 0, b"aaa")
    assert box.has_room(4) and not box.has_room(5)  # 4 + 4 bytes fit, 4 + 6 do not
    write(box, 0, b"b")
    assert not box.has_room(1)  # two messages held


def test_resend_makes_fresh_writes_and_the_old_reports_count_for_nothing() -> None:
    box = Outbox(max_messages=10, max_bytes=1000)
    old = write(box, 0, b"a", b"b")
    old.report(None, None)
    fresh = box.resend(1, on_error)
    assert [s.messages for s in fresh] == [[(b"k", b"a", []), (b"k", b"b", [])]]
    assert fresh[0].generation == 1 and fresh[0].acked == 0 and fresh[0].sealed
    old.report(None, None)  # the replaced producer's report: the old write is gone
    box.collect()
    assert len(box) == 2
    fresh[0].report(None, None)
    fresh[0].report(None, None)
    box.collect()
    assert len(box) == 0


def test_a_delivery_error_goes_to_the_sink_with_its_write() -> None:
    seen_errors.clear()
    box = Outbox(max_messages=10, max_bytes=1000)
    sent = write(box, 3, b"a")
    sent.report("refused", None)
    assert seen_errors == [(sent, "refused")] and box.collect() == 0 and len(box) == 1


def test_a_held_state_takes_its_messages_only_when_pickled() -> None:
    """A snapshot nobody pickles (no recovery) never calls ``take``; a pickled one keeps
    what ``take`` gives, as a plain list."""
    taken: list[int] = []

    def take() -> list[Held]:
        taken.append(1)
        return [(b"k", b"v2", [])]

    state = HeldState([(b"k", b"v1", []), (b"k", b"v2", [])], take)
    assert len(state) == 2 and not taken  # what was held when asked, at once
    kept = pickle.loads(pickle.dumps(state))
    assert kept == [(b"k", b"v2", [])] and type(kept) is list and taken == [1]
