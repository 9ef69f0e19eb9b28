"""Benchmark: replicated twin state, in process and edge -> central over a real mosquitto.

Not a test (nothing is asserted on time); prints figures. The issue's targets are the
reference: eventual consistency >= 100k property updates/s per central process and p99
<= 50 ms edge -> central on loopback.

1. Merge throughput, in process: the updates of three writers (1,000 twins, three
   properties each, a random share of them concurrent) applied to a fresh replica, as
   ``Write`` objects (``apply``), from ``twin_update.v1`` JSON (``decode_update`` then
   ``apply``) and from ``twin_updates.v2`` batches of 100 (``decode_payload`` then
   ``apply_many``, what a link does per received message). Median over interleaved rounds.
2. Latency edge -> central over mosquitto and over Kafka (tests/services starts mosquitto
   and Tansu): an edge link writes at a steady rate; the time from ``write`` (stamped,
   appended to the on-disk outbox) until the central link has merged it, p50/p99 over all
   writes of all rounds.
3. Catch-up after a cut link: the edge writes ``--backlog`` updates while its link is
   stopped, then the link starts again; updates/s from the start until central has merged
   the last one.
4. State transfer: the edge wrote ``--backlog`` updates to 100 properties and central merged
   them; a new, empty central replica (its own outbox and broker session) asks for the state
   and the edge answers with its kept writes; the time from the request until the new
   replica holds the edge's registers, beside the writes that crossed and the history size.

5. Causal beside eventual: the same writes (1,000 twins x 3 desired properties) made by
   writers whose desired properties are causal (each write carries the stamps of its twin's
   other two) or eventual, merged from v2 batches in the writers' order (as a link delivers
   them) and shuffled (most causal writes then wait for a dependency: the worst case), in
   process; and over each broker at the latency pace, eventual and causal desired writes in
   interleaved rounds, the time from ``write`` to the write being exposed centrally.

Run: ``.venv/bin/python tests/benchmarks/bench_replication.py [--updates 200000] [--rounds 5]``
(``--only-causal``: only 5, and the strong latency beside it).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # for tests.services

from tests.services.kafka import KafkaBroker, create_topic
from tests.services.mosquitto import Mosquitto
from twinflow.connectors.bindings import MqttSettings
from twinflow.connectors.replication import DiskOutbox, KafkaLink, MqttLink
from twinflow.connectors.replication.kafka_link import kafka_topics
from twinflow.connectors.replication.mqtt_link import central_topics, edge_topics
from twinflow.operators.replication import Applied, TwinReplica, Write, decode_update
from twinflow.operators.replication.compact import batch, decode_payload, encode_row
from twinflow.operators.replication.update import encode_update

T0 = 1_767_225_600_000
PROPS = (("reported", "speed_rpm"), ("desired", "speed_rpm"), ("metadata", "site"))
#: The desired properties of the causal workload (all causal, or all eventual).
DESIRED = ("speed", "mode", "limit")


def desired(key: object) -> bool:
    """The causal predicate of the causal workload: every desired property."""
    return getattr(key, "kind", None) == "desired"


def make_desired(n: int, causal: bool, seed: int = 7) -> list[Write]:
    """``n`` desired writes to 1,000 twins x 3 properties by three writers that sync now and
    then, in the order made; causal writers attach their dependencies."""
    rnd = random.Random(seed)
    clock = [T0]
    writers = [
        TwinReplica(name, now_ms=lambda: clock[0], causal=desired if causal else None)
        for name in ("central", "e1", "e2")
    ]
    out: list[Write] = []
    for i in range(n):
        if i % 50 == 0:
            clock[0] += 1
        r = writers[rnd.randrange(3)]
        w = r.write(f"pump-{rnd.randrange(1000)}", "desired", rnd.choice(DESIRED), i)
        out.append(w)
        if rnd.random() < 0.3:
            writers[rnd.randrange(3)].apply(w)
    return out


def causal_rate(payloads: list[bytes], n: int) -> tuple[float, float, int, int]:
    """Updates/s (wall, CPU) of v2 batches into a fresh replica, the most held at once, and
    how many were applied without their dependencies (the buffer full: ``forced``)."""
    r = TwinReplica("bench", now_ms=lambda: T0 + 10**9)
    most = forced = 0
    cpu = time.process_time()
    start = time.perf_counter()
    for p in payloads:
        r.apply_many([w for w in decode_payload(p) if isinstance(w, Write)])
        forced += sum(1 for _, _, why in r.take_released() if why != "ready")
        most = max(most, len(r.held()))
    wall = time.perf_counter() - start
    if r.held():
        raise RuntimeError(f"{len(r.held())} causal writes still held after every write")
    return n / wall, n / (time.process_time() - cpu), most, forced


def bench_causal_merge(n: int, rounds: int) -> None:
    cases: dict[str, list[bytes]] = {}
    for causal in (False, True):
        writes = make_desired(n, causal)
        for order in ("in order", "shuffled"):
            if order == "shuffled":
                writes = writes[:]
                random.Random(3).shuffle(writes)
            rows = [encode_row(w) for w in writes]
            name = f"{'causal' if causal else 'eventual'}, {order}"
            cases[name] = [batch(rows[i : i + 100]) for i in range(0, n, 100)]
    got: dict[str, list[tuple[float, float, int, int]]] = {k: [] for k in cases}
    for _ in range(rounds):  # interleaved
        for name, payloads in cases.items():
            got[name].append(causal_rate(payloads, n))
    print(
        f"causal beside eventual, in process ({n:,} desired writes, 1,000 twins x 3 "
        f"properties, v2 batches of 100 + apply_many, {rounds} rounds):"
    )
    print("  updates/s, median (min-max): wall | CPU time | most held at once, forced out")
    for name, runs in got.items():
        wall, cpu = [r[0] for r in runs], [r[1] for r in runs]
        print(
            f"  {name:20s} {statistics.median(wall):>9,.0f} ({min(wall):,.0f}-{max(wall):,.0f})"
            f" | {statistics.median(cpu):>9,.0f} ({min(cpu):,.0f}-{max(cpu):,.0f})"
            f" | {max(r[2] for r in runs):,}, {max(r[3] for r in runs):,}"
        )
    for order in ("in order", "shuffled"):
        ratio = [
            c[1] / e[1]
            for c, e in zip(got[f"causal, {order}"], got[f"eventual, {order}"], strict=True)
        ]
        print(
            f"  causal / eventual {order} (CPU time, per round): "
            f"median {statistics.median(ratio):.2f}x"
        )


def make_updates(n: int, seed: int = 7) -> list[Write]:
    """``n`` writes by three replicas that sync now and then (some writes concurrent)."""
    rnd = random.Random(seed)
    clock = [T0]
    writers = [TwinReplica(name, now_ms=lambda: clock[0]) for name in ("central", "e1", "e2")]
    out: list[Write] = []
    for i in range(n):
        if i % 50 == 0:
            clock[0] += 1
        r = writers[rnd.randrange(3)]
        kind, name = PROPS[rnd.randrange(3)]
        w = r.write(f"pump-{rnd.randrange(1000)}", kind, name, rnd.randrange(3000))
        out.append(w)
        if rnd.random() < 0.3:  # another writer sees it: later writes there are not concurrent
            writers[rnd.randrange(3)].apply(w)
    rnd.shuffle(out)
    return out


def merge_rate(
    updates: list[Write], payloads: list[bytes] | None, batches: bool = False
) -> tuple[float, float]:
    """Updates per second of wall time and per second of this process's CPU time (the
    second is what one central process can do when it has a core to itself)."""
    r = TwinReplica("bench", now_ms=lambda: T0 + 10**9)
    cpu = time.process_time()
    start = time.perf_counter()
    if payloads is None:
        for w in updates:
            r.apply(w)
    elif batches:  # what a link does with each received message
        for p in payloads:
            r.apply_many([w for w in decode_payload(p) if isinstance(w, Write)])
    else:
        for p in payloads:
            r.apply(decode_update(p))
    wall = time.perf_counter() - start
    return len(updates) / wall, len(updates) / (time.process_time() - cpu)


def bench_merge(n: int, rounds: int) -> None:
    updates = make_updates(n)
    payloads = [encode_update(w) for w in updates]
    rows = [encode_row(w) for w in updates]
    batches = [batch(rows[i : i + 100]) for i in range(0, n, 100)]
    objects, json_, compact = [], [], []
    for _ in range(rounds):  # interleaved
        objects.append(merge_rate(updates, None))
        json_.append(merge_rate(updates, payloads))
        compact.append(merge_rate(updates, batches, batches=True))
    print(f"merge, in process ({n:,} updates, 1,000 twins x 3 properties, {rounds} rounds):")
    print("  updates/s, median (min-max): per second of wall time | per second of CPU time")
    for name, pairs in (
        ("apply(Write)", objects),
        ("decode_update (v1) + apply", json_),
        ("v2 batches of 100 + apply_many", compact),
    ):
        wall, cpu = [p[0] for p in pairs], [p[1] for p in pairs]
        print(
            f"  {name:31s} {statistics.median(wall):>9,.0f} ({min(wall):,.0f}-{max(wall):,.0f})"
            f" | {statistics.median(cpu):>9,.0f} ({min(cpu):,.0f}-{max(cpu):,.0f})"
        )
    ratio = [c[1] / j[1] for c, j in zip(compact, json_, strict=True)]
    print(f"  v2 / v1 (CPU time, per round): median {statistics.median(ratio):.2f}x")
    print("  target (issue 18, eventual): >= 100,000 updates/s per central process;")
    print("  reference: eventual 50k-100k ops/s, strong 1k-5k ops/s")


class Pair:
    """An edge and a central replica linked through one broker (mosquitto or Kafka)."""

    def __init__(self, broker: Mosquitto | KafkaBroker, folder: Path, causal: bool = False) -> None:
        base = f"bench-{uuid.uuid4().hex[:8]}"
        self.broker, self.base = broker, base
        self.edge = TwinReplica("edge", causal=desired if causal else None)
        self.central = TwinReplica("central")
        self.sent: dict[str, float] = {}
        self.latency: dict[str, float] = {}
        self.done = threading.Condition()
        self.edge_box = DiskOutbox(folder / "edge")
        self.central_box = DiskOutbox(folder / "central")
        self.edge_link: MqttLink | KafkaLink
        self.central_link: MqttLink | KafkaLink
        if isinstance(broker, Mosquitto):

            def settings(name: str) -> MqttSettings:
                return MqttSettings(
                    host=broker.host,
                    port=broker.port,
                    client_id=f"{base}-{name}",
                    reconnect_min_s=0.05,
                    reconnect_max_s=0.5,
                )

            self.edge_link = MqttLink(
                self.edge, self.edge_box, settings("edge"), *edge_topics(base, "edge")
            )
            self.central_link = MqttLink(
                self.central,
                self.central_box,
                settings("central"),
                *central_topics(base),
                on_applied=self.arrived,
            )
        else:
            for topic in kafka_topics(base, central=True):
                create_topic(broker.bootstrap, topic, partitions=1)
            fast = {"reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500}
            self.edge_link = KafkaLink(
                self.edge,
                self.edge_box,
                broker.bootstrap,
                *kafka_topics(base, central=False),
                group_id=f"{base}-edge",
                config=fast,
            )
            self.central_link = KafkaLink(
                self.central,
                self.central_box,
                broker.bootstrap,
                *kafka_topics(base, central=True),
                group_id=f"{base}-central",
                config=fast,
                on_applied=self.arrived,
            )

    def fresh_central(self, folder: Path) -> MqttLink | KafkaLink:
        """A new, empty central replica on the same topics: its own outbox, session, group."""
        box, name = DiskOutbox(folder), f"{self.base}-central-{uuid.uuid4().hex[:6]}"
        replica = TwinReplica("central")
        broker = self.broker
        if isinstance(broker, Mosquitto):
            mqtt = MqttSettings(host=broker.host, port=broker.port, client_id=name)
            return MqttLink(replica, box, mqtt, *central_topics(self.base), relay=True)
        topics = kafka_topics(self.base, central=True)
        return KafkaLink(replica, box, broker.bootstrap, *topics, group_id=name, relay=True)

    def arrived(self, w: Write, outcome: Applied) -> None:
        now = time.perf_counter()
        key = w.stamp.text() + w.key.name + w.key.twin_id
        with self.done:
            if key in self.sent and key not in self.latency:
                self.latency[key] = now - self.sent[key]
            self.done.notify_all()

    def write(self, i: int) -> None:
        twin = f"pump-{i % 100}"
        t = time.perf_counter()
        w = self.edge_link.write(twin, "reported", "speed_rpm", i)
        with self.done:
            self.sent[w.stamp.text() + "speed_rpm" + twin] = t

    def write_desired(self, i: int) -> Write:
        """A desired write of the causal workload: 100 twins x 3 properties, in turn."""
        twin, prop = f"pump-{(i // 3) % 100}", DESIRED[i % 3]
        t = time.perf_counter()
        w = self.edge_link.write(twin, "desired", prop, i)
        with self.done:
            self.sent[w.stamp.text() + prop + twin] = t
        return w

    def wait_all(self, timeout_s: float = 120.0) -> bool:
        with self.done:
            return self.done.wait_for(lambda: len(self.latency) == len(self.sent), timeout_s)

    def __enter__(self) -> Pair:
        self.central_link.start()
        deadline = time.monotonic() + 30  # subscribed before the edge publishes (MQTT)
        while not self.central_link.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        self.edge_link.start()
        # a first write, merged centrally, shows both links work before timing starts
        self.write(-1)
        if not self.wait_all(30):
            raise RuntimeError("the first write did not reach central within 30 s")
        self.sent.clear()
        self.latency.clear()
        return self

    def __exit__(self, *exc: object) -> None:
        self.edge_link.stop()
        self.central_link.stop()
        self.edge_box.close()
        self.central_box.close()


def name(broker: Mosquitto | KafkaBroker) -> str:
    return "mosquitto" if isinstance(broker, Mosquitto) else "Kafka (Tansu)"


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def bench_latency(broker: Mosquitto | KafkaBroker, rate: int, seconds: float, rounds: int) -> None:
    lat: list[float] = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as d, Pair(broker, Path(d)) as pair:
            n = int(rate * seconds)
            start = time.perf_counter()
            for i in range(n):
                pause = start + i / rate - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                pair.write(i)
            if not pair.wait_all():
                raise RuntimeError("central did not merge every write within 120 s")
            lat += list(pair.latency.values())
    print(
        f"latency edge -> central over {name(broker)} ({rate}/s for {seconds:g} s, "
        f"{rounds} rounds, {len(lat):,} writes):"
    )
    print(
        f"  p50 {pct(lat, 0.5) * 1000:8.2f} ms   p99 {pct(lat, 0.99) * 1000:8.2f} ms   "
        f"max {max(lat) * 1000:8.2f} ms"
    )
    print("  target (issue 18, eventual): p99 <= 50 ms on loopback; reference: eventual 10-50 ms")


def bench_causal_latency(
    broker: Mosquitto | KafkaBroker, rate: int, seconds: float, rounds: int
) -> None:
    """Desired writes, eventual and causal in interleaved rounds: ``write`` to exposed
    centrally (a held causal write counts from its write until it is let go)."""
    lat: dict[bool, list[float]] = {False: [], True: []}
    deps = 0
    for _ in range(rounds):
        for causal in (False, True):
            with tempfile.TemporaryDirectory() as d, Pair(broker, Path(d), causal) as pair:
                n = int(rate * seconds)
                start = time.perf_counter()
                for i in range(n):
                    pause = start + i / rate - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)
                    deps += len(pair.write_desired(i).deps)
                if not pair.wait_all():
                    raise RuntimeError("central did not expose every write within 120 s")
                lat[causal] += list(pair.latency.values())
                held = pair.central_link.counts["held"]
    n_causal = len(lat[True])
    print(
        f"desired writes edge -> central over {name(broker)}, eventual and causal ({rate}/s "
        f"for {seconds:g} s, {rounds} interleaved rounds each; causal writes carried "
        f"{deps / max(n_causal, 1):.2f} dependencies on average, {held} held in the last round):"
    )
    for causal in (False, True):
        v = lat[causal]
        print(
            f"  {'causal' if causal else 'eventual':8s} p50 {pct(v, 0.5) * 1000:8.2f} ms   "
            f"p99 {pct(v, 0.99) * 1000:8.2f} ms   max {max(v) * 1000:8.2f} ms"
        )


def bench_bare_kafka(broker: KafkaBroker, rate: int, seconds: float) -> None:
    """The floor under the Kafka link's latency: a bare producer (flush per record, acks=all)
    and a bare consumer (assigned partition) on the same broker, at the same pace, with the
    link's client settings (no linger, 5 ms fetch wait, Nagle off)."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    topic = create_topic(broker.bootstrap, f"bench-bare-{uuid.uuid4().hex[:8]}", partitions=1)
    quick = {"bootstrap.servers": broker.bootstrap, "socket.nagle.disable": True}
    producer = Producer({**quick, "acks": "all", "linger.ms": 0})
    consumer = Consumer(
        {**quick, "group.id": f"{topic}-g", "enable.auto.commit": False, "fetch.wait.max.ms": 5}
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    n = int(rate * seconds)
    sent: dict[bytes, float] = {}
    got: dict[bytes, float] = {}

    def read() -> None:
        deadline = time.monotonic() + seconds + 60
        while len(got) < n and time.monotonic() < deadline:
            first = consumer.poll(0.1)  # then what else is there, without waiting
            for m in [first, *consumer.consume(500, 0)] if first is not None else []:
                if m.error() is None and m.value() is not None:
                    got[m.value()] = time.perf_counter()

    reader = threading.Thread(target=read)
    reader.start()
    start = time.perf_counter()
    for i in range(n):
        pause = start + i / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        key = str(i).encode()
        sent[key] = time.perf_counter()
        producer.produce(topic, key)
        producer.flush(10)
    reader.join()
    consumer.close()
    lat = [got[k] - sent[k] for k in sent if k in got]
    print(f"  bare producer -> consumer on the same broker ({len(lat):,} of {n:,} records):")
    print(f"  p50 {pct(lat, 0.5) * 1000:8.2f} ms   p99 {pct(lat, 0.99) * 1000:8.2f} ms")


def bench_strong(broker: Mosquitto | KafkaBroker, rate: int, seconds: float) -> None:
    """Strong desired changes: central writes, the owning edge's command loop answers at once
    (a stand-in thread: the device's own time is not in it), central sees the answer."""
    from datetime import timedelta

    from twinflow.connectors.replication.node import ReplicationNode
    from twinflow.core.records import Command, CommandStatus, DesiredChange
    from twinflow.core.times import utc
    from twinflow.operators.command_book import desired_command_id
    from twinflow.operators.replication.update import update_id

    with tempfile.TemporaryDirectory() as d, Pair(broker, Path(d)) as pair:
        owned = {f"pump-{i}": "pump" for i in range(100)}
        central = ReplicationNode(pair.central_link, "central", consistency=lambda t, p: "strong")
        edge = ReplicationNode(pair.edge_link, "edge", owned=owned)
        asked: dict[str, float] = {}
        answered: dict[str, float] = {}
        cond = threading.Condition()
        inner = pair.central_link.on_applied

        def seen(w: Write, outcome: Applied) -> None:
            if inner is not None:
                inner(w, outcome)
            if w.key.name.startswith("accepted:") and isinstance(w.value, dict):
                with cond:
                    answered.setdefault(str(w.value["update_id"]), time.perf_counter())
                    cond.notify_all()

        pair.central_link.on_applied = seen
        stop = threading.Event()

        def command_loop() -> None:  # the edge accepts every change at once
            while not stop.is_set():
                for c in edge.take_desired():
                    at = utc(time.time())
                    cid = desired_command_id(c.twin_id, c.prop, c.request_id)
                    edge.forward(
                        Command(cid, c.twin_id, "pump", "set_flow", {"m3h": c.value}, at,
                                at + timedelta(minutes=1), "bench", CommandStatus.SUCCEEDED,
                                origin="desired")
                    )  # fmt: skip
                time.sleep(0.001)

        loop = threading.Thread(target=command_loop, daemon=True)
        loop.start()
        n = int(rate * seconds)
        start = time.perf_counter()
        for i in range(n):
            pause = start + i / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            at = utc(time.time())
            change = DesiredChange(f"pump-{i % 100}", "pump", "flow_setpoint", float(i), at,
                                   f"r{i}", at + timedelta(minutes=5))  # fmt: skip
            t = time.perf_counter()
            w = central.desire(change)
            assert w is not None
            with cond:
                asked[update_id(w)] = t
        with cond:
            cond.wait_for(lambda: len(answered) >= n, 120)
        stop.set()
        loop.join()
    lat = [answered[u] - asked[u] for u in asked if u in answered]
    print(
        f"strong desired changes over {name(broker)} ({rate}/s for {seconds:g} s, {len(lat):,} "
        f"of {n:,} answered): central write -> edge command loop -> answer merged centrally"
    )
    print(f"  p50 {pct(lat, 0.5) * 1000:8.2f} ms   p99 {pct(lat, 0.99) * 1000:8.2f} ms")
    print("  target (issue 18, strong): p99 <= 500 ms; reference: strong 100-500 ms, 1k-5k ops/s")


def bench_catch_up(broker: Mosquitto | KafkaBroker, backlog: int, rounds: int) -> None:
    rates: list[float] = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as d, Pair(broker, Path(d)) as pair:
            pair.edge_link.stop()  # the link is down: writes wait in the outbox
            for i in range(backlog):
                pair.write(i)
            start = time.perf_counter()
            pair.edge_link.start()
            if not pair.wait_all():
                raise RuntimeError("central did not merge the backlog within 120 s")
            rates.append(backlog / (time.perf_counter() - start))
    print(
        f"catch-up over {name(broker)} after a cut link ({backlog:,} updates in the edge's "
        f"outbox, {rounds} rounds):"
    )
    print(f"  {statistics.median(rates):,.0f} updates/s from restore to the last merged (median)")


def bench_state(broker: Mosquitto | KafkaBroker, history: int, rounds: int) -> None:
    times: list[float] = []
    crossed = 0
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as d, Pair(broker, Path(d)) as pair:
            for i in range(history):
                pair.write(i)
            if not pair.wait_all():
                raise RuntimeError("central did not merge the history within 120 s")
            link = pair.fresh_central(Path(d) / "fresh")
            link.start()
            deadline = time.monotonic() + 30
            while not link.connected and time.monotonic() < deadline:
                time.sleep(0.01)
            before = pair.edge_link.counts["state_sent"]
            start = time.perf_counter()
            link.request_state()
            target = pair.edge.registers()
            while link.replica.registers() != target:
                if time.perf_counter() - start > 120:
                    raise RuntimeError("the new central replica did not converge within 120 s")
                time.sleep(0.005)
            times.append(time.perf_counter() - start)
            crossed = pair.edge_link.counts["state_sent"] - before
            link.stop()
            link.outbox.close()
    print(
        f"state transfer over {name(broker)} to an empty central replica ({history:,} writes "
        f"made to 100 properties, {rounds} rounds):"
    )
    print(
        f"  {statistics.median(times) * 1000:,.0f} ms from request to converged (median; "
        f"min {min(times) * 1000:,.0f}, max {max(times) * 1000:,.0f}); {crossed:,} writes "
        f"crossed (the kept ones), not {history:,}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--updates", type=int, default=200_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--rate", type=int, default=500, help="edge writes per second (latency)")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--backlog", type=int, default=20_000)
    p.add_argument("--transport", choices=("mqtt", "kafka", "both"), default="both")
    p.add_argument("--only-state", action="store_true", help="only the state transfer")
    p.add_argument("--only-causal", action="store_true", help="only causal beside eventual")
    a = p.parse_args()
    brokers: list[Callable[[], Mosquitto | KafkaBroker]] = []
    if a.transport in ("mqtt", "both"):
        brokers.append(Mosquitto)
    if a.transport in ("kafka", "both"):
        brokers.append(lambda: KafkaBroker(local=True))
    if a.only_causal:
        bench_causal_merge(a.updates, a.rounds)
        for make in brokers:
            with make() as broker:
                bench_causal_latency(broker, a.rate, a.seconds, max(1, a.rounds // 2))
                bench_strong(broker, a.rate, a.seconds)
        return
    if not a.only_state:
        bench_merge(a.updates, a.rounds)
        bench_causal_merge(a.updates, a.rounds)
    for make in brokers:
        with make() as broker:
            if not a.only_state:
                bench_causal_latency(broker, a.rate, a.seconds, max(1, a.rounds // 2))
                bench_latency(broker, a.rate, a.seconds, max(1, a.rounds // 2))
                bench_strong(broker, a.rate, a.seconds)
                if isinstance(broker, KafkaBroker):
                    bench_bare_kafka(broker, a.rate, a.seconds)
                bench_catch_up(broker, a.backlog, max(1, a.rounds // 2))
            bench_state(broker, a.backlog, max(1, a.rounds // 2))


if __name__ == "__main__":
    main()
