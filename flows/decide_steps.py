"""The ``decide`` sub-flow: what-ifs from the live flow and the maintenance plan re-computed.

Two parts, each there only when configured (:class:`Decide`, built by :func:`decide_for` from
a deployment):

- ``whatif`` requests (the ``whatif`` kind of the command request topic) are split from the
  command requests; each twin's frames and requests meet in ``decide.whatif``
  (:mod:`twinflow.flows.whatif_live`), whose results leave with the requests rejected when
  read, as ``whatif_result.v1``. Without a results topic the requests are dead letters.
- every window with an RUL estimate goes, as the twin's newest :class:`Outlook`, to one
  fleet-wide ``decide.replan`` step (:class:`~twinflow.operators.maintenance.replan.Replanner`),
  which emits a new ``maintenance_plan`` when the estimates moved or its timer is due.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import bytewax.operators as op
import yaml
from bytewax.dataflow import Stream, operator
from bytewax.operators import KeyedStream, StatefulLogic
from bytewax.outputs import DynamicSink, Sink, StatelessSinkPartition

from twinflow.core.config import Section
from twinflow.core.records import DeadLetter, WindowFeatures
from twinflow.flows.config import FlowConfig
from twinflow.flows.whatif_live import WhatIfPool, WhatIfStep
from twinflow.operators.catalog import TwinType
from twinflow.operators.maintenance import MaintenancePlan, MaintenanceSettings, Outlook
from twinflow.operators.maintenance.replan import Replanner
from twinflow.operators.whatif.request import WhatIfRequest, WhatIfResult

LOG = logging.getLogger("twinflow.decide")
#: The key of the fleet-wide re-planning step (and of the plans on Kafka).
FLEET = "maintenance_plan"
#: Why a what-if request is a dead letter when the flow does not serve them.
NOT_SERVED = "what-if requests are not served by this flow: set services.kafka.whatif_results_topic"


@dataclass(frozen=True)
class Decide:
    """What the ``decide`` sub-flow does: ``whatif_sinks`` (``None``: what-ifs not served)
    and ``pool`` answer what-ifs; ``maintenance`` and ``plan_sinks`` re-plan."""

    whatif_sinks: Sequence[Sink[Any]] | None = None
    pool: WhatIfPool | None = None
    maintenance: MaintenanceSettings | None = None
    plan_sinks: Sequence[Sink[Any]] = ()
    assets: Mapping[str, str] = field(default_factory=dict)

    def close(self) -> None:
        """Stop the what-if worker processes."""
        if self.pool is not None:
            self.pool.close()


def is_whatif_item(kv: tuple[str, Any]) -> bool:
    return isinstance(kv[1], WhatIfRequest | WhatIfResult)


def is_request(kv: tuple[str, Any]) -> bool:
    return isinstance(kv[1], WhatIfRequest)


def is_result(kv: tuple[str, Any]) -> bool:
    return isinstance(kv[1], WhatIfResult)


def not_served(kv: tuple[str, Any]) -> DeadLetter:
    """A what-if request (or its rejection) as a dead letter: the flow does not serve them."""
    item = kv[1]
    at = item.issued_at if isinstance(item, WhatIfRequest) else item.requested_at
    return DeadLetter("validate", NOT_SERVED, "kafka:requests", at, item.twin_id or None)


def outlook_of(w: WindowFeatures) -> Outlook | None:
    """``decide.outlooks``: a window's RUL estimate as its twin's newest outlook."""
    if w.rul is None:
        return None
    r = w.rul
    return Outlook(w.twin_id, w.twin_type, w.end, r.hours, r.low_hours, r.high_hours)


@dataclass(frozen=True)
class ReplanStep:
    """The builder ``decide.replan`` (stateful, one key) calls with the resumed planner."""

    settings: MaintenanceSettings
    config: FlowConfig
    assets: Mapping[str, str]

    def __call__(self, resume: Replanner | None) -> ReplanLogic:
        planner = resume or Replanner(
            self.settings,
            self.config.replan_every_s,
            self.config.replan_min_interval_s,
            self.config.replan_change,
            dict(self.assets),
        )
        return ReplanLogic(planner)


class ReplanLogic(StatefulLogic[Outlook, MaintenancePlan, Replanner]):
    def __init__(self, planner: Replanner) -> None:
        self.planner = planner

    def on_item(self, value: Outlook) -> tuple[Iterable[MaintenancePlan], bool]:
        return self.planner.offer(value), StatefulLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[MaintenancePlan], bool]:
        return self.planner.decide(), StatefulLogic.RETAIN

    def snapshot(self) -> Replanner:
        return replace(self.planner, latest=dict(self.planner.latest))


@dataclass(frozen=True)
class Decided:
    """Out of ``decide``: the command requests alone; the refused ones with the what-if
    requests the flow does not serve."""

    commands: KeyedStream[Any]
    refused: Stream[DeadLetter]


@operator
def decide(
    step_id: str,
    frames: KeyedStream[Any],
    windows: KeyedStream[WindowFeatures],
    requests: KeyedStream[Any],
    refusals: Stream[DeadLetter],
    *,
    setup: Decide,
    whatif: WhatIfStep | None,
    replan: ReplanStep | None,
) -> Decided:
    """What-ifs from the twins' live state, and re-planning (see the module)."""
    split = op.branch("split_whatif", requests, is_whatif_item)
    asked = split.trues
    refused = refusals
    if whatif is not None and setup.whatif_sinks is not None:
        rejected = op.filter("rejected_on_read", asked, is_result)
        wanted = op.filter("whatif_requests", asked, is_request)
        both = cast(KeyedStream[Any], op.merge("frames_and_whatifs", frames, wanted))
        answered = op.stateful("whatif", both, whatif)
        results = op.merge("whatif_results", answered, rejected)
        for i, sink in enumerate(setup.whatif_sinks):
            op.output(f"whatif_results_out_{i}", results, sink)
    else:
        refused = op.merge("refused", refused, op.map("not_served", asked, not_served))
    if replan is not None:
        _replan(windows, replan, setup.plan_sinks)
    return Decided(split.falses, refused)


def _replan(
    windows: KeyedStream[WindowFeatures], replan: ReplanStep, sinks: Sequence[Sink[Any]]
) -> None:
    outlooks = op.filter_map("outlooks", op.key_rm("unkey_windows", windows), outlook_of)
    fleet = op.key_on("key_fleet", outlooks, lambda _o: FLEET)
    plans = op.stateful("replan", fleet, replan)
    for i, sink in enumerate(sinks):
        op.output(f"plans_out_{i}", plans, sink)


def _nothing(_item: Any) -> bool:
    return False


def decide_flow(
    asked: list[Any],
    frames: KeyedStream[Any],
    windows: KeyedStream[WindowFeatures],
    setup: Decide | None,
    *,
    config: FlowConfig,
    catalog: Mapping[str, TwinType],
    twin_types: Mapping[str, TwinType] | None,
    clock: Callable[[], float],
) -> list[Any]:
    """Wire ``decide`` when there are requests (``asked``: the ``requests`` sub-flow's
    output, if any) or a :class:`Decide`; ``asked`` with the what-if requests taken out."""
    setup = setup or Decide()
    whatif = None
    if setup.whatif_sinks is not None:
        pool = setup.pool or WhatIfPool(config.whatif_workers, config.whatif_queue)
        whatif = WhatIfStep(pool, config, catalog, twin_types, clock)
    replan = None
    if setup.maintenance is not None and setup.maintenance.types and setup.plan_sinks:
        replan = ReplanStep(setup.maintenance, config, setup.assets)
    if not asked and replan is None:
        return asked
    if asked:
        requests, refused = asked[0].incoming, asked[0].refused
    else:
        requests = op.filter("no_requests", frames, _nothing)
        refused = op.filter("no_refusals", op.key_rm("unkey_frames", frames), _nothing)
    out = decide(
        "decide", frames, windows, requests, refused, setup=setup, whatif=whatif, replan=replan
    )
    return [replace(r, incoming=out.commands, refused=out.refused) for r in asked]


class _PlanStore(StatelessSinkPartition[Any]):
    def __init__(self, url: str) -> None:
        self.url = url

    def write_batch(self, items: list[Any]) -> None:
        from twinflow.flows.plan import store_plan

        for _key, plan in items:
            try:
                store_plan(self.url, plan)
            except Exception as exc:  # a plan is re-computed later; the flow goes on
                LOG.warning("maintenance plan %s not stored: %s", plan.plan_id, exc)


class PlanStoreSink(DynamicSink[Any]):
    """Plans to PostgreSQL (``twinflow.maintenance_plans``, migration 0007), one by one."""

    def __init__(self, url: str) -> None:
        self.url = url

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _PlanStore:
        return _PlanStore(self.url)


class _Latest(StatelessSinkPartition[Any]):
    def __init__(self, path: Path) -> None:
        self.path = path

    def write_batch(self, items: list[Any]) -> None:
        _key, plan = items[-1]
        part = self.path.with_name(self.path.name + ".part")
        part.write_text(json.dumps(plan.to_json(), indent=2) + "\n")
        part.replace(self.path)  # a reader sees the old plan or the new one, never half


class LatestPlanFile(DynamicSink[Any]):
    """The newest plan as ``maintenance_plan.json`` beside the run's outputs (what
    ``twinflow plan`` writes there, and what the run report shows)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Latest:
        return _Latest(self.path)


def read_costs(path: Path) -> MaintenanceSettings | None:
    """The deployment file's ``maintenance:`` section (already checked when it was loaded)."""
    from twinflow.operators.maintenance import read_maintenance

    data = yaml.safe_load(path.read_text()) if path.exists() else None
    if not isinstance(data, dict) or not data.get("maintenance"):
        return None
    return read_maintenance(Section(data["maintenance"], "maintenance", path))


def decide_for(dep: Any, out_dir: Path) -> Decide:
    """The ``decide`` settings of a deployment: what-ifs when ``services.kafka`` names a
    results topic; re-planning when the file has a ``maintenance:`` section."""
    from twinflow.connectors.files import JsonLinesSink
    from twinflow.connectors.kafka.sink import KafkaJsonSink

    kafka = dep.kafka
    whatif_sinks: list[Sink[Any]] | None = None
    topic = getattr(kafka, "whatif_results_topic", None)
    if topic:
        whatif_sinks = [
            JsonLinesSink(out_dir / "whatif_results.jsonl", WhatIfResult.to_json),
            KafkaJsonSink(kafka, topic, WhatIfResult.to_json),
        ]
    settings = read_costs(Path(dep.path))
    plan_sinks: list[Sink[Any]] = []
    if settings is not None and settings.types:
        plan_sinks.append(JsonLinesSink(out_dir / "maintenance_plans.jsonl", _plan_json))
        plan_sinks.append(LatestPlanFile(out_dir / "maintenance_plan.json"))
        plan_topic = getattr(kafka, "maintenance_plan_topic", None)
        if plan_topic:
            plan_sinks.append(KafkaJsonSink(kafka, plan_topic, _plan_json, key_of=_fleet))
        if dep.database_url:
            plan_sinks.append(PlanStoreSink(dep.database_url))
    assets = {t.twin_id: t.part_of for t in dep.twins if t.part_of is not None}
    return Decide(whatif_sinks, None, settings, plan_sinks, assets)


def _plan_json(plan: MaintenancePlan) -> dict[str, Any]:
    return plan.to_json()


def _fleet(_plan: MaintenancePlan) -> str:
    return FLEET


def plan_lines(path: Path) -> list[dict[str, Any]]:
    """The plans a run wrote (``maintenance_plans.jsonl``), oldest first."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


__all__ = [
    "FLEET",
    "Decide",
    "Decided",
    "ReplanStep",
    "WhatIfStep",
    "decide",
    "decide_flow",
    "decide_for",
    "outlook_of",
]
