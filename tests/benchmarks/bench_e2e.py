"""Benchmark, end to end: Kafka → ``twinflow run`` → PostgreSQL, against a bare Kafka read.

Not a test; prints figures and ratios (issue 13's headline benchmark). A seeded simulated plant
is recorded once into a Kafka topic of 4 partitions (a local Tansu, or ``KAFKA_BOOTSTRAP``),
one message per twin and ``--message-s`` seconds of 1 Hz data, in JSON wire format v1 or, with
``--wire b1``, the binary format b1. Waveform samples are counted apart: v1 carries none, so the
simulator's vibration bursts stay out of the topic in both formats and every figure here is
1 Hz readings (timestamps x signals, dropouts included).

Throughput (default): interleaved over ``--rounds`` rounds (the order turns each round), each
side reads the whole topic, in its own process, one Bytewax worker:

- ``bare read``: Bytewax's own ``KafkaSource`` (``tail=False``) into a counter;
- ``read + decode``: the same, each message through ``twinflow.operators.decode.decode``;
- ``twinflow run``: ``twinflow run --until-end`` writing files only (Parquet, default flow);
- ``twinflow run + PostgreSQL``: the same with ``services.database`` on a hermetic server
  (tests/services/postgres.py), a fresh migrated database per run.

Every side also runs over an empty topic, just before: its readings/s are over its time less
that one (start, connections, end-of-topic checks). The bare sides time their dataflow inside the
child (imports left out), ``twinflow run`` the whole command; the whole-time rates are printed
too, and for the bare sides the time from the first message to the last (too short to trust:
librdkafka fetches ahead before the first message reaches Python). Figures are medians with
min-max; ratios are of medians. For the ``twinflow run`` sides also the CPU time per 1 Hz
reading: the child's user + system seconds (its rusage at exit) less those of its run over the
empty topic, which a machine shared with other work stretches far less than wall time.

Latency (``--latency``): ``twinflow run`` (with PostgreSQL, or ``--files-only``) tails the topic
while this script produces the plant paced at ``--rate`` readings/s; then the flow's own histograms
``twinflow_reading_to_alert_seconds{rules}`` and ``twinflow_reading_to_command_seconds`` are
scraped from its metrics endpoint. Their clock starts where twinflow decodes a Kafka message (just
after it was read: the arrival the issue asks for), not at the produce time, and stops when the
alert is handed to the first alerts sink: for the rules judged per reading (``rules="reading"``)
at the reading that raised the alert, for window rules (``rules="window"``) at the frame that
closed the window (the first whose newest reading reached the window's end plus ``lateness_s``).
p50/p99/p999 are interpolated within the histogram's buckets (1, 2.5, 5, 10, 20, 30, 40, 50, 75,
100 ms, ...), as Prometheus does, and printed with the bucket they fall in; "met" is printed only
when the p99's whole bucket is at or under 50 ms.
The run also reads the flow's commands topic back: the policy's queued commands timed from the
produce time of the message that reached their alert's time (all commands counted by origin
and status), then the flow's own summary and the CPU seconds it used (``--run-args`` passes
more ``twinflow run`` arguments, ``--dump-alerts FILE`` writes the alerts read back).
The run also reads the alerts back from the flow's Kafka alerts topic and prints exact
quantiles apart for the stuck, spike and range rules (judged per reading) and the window rules:
from the produce time of the message that reached the alert's time (window rules: also of the
one that reached the window's end plus ``lateness_s``, which let it close) to the time the
alert was consumed; then the five slowest stuck/spike/range alerts (twin, rule, time). The
read-back consumer is assigned the partition and polls from before the plant is produced: a
group subscription (``--tail-subscribe``, the earlier way) first waits seconds for its group
join, which held the first alerts back and made the single > 7 s "alert" of issue 13.

Memory (``--memory 1000,10000``): for each twin count, ``twinflow run --until-end`` (files only,
or with ``--memory-postgres`` also into a fresh PostgreSQL database) over ``--memory-minutes`` of
data and over an empty topic; prints peak RSS (``VmHWM``), the peak per twin, and the growth per
twin between the first and last twin count.
With ``--memory-variants 'base|queued.max.messages.kbytes=8192|MALLOC_ARENA_MAX=2'``
each twin count is recorded once and the sides (librdkafka settings into
``services.kafka.extra``; upper-case keys into the environment; ``flow.write_telemetry=false``
into the flow section) run on it, interleaved over ``--rounds``: peak RSS and whole-run
readings/s, medians with min-max.

Run: ``.venv/bin/python tests/benchmarks/bench_e2e.py [--twins 50] [--hours 2]
[--message-s 10] [--rounds 3] [--wire json|b1] [--latency [--rate 50000]]
[--memory 1000,10000]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).absolute().parents[2]))

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from tests.services.kafka import KafkaBroker, create_topic, unique_topic
from tests.services.ports import free_port
from tests.services.postgres import Postgres
from twinflow.connectors.postgres import migrate
from twinflow.connectors.simulator import Plant, PlantConfig
from twinflow.connectors.simulator.wire import encode_frame
from twinflow.core.records import TelemetryFrame, WaveformFrame
from twinflow.operators.wire_binary import encode_binary

ROOT = Path(__file__).absolute().parents[2]
PARTITIONS = 4


def child_path() -> str:
    """The children's PYTHONPATH: the caller's first (so ``PYTHONPATH=<a view of another
    commit's package>`` measures that code), then the repository."""
    return os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(ROOT)) if p)


SIDES = ("bare read", "read + decode", "twinflow run", "twinflow run + PostgreSQL")


@dataclass
class Recording:
    topic: str
    twin_lines: list[str]
    messages: int = 0
    readings: int = 0  # 1 Hz: timestamps x signals
    waveform_samples: int = 0  # simulated, not sent (wire format v1 has none)
    payload_bytes: int = 0


def plant_messages(
    twins: int, seconds: float, message_s: int, start: datetime, wire: str = "json"
) -> tuple[Plant, Iterator[tuple[TelemetryFrame | WaveformFrame, bytes | None]]]:
    """The plant and its items: each 1 Hz frame with its payload in ``wire`` (``json``: v1,
    ``b1``: the binary format), waveforms with none (v1 cannot carry them; so that both
    formats carry the same readings, b1 does not either)."""
    encode = encode_binary if wire == "b1" else encode_frame
    cfg = PlantConfig(n_twins=twins, duration_s=seconds, seed=3, start=start, chunk_s=message_s)
    plant = Plant(cfg)

    def items() -> Iterator[tuple[TelemetryFrame | WaveformFrame, bytes | None]]:
        for item in plant.items():
            if isinstance(item, TelemetryFrame):
                yield item, encode(item)
            elif isinstance(item, WaveformFrame):
                yield item, None
            # the plant's deliberately bad payloads stay out: every side reads the same input

    return plant, items()


def record(
    bootstrap: str, twins: int, seconds: float, message_s: int, wire: str = "json"
) -> Recording:
    """The plant's data, ending two hours before now, into a fresh topic."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=seconds + 7200)
    topic = create_topic(bootstrap, unique_topic("bench-e2e"), PARTITIONS)
    plant, items = plant_messages(twins, seconds, message_s, start, wire)
    rec = Recording(topic, twin_lines(plant))
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50})
    for frame, payload in items:
        if payload is None:
            rec.waveform_samples += frame.readings
            continue
        producer.produce(topic, payload, key=frame.twin_id.encode())
        rec.messages += 1
        rec.readings += frame.readings
        rec.payload_bytes += len(payload)
        if rec.messages % 1000 == 0:
            producer.poll(0)
    assert producer.flush(120) == 0
    return rec


def twin_lines(plant: Plant) -> list[str]:
    return [f"  - {{id: {t}, type: {kind}, protocol: kafka}}" for t, kind in plant.twins]


def deployment(
    folder: Path,
    bootstrap: str,
    topic: str,
    twins: list[str],
    db: str | None,
    lateness: float = 60,
    alerts_topic: str | None = None,
    commands_topic: str | None = None,
) -> Path:
    path = folder / f"deploy-{time.monotonic_ns()}.yaml"
    lines = ["version: 1", "site: s1", "services:", "  kafka:", f'    bootstrap: "{bootstrap}"']
    lines += [f"    telemetry_topics: [{topic}]"]
    if alerts_topic:
        lines += [f"    alerts_topic: {alerts_topic}"]
    if commands_topic:
        lines += [f"    commands_topic: {commands_topic}"]
    ttl = ["  command_ttl_s: 86400"] if commands_topic else []  # the plant's data is hours old
    if db:
        lines += ["  database:", f'    url: "{db}"']
    lines += ["flow:", "  window_s: 300", f"  lateness_s: {lateness:g}", *ttl, "twins:", *twins]
    path.write_text("\n".join(lines) + "\n")
    return path


def telemetry_rows(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM twinflow.telemetry").fetchone()
    return int(row[0]) if row else 0


def hwm_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far (0 when gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_twinflow(
    config: Path, folder: Path, extra: list[str] | None = None, cpu: list[float] | None = None
) -> tuple[float, float]:
    """``twinflow run --until-end``: wall seconds and peak RSS (MiB); the CPU seconds (user +
    system, from the child's own rusage as the kernel reports it at exit) go to ``cpu``."""
    out = folder / f"out-{time.monotonic_ns()}"
    argv = [sys.executable, "-m", "twinflow.flows.cli", "run", str(config), "--out", str(out)]
    argv += ["--until-end", "--quiet", *(extra or [])]
    env = {**os.environ, "PYTHONPATH": child_path()}
    log = folder / "twinflow.log"
    with log.open("w") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
        peak = 0.0
        while True:  # wait4, not poll(): the exit's rusage is the child's own CPU time
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            peak = max(peak, hwm_mib(proc.pid))
            time.sleep(0.05)
        wall = time.perf_counter() - t0
    if cpu is not None:
        cpu.append(usage.ru_utime + usage.ru_stime)
    if proc.returncode:
        raise SystemExit(f"twinflow run exited {proc.returncode}:\n{log.read_text()[-3000:]}")
    return wall, peak


def run_reader(bootstrap: str, topic: str, decode: bool) -> tuple[float, float, int]:
    """A bare Bytewax read (and decode) in a child process.

    Returns the seconds from the first message to the last, those of the whole dataflow
    (start, read, end-of-topic detection), and the readings decoded.
    """
    argv = [sys.executable, __file__, "_read", bootstrap, topic] + (["--decode"] if decode else [])
    env = {**os.environ, "PYTHONPATH": child_path()}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    doc = json.loads(done.stdout.strip().splitlines()[-1])
    return float(doc["read_s"]), float(doc["dataflow_s"]), int(doc["readings"])


def _read_child(bootstrap: str, topic: str, decode: bool) -> None:
    """Child side of :func:`run_reader`: a Bytewax ``KafkaSource`` into a counter."""
    import bytewax.operators as op
    from bytewax.connectors.kafka import KafkaSource
    from bytewax.dataflow import Dataflow
    from bytewax.outputs import DynamicSink, StatelessSinkPartition
    from bytewax.testing import run_main

    from twinflow.core.records import RawMessage
    from twinflow.operators.decode import decode as decode_msg

    total = [0, 0]
    stamps: list[float] = []

    class _Count(StatelessSinkPartition[int]):
        def write_batch(self, items: list[int]) -> None:
            total[0] += len(items)
            total[1] += sum(items)
            stamps.append(time.perf_counter())

    class CountSink(DynamicSink[int]):
        def build(self, step_id: str, worker_index: int, worker_count: int) -> _Count:
            return _Count()

    def measure(msg: object) -> int:
        if not stamps:
            stamps.append(time.perf_counter())
        value: bytes = msg.value  # type: ignore[attr-defined]
        return decode_msg(RawMessage("kafka", value, 0.0)).readings if decode else 0

    flow = Dataflow("bare")
    stream = op.input("in", flow, KafkaSource([bootstrap], [topic], tail=False))
    op.output("out", op.map("measure", stream, measure), CountSink())
    t0 = time.perf_counter()
    run_main(flow)  # type: ignore[no-untyped-call]
    read_s = stamps[-1] - stamps[0] if stamps else 0.0
    doc = {"dataflow_s": time.perf_counter() - t0, "read_s": read_s}
    print(json.dumps(doc | {"messages": total[0], "readings": total[1]}))


def _fmt(values: list[float], scale: float = 1.0, spec: str = ",.0f") -> str:
    vals = sorted(v * scale for v in values)
    return f"{statistics.median(vals):{spec}} ({vals[0]:{spec}}-{vals[-1]:{spec}})"


def throughput(args: argparse.Namespace, broker: KafkaBroker, folder: Path) -> None:
    rec = record(broker.bootstrap, args.twins, args.hours * 3600, args.message_s, args.wire)
    empty = create_topic(broker.bootstrap, unique_topic("bench-e2e-empty"), PARTITIONS)
    print(
        f"{args.twins} twins, {args.hours:g} h at 1 Hz, {args.message_s} s of data per message "
        f"in wire format {args.wire}: "
        f"{rec.messages:,} messages ({rec.payload_bytes / rec.messages:,.0f} B each), "
        f"{rec.readings:,} 1 Hz readings in {PARTITIONS} partitions; waveform samples: "
        f"{rec.waveform_samples:,} simulated, 0 sent (JSON v1 carries none); "
        f"{os.cpu_count()} cores, {args.rounds} rounds",
        flush=True,
    )
    net: dict[str, list[float]] = {s: [] for s in SIDES}
    wall: dict[str, list[float]] = {s: [] for s in SIDES}
    start_stop: dict[str, list[float]] = {s: [] for s in SIDES}
    rss: dict[str, list[float]] = {s: [] for s in SIDES}
    cpu: dict[str, list[float]] = {s: [] for s in SIDES[2:]}  # CPU s less the empty run's
    stored: list[int] = []
    first_last: dict[str, list[float]] = {s: [] for s in SIDES[:2]}
    with Postgres(settings={"shared_buffers": "256MB"}) as pg:
        counter = [0]

        def database() -> str:
            counter[0] += 1
            url = pg.create_database(f"bench_e2e_{counter[0]}")
            migrate(url)
            return url

        def side(name: str) -> float:
            if name in SIDES[:2]:
                decode = name != SIDES[0]
                _, fixed, _ = run_reader(broker.bootstrap, empty, decode)
                read, whole, readings = run_reader(broker.bootstrap, rec.topic, decode)
                assert not decode or readings == rec.readings, (name, readings)
                wall[name].append(whole)
                start_stop[name].append(fixed)
                first_last[name].append(read)
                return whole - fixed
            db = database() if name.endswith("PostgreSQL") else None
            idle = database() if db else None
            empty_cfg = deployment(folder, broker.bootstrap, empty, rec.twin_lines, idle)
            full_cfg = deployment(folder, broker.bootstrap, rec.topic, rec.twin_lines, db)
            spent: list[float] = []
            fixed, _ = run_twinflow(empty_cfg, folder, cpu=spent)
            whole, peak = run_twinflow(full_cfg, folder, cpu=spent)
            cpu[name].append(spent[1] - spent[0])
            if db:
                stored.append(telemetry_rows(db))
            wall[name].append(whole)
            start_stop[name].append(fixed)
            rss[name].append(peak)
            return whole - fixed

        for r in range(args.rounds):
            order = SIDES if r % 2 == 0 else tuple(reversed(SIDES))
            for name in order:
                net[name].append(side(name))
                print(f"  round {r + 1}, {name}: {net[name][-1]:.2f} s", flush=True)
    print()
    rates = {s: [rec.readings / x for x in net[s]] for s in SIDES}
    med = {s: statistics.median(rates[s]) for s in SIDES}
    print("1 Hz readings/s, median (min-max):")
    for s in SIDES:
        whole = [rec.readings / x for x in wall[s]]
        line = f"  {s:27} {_fmt(rates[s])}; over the whole time {_fmt(whole)}"
        line += f", empty topic {_fmt(start_stop[s], spec='.2f')} s"
        if s in first_last:
            fl = [rec.readings / x for x in first_last[s]]
            line += f", first to last message {_fmt(fl)}"
        else:
            line += f", peak RSS {_fmt(rss[s])} MiB"
        print(line)
    print("  waveform samples/s: 0 on every side (none on the wire)")
    for s, spent in cpu.items():  # survives a loaded machine better than wall time
        print(f"  {s:27} CPU per 1 Hz reading {_fmt(spent, 1e6 / rec.readings, '.2f')} µs "
              f"(the child's user + system time less its run over the empty topic)")  # fmt: skip
    print(f"  telemetry rows in PostgreSQL after each run: {sorted(set(stored))}")
    print("  (readings/s: over the time less that of the same side over an empty topic)")
    print("ratios of medians:")
    for a, b in ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)):
        print(f"  {SIDES[a]} / {SIDES[b]}: {med[SIDES[a]] / med[SIDES[b]]:.3f}")
    goal = med[SIDES[3]]
    print(f"  load average at the end: {load_average()}")
    print(
        f"target (for messages of 10 s of data; these are {args.message_s} s): "
        f">= 250,000 1 Hz readings/s with PostgreSQL: {goal:,.0f} "
        f"({'met' if goal >= 250_000 else 'NOT met'}); >= 0.5x read + decode: "
        f"{goal / med[SIDES[1]]:.2f}x ({'met' if goal >= 0.5 * med[SIDES[1]] else 'NOT met'})"
    )


def quantile(buckets: list[tuple[float, float]], q: float) -> tuple[float, float, float]:
    """Prometheus-style quantile of cumulative ``(le, count)`` buckets: value and its bucket."""
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for le, cum in buckets:
        if cum >= rank:
            if le == float("inf"):
                return lower, lower, le
            inside = cum - below
            return lower + (le - lower) * ((rank - below) / inside if inside else 0), lower, le
        lower, below = le, cum
    return lower, lower, float("inf")


def scrape(port: int, name: str, labels: str = "") -> list[tuple[float, float]]:
    """The cumulative buckets ``(le, count)`` of histogram ``name`` whose other labels are
    ``labels`` (as the Python client prints them after ``le``, e.g. ``,rules="reading"``)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    pattern = re.compile(rf'^{name}_bucket{{le="([^"]+)"{re.escape(labels)}}} (\S+)$', re.M)
    return [(float(le), float(n)) for le, n in pattern.findall(text)]


def latency(args: argparse.Namespace, broker: KafkaBroker, folder: Path) -> None:
    """Pace the plant into the topic while ``twinflow run`` tails it; scrape the histograms."""
    seconds = args.hours * 3600
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=seconds + 600)
    topic = create_topic(broker.bootstrap, unique_topic("bench-e2e-paced"), PARTITIONS)
    plant, items = plant_messages(args.twins, seconds, args.message_s, start, args.wire)
    frames = [(f, p) for f, p in items if p is not None]
    payloads = [(f.twin_id.encode(), p, f.readings) for f, p in frames]
    total = sum(n for _, _, n in payloads)
    alerts_topic = create_topic(broker.bootstrap, unique_topic("bench-e2e-alerts"), 1)
    tail = AlertTail(broker.bootstrap, alerts_topic, args.tail_subscribe)
    commands_topic = create_topic(broker.bootstrap, unique_topic("bench-e2e-commands"), 1)
    commands = AlertTail(broker.bootstrap, commands_topic)
    sent_at: dict[str, list[tuple[float, float]]] = {}  # twin -> (newest reading, wall time)
    per_s = total / seconds  # readings per second of data
    port = free_port()
    with Postgres(settings={"shared_buffers": "256MB"}) as pg:
        url = None
        if not args.files_only:
            url = pg.create_database("bench_e2e_paced")
            migrate(url)
        lines = twin_lines(plant)
        config = deployment(
            folder,
            broker.bootstrap,
            topic,
            lines,
            url,
            args.lateness_s,
            alerts_topic,
            commands_topic,
        )
        if args.kafka_extra:  # librdkafka settings of the flow's clients, to compare
            pairs = ", ".join(f'"{k}": "{v}"' for k, v in kafka_extra(args.kafka_extra).items())
            text = config.read_text().replace(
                "    telemetry_topics:", f"    extra: {{{pairs}}}\n    telemetry_topics:"
            )
            config.write_text(text)
        argv = [sys.executable, "-m", "twinflow.flows.cli", "run", str(config)]
        argv += ["--out", str(folder / "paced"), "--quiet", "--metrics-port", str(port)]
        argv += args.run_args.split()
        env = {**os.environ, "PYTHONPATH": child_path()}
        err = (folder / "paced.log").open("w")
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
        try:
            if not args.tail_subscribe:
                tail.start()  # read back from now on, as the earlier way did not
            commands.start()
            time.sleep(args.warmup_s)  # let the flow start and subscribe before data flows
            producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
            acks: list[float] = []  # produce -> broker acknowledgement of each telemetry message

            def acked(error: object, msg: object) -> None:
                if error is None:
                    acks.append(msg.latency())  # type: ignore[attr-defined]

            sent, t0 = 0, time.perf_counter()
            if args.tail_subscribe:
                tail.start()
            tail.began = time.time()
            for (key, payload, n), (frame, _) in zip(payloads, frames, strict=True):
                ahead = t0 + sent / args.rate - time.perf_counter()
                if ahead > 0:
                    time.sleep(ahead)
                producer.produce(topic, payload, key=key, on_delivery=acked)
                sent_at.setdefault(frame.twin_id, []).append((frame.end, time.time()))
                producer.poll(0)
                sent += n
            produced_s = time.perf_counter() - t0
            assert producer.flush(60) == 0
            time.sleep(args.drain_s)
            per_reading, window, command = (
                scrape(port, "twinflow_reading_to_alert_seconds", ',rules="reading"'),
                scrape(port, "twinflow_reading_to_alert_seconds", ',rules="window"'),
                scrape(port, "twinflow_reading_to_command_seconds"),
            )
            flow_cpu = cpu_s(proc.pid)
        finally:
            tail.stop()
            commands.stop()
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
            err.close()
    print(
        f"paced: {args.twins} twins, {total:,} 1 Hz readings in messages of {args.message_s} s "
        f"of data, produced at {total / produced_s:,.0f} readings/s (asked {args.rate:,}) over "
        f"{produced_s:.1f} s; twinflow run {'to files only' if url is None else 'with database'}, "
        f"lateness_s {args.lateness_s:g} ({args.lateness_s * per_s / args.rate:.3f} s of wall "
        "time at this pace); clock from where twinflow decodes each message (its own "
        f"histograms, scraped); services.kafka.extra: {args.kafka_extra or 'none'}; the flow "
        f"used {flow_cpu:.1f} s of CPU (start-up included); load average {load_average()}"
    )
    timed = (
        ("reading -> alert, rules judged per reading, from the reading", per_reading),
        ("reading -> alert, window rules, from the frame that closed the window", window),
        ("reading -> command, from the reading behind the alert", command),
    )
    for label, buckets in timed:
        count = int(buckets[-1][1]) if buckets else 0
        if not count:
            print(f"  {label}: no observations")
            continue
        parts = []
        for q, tag in ((0.5, "p50"), (0.99, "p99"), (0.999, "p999")):
            value, lo, hi = quantile(buckets, q)
            parts.append(f"{tag} {value * 1000:,.0f} ms (bucket {lo:g}-{hi:g} s)")
        print(f"  {label} ({count:,} observations): " + ", ".join(parts))
    for name, buckets in (("per-reading rules", per_reading), ("window rules", window)):
        if buckets and buckets[-1][1]:  # the bucket's upper bound: met only if surely met
            p99 = quantile(buckets, 0.99)[2]
            print(f"target p99 <= 50 ms (the flow's own clock, {name}): "
                  f"{'met' if p99 <= 0.05 else 'NOT met'}")  # fmt: skip
    acks.sort()
    if acks:  # the part of reading -> alert spent before the broker had the reading
        qs = [acks[min(len(acks) - 1, int(q * len(acks)))] * 1000 for q in (0.5, 0.99, 0.999)]
        print(f"  telemetry produce -> broker acknowledgement ({len(acks):,} messages): p50 "
              f"{qs[0]:,.0f} ms, p99 {qs[1]:,.0f} ms, p999 {qs[2]:,.0f} ms, max "
              f"{acks[-1] * 1000:,.0f} ms")  # fmt: skip
    rule_latency(tail.got, sent_at, args.lateness_s, tail.began)
    command_latency(commands.got, sent_at)
    summary = (folder / "paced.log").read_text().splitlines()
    print("  the flow's summary:", *(f"    {line}" for line in summary[-8:]), sep="\n")
    if args.dump_alerts:  # each alert read back, with its consume time, for other analyses
        Path(args.dump_alerts).write_text(json.dumps({"began": tail.began, "got": tail.got}))


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as the kernel prints them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def kafka_extra(spec: str) -> dict[str, str]:
    """``'linger.ms=5,fetch.wait.max.ms=10'`` as librdkafka settings."""
    return dict(pair.split("=", 1) for pair in spec.split(",") if pair)


SENSOR_RULES = ("_stuck", "_spikes", "_out_of_range")


class AlertTail:
    """Reads the flow's alerts topic while the plant is paced in: each alert with the wall
    time it was received. By default the partition is assigned (no consumer group, so no
    join to wait for) and a fetch waits at most 5 ms; ``subscribe`` is the earlier read-back
    (group subscription, librdkafka's default 500 ms fetch wait), kept for comparison."""

    def __init__(self, bootstrap: str, topic: str, subscribe: bool = False) -> None:
        config: dict[str, object] = {"bootstrap.servers": bootstrap, "group.id": topic,
                                     "auto.offset.reset": "earliest"}  # fmt: skip
        if not subscribe:
            config |= {"fetch.wait.max.ms": 5, "enable.auto.commit": False}
        self.consumer = Consumer(config)
        if subscribe:
            self.consumer.subscribe([topic])
        else:
            self.consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        self.got: list[tuple[float, dict[str, object]]] = []
        self.began = 0.0  # wall time the bench began producing the plant
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        while not self.done.is_set():
            msg = self.consumer.poll(0.05)
            if msg is not None and msg.error() is None and msg.value():
                self.got.append((time.time(), json.loads(msg.value())))

    def stop(self) -> None:
        self.done.set()
        self.thread.join(5)
        self.consumer.close()


def rule_latency(
    got: list[tuple[float, dict[str, object]]],
    sent_at: dict[str, list[tuple[float, float]]],
    lateness_s: float,
    began: float,
    slowest: int = 5,
) -> None:
    """Reading -> alert from the alerts topic, apart for the sensor rules (stuck, spikes,
    range: judged per reading since issue 13) and the other (window) rules. The clock starts
    when the bench produced the message that reached the alert's time (a per-reading alert's
    time is its reading's, a window alert's its window's end) and, for window alerts, also
    when it produced the message that reached the window's end plus ``lateness_s`` (the
    message that closed the window); it stops when the alert was read back from Kafka."""

    def produced(twin: str, at: float) -> float | None:
        for newest, wall in sent_at.get(twin, ()):
            if newest >= at:
                return wall
        return None

    groups: dict[str, list[float]] = {}
    each: list[tuple[float, float, str, str, str]] = []  # for the slowest alerts' lines
    for seen, a in got:
        if a.get("state") != "raised":
            continue
        twin, rule = str(a["twin_id"]), str(a["rule"])
        at = datetime.fromisoformat(str(a["time"]).replace("Z", "+00:00")).timestamp()
        sensor = rule.endswith(SENSOR_RULES)
        name = "stuck/spike/range rules" if sensor else "window rules"
        wall = produced(twin, at)
        if wall is not None:
            groups.setdefault(f"{name}, from the reading at the alert's time", []).append(
                seen - wall
            )
            if sensor:
                each.append((seen - wall, wall - began, twin, rule, str(a["time"])))
        closed = produced(twin, at + lateness_s)
        if not sensor and closed is not None:
            groups.setdefault(f"{name}, from the message that closed the window", []).append(
                seen - closed
            )
    print("  reading -> alert read back from the alerts topic (produce time to consume time; "
          "exact quantiles of the raised alerts):")  # fmt: skip
    if not groups:
        print("    no raised alert")
    for name, xs in sorted(groups.items()):
        xs.sort()
        qs = [xs[min(len(xs) - 1, int(q * len(xs)))] * 1000 for q in (0.5, 0.99, 0.999)]
        print(f"    {name} ({len(xs)} alerts): p50 {qs[0]:,.0f} ms, p99 {qs[1]:,.0f} ms, "
              f"p999 {qs[2]:,.0f} ms, max {xs[-1] * 1000:,.0f} ms")  # fmt: skip
    first = min((seen for seen, _ in got), default=began)
    print(f"  slowest stuck/spike/range alerts (first alert read back "
          f"{first - began:.2f} s after producing began):")  # fmt: skip
    for took, after, twin, rule, at in sorted(each, reverse=True)[:slowest]:
        print(f"    {took * 1000:,.0f} ms: {twin} {rule} at {at}, its message produced "
              f"{after:.2f} s after producing began")  # fmt: skip


def command_latency(
    got: list[tuple[float, dict[str, object]]], sent_at: dict[str, list[tuple[float, float]]]
) -> None:
    """Reading -> command from the commands topic: the policy's queued commands, from the
    produce time of the message that reached the command's issue time (its alert's time) to
    the time it was consumed; every command read back is counted by origin and status."""
    kinds: dict[str, int] = {}
    took: list[float] = []
    for seen, c in got:
        kind = f"{c.get('origin')} {c.get('status')}"
        kinds[kind] = kinds.get(kind, 0) + 1
        if kind != "policy queued":
            continue
        at = datetime.fromisoformat(str(c["issued_at"]).replace("Z", "+00:00")).timestamp()
        wall = next((w for newest, w in sent_at.get(str(c["twin_id"]), ()) if newest >= at), None)
        if wall is not None:
            took.append(seen - wall)
    counted = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "none"
    print(f"  reading -> command read back from the commands topic (commands: {counted}):")
    if not took:
        print("    no queued policy command to time")
        return
    took.sort()
    qs = [took[min(len(took) - 1, int(q * len(took)))] * 1000 for q in (0.5, 0.99, 0.999)]
    print(f"    policy commands ({len(took)}): p50 {qs[0]:,.0f} ms, p99 {qs[1]:,.0f} ms, "
          f"p999 {qs[2]:,.0f} ms, max {took[-1] * 1000:,.0f} ms")  # fmt: skip


def memory_variants(spec: str) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """``--memory-variants``: ``|``-separated sides, each ``base`` or ``key=value,...``.

    Upper-case keys (``MALLOC_ARENA_MAX``) go to the child's environment, the others to
    ``services.kafka.extra`` (librdkafka settings, e.g. ``queued.max.messages.kbytes``).
    """
    sides = []
    for side in spec.split("|"):
        env: dict[str, str] = {}
        extra: dict[str, str] = {}
        for item in filter(None, side.split(",")):
            if item == "base":
                continue
            key, value = item.split("=", 1)
            (env if key.isupper() or key.startswith("flow.") else extra)[key] = value
        sides.append((side, env, extra))
    return sides


def run_variant(
    config: Path, folder: Path, env: dict[str, str], extra: dict[str, str]
) -> tuple[float, float]:
    """``run_twinflow`` with librdkafka ``extra`` settings and environment variables added."""
    if extra:
        text = config.read_text()
        pairs = ", ".join(f'"{k}": "{v}"' for k, v in extra.items())
        text = text.replace(
            "    telemetry_topics:", f"    extra: {{{pairs}}}\n    telemetry_topics:"
        )
        config.write_text(text)
    flow = {k[5:]: v for k, v in env.items() if k.startswith("flow.")}
    if flow:  # ``flow.write_telemetry=false``: a field of the deployment's flow section
        lines = "".join(f"\n  {k}: {v}" for k, v in flow.items())
        config.write_text(config.read_text().replace("\nflow:", "\nflow:" + lines, 1))
    env = {k: v for k, v in env.items() if not k.startswith("flow.")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return run_twinflow(config, folder)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def memory_compare(args: argparse.Namespace, broker: KafkaBroker, folder: Path) -> None:
    """One recording per twin count; the variants run on it interleaved over ``--rounds``."""
    sides = memory_variants(args.memory_variants)
    for n in [int(x) for x in args.memory.split(",")]:
        rec = record(broker.bootstrap, n, args.memory_minutes * 60, args.message_s)
        mib = rec.payload_bytes / 2**20
        print(f"{n:,} twins, {args.memory_minutes:g} min of data ({rec.readings:,} 1 Hz "
              f"readings, {rec.messages:,} messages, {mib:,.0f} MiB)")  # fmt: skip
        peaks: dict[str, list[float]] = {name: [] for name, _, _ in sides}
        rates: dict[str, list[float]] = {name: [] for name, _, _ in sides}
        for r in range(args.rounds):
            order = sides[r % len(sides) :] + sides[: r % len(sides)]
            for name, env, extra in order:
                config = deployment(folder, broker.bootstrap, rec.topic, rec.twin_lines, None)
                wall, peak = run_variant(config, folder, env, extra)
                peaks[name].append(peak)
                rates[name].append(rec.readings / wall)
                load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
                print(f"  round {r + 1} {name}: peak RSS {peak:,.0f} MiB, {wall:,.1f} s, "
                      f"{rec.readings / wall:,.0f} readings/s; load average {load}",
                      flush=True)  # fmt: skip
        base = statistics.median(peaks[sides[0][0]])
        for name, _, _ in sides:
            med = statistics.median(peaks[name])
            print(f"  {name}: peak RSS {_fmt(peaks[name])} MiB ({med / base:.2f}x the first), "
                  f"whole-run {_fmt(rates[name])} readings/s")  # fmt: skip
        if n == 10_000:  # the figure the benchmarks page quotes, with the load it ran under
            ok = base < 1000**3 / 2**20
            load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
            print(f"  target 10,000 twins < 1 GB peak RSS ({sides[0][0]}, median of "
                  f"{args.rounds}): {'met' if ok else 'NOT met'}; load average {load}")  # fmt: skip


def memory(args: argparse.Namespace, broker: KafkaBroker, folder: Path) -> None:
    """Peak RSS of ``twinflow run --until-end`` per twin count (``--memory-postgres``: each
    run also writes to a fresh PostgreSQL database of one server, as a deployment does)."""
    counts = [int(x) for x in args.memory.split(",")]
    empty = create_topic(broker.bootstrap, unique_topic("bench-e2e-empty"), PARTITIONS)
    peaks: dict[int, float] = {}
    with contextlib.ExitStack() as stack:
        pg = None
        if args.memory_postgres:
            pg = stack.enter_context(Postgres(settings={"shared_buffers": "256MB"}))
        made = [0]

        def database() -> str | None:
            if pg is None:
                return None
            made[0] += 1
            url = pg.create_database(f"bench_e2e_memory_{made[0]}")
            migrate(url)
            return url

        for n in counts:
            rec = record(broker.bootstrap, n, args.memory_minutes * 60, args.message_s)
            idle, idle_peak = run_twinflow(
                deployment(folder, broker.bootstrap, empty, rec.twin_lines, database()), folder
            )
            whole, peak = run_twinflow(
                deployment(folder, broker.bootstrap, rec.topic, rec.twin_lines, database()),
                folder,
            )
            peaks[n] = peak
            print(
                f"{n:,} twins, {args.memory_minutes:g} min of data ({rec.readings:,} 1 Hz "
                f"readings), {'with PostgreSQL' if pg else 'files only'}: peak RSS "
                f"{peak:,.0f} MiB ({peak * 1024 / n:,.1f} KiB per twin), empty topic "
                f"{idle_peak:,.0f} MiB; {rec.readings / (whole - idle):,.0f} readings/s; "
                f"load average {load_average()}",
                flush=True,
            )
    if len(counts) > 1:
        lo, hi = counts[0], counts[-1]
        grow = (peaks[hi] - peaks[lo]) * 1024 / (hi - lo)
        print(f"growth from {lo:,} to {hi:,} twins: {grow:,.1f} KiB per twin")
    if 10_000 in peaks:
        ok = peaks[10_000] < 1000 * 1000 * 1000 / 2**20
        print(f"target 10,000 twins < 1 GB peak RSS: {'met' if ok else 'NOT met'}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_read":
        _read_child(sys.argv[2], sys.argv[3], "--decode" in sys.argv)
        return
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--twins", type=int, default=50)
    ap.add_argument("--hours", type=float, default=2.0, help="data per twin (default 2)")
    ap.add_argument("--message-s", type=int, default=10, help="seconds of data per message")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--wire", choices=("json", "b1"), default="json", help="telemetry wire format (json)"
    )
    ap.add_argument("--latency", action="store_true", help="the paced latency run instead")
    ap.add_argument("--rate", type=int, default=50_000, help="paced readings/s (default 50k)")
    ap.add_argument("--warmup-s", type=float, default=8.0)
    ap.add_argument("--drain-s", type=float, default=15.0)
    ap.add_argument("--lateness-s", type=float, default=60.0, help="flow lateness (latency)")
    ap.add_argument(
        "--tail-subscribe",
        action="store_true",
        help="read alerts back the earlier way (group subscribe, 500 ms fetch wait)",
    )
    ap.add_argument(
        "--kafka-extra",
        default="",
        help="latency run: librdkafka settings for the flow, e.g. linger.ms=5",
    )
    ap.add_argument("--files-only", action="store_true", help="latency run without database")
    ap.add_argument("--run-args", default="", help="latency run: more twinflow run arguments")
    ap.add_argument("--dump-alerts", default="", help="latency run: write the alerts read back")
    ap.add_argument("--memory", default="", help="twin counts, e.g. 1000,10000 (memory run)")
    ap.add_argument("--memory-minutes", type=float, default=10.0)
    ap.add_argument(
        "--memory-postgres", action="store_true", help="memory run: write to PostgreSQL too"
    )
    ap.add_argument("--memory-variants", default="", help="sides to compare: base|k=v,...")
    args = ap.parse_args()
    runs: list[Callable[[argparse.Namespace, KafkaBroker, Path], None]] = []
    if args.latency:
        runs.append(latency)
    if args.memory:
        runs.append(memory_compare if args.memory_variants else memory)
    runs = runs or [throughput]
    print(f"bench_e2e on {os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    with KafkaBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        for fn in runs:
            fn(args, broker, Path(tmp))


if __name__ == "__main__":
    main()
