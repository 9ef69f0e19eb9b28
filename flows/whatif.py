"""``twinflow whatif``: run a twin forward under scenarios and compare them with no change.

From the twin's state (:mod:`twinflow.flows.whatif_state`: a run's outputs or PostgreSQL),
each scenario of a what-if file (:mod:`twinflow.operators.whatif`) runs the type's dynamics
over the horizon: the simulator's machines for the bundled types
(:mod:`twinflow.flows.whatif_machines`), for a type of your own the class its profile
declares (``whatif: {dynamics: ...}``) or the what-if file names. The predicted signals then
go, after the twin's recorded history, through the telemetry flow itself (:func:`build_flow`),
so the same windows, anomaly model, rules and RUL estimator judge them as in a run: the
report (:mod:`twinflow.flows.whatif_report`) gives each scenario's signals, the alarms it
would raise or clear and when, and its time to failure with its interval, against the
baseline.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from twinflow.core.errors import ConfigError
from twinflow.core.records import Alert, TelemetryFrame, WindowFeatures
from twinflow.core.times import parse_duration
from twinflow.flows.whatif_report import BLOCK_S, Outcome, WhatIfReport, outcome, render
from twinflow.operators.whatif import Dynamics, Scenario, WhatIf, read_whatif
from twinflow.operators.whatif.dynamics import load_dynamics
from twinflow.operators.whatif.scenario import CHUNK_S, INHERIT

if TYPE_CHECKING:  # the command line builds its parser from here: keep the import light
    from twinflow.flows.config import FlowConfig
    from twinflow.flows.whatif_state import TwinNow
    from twinflow.operators.catalog import TwinType


def make_dynamics(whatif: WhatIf, kind: TwinType) -> Callable[[], Dynamics]:
    """The factory of the twin type's dynamics: the what-if file's class, else the one its
    profile declares (``whatif.dynamics``), else the simulator's."""
    from twinflow.operators.rulebook import section_of
    from twinflow.operators.whatif.dynamics import WhatIfProfile

    if whatif.dynamics is not None:
        cls = load_dynamics(whatif.dynamics, f"{whatif.file}: dynamics")
        return cls
    declared = section_of(kind, "whatif", WhatIfProfile()).dynamics
    if declared is not None:
        return load_dynamics(declared, f"twin type {kind.name!r}: whatif.dynamics")
    from twinflow.flows.whatif_machines import SimulatedDynamics

    try:
        SimulatedDynamics(kind.name)
    except KeyError:
        raise ConfigError(
            f"{whatif.file}: twin type {kind.name!r} is not simulated by twinflow and its "
            "profile declares no what-if dynamics (whatif: {dynamics: package.module:Class})"
        ) from None
    return lambda: SimulatedDynamics(kind.name)


def check_steps(whatif: WhatIf, kind: TwinType, inputs: Mapping[str, float]) -> None:
    """Refuse a step the twin type cannot take, naming its field."""
    commands = {a.name: a for a in kind.actuators}
    f = whatif.file
    for s in whatif.scenarios:
        for step in s.steps:
            if step.at_s >= whatif.horizon_s:
                raise ConfigError(f"{f}: {step.where}.at is at or beyond the horizon")
            if step.command is not None:
                spec = commands.get(step.command)
                if spec is None:
                    raise ConfigError(
                        f"{f}: {step.where}.command = {step.command!r}: {kind.name} has no such "
                        f"command (it has: {', '.join(sorted(commands)) or 'none'})"
                    )
                problems = spec.check(step.params)
                if problems:
                    raise ConfigError(f"{f}: {step.where}.params: {'; '.join(problems)}")
            for key, names in (("set", step.set), ("change", step.change)):
                for name in names:
                    if name not in inputs:
                        raise ConfigError(
                            f"{f}: {step.where}.{key}.{name}: not an input of {kind.name}'s "
                            f"dynamics (inputs: {', '.join(sorted(inputs))})"
                        )


def simulate(
    twin: TwinNow, whatif: WhatIf, scenario: Scenario, dynamics: Callable[[], Dynamics]
) -> list[TelemetryFrame]:
    """The twin's signals over the horizon under ``scenario``, a frame per minute."""
    fault = whatif.fault_of(scenario)
    if scenario.fault == INHERIT and whatif.fault is None:
        fault = twin.fault  # the fault the twin is known to carry (the simulated plant's)
    kind, sev0 = (fault.kind, fault.severity) if fault is not None else (None, 0.0)
    dyn = dynamics()
    dyn.start(twin.last, twin.time, kind, sev0)
    steps = list(scenario.steps)
    frames = []
    n = math.ceil(whatif.horizon_s / CHUNK_S)
    for c in range(n):
        offset = c * CHUNK_S
        while steps and steps[0].at_s <= offset:
            step = steps.pop(0)
            if step.command is not None:
                try:
                    dyn.command(step.command, dict(step.params))
                except ValueError as exc:
                    raise ConfigError(f"{whatif.file}: {step.where}.command: {exc}") from None
            now = dyn.inputs()
            for name, value in step.set.items():
                dyn.set_input(name, value)
            for name, delta in step.change.items():
                dyn.set_input(name, now[name] + delta)
        offsets = offset + 1.0 + np.arange(min(CHUNK_S, whatif.horizon_s - offset))
        sev = fault.severity_at(offsets) if fault is not None else np.zeros(len(offsets))
        values = dyn.advance(twin.time + offsets, kind, sev)
        frames.append(
            TelemetryFrame(twin.twin_id, twin.twin_type, twin.time + offsets, dict(values))
        )
    return frames


def analyse(
    twin: TwinNow,
    predicted: Sequence[TelemetryFrame],
    catalog: Mapping[str, TwinType],
    config: FlowConfig | None = None,
) -> tuple[list[Alert], list[WindowFeatures]]:
    """The twin's history then ``predicted`` through the telemetry flow (with ``config``, by
    default the flow's defaults): alerts and windows."""
    from bytewax.testing import TestingSink, TestingSource, run_main

    from twinflow.flows.config import FlowConfig
    from twinflow.flows.telemetry import FlowOutputs, build_flow

    kind = catalog[twin.twin_type]
    windows: list[Any] = []
    alerts: list[Any] = []
    end = float(predicted[-1].times[-1]) if predicted else twin.time
    flow = build_flow(
        TestingSource([*twin.history, *predicted]),
        FlowOutputs(
            windows=TestingSink(windows),
            alerts=TestingSink(alerts),
            dead_letters=TestingSink([]),
            commands=TestingSink([]),
        ),
        config or FlowConfig(),
        clock=lambda: end,
        twins={twin.twin_id: kind.name},
        twin_types={twin.twin_id: kind},
        flow_id="twinflow-whatif",
        routed=lambda _twin: False,
        catalog=catalog,
    )
    run_main(flow)  # type: ignore[no-untyped-call]
    got_windows = [w for _k, w in windows if isinstance(w, WindowFeatures)]
    return [a for _k, a in alerts if isinstance(a, Alert)], got_windows


def predict(
    twin: TwinNow,
    whatif: WhatIf,
    catalog: Mapping[str, TwinType],
    config: FlowConfig | None = None,
) -> WhatIfReport:
    """Every scenario of ``whatif`` (the baseline first) run forward from ``twin``."""
    kind = catalog[twin.twin_type]
    dynamics = make_dynamics(whatif, kind)
    probe = dynamics()
    probe.start(twin.last, twin.time, None, 0.0)
    check_steps(whatif, kind, probe.inputs())
    outcomes = []
    for scenario in whatif.all_scenarios:
        frames = simulate(twin, whatif, scenario, dynamics)
        alerts, windows = analyse(twin, frames, catalog, config)
        outcomes.append(outcome(scenario.name, twin, whatif.horizon_s, frames, alerts, windows))
    blocks = list(range(BLOCK_S // 60, int(whatif.horizon_s) // 60 + 1, BLOCK_S // 60))
    return WhatIfReport(
        twin.twin_id, twin.twin_type, twin.time, whatif.horizon_s, blocks, tuple(outcomes)
    )


def load_whatif(path: Path) -> WhatIf:
    """A what-if file (YAML or JSON), checked."""
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"what-if file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML or JSON: {exc}") from None
    return read_whatif(data, path)


def what_if(
    source: Path | str,
    whatif: WhatIf,
    *,
    twin_id: str | None = None,
    at: datetime | None = None,
    catalog: Mapping[str, TwinType] | None = None,
    history_s: float | None = None,
    config: FlowConfig | None = None,
) -> WhatIfReport:
    """The Python API: ``whatif`` for a twin of a run, from its ``--out`` folder or from
    PostgreSQL (a ``postgresql://`` URL), with its last ``history_s`` of telemetry as history
    (default: all of a folder's, 6 h of a database's). ``catalog`` holds the twin types
    (default: the bundled ones), ``config`` the flow's settings (default: its defaults)."""
    from twinflow.flows.whatif_state import state_from_db, state_from_outputs
    from twinflow.operators.catalog import CATALOG

    types = dict(catalog if catalog is not None else CATALOG)
    twin = twin_id or whatif.twin
    if twin is None:
        raise ConfigError(f"{whatif.file}: name the twin (twin: in the file, or --twin)")
    if isinstance(source, str) and is_database(source):
        state = state_from_db(source, twin, types, at, history_s or 6 * 3600.0)
    else:
        state = state_from_outputs(Path(source), twin, types, at, history_s)
    return predict(state, whatif, types, config)


def is_database(source: str) -> bool:
    return source.startswith(("postgresql://", "postgres://"))


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_whatif_parser(sub: Any) -> None:
    """The ``whatif`` subcommand's arguments."""
    p = sub.add_parser(
        "whatif",
        help="run a twin forward under scenarios and compare them with no change",
        description="Run a twin's physics forward from its state in a run's outputs under "
        "each scenario of a what-if file (YAML or JSON), judge the predictions with the "
        "twin type's rules and RUL model, and compare them with no change.",
    )
    p.add_argument(
        "source",
        help="a run's --out folder (with telemetry), a postgresql:// URL, or kafka: ask the "
        "running flow of --config (its whatif_results_topic) from the twin's live state",
    )
    p.add_argument("scenarios", type=Path, help="the what-if file")
    p.add_argument("--twin", default=None, help="the twin (overrides the file's twin:)")
    p.add_argument(
        "--asset",
        default=None,
        help="run the scenarios for every twin under this asset (needs --config)",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="the run's deployment file: its twin types (a type of your own) and flow settings",
    )
    p.add_argument("--at", default=None, help="start from this time (ISO 8601; default: the "
                   "twin's newest reading)")  # fmt: skip
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    p.add_argument(
        "--history",
        type=_duration,
        default=None,
        metavar="DURATION",
        help="telemetry before the start that warms up the analysis (default: all of a "
        "folder's, 6h of a database's)",
    )
    p.add_argument(
        "--allow-insecure",
        action="store_true",
        help="allow a database password without sslmode require, verify-ca or verify-full",
    )
    p.add_argument(
        "--issuer",
        default=None,
        help="with kafka: sign the request as this issuer of services.kafka.requests",
    )
    p.add_argument(
        "--timeout",
        type=_duration,
        default=120.0,
        metavar="DURATION",
        help="with kafka: how long to wait for the answer (default 2m)",
    )


def run_live(args: argparse.Namespace) -> int:
    """``twinflow whatif kafka FILE --config DEPLOYMENT``: ask the running flow."""
    from twinflow.flows.deploy import load_deployment
    from twinflow.flows.whatif_kafka import ask_flow, read_document
    from twinflow.flows.whatif_report import render_doc

    if args.config is None:
        raise ConfigError("whatif kafka needs --config, the running flow's deployment file")
    if args.asset is not None or args.at is not None or args.history is not None:
        raise ConfigError("whatif kafka asks the running flow now, for one twin: leave out "
                          "--asset, --at and --history")  # fmt: skip
    dep = load_deployment(args.config)
    if dep.kafka is None:
        raise ConfigError(f"{args.config} has no services.kafka to send the request on")
    document, twin = read_document(args.scenarios, args.twin)
    result = ask_flow(dep.kafka, document, twin, issuer=args.issuer, timeout_s=args.timeout)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if result["status"] != "done":
        raise ConfigError(
            f"what-if request {result['request_id']} {result['status']}: {result['reason']}"
        )
    print(render_doc(result["report"]))
    return 0


def run_whatif(args: argparse.Namespace) -> int:
    """``twinflow whatif``: one twin, or each twin of an asset (``--asset``)."""
    from twinflow.flows.plan import _check_url, _plan_time

    if args.source == "kafka":
        return run_live(args)
    whatif = load_whatif(args.scenarios)
    if is_database(args.source):
        _check_url(args.source, "the source URL", args.allow_insecure)
    at = _plan_time(args.at)
    catalog, config = None, None
    twins: list[str | None] = [args.twin]
    if args.config is not None:
        from twinflow.flows.deploy import load_deployment

        dep = load_deployment(args.config)
        catalog, config = dep.types, dep.flow
        if args.asset is not None:
            registry = dep.registry()
            if args.asset not in registry:
                raise ConfigError(f"--asset {args.asset!r}: not an asset of {args.config}")
            twins = list(registry.twins_under(args.asset))
    elif args.asset is not None:
        raise ConfigError("--asset needs --config, the deployment file that places its twins")
    reports = []
    for twin in twins:
        try:
            report = what_if(
                args.source,
                whatif,
                twin_id=twin,
                at=at,
                history_s=args.history,
                catalog=catalog,
                config=config,
            )
        except ConfigError as exc:
            if len(twins) == 1:
                raise
            raise ConfigError(f"twin {twin} of asset {args.asset}: {exc}") from None
        print(render(report))
        reports.append(report.to_json())
    if args.json is not None:
        doc: Any = reports[0] if args.asset is None else {"asset": args.asset, "twins": reports}
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


__all__ = [
    "Outcome",
    "WhatIfReport",
    "add_whatif_parser",
    "analyse",
    "check_steps",
    "load_whatif",
    "predict",
    "render",
    "run_whatif",
    "simulate",
    "what_if",
]
