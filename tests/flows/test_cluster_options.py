"""The cluster options of ``twinflow run``/``replay`` and Bytewax's variables (no services)."""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
from pathlib import Path

import pytest

from twinflow.core.errors import ConfigError
from twinflow.flows.cli import parser
from twinflow.flows.cluster import Cluster, LocalPace, cluster_from, cluster_recovery


def parsed(*argv: str, env: dict[str, str] | None = None) -> Cluster:
    return cluster_from(parser().parse_args(["run", "plant.yaml", *argv]), env or {})


def test_alone_by_default() -> None:
    c = parsed()
    assert c == Cluster(1, None, ())
    assert c.main_kwargs() == {"workers_per_process": 1}
    assert (c.processes, c.index, c.workers) == (1, 0, 1)


def test_the_command_line_names_the_process_and_its_peers() -> None:
    c = parsed("-w", "3", "--process-id", "1", "--addresses", "a:2101;b:2101;c:2101")
    assert c.main_kwargs() == {
        "workers_per_process": 3,
        "process_id": 1,
        "addresses": ["a:2101", "b:2101", "c:2101"],
    }
    assert (c.processes, c.workers) == (3, 9)


def test_the_old_workers_option_still_works_for_replay() -> None:
    args = parser().parse_args(["replay", "plant.yaml", "data.csv", "--workers", "2"])
    assert cluster_from(args, {}).workers_per_process == 2


def test_bytewax_variables_fill_what_the_command_line_leaves_out() -> None:
    env = {
        "BYTEWAX_WORKERS_PER_PROCESS": "2",
        "BYTEWAX_PROCESS_ID": "0",
        "BYTEWAX_ADDRESSES": "h0:1;h1:1",
    }
    assert parsed(env=env) == Cluster(2, 0, ("h0:1", "h1:1"))
    # an option wins over its variable
    assert parsed("-w", "4", "-i", "1", env=env) == Cluster(4, 1, ("h0:1", "h1:1"))


def test_a_statefulset_pod_takes_its_ordinal_and_the_hostfile(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("tf-0.tf.ns.svc:2101\n\n  tf-1.tf.ns.svc:2101  \ntf-2.tf.ns.svc:2101\n")
    env = {
        "BYTEWAX_POD_NAME": "tf-2",
        "BYTEWAX_STATEFULSET_NAME": "tf",
        "BYTEWAX_HOSTFILE_PATH": str(hosts),
    }
    c = parsed(env=env)
    assert c.process_id == 2
    assert c.addresses == ("tf-0.tf.ns.svc:2101", "tf-1.tf.ns.svc:2101", "tf-2.tf.ns.svc:2101")
    # BYTEWAX_PROCESS_ID wins over the pod name, as in bytewax.run
    assert parsed(env={**env, "BYTEWAX_PROCESS_ID": "0"}).process_id == 0


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["-i", "0"], {}, "needs --addresses"),
        (["-a", "h:1;h:2"], {}, "needs --process-id"),
        (["-i", "2", "-a", "h:1;h:2"], {}, "not below the number of --addresses"),
        (["-i", "0", "-a", "h:1;nohost"], {}, "'nohost' is not host:port"),
        (["-i", "0", "-a", "h:1;h:99999"], {}, "'h:99999' is not host:port"),
        (["-i", "0", "-a", "h:1;h:1"], {}, "names a process twice"),
        ([], {"BYTEWAX_PROCESS_ID": "x"}, "BYTEWAX_PROCESS_ID='x' is not a whole number"),
        ([], {"BYTEWAX_WORKERS_PER_PROCESS": "0"}, "must be at least 1"),
        (
            [],
            {"BYTEWAX_POD_NAME": "web-x", "BYTEWAX_STATEFULSET_NAME": "web"},
            "is not a pod of",
        ),
        (
            [],
            {"BYTEWAX_PROCESS_ID": "0", "BYTEWAX_HOSTFILE_PATH": "/nonexistent/hosts"},
            "cannot read it",
        ),
    ],
)
def test_bad_cluster_settings_are_refused_with_what_to_fix(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        parsed(*argv, env=env)


def test_a_negative_process_id_is_a_usage_error() -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["run", "plant.yaml", "-i", "-1"])


def test_each_process_creates_its_own_share_of_the_partitions(tmp_path: Path) -> None:
    cluster = [Cluster(3, i, ("a:1", "b:1")) for i in (0, 1)]
    for c in cluster:
        cluster_recovery(tmp_path / f"p{c.index}", c)
    names = {c.index: parts(tmp_path / f"p{c.index}") for c in cluster}
    # 6 workers in all: 6 partitions, even ones on process 0, odd ones on process 1
    assert names[0] == ["part-0.sqlite3", "part-2.sqlite3", "part-4.sqlite3"]
    assert names[1] == ["part-1.sqlite3", "part-3.sqlite3", "part-5.sqlite3"]
    with contextlib.closing(sqlite3.connect(tmp_path / "p1" / "part-3.sqlite3")) as conn:
        assert conn.execute("SELECT part_index, part_count FROM parts").fetchall() == [(3, 6)]
    assert (tmp_path / "p1").stat().st_mode & 0o777 == 0o700
    # a second start reuses them as they are
    cluster_recovery(tmp_path / "p1", cluster[1])
    assert parts(tmp_path / "p1") == names[1]


def parts(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("part-*.sqlite3"))


def test_a_recovery_directory_with_other_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="holds files but no recovery partitions"):
        cluster_recovery(tmp_path, Cluster(1, 0, ("a:1", "b:1")))


def test_a_process_paces_only_the_files_it_reads() -> None:
    pace = LocalPace(4)
    pace.built(1)
    pace.built(3)
    pace.moved(1, 100.0)
    # files 0 and 2 belong to another process: they never hold file 1 back for ever
    assert not pace.may_read(1)
    assert pace.may_read(3)
    pace.moved(3, 200.0)
    assert pace.may_read(1) and not pace.may_read(3)
    pace.finish(1)
    assert pace.may_read(3)


def test_argparse_namespace_without_cluster_options_is_alone() -> None:
    ns = argparse.Namespace(workers=None, process_id=None, addresses=None)
    assert cluster_from(ns, {}) == Cluster()


def test_recovery_made_for_another_cluster_is_refused(tmp_path: Path) -> None:
    pair = ("a:1", "b:1")
    cluster_recovery(tmp_path / "p1", Cluster(1, 1, pair))
    cluster_recovery(tmp_path / "p1", Cluster(1, 1, pair))  # the same process again: fine
    for other, what in (
        (Cluster(1, 0, pair), "process 0 of 2 keeps \\[0, 2\\]"),
        (Cluster(1, 1, ("a:1", "b:1", "c:1")), "process 1 of 3 keeps \\[1\\]"),
        (Cluster(1), "process 0 of 1 keeps \\[0, 1, 2, 3\\]"),
    ):
        with pytest.raises(ConfigError, match=what):
            cluster_recovery(tmp_path / "p1", other)
    # a single process's own directory resumes as before
    cluster_recovery(tmp_path / "alone", Cluster(2))
    cluster_recovery(tmp_path / "alone", Cluster(2))
    assert parts(tmp_path / "alone") == [f"part-{j}.sqlite3" for j in range(4)]


def test_a_partition_file_that_is_not_one_is_refused(tmp_path: Path) -> None:
    (tmp_path / "part-0.sqlite3").write_bytes(b"not a database at all, but long enough" * 4)
    with pytest.raises(ConfigError, match="not a recovery partition"):
        cluster_recovery(tmp_path, Cluster(1, 0, ("a:1", "b:1")))


@pytest.mark.timeout(60)  # without the refusal, process 0 would wait for its peer for ever
def test_a_cluster_replay_refuses_to_score_a_share_of_the_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from twinflow.flows.cli import main

    example = Path(__file__).resolve().parents[2] / "infra" / "examples" / "compressor"
    data = tmp_path / "comp.csv"
    data.write_text(
        "time,twin_id,discharge_pressure,discharge_temp,motor_power\n"
        "2026-03-02 06:00:00,comp-1,7.6,84.0,120.0\n"
    )
    faults = tmp_path / "faults.csv"
    faults.write_text(
        "twin_id,kind,onset,failure\ncomp-1,overheating,2026-03-02T07:00:00+00:00,2026-03-02T08:00:00+00:00\n"
    )
    argv = ["replay", str(example / "recorded.yaml"), str(data), "--tz", "UTC", "--quiet"]
    argv += ["--out", str(tmp_path / "out"), "--faults", str(faults), "-i", "0", "-a", "h:1;h:2"]
    assert main(argv) == 2
    assert "scoring (--faults, --labels) needs the outputs of every twin" in capsys.readouterr().err
