"""``twinflow run --until-end`` of a central instance: it gets the state, stores it, ends.

A central deployment with no telemetry of its own, started empty, asks the edges for their
state; an edge node in the test answers with its kept writes (not its whole history); the
run stores them in ``replicated.jsonl`` and in PostgreSQL (``replicated_writes``, and the
sync status in ``sync_status``) and ends by itself once settled (outbox drained, nothing
waiting, quiet). Run again, it loads its saved state, asks nothing and ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.flows.test_replication_roles import node
from tests.services.mosquitto import Mosquitto, free_port
from tests.services.postgres import Postgres
from twinflow.connectors.files import read_jsonl
from twinflow.connectors.postgres import migrate
from twinflow.connectors.postgres.connection import psycopg
from twinflow.operators.replication.update import update_id

pytestmark = [pytest.mark.services, pytest.mark.timeout(240)]

ROUNDS = 25


@pytest.fixture(scope="module")
def mqtt() -> Iterator[Mosquitto]:
    with Mosquitto() as broker:
        yield broker


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with Postgres() as pg:
        url = pg.create_database("replication_until_end")
        migrate(url)
        yield url


def run_until_end(path: Path, out: Path, *extra: str) -> str:
    """``twinflow run --until-end``; fails the test unless it ends by itself, cleanly."""
    main = "import sys; from twinflow.flows.cli import main; sys.exit(main())"
    proc = subprocess.run(
        [
            sys.executable, "-c", main,
            "run", str(path), "--out", str(out), "--quiet", "--until-end", *extra,
        ],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        timeout=120,
    )  # fmt: skip
    output = (proc.stdout + proc.stderr).decode()
    assert proc.returncode == 0, output[-3000:]
    return output


def test_a_central_run_until_end_gets_the_edges_state_and_ends(
    tmp_path: Path, mqtt: Mosquitto, database: str
) -> None:
    base = f"end-{uuid.uuid4().hex[:8]}"
    edge = node(mqtt, tmp_path, "edge-a", base, "edge").start()
    try:
        for i in range(ROUNDS):
            for prop in ("power_limit", "yaw_deg"):
                edge.link.write("wt-001", "desired", prop, 100.0 + i)
        path = tmp_path / "central.yaml"
        path.write_text(f"""
version: 1
site: hq
services:
  mqtt: {{url: "mqtt://127.0.0.1:{mqtt.port}", client_id: "central-{free_port()}"}}
  database: {{url: "{database}"}}
twins:
  - {{id: wt-001, type: wind_turbine, protocol: replay}}
replication: {{role: central, replica: central, topic: {base}, status_interval_s: 0.5}}
""")
        out = tmp_path / "out"
        run_until_end(path, out)
        docs = list(read_jsonl(out / "replicated.jsonl"))
        kept = {update_id(w) for w in edge.replica.writes()}
        assert {d["update_id"] for d in docs} == kept  # the kept writes, each once
        assert len(docs) == len(kept) < 2 * ROUNDS  # not the whole history
        assert edge.link.counts["state_sent"] == len(kept)
        newest = {d["property"]: d["value"] for d in docs if d["outcome"] == "won"}
        assert newest == {"power_limit": 100.0 + ROUNDS - 1, "yaw_deg": 100.0 + ROUNDS - 1}
        assert (out / "replication-outbox" / "replica-state.jsonl").exists()
        with psycopg.connect(database) as conn:  # the same in the database
            stored_ids = conn.execute("SELECT update_id FROM twinflow.replicated_writes")
            assert {r[0] for r in stored_ids} == kept
            latest = conn.execute(
                "SELECT property, state FROM twinflow.sync_status_latest ORDER BY property"
            ).fetchall()
        assert latest == [("power_limit", "in_sync"), ("yaw_deg", "in_sync")]

        # Again: the saved state is loaded, nothing is asked, the run ends quiet.
        run_until_end(path, out, "--overwrite")
        stored = out / "replicated.jsonl"
        assert not stored.exists() or list(read_jsonl(stored)) in ([], docs)  # nothing new
        assert edge.link.counts["state_sent"] == len(kept)
    finally:
        edge.stop()
