"""``twinflow plan``: a maintenance plan from a run's RUL estimates and the deployment's costs.

The estimates are each twin's newest window with an RUL, read from a run's ``--out`` folder
(``windows/``) or from PostgreSQL (``twinflow.window_features``). The costs are the
``maintenance:`` section of a deployment file (or of any YAML file that has one). The plan
(:mod:`twinflow.operators.maintenance`) is printed, written as ``maintenance_plan.json``
(``maintenance_plan.v1``), and optionally stored in PostgreSQL (``--db``, migration 0007) and
sent to a Kafka topic (``--kafka-topic``, the deployment's ``services.kafka``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from twinflow.core.config import Section
from twinflow.core.errors import ConfigError
from twinflow.core.times import LAST, iso

if TYPE_CHECKING:  # the command line builds its parser from here: keep the import light
    from twinflow.operators.maintenance import MaintenancePlan, MaintenanceSettings, Outlook

#: Newest window with an RUL estimate per twin, from the sink's table.
_LATEST_SQL = """
SELECT DISTINCT ON (twin_id) twin_id, twin_type, window_end, rul_hours, rul_low_hours,
       rul_high_hours
FROM twinflow.window_features
WHERE rul_hours IS NOT NULL AND window_end <= %s
ORDER BY twin_id, window_start DESC
"""


def _value(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def outlooks_from_dir(out: Path, until: datetime | None = None) -> list[Outlook]:
    """Each twin's newest RUL estimate from a run's ``windows/`` Parquet parts (of the
    windows that ended by ``until``, when given)."""
    import polars as pl

    from twinflow.connectors.files import read_parquet_dir
    from twinflow.operators.maintenance import Outlook

    windows = read_parquet_dir(out / "windows")
    if windows.is_empty() or "rul_hours" not in windows.columns:
        raise ConfigError(
            f"{out}: no windows with RUL estimates under {out / 'windows'}; pass the --out "
            "folder of a twinflow run, demo or replay"
        )
    known = pl.col("rul_hours").is_not_null()
    if until is not None:
        known = known & (pl.col("end") <= until)
    rows = (
        windows.filter(known)
        .sort("end")
        .group_by("twin_id", maintain_order=True)
        .last()
        .sort("twin_id")
    )
    return [
        Outlook(
            r["twin_id"],
            r["twin_type"],
            r["end"],
            _value(r["rul_hours"]),
            _value(r["rul_low_hours"]),
            _value(r["rul_high_hours"]),
        )
        for r in rows.iter_rows(named=True)
    ]


def outlooks_from_db(url: str, until: datetime | None = None) -> list[Outlook]:
    """Each twin's newest RUL estimate from PostgreSQL (of the windows that ended by
    ``until``, when given)."""
    from twinflow.connectors.postgres.connection import connect
    from twinflow.operators.maintenance import Outlook

    with connect(url, application_name="twinflow-plan") as conn:
        rows = conn.execute(_LATEST_SQL, (until or LAST,)).fetchall()
    return [Outlook(r[0], r[1], r[2], _value(r[3]), _value(r[4]), _value(r[5])) for r in rows]


def load_costs(path: Path) -> tuple[MaintenanceSettings, dict[str, str], Any]:
    """The ``maintenance:`` section of ``path``, each twin's asset, and the Kafka settings.

    A file with ``twins:`` is read as a whole deployment file (every section checked);
    otherwise only its ``maintenance:`` section is read.
    """
    from twinflow.operators.maintenance import read_maintenance

    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"cost file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, Mapping) or "maintenance" not in data:
        raise ConfigError(f"{path}: no maintenance: section (costs per twin type) to plan with")
    if "twins" not in data:
        top = Section(data, "", path)
        top.check_keys(["maintenance"])
        return read_maintenance(top.section("maintenance")), {}, None
    from twinflow.flows.deploy import load_deployment

    dep = load_deployment(path)
    settings = read_maintenance(Section(data["maintenance"], "maintenance", path))
    assets = {t.twin_id: t.part_of for t in dep.twins if t.part_of is not None}
    return settings, assets, dep.kafka


def with_assets(outlooks: list[Outlook], assets: Mapping[str, str]) -> list[Outlook]:
    """The outlooks with each twin's asset (for its downtime cost)."""
    from twinflow.operators.maintenance import Outlook

    return [
        Outlook(
            o.twin_id,
            o.twin_type,
            o.estimated_at,
            o.hours,
            o.low_hours,
            o.high_hours,
            assets.get(o.twin_id),
        )
        for o in outlooks
    ]


_INSERT_PLAN = """
INSERT INTO twinflow.maintenance_plans (plan_id, time, horizon_end, status, expected_cost,
    run_to_failure_cost, expected_failures, document)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb)
ON CONFLICT (plan_id) DO NOTHING
"""
_INSERT_ITEM = """
INSERT INTO twinflow.maintenance_plan_items (plan_id, twin_id, twin_type, outage, action, at,
    expected_cost, failure_risk, rul_hours, rul_low_hours, rul_high_hours)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (plan_id, twin_id) DO NOTHING
"""


def store_plan(url: str, plan: MaintenancePlan) -> bool:
    """Write the plan to PostgreSQL; ``False`` when a plan with its id was stored before."""
    from twinflow.connectors.postgres.connection import connect

    doc = plan.to_json()
    with connect(url, application_name="twinflow-plan", autocommit=False) as conn:
        added = conn.execute(
            _INSERT_PLAN,
            (plan.plan_id, plan.time, plan.horizon_end, plan.status, doc["expected_cost"],
             doc["run_to_failure_cost"], doc["expected_failures"], json.dumps(doc)),
        ).rowcount  # fmt: skip
        for i, item in zip(plan.items, doc["items"], strict=True):
            conn.execute(
                _INSERT_ITEM,
                (plan.plan_id, i.twin_id, i.twin_type, i.outage, i.chosen.action, i.chosen.at,
                 item["expected_cost"], item["failure_risk"], _finite(i.rul_hours),
                 _finite(i.rul_low_hours), _finite(i.rul_high_hours)),
            )  # fmt: skip
        conn.commit()
    return added == 1


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def publish_plan(kafka: Any, topic: str, plan: MaintenancePlan, timeout_s: float = 30.0) -> None:
    """Send the plan document to ``topic``, keyed by plan id, and wait for the broker."""
    from confluent_kafka import Producer

    from twinflow.connectors.kafka.config import producer_config
    from twinflow.connectors.kafka.errors import KafkaDeliveryError

    errors: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    producer = Producer(producer_config(kafka))
    producer.produce(topic, json.dumps(plan.to_json()).encode(), plan.plan_id.encode(),
                     on_delivery=delivered)  # fmt: skip
    left = producer.flush(timeout_s)
    if errors or left:
        why = "; ".join(errors) or f"not delivered within {timeout_s:g} s"
        raise KafkaDeliveryError(f"maintenance plan to topic {topic!r}: {why}")


def render(plan: MaintenancePlan) -> str:
    """The plan as a few lines for the terminal: the actions first, then the figures."""
    lines = [
        f"maintenance plan {plan.plan_id} from {iso(plan.time)} to {iso(plan.horizon_end)} "
        f"({plan.status})"
    ]
    for i in plan.actions():
        lines.append(
            f"  {iso(i.chosen.at)}  {i.twin_id:<12} {i.chosen.action:<14} expected cost "
            f"{i.chosen.expected_cost:,.0f}, failure risk before it {i.chosen.failure_risk:.1%}"
        )
    left = [i for i in plan.items if i.chosen.at is None]
    risky = sorted(left, key=lambda i: -i.chosen.failure_risk)[:5]
    lines.append(f"  {len(left)} twins without action in the horizon; most at risk:")
    lines += [
        f"    {i.twin_id:<12} failure risk {i.chosen.failure_risk:.1%}, expected cost "
        f"{i.chosen.expected_cost:,.0f}"
        for i in risky
    ]
    lines.append(
        f"  expected cost {plan.expected_cost:,.0f} (doing nothing: "
        f"{plan.run_to_failure_cost:,.0f}), expected failures {plan.expected_failures:.2f}"
    )
    lines += [f"  skipped {t}: {why}" for t, why in plan.skipped]
    return "\n".join(lines)


def add_plan_parser(sub: Any) -> None:
    """The ``plan`` subcommand's arguments."""
    p = sub.add_parser(
        "plan",
        help="a maintenance plan from a run's RUL estimates and the deployment's costs",
        description="Compute the maintenance plan of least expected cost over the horizon from "
        "each twin's newest RUL estimate (a run's --out folder, or a PostgreSQL URL) and the "
        "maintenance: section of a deployment file.",
    )
    p.add_argument("source", help="a run's --out folder, or a postgresql:// URL")
    p.add_argument(
        "--config", type=Path, required=True, help="deployment file with a maintenance: section"
    )
    p.add_argument(
        "--at",
        default=None,
        help="plan as of this time (ISO 8601): the estimates known then (default: the newest)",
    )
    p.add_argument("--json", type=Path, default=None, help="write the plan document here "
                   "(default: maintenance_plan.json in the source folder)")  # fmt: skip
    p.add_argument("--db", default=None, help="store the plan in this PostgreSQL database")
    p.add_argument("--kafka-topic", default=None, help="send the plan to this topic "
                   "(the deployment's services.kafka)")  # fmt: skip
    p.add_argument(
        "--allow-insecure",
        action="store_true",
        help="allow a database password without sslmode require, verify-ca or verify-full",
    )
    p.add_argument(
        "--every",
        type=_seconds,
        default=None,
        metavar="DURATION",
        help="plan again at this pace (e.g. 15m) from the newest estimates until stopped; a "
        "plan is written only when the estimates changed",
    )
    p.add_argument("--rounds", type=int, default=None, help="with --every: stop after N plans")


def _seconds(text: str) -> float:
    from twinflow.core.times import parse_duration

    try:
        return parse_duration(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _check_url(url: str, what: str, allow_insecure: bool) -> None:
    from twinflow.core.pgurl import ENCRYPTED, has_password, sslmode_of
    from twinflow.core.transport import refuse_plain_password

    refuse_plain_password(
        f"twinflow plan: {what}",
        password=has_password(url),
        encrypted=sslmode_of(url, os.environ) in ENCRYPTED,
        allow_insecure=allow_insecure,
        fix="add sslmode=verify-full to the URL (or set PGSSLMODE)",
    )


def _is_url(text: str) -> bool:
    return text.startswith(("postgresql://", "postgres://"))


def _plan_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        now = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--at {text!r}: expected an ISO 8601 time") from None
    if now.tzinfo is None:
        raise ConfigError(f"--at {text!r}: give a zone (Z or +hh:mm)")
    return now


def run_plan(args: argparse.Namespace) -> int:
    """``twinflow plan``: compute, print and write the plan; with ``--every``, again at that
    pace, writing each plan whose estimates changed."""
    settings, assets, kafka = load_costs(args.config)
    if not settings.types:
        raise ConfigError(f"{args.config}: maintenance.types is empty: no twin type has costs")
    if args.kafka_topic and kafka is None:
        raise ConfigError(f"--kafka-topic: {args.config} has no services.kafka to send it to")
    for url, what in ((args.source, "the source URL"), (args.db, "--db")):
        if url and _is_url(url):
            _check_url(url, what, args.allow_insecure)
    now = _plan_time(args.at)
    if args.every is not None and now is not None:
        raise ConfigError("--every re-plans from the newest estimates: leave out --at")
    last: str | None = None
    rounds = 0
    while True:
        last = _one_plan(args, settings, assets, kafka, now, last)
        rounds += 1
        if args.every is None or (args.rounds is not None and rounds >= args.rounds):
            return 0
        time.sleep(args.every)


def _one_plan(
    args: argparse.Namespace,
    settings: MaintenanceSettings,
    assets: Mapping[str, str],
    kafka: Any,
    now: datetime | None,
    last: str | None,
) -> str:
    """Compute the plan once; write it unless it is the one of id ``last``. Its id."""
    from twinflow.operators.maintenance import plan_maintenance

    if _is_url(args.source):
        outlooks = outlooks_from_db(args.source, now)
    else:
        outlooks = outlooks_from_dir(Path(args.source), now)
    if not outlooks:
        raise ConfigError(f"{args.source}: no twin has an RUL estimate yet")
    plan = plan_maintenance(with_assets(outlooks, assets), settings, now)
    if plan.plan_id == last:
        print(f"  {iso(plan.time)}: estimates unchanged, plan {plan.plan_id} stands", flush=True)
        return plan.plan_id
    print(render(plan), flush=True)
    target = args.json
    if target is None and not _is_url(args.source):
        target = Path(args.source) / "maintenance_plan.json"
    if target is not None:
        target.write_text(json.dumps(plan.to_json(), indent=2) + "\n")
        print(f"  written to {target}")
    if args.db:
        new = store_plan(args.db, plan)
        print(f"  {'stored' if new else 'already stored'} in PostgreSQL")
    if args.kafka_topic:
        publish_plan(kafka, args.kafka_topic, plan)
        print(f"  sent to Kafka topic {args.kafka_topic}")
    return plan.plan_id


__all__ = [
    "add_plan_parser",
    "load_costs",
    "outlooks_from_db",
    "outlooks_from_dir",
    "publish_plan",
    "render",
    "run_plan",
    "store_plan",
]
