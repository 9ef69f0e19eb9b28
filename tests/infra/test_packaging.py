"""The container image, the local stack and the Kubernetes manifests, checked offline.

There is no Docker engine or cluster here, so each file is checked by the tools that the
platforms themselves use or publish, plus the facts that tie the files to twinflow:

- ``Dockerfile``: parsed by BuildKit's own parser (the ``dockerfile`` package) and linted by
  hadolint; stages, non-root user, entry point, extras; ``.dockerignore`` keeps the context
  to what the build copies.
- ``infra/compose/compose.yaml``: validated against the Compose Specification's JSON schema
  (the copy bundled by ``check-jsonschema``); every twinflow command parses with twinflow's
  own command line and the two ``run`` services form one cluster.
- ``infra/k8s/``: the kustomize base rendered (its resources and image override) and every
  object validated against the Kubernetes API schemas bundled by ``kubernetes-validate``
  (strict: an unknown field is an error); the StatefulSet, Service, ConfigMap, Secret and
  Job agree with each other and with twinflow's options.

Each schema check also shows that a broken copy is refused, so none of them passes vacuously.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import shutil
import subprocess
import sys
import tomllib
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import dockerfile
import jsonschema
import kubernetes_validate
import pytest
import yaml

from twinflow.flows.cli import parser
from twinflow.flows.cluster import cluster_from
from twinflow.flows.deploy import load_deployment

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "infra" / "compose" / "compose.yaml"
K8S = ROOT / "infra" / "k8s"
#: infra/examples is copied to /opt/twinflow/examples in the image.
EXAMPLES = ROOT / "infra" / "examples"


# --- Dockerfile ---------------------------------------------------------------------------


@cache
def instructions() -> tuple[dockerfile.Command, ...]:
    return tuple(dockerfile.parse_file(str(ROOT / "Dockerfile")))


def stages() -> list[list[dockerfile.Command]]:
    out: list[list[dockerfile.Command]] = []
    for cmd in instructions():
        if cmd.cmd == "FROM":
            out.append([])
        if out:
            out[-1].append(cmd)
    return out


def arg_defaults() -> dict[str, str]:
    out = {}
    for cmd in instructions():
        if cmd.cmd == "ARG" and "=" in cmd.value[0]:
            name, _, value = cmd.value[0].partition("=")
            out[name] = value
    return out


def of(stage: list[dockerfile.Command], name: str) -> list[dockerfile.Command]:
    return [c for c in stage if c.cmd == name]


def test_the_image_builds_in_two_stages_onto_a_slim_base() -> None:
    build, runtime = stages()
    assert build[0].value[1:] == ("AS", "build") and runtime[0].value[1:] == ("AS", "runtime")
    for stage in (build, runtime):
        assert "-slim" in stage[0].value[0], stage[0].original
    # the runtime stage takes only the installed environment from the build stage
    assert [c.flags for c in of(runtime, "COPY") if c.flags] == [("--from=build",)]
    assert not of(runtime, "RUN") or all(
        "pip install" not in c.value[0] for c in of(runtime, "RUN")
    )


def test_the_image_runs_twinflow_as_an_unprivileged_user() -> None:
    runtime = stages()[-1]
    (entry,) = of(runtime, "ENTRYPOINT")
    assert entry.json and entry.value == ("twinflow",)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "twinflow" in scripts
    (user,) = of(runtime, "USER")
    uid = user.value[0].split(":")[0].replace("${UID}", arg_defaults()["UID"])
    assert uid.isdigit() and int(uid) >= 1000, user.original
    # the user is created in that stage and owns the working directory
    assert any("useradd" in c.value[0] and "--uid" in c.value[0] for c in of(runtime, "RUN"))
    assert "2101" in of(runtime, "EXPOSE")[0].value and "9100" in of(runtime, "EXPOSE")[0].value


def test_extras_are_chosen_by_a_build_argument_naming_real_extras() -> None:
    build = stages()[0]
    assert any(c.value[0].startswith("EXTRAS=") for c in of(build, "ARG"))
    (install,) = [c for c in of(build, "RUN") if "pip install" in c.value[0]]
    assert "${EXTRAS" in install.value[0]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert all(e in extras for e in arg_defaults()["EXTRAS"].split(","))


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    done = subprocess.run(
        [exe, "--no-color", "--failure-threshold", "info", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /src && pip install .\n")
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    done = subprocess.run([exe, "--no-color", str(bad)], capture_output=True, text=True)
    assert done.returncode != 0 and "DL3007" in done.stdout


def ignored(path: str, rules: list[str]) -> bool:
    """Docker's rule for ``.dockerignore``: the last pattern matching the path or one of its
    parent folders decides; ``!`` re-includes."""
    out = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for rule in rules:
        negate = rule.startswith("!")
        pattern = rule.removeprefix("!").rstrip("/").removeprefix("**/")
        if rule.removeprefix("!").startswith("**/"):
            hit = any(fnmatch.fnmatch(p, pattern) for p in parts)
        else:
            hit = any(fnmatch.fnmatch(p, pattern) for p in prefixes)
        if hit:
            out = not negate
    return out


def test_the_build_context_holds_what_the_build_copies_and_no_local_state() -> None:
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = [s for c in instructions() if c.cmd == "COPY" and not c.flags for s in c.value[:-1]]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), src
        assert not ignored(src.rstrip("/") + "/x.py", rules), f"{src} is excluded"
    for local in (".venv/bin/python", ".git/config", "out/demo/summary.json", "tests/conftest.py"):
        assert ignored(local, rules), f"{local} would be sent to the builder"
    assert ignored("flows/__pycache__/cli.cpython-311.pyc", rules)


# --- compose ------------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]


def compose_schema() -> dict[str, Any]:
    vendor = files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text())  # type: ignore[no-any-return]


def schema_errors(schema: dict[str, Any], doc: Any) -> list[str]:
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


def test_the_compose_file_follows_the_compose_specification() -> None:
    assert schema_errors(compose_schema(), compose()) == []
    broken = copy.deepcopy(compose())
    broken["services"]["migrate"]["depends_on"]["timescaledb"]["condition"] = "when_ready"
    broken["services"]["grafana"]["port"] = ["3000:3000"]
    errors = schema_errors(compose_schema(), broken)
    assert any(e.startswith("['services', 'migrate', 'depends_on']") for e in errors), errors
    assert any(e.startswith("['services', 'grafana']") and "'port'" in e for e in errors), errors


def test_the_stack_has_brokers_database_monitoring_and_a_two_process_cluster() -> None:
    services = compose()["services"]
    images = {name: s.get("image", "") for name, s in services.items()}
    assert images["mosquitto"].startswith("eclipse-mosquitto:")
    assert images["timescaledb"].startswith("timescale/timescaledb:")
    assert images["prometheus"].startswith("prom/prometheus:")
    assert images["grafana"].startswith("grafana/grafana:")
    kafka = services["kafka"]["environment"]
    assert "controller" in kafka["KAFKA_PROCESS_ROLES"], "Kafka runs in KRaft mode"
    assert not any("zookeeper" in i for i in images.values())
    commands = {name: s.get("command") for name, s in services.items() if "build" in s}
    assert commands["migrate"] == ["db", "migrate"]
    assert commands["simulator"][0] == "simulate"
    runs = sorted(n for n, c in commands.items() if c and c[0] == "run")
    assert len(runs) == 2
    for name in runs:
        needs = services[name]["depends_on"]
        assert needs["migrate"]["condition"] == "service_completed_successfully"


def test_every_twinflow_command_of_the_stack_parses_and_the_runs_form_one_cluster() -> None:
    services = compose()["services"]
    seen = []
    for name, s in services.items():
        if "build" not in s:
            continue
        args = parser().parse_args(s["command"])
        if args.command != "run":
            continue
        cluster = cluster_from(args, {k: str(v) for k, v in s["environment"].items()})
        seen.append((cluster.process_id, cluster.addresses, args.metrics_port, name))
        assert args.metrics_address == "0.0.0.0", "Prometheus scrapes from another container"
        assert args.recovery_dir is not None and args.recovery_dir.is_relative_to(
            "/var/lib/twinflow"
        )
    assert [p for p, *_ in sorted(seen)] == [0, 1]
    assert len({a for _, a, *_ in seen}) == 1, "both processes must list the same addresses"
    # Prometheus scrapes each process's metrics port (they share the simulator's network)
    prom = yaml.safe_load((COMPOSE.parent / "prometheus" / "prometheus.yml").read_text())
    targets = {
        t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    }
    assert targets == {f"simulator:{port}" for _, _, port, _ in seen}


def test_the_stack_reads_the_example_deployment_with_its_services_from_the_environment() -> None:
    env = {k: str(v) for k, v in compose()["services"]["twinflow-0"]["environment"].items()}
    env = {k: v.replace("${TWINFLOW_DB_PASSWORD:-twinflow-local}", "x") for k, v in env.items()}
    dep = load_deployment(ROOT / "infra" / "examples" / "plant.yaml", env)
    assert dep.database_url and "timescaledb" in dep.database_url
    assert dep.kafka is not None and dep.kafka.bootstrap == "kafka:9092"


def test_the_simulated_plant_never_runs_further_ahead_than_the_flow_accepts() -> None:
    args = parser().parse_args(compose()["services"]["simulator"]["command"])
    copied = [
        c.value for c in instructions() if c.cmd == "COPY" and c.value[0] == "infra/examples/"
    ]
    assert copied == [("infra/examples/", "/opt/twinflow/examples/")]
    dep = load_deployment(EXAMPLES / args.config.relative_to("/opt/twinflow/examples"), {})
    speed = args.speed or dep.simulator.speed
    duration = args.duration or dep.simulator.duration_s
    ahead = duration * (1 - 1 / speed)  # simulated time beyond the wall clock at the end
    assert ahead <= dep.flow.max_future_s, "the flow would refuse the plant's readings as future"


def test_the_stack_mounts_files_that_exist() -> None:
    for s in compose()["services"].values():
        for volume in s.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (COMPOSE.parent / source).exists(), source
            elif source.startswith("../"):  # infra/grafana, infra/prometheus: operations' files
                assert (COMPOSE.parent / source).resolve().parent == ROOT / "infra", source


# --- Kubernetes -----------------------------------------------------------------------------


@cache
def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())  # type: ignore[no-any-return]


def rendered() -> list[dict[str, Any]]:
    """The base as ``kustomize build`` renders it: its resources with the image override
    (the only transformation it uses; any other field is refused here)."""
    k = kustomization()
    assert set(k) <= {"apiVersion", "kind", "resources", "images"}, set(k)
    images = {i["name"]: f"{i.get('newName', i['name'])}:{i['newTag']}" for i in k["images"]}
    docs = [d for f in k["resources"] for d in yaml.safe_load_all((K8S / f).read_text()) if d]
    for d in docs:
        pod = d.get("spec", {}).get("template", {}).get("spec", {})
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            c["image"] = images.get(c["image"], c["image"])
    return docs


def named(kind: str) -> dict[str, Any]:
    (doc,) = [d for d in rendered() if d["kind"] == kind]
    return doc


def test_the_base_lists_every_manifest_in_its_folder() -> None:
    listed = set(kustomization()["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


def test_every_rendered_object_validates_against_the_kubernetes_schemas() -> None:
    version = kubernetes_validate.latest_version()
    kinds = []
    for doc in rendered():
        kubernetes_validate.validate(doc, version, strict=True)
        kinds.append(doc["kind"])
    assert sorted(kinds) == ["ConfigMap", "Job", "Secret", "Service", "StatefulSet"]
    broken = named("StatefulSet")
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGets"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def container(doc: dict[str, Any]) -> dict[str, Any]:
    (c,) = doc["spec"]["template"]["spec"]["containers"]
    return c  # type: ignore[no-any-return]


def test_the_statefulset_is_a_bytewax_cluster_behind_a_headless_service() -> None:
    sts, svc = named("StatefulSet"), named("Service")
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"]
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"]
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert svc["spec"]["selector"].items() <= labels.items()
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    c = container(sts)
    env = {e["name"]: e for e in c["env"]}
    assert env["BYTEWAX_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["BYTEWAX_STATEFULSET_NAME"]["value"] == sts["metadata"]["name"]
    port = {p["name"]: p["containerPort"] for p in c["ports"]}
    name, service, replicas = (
        sts["metadata"]["name"],
        svc["metadata"]["name"],
        sts["spec"]["replicas"],
    )
    expected = ";".join(f"{name}-{i}.{service}:{port['bytewax']}" for i in range(replicas))
    assert env["BYTEWAX_ADDRESSES"]["value"] == expected
    # each pod is the process its ordinal says, as twinflow reads the variables
    args = parser().parse_args(c["args"])
    for i in range(replicas):
        values = {k: e["value"] for k, e in env.items() if "value" in e}
        cluster = cluster_from(args, {**values, "BYTEWAX_POD_NAME": f"{name}-{i}"})
        assert (cluster.process_id, cluster.processes) == (i, replicas)


def test_each_pod_keeps_recovery_on_its_own_volume_and_serves_probed_metrics() -> None:
    sts = named("StatefulSet")
    c = container(sts)
    args = parser().parse_args(c["args"])
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert args.recovery_dir.is_relative_to(mounts[claim["metadata"]["name"]])
    assert args.out.is_relative_to(mounts[claim["metadata"]["name"]])
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    port = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert args.metrics_port == port["metrics"]
    assert args.metrics_address == "0.0.0.0", "the kubelet probes the pod's address"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    # the startup probe waits out --wait-for-services before liveness may restart the pod
    start = c["startupProbe"]
    assert start["periodSeconds"] * start["failureThreshold"] > args.wait_for_services
    notes = sts["spec"]["template"]["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true"
    assert notes["prometheus.io/port"] == str(port["metrics"])
    assert {"cpu", "memory"} <= set(c["resources"]["requests"])
    pod = sts["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] >= 1000
    # a recursive fsGroup change at every start would make the snapshots group-writable
    assert pod["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"
    assert c["image"] == "twinflow:" + kustomization()["images"][0]["newTag"]


def test_the_deployment_comes_from_the_configmap_and_services_from_the_secret(
    tmp_path: Path,
) -> None:
    sts, cm, secret = named("StatefulSet"), named("ConfigMap"), named("Secret")
    c = container(sts)
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    args = parser().parse_args(c["args"])
    config = args.config
    volume = volumes[mounts[str(config.parent)]]
    assert volume["configMap"]["name"] == cm["metadata"]["name"]
    assert config.name in cm["data"]
    assert [e["secretRef"]["name"] for e in c["envFrom"]] == [secret["metadata"]["name"]]
    # the ConfigMap's file is a valid deployment once the Secret's variables are set
    path = tmp_path / config.name
    path.write_text(cm["data"][config.name])
    dep = load_deployment(path, secret["stringData"])
    assert dep.kafka is not None and dep.kafka.bootstrap == secret["stringData"]["KAFKA_BOOTSTRAP"]
    assert dep.database_url and "sslmode=verify-full" in dep.database_url


def test_the_migration_job_applies_the_schema_with_the_same_secret() -> None:
    job, sts = named("Job"), named("StatefulSet")
    c = container(job)
    args = parser().parse_args(c["args"])
    assert (args.command, args.db_command) == ("db", "migrate")
    assert c["envFrom"] == container(sts)["envFrom"]
    assert c["image"] == container(sts)["image"]
