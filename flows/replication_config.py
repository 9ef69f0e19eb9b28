"""The deployment file's ``replication:`` section: run as an edge or as the central instance.

Without the section, ``twinflow run`` is one instance doing everything, as before. With
``role: edge`` it also forwards its twins' state changes, window features, alerts and
command outcomes to the central instance over the link (MQTT or Kafka, the deployment's own
``services`` section), through an on-disk outbox while the link is down, and carries out the
desired changes made centrally for its twins through its command loop. With
``role: central`` it receives and stores what the edges forward, and sends the desired
changes made through its own requests to the owning edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from twinflow.connectors.replication.forward import ALL_FORWARDS, FORWARDS
from twinflow.connectors.replication.node import ROLES
from twinflow.connectors.replication.outbox import FSYNC_POLICIES
from twinflow.core.config import Choice, Duration, Names, Schema, Section, Text, Whole
from twinflow.core.errors import ConfigError

LINKS = ("mqtt", "kafka")

REPLICATION = Schema(
    "replication",
    "Run as an edge or as the central instance of replicated twins (left out: one instance "
    "doing both, as by default).",
    (
        Choice("role", "`edge` (forwards, acts on desired changes) or `central` (stores, "
               "sends desired changes to the owning edge).", "", required=True, choices=ROLES),
        Text("replica", "This replica's id (unique among the edges and the central one).", "",
             shown="the site id"),
        Choice("link", "The transport; its broker is the deployment's `services` section of "
               "the same name.", "mqtt", choices=LINKS),
        Text("topic", "Topic base: MQTT `<topic>/up/<edge>` and `<topic>/down`, Kafka "
             "`<topic>.up` and `<topic>.down`.", "",
             shown="`twinflow/replication` (MQTT), `twinflow.replication` (Kafka)"),
        Text("outbox", "Folder of the on-disk outbox.", "", shown="`<out>/replication-outbox`"),
        Whole("outbox_mb", "Cap of the outbox's pending updates in MiB (full: compacted to "
              "the newest per property, then the oldest dropped and counted).", 256, 1),
        Choice("fsync", "Outbox sync: `always` (every update survives a power loss) or "
               "`interval` (once a second).", "interval", choices=FSYNC_POLICIES),
        Names("forward", "What an edge forwards: " + ", ".join(f"`{f}`" for f in ALL_FORWARDS)
              + " (raw readings, downsampled: not by default).", FORWARDS, what="stream names"),
        Duration("telemetry_every_s", "With `telemetry` forwarded: each signal's mean over "
                 "this many seconds of event time is forwarded, one write per twin.", 60.0),
        Duration("desired_ttl_s", "How long a desired change received from the central "
                 "instance may wait in the edge's command loop.", 600.0),
        Duration("status_interval_s", "Seconds between sync-status records.", 5.0),
        Duration("causal_hold_s", "How long a received write of a `causal` property may wait "
                 "for its dependencies before it is applied anyway.", 300.0),
        Whole("causal_max_held", "How many causal writes may wait at once (more: the oldest "
              "is applied anyway).", 10_000, 1),
        Duration("site_silent_s", "Central: how long a site may send nothing before its link "
                 "reads `silent` in the roll-ups across sites.", 60.0),
    ),
)  # fmt: skip


@dataclass(frozen=True)
class ReplicationSettings:
    """A validated ``replication:`` section."""

    role: str
    replica: str
    link: str = "mqtt"
    topic: str = ""
    outbox: str = ""
    outbox_mb: int = 256
    fsync: str = "interval"
    forward: tuple[str, ...] = FORWARDS
    desired_ttl_s: float = 600.0
    status_interval_s: float = 5.0
    causal_hold_s: float = 300.0
    causal_max_held: int = 10_000
    site_silent_s: float = 60.0
    telemetry_every_s: float = 60.0

    def topic_base(self) -> str:
        """The topic base, defaulted per transport."""
        if self.topic:
            return self.topic
        return "twinflow/replication" if self.link == "mqtt" else "twinflow.replication"

    def outbox_dir(self, out_dir: Path) -> Path:
        """The outbox folder (relative paths are under ``out_dir``)."""
        return out_dir / (self.outbox or "replication-outbox")


def replication_settings(s: Section, site: str) -> ReplicationSettings | None:
    """The ``replication:`` section (``None`` when the file has none)."""
    if not s.data:
        return None
    s.check_keys(REPLICATION)
    forward = s.get(REPLICATION["forward"])
    for name in forward:
        if name not in ALL_FORWARDS:
            raise ConfigError(
                f"{s.file}: {s.path('forward')}: {name!r} is not one of {', '.join(ALL_FORWARDS)}"
            )
    return ReplicationSettings(
        role=s.get(REPLICATION["role"]),
        replica=s.get(REPLICATION["replica"]) or site,
        link=s.get(REPLICATION["link"]),
        topic=s.get(REPLICATION["topic"]),
        outbox=s.get(REPLICATION["outbox"]),
        outbox_mb=s.get(REPLICATION["outbox_mb"]),
        fsync=s.get(REPLICATION["fsync"]),
        forward=forward,
        desired_ttl_s=s.get(REPLICATION["desired_ttl_s"]),
        status_interval_s=s.get(REPLICATION["status_interval_s"]),
        causal_hold_s=s.get(REPLICATION["causal_hold_s"]),
        causal_max_held=s.get(REPLICATION["causal_max_held"]),
        site_silent_s=s.get(REPLICATION["site_silent_s"]),
        telemetry_every_s=s.get(REPLICATION["telemetry_every_s"]),
    )


__all__ = ["LINKS", "REPLICATION", "ReplicationSettings", "replication_settings"]
