"""A type of one's own declares its what-if dynamics in its profile (``whatif: {dynamics:
...}``): ``twinflow whatif`` uses them without naming any, a Kafka-shaped request is answered
in the flow from the twin's live state (no broker: Bytewax testing sources), and a class
that cannot be imported stops the deployment loading, naming the file and the field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bytewax.testing import TestingSink, run_main

from tests.flows.test_whatif_live import Frames, Later
from tests.flows.test_whatif_user import RULES, SCENARIOS, START, recorded
from tests.operators.compressor import PROFILE, compressor_frames, write_compressor
from twinflow.connectors.kafka.whatif_requests import read_whatif_request
from twinflow.core.errors import ConfigError
from twinflow.core.times import utc
from twinflow.flows.cli import main
from twinflow.flows.config import FlowConfig
from twinflow.flows.decide_steps import Decide
from twinflow.flows.telemetry import FlowOutputs, build_flow
from twinflow.flows.whatif import read_whatif, what_if
from twinflow.flows.whatif_kafka import read_document
from twinflow.flows.whatif_live import WhatIfPool
from twinflow.operators.catalog import TwinType, load_catalogue
from twinflow.operators.whatif.request import WhatIfRequest, WhatIfResult

DYNAMICS = "tests.flows.test_whatif_user:CompressorDynamics"
DECLARED = f'whatif:\n  dynamics: "{DYNAMICS}"\n'
#: The what-if of the user-type test, without naming dynamics (the profile does).
ASKED = {k: v for k, v in SCENARIOS.items() if k not in ("dynamics", "twin")}


def catalog_with(folder: Path, extra: str) -> dict[str, TwinType]:
    write_compressor(folder, PROFILE + RULES + extra)
    return load_catalogue([folder])


def test_whatif_runs_the_dynamics_the_profile_declares(tmp_path: Path) -> None:
    catalog = catalog_with(tmp_path / "models", DECLARED)
    out = recorded(tmp_path / "out")
    report = what_if(out, read_whatif(ASKED, Path("s.yaml")), twin_id="comp-1", catalog=catalog)
    base, high, _fouled = report.outcomes
    t0 = report.time
    # the declared class drives the prediction: 11 bar heads for 20 + 88 = 108 degC
    assert high.mean("discharge_pressure", 1800, 3600, t0) == pytest.approx(11.0, abs=0.05)
    assert high.mean("discharge_temp", 3000, 3600, t0) == pytest.approx(108.0, abs=1.0)
    assert base.alerts == []
    assert "hot" in [a["rule"] for a in high.alerts if a["state"] == "raised"]


def test_twinflow_whatif_needs_no_dynamics_in_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_compressor(tmp_path / "models", PROFILE + RULES + DECLARED)
    out = recorded(tmp_path / "out")
    deployment = tmp_path / "plant.yaml"
    deployment.write_text(
        "version: 1\nmodels: [models]\n"
        "twins:\n  - {id: comp-1, type: compressor, protocol: replay}\n"
    )
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({**ASKED, "twin": "comp-1"}))
    assert main(["whatif", str(out), str(spec), "--config", str(deployment)]) == 0
    assert "alarm hot raised at +" in capsys.readouterr().out


def test_dynamics_that_cannot_be_imported_stop_the_deployment(tmp_path: Path) -> None:
    for i, (path, message) in enumerate(
        (
            ("no_such_module:X", r"cannot import it"),
            ("not a path", r"expected an import path 'package.module:Class'"),
            ("tests.flows.test_whatif_user:recorded", r"is not a dynamics class"),
        )
    ):
        extra = f'whatif:\n  dynamics: "{path}"\n'
        with pytest.raises(ConfigError, match=message) as got:
            catalog_with(tmp_path / f"m{i}", extra)
        assert f"compressor.yaml: whatif.dynamics = {path!r}" in str(got.value)
    with pytest.raises(ConfigError, match=r"unknown field 'whatif.dynamic'"):
        catalog_with(tmp_path / "typo", "whatif:\n  dynamic: x:Y\n")
    # inline in a deployment file: the error names that file and types.<name>.whatif
    deployment = tmp_path / "plant.yaml"
    write_compressor(tmp_path / "dtdl", PROFILE)
    (tmp_path / "dtdl" / "compressor.yaml").unlink()
    profile = PROFILE.replace("name: compressor\n", "") + 'whatif: {dynamics: "nope:X"}\n'
    inline = "\n".join("    " + line for line in profile.splitlines())
    deployment.write_text(
        f"version: 1\nmodels: [dtdl]\ntypes:\n  compressor:\n{inline}\n"
        "twins:\n  - {id: comp-1, type: compressor, protocol: replay}\n"
    )
    from twinflow.flows.deploy import load_deployment

    with pytest.raises(ConfigError, match=r"types\.compressor\.whatif\.dynamics = 'nope:X'"):
        load_deployment(deployment)


def test_twinflow_whatif_kafka_refuses_a_file_that_names_dynamics(tmp_path: Path) -> None:
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps(SCENARIOS))
    with pytest.raises(ConfigError, match=r"s\.json: dynamics: the flow does not take"):
        read_document(spec, None)
    spec.write_text(json.dumps(ASKED))
    doc, twin = read_document(spec, "comp-1")
    assert twin == "comp-1" and "dynamics" not in doc


@pytest.fixture
def pool() -> Iterator[WhatIfPool]:
    p = WhatIfPool(1, 2)
    yield p
    p.close()


def ask(rid: str, t0: float, catalog: dict[str, TwinType], **changes: Any) -> Any:
    """A request as the Kafka connector reads it from the request topic."""
    doc = {
        "request_id": rid,
        "twin_id": "comp-1",
        "expires_at": "2100-01-01T00:00:00Z",
        "whatif": {**ASKED, "horizon": "30m", "scenarios": SCENARIOS["scenarios"][:1], **changes},
    }
    return read_whatif_request(doc, utc(t0), {"comp-1": "compressor"}, catalog)


def answers(catalog: dict[str, TwinType], asked: list[Any], pool: WhatIfPool) -> dict[str, Any]:
    """The flow over 40 min of comp-1's telemetry, ``asked`` coming after it: results by id."""
    frames = compressor_frames(
        "comp-1", {"discharge_pressure": 8.0, "discharge_temp": 84.0, "motor_power": 120.0}, 40,
        START,
    )  # fmt: skip
    t0 = float(frames[-1].times[-1])
    got: list[Any] = []
    dead: list[Any] = []
    source = Frames(frames)
    kind = catalog["compressor"]
    flow = build_flow(
        source,
        FlowOutputs(dead_letters=TestingSink(dead), alerts=None, commands=None),
        FlowConfig(whatif_history_s=3600.0),
        clock=lambda: t0,
        twins={"comp-1": "compressor"},
        twin_types={"comp-1": kind},
        catalog=catalog,
        requests=[Later(asked, source.done, 0.5)],
        decide=Decide(whatif_sinks=[TestingSink(got)], pool=pool),
    )
    run_main(flow)  # type: ignore[no-untyped-call]
    assert dead == []  # nothing the flow was asked ended as a dead letter
    return {r.request_id: r for _k, r in got}


def test_a_request_for_a_user_type_is_answered_in_the_flow(
    tmp_path: Path, pool: WhatIfPool
) -> None:
    catalog = catalog_with(tmp_path / "models", DECLARED)
    t0 = START + 40 * 60
    asked = [ask("r1", t0, catalog)]
    assert isinstance(asked[0], WhatIfRequest), asked[0]
    refused = ask("r2", t0, catalog, dynamics=DYNAMICS)  # a message may not choose code
    assert isinstance(refused, WhatIfResult) and refused.status == "rejected"
    assert "whatif.dynamics is not accepted" in str(refused.reason)
    result = answers(catalog, asked, pool)["r1"]
    assert result.status == "done", result.reason
    report = result.to_json()["report"]
    assert [s["name"] for s in report["scenarios"]] == ["no change", "11 bar"]
    base, high = (s["signals"]["discharge_pressure"] for s in report["scenarios"])
    assert base[-1] == pytest.approx(8.0, abs=0.2)
    assert high[-1] == pytest.approx(11.0, abs=0.2)  # the profile's dynamics ran in the worker


def test_a_request_for_a_user_type_without_dynamics_is_rejected(
    tmp_path: Path, pool: WhatIfPool
) -> None:
    catalog = catalog_with(tmp_path / "models", "")
    t0 = START + 40 * 60
    result = answers(catalog, [ask("r1", t0, catalog)], pool)["r1"]
    assert result.status == "rejected"
    assert "'compressor' is not simulated by twinflow" in str(result.reason)
    assert "whatif: {dynamics: package.module:Class}" in str(result.reason)
