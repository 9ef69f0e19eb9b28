"""The validated settings of the telemetry flow, handed down as one frozen value.

Operators and models never read the environment; the command line (or a deployment file,
later) builds a :class:`FlowConfig` and the flow passes its parts down.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import timedelta
from pathlib import Path

from twinflow.core.config import (
    Choice,
    Duration,
    Flag,
    Number,
    Schema,
    Whole,
    check_fields,
    fields_of,
    setting,
)
from twinflow.core.errors import ConfigError


def _positive(key: str, doc: str, default: float) -> float:
    return setting(Number(key, doc, default, above=0))


def _count(key: str, doc: str, default: int) -> int:
    return setting(Whole(key, doc, default, 1, coerce=True))


@dataclass(frozen=True, slots=True)
class FlowConfig:
    """Settings of the telemetry flow (all times in seconds of event time unless noted).

    Each field's default, check and description come from its :func:`setting`, which the
    deployment file's ``flow:`` section and the generated reference read too.
    """

    out_dir: Path = Path("out")
    window_s: float = _positive("window_s", "Length of the tumbling feature windows.", 300.0)
    lateness_s: float = _positive(
        "lateness_s", "How late a reading may arrive and still count in its window.", 60.0
    )
    stale_factor: float = _positive(
        "stale_factor", "A twin is stale after this many windows without data.", 3.0
    )
    state_snapshot_s: float = _positive(
        "state_snapshot_s", "Interval of twin-state snapshots (besides changes).", 900.0
    )
    anomaly_warmup: int = _count(
        "anomaly_warmup", "Windows an anomaly model learns from before it scores.", 24
    )
    anomaly_quantile: float = setting(
        Number(
            "anomaly_quantile",
            "Quantile of past scores that sets the anomaly threshold.",
            0.995,
            above=0,
            below=1,
        )
    )
    anomaly_margin: float = _positive(
        "anomaly_margin", "Factor on that quantile a score must exceed to alert.", 1.5
    )
    anomaly_learn_below: float = _positive(
        "anomaly_learn_below",
        "After warm-up, a window is learned only if its score is below this fraction of the "
        "threshold, so a developing fault is not absorbed into normal.",
        0.9,
    )
    anomaly_min_std: float = setting(
        Number(
            "anomaly_min_std",
            "Absolute floor on a feature's standard deviation when scoring (a constant "
            "feature does not turn a tiny change into a huge score).",
            0.01,
            low=0,
        )
    )
    anomaly_rel_std: float = setting(
        Number(
            "anomaly_rel_std",
            "Floor on a feature's standard deviation as a fraction of its mean's magnitude.",
            0.01,
            low=0,
        )
    )
    anomaly_max_features: int = _count(
        "anomaly_max_features", "Most window features one twin's anomaly model follows.", 128
    )
    anomaly_detector: str = setting(
        Choice(
            "anomaly_detector",
            "Window-level anomaly detector: `zscore` (largest standardised deviation of a "
            "window feature) or `spc` (Hotelling T² and SPE of the window features).",
            "spc",
            choices=("zscore", "spc"),
        )
    )
    anomaly_adapt: bool = setting(
        Flag(
            "anomaly_adapt",
            "After warm-up, keep learning rows judged normal (never while anomalous, nor "
            "`sample_hold_s` after); off: the model stays as warm-up left it, except "
            "for new operating points.",
            True,
        )
    )
    sample_anomaly: bool = setting(
        Flag(
            "sample_anomaly",
            "Score every raw sample of a twin's scalar signals (T² and SPE, conditioned on "
            "its operating settings): the score rides along as the signal `anomaly_sample` "
            "(written with the telemetry), the alarm `anomaly_sample` is raised within "
            "seconds of it passing its limit, and a window whose mean score passes 1 is "
            "anomalous. A type's `anomaly.samples` overrides this for its twins (the bundled "
            "simulated types turn it off: their 5-minute warm-up cannot see those machines' "
            "slow thermal dynamics, and their rules are tuned).",
            True,
        )
    )
    sample_warmup: int = setting(
        Whole(
            "sample_warmup",
            "Samples the sample model learns from before it scores (5 minutes at 1 Hz).",
            300,
            8,
            coerce=True,
        )
    )
    sample_warmup_s: float = setting(
        Number(
            "sample_warmup_s",
            "Least event time the sample warm-up lasts besides `sample_warmup` (0: none).",
            0.0,
            low=0,
        )
    )
    sample_warmup_slow_s: float = setting(
        Number(
            "sample_warmup_slow_s",
            "Least event time (s) the sample warm-up lasts for a slowly sampled twin (its first "
            "samples a minute or more apart): counted in samples, a warm-up of 5-minute or "
            "hourly data covers a day or two of start-up, not the machine's normal cycles "
            "(0: counted in samples only, as at 1 Hz).",
            7 * 86400.0,
            low=0,
            shown="`604800` (7 days)",
        )
    )
    sample_warmup_shift: float = setting(
        Number(
            "sample_warmup_shift",
            "A level shift inside the sample warm-up, in standard deviations within its two "
            "parts, that restarts the warm-up from the shift (a machine still settling or "
            "changing state is not learned as normal); 0 (default): never restart, since a "
            "machine whose undeclared operating state cycles would learn one state only.",
            0.0,
            low=0,
        )
    )
    sample_warmup_max: int = setting(
        Whole(
            "sample_warmup_max",
            "Most samples the sample warm-up lasts with its restarts: then the model is fitted "
            "on every sample of it (its changes are its normal), and a log line says it never "
            "settled (0: no cap).",
            600,
            0,
            coerce=True,
        )
    )
    sample_track: float = setting(
        Number(
            "sample_track",
            "Samples after which the sample model's normal level has moved half-way to where "
            "the samples learned in control sit (slow wander and warming are followed, but "
            "so is a fault that develops more slowly, see the analysis guide); 0 (default): "
            "the level moves only with refits.",
            0.0,
            low=0,
        )
    )
    sample_quantile: float = setting(
        Number(
            "sample_quantile",
            "Quantile of the warm-up's held-out scores that sets the sample model's limits.",
            0.99,
            above=0,
            below=1,
        )
    )
    sample_margin: float = _positive(
        "sample_margin", "Factor on the sample model's calibrated limit.", 1.5
    )
    sample_smooth_s: float = setting(
        Number(
            "sample_smooth_s",
            "Event time (s) the sample score is averaged over (exponentially), counted in "
            "samples with the twin's sampling period as its warm-up measured it (300 samples "
            "at 10 Hz; at least `sample_smooth` samples). 0: `sample_smooth` samples only.",
            30.0,
            low=0,
            shown="`30` (30 seconds)",
        )
    )
    sample_smooth: int = _count(
        "sample_smooth",
        "Least samples the sample score is averaged over (besides `sample_smooth_s`: a slowly "
        "sampled twin's score is still averaged over this many samples).",
        30,
    )
    sample_recover_s: float = setting(
        Number(
            "sample_recover_s",
            "Event time (s) the sample score must stay at a tenth of its episode's peak, "
            "still above its limit, before the level the fault left is taken as the twin's "
            "new normal (the recovery rule), counted in samples with the twin's sampling "
            "period (at least 30 samples). 0: 30 samples only.",
            30.0,
            low=0,
            shown="`30` (30 seconds)",
        )
    )
    sample_refit_s: float = setting(
        Number(
            "sample_refit_s",
            "Event time (s) of learned samples after which the sample model refits, counted "
            "in samples with the twin's sampling period (at least 600 samples). 0: every "
            "600 learned samples.",
            600.0,
            low=0,
            shown="`600` (10 minutes)",
        )
    )
    sample_hold_s: float = setting(
        Number(
            "sample_hold_s",
            "Event time (s) after an anomalous sample during which the sample model learns "
            "nothing, counted in samples with the twin's sampling period as its warm-up "
            "measured it (60 samples at 1 Hz, 1 at one sample every 5 minutes; at least "
            "`sample_hold` samples). 0: `sample_hold` samples only.",
            60.0,
            low=0,
            shown="`60` (1 minute)",
        )
    )
    sample_hold: int = _count(
        "sample_hold",
        "Least samples after an anomalous one during which nothing is learned (besides "
        "`sample_hold_s`).",
        3,
    )
    sample_half_life_s: float = setting(
        Number(
            "sample_half_life_s",
            "Event time (s) after which a sample the sample model learned weighs half (drift "
            "is followed), counted in samples with the twin's sampling period as its warm-up "
            "measured it (86,400 samples at 1 Hz, 288 at 5 minutes) and never fewer than its "
            "warm-up's samples or `sample_half_life`. 0: `sample_half_life` samples only.",
            86400.0,
            low=0,
            shown="`86400` (1 day)",
        )
    )
    sample_half_life: float = setting(
        Number(
            "sample_half_life",
            "Least samples after which a learned sample weighs half (besides "
            "`sample_half_life_s`); with both 0, never forgotten.",
            0.0,
            low=0,
        )
    )
    sample_long_s: float = setting(
        Number(
            "sample_long_s",
            "Event time (s; and at least `sample_warmup` samples) an anomalous episode of the "
            "sample model lasts, its score no longer rising, before the level it holds is "
            "taken as the twin's new normal and its alarm clears (a normal that moved for "
            "good; a developing fault rises and is never learned). 0: never.",
            7 * 86400.0,
            low=0,
            shown="`604800` (7 days)",
        )
    )
    sample_alarm_for_s: float = setting(
        Duration(
            "sample_alarm_for_s",
            "How long the raw-sample score must stay above its limit before the alarm "
            "`anomaly_sample` is raised.",
            10.0,
            shown="`10s`",
        )
    )
    sample_alarm_clear_s: float = setting(
        Duration(
            "sample_alarm_clear_s",
            "How long the raw-sample score must stay at or below its limit before that alarm "
            "clears.",
            120.0,
            shown="`2m`",
        )
    )
    sample_alarm_raise_n: int = _count(
        "sample_alarm_raise_n",
        "Least samples in a row above the limit before the alarm `anomaly_sample` is raised "
        "(besides `sample_alarm_for_s`: at 1 Hz the time asks for more; at one sample every "
        "5 minutes 10 s alone would be two samples).",
        3,
    )
    sample_alarm_clear_n: int = _count(
        "sample_alarm_clear_n",
        "Least quiet samples in a row before that alarm clears (besides `sample_alarm_clear_s`).",
        6,
    )
    sample_alarm_settle_s: float = setting(
        Number(
            "sample_alarm_settle_s",
            "Event time after the sample model's warm-up during which its scores are only "
            "watched, never raising that alarm (the freshly fitted model and the average "
            "settle).",
            60.0,
            low=0,
        )
    )
    sample_alarm_settle_n: int = setting(
        Whole(
            "sample_alarm_settle_n",
            "Least scored samples watched after warm-up (besides `sample_alarm_settle_s`).",
            30,
            0,
            coerce=True,
        )
    )
    sample_alarm_recover_n: int = _count(
        "sample_alarm_recover_n",
        "Least samples an open alarm's score must stay at or below a tenth of its peak "
        "(and 30 s) for the fault to be taken as over, the machine at a new level.",
        20,
    )
    command_interval_s: float = _positive(
        "command_interval_s", "Least time between two automatic commands to one twin.", 1800.0
    )
    derate_fraction: float = setting(
        Number("derate_fraction", "Load fraction a derate command asks for.", 0.7, above=0, high=1)
    )
    command_ttl_s: float = _positive(
        "command_ttl_s", "Seconds until an issued command expires.", 600.0
    )
    command_timeout_s: float = _positive(
        "command_timeout_s",
        "Seconds (reference clock) a queued command may take to reach an end state before it "
        "ends timed out: long enough for a reported setpoint to come back.",
        120.0,
    )
    command_rate_limit: int = _count(
        "command_rate_limit", "Commands that may be queued per twin within the rate window.", 6
    )
    command_rate_window_s: float = _positive(
        "command_rate_window_s", "The window of `command_rate_limit`.", 60.0
    )
    max_future_s: float = _positive(
        "max_future_s", "Readings stamped further ahead of the wall clock are refused.", 300.0
    )
    max_past_s: float = _positive(
        "max_past_s", "Readings older than this (behind the wall clock) are refused.", 7 * 86400.0
    )
    write_telemetry: bool = setting(
        Flag("write_telemetry", "Write every decoded reading to the telemetry files.", True)
    )
    parquet_rows_per_part: int = _count(
        "parquet_rows_per_part", "Rows per Parquet part file.", 250_000
    )
    parquet_max_delay_s: float = _positive(
        "parquet_max_delay_s",
        "Wall-clock seconds a row may wait in a Parquet buffer before its part is written.",
        30.0,
    )
    sink_partitions: int = _count(
        "sink_partitions",
        "Partitions of the file sinks; in a cluster of several workers at least one per worker "
        "(rounded up to a multiple of the workers, each twin written on its state's worker).",
        1,
    )
    idle_flush_s: float = _positive(
        "idle_flush_s",
        "Wall-clock seconds without data after which a twin's open windows are closed.",
        30.0,
    )
    whatif_history_s: float = setting(
        Duration(
            "whatif_history_s",
            "Telemetry each twin keeps in the flow for what-if requests (the history their "
            "analysis is warmed up on); kept only when what-ifs are served.",
            7200.0,
            shown="`2h`",
        )
    )
    whatif_workers: int = _count(
        "whatif_workers", "Worker processes that run what-if requests, off the flow's path.", 1
    )
    whatif_queue: int = _count(
        "whatif_queue",
        "What-if requests waiting or running at once; more are rejected `busy`.",
        4,
    )
    replan_every_s: float = setting(
        Duration(
            "replan_every_s",
            "Event time after which the maintenance plan is re-computed, moved or not.",
            21600.0,
            shown="`6h`",
        )
    )
    replan_min_interval_s: float = setting(
        Duration(
            "replan_min_interval_s",
            "Least event time between two plans (a fleet's estimates move every window).",
            900.0,
            shown="`15m`",
        )
    )
    replan_change: float = _positive(
        "replan_change",
        "Re-plan when a twin's predicted failure time (or an end of its interval) moves by "
        "more than this fraction of its remaining life since the last plan.",
        0.2,
    )
    seed: int = setting(Whole("seed", "Seed of the flow's randomness.", 0, coerce=True))

    def __post_init__(self) -> None:
        check_fields(self, "flow config: ")
        if self.lateness_s >= self.window_s * 10:
            raise ConfigError(
                "flow config: lateness_s is more than ten windows long; per-twin state would "
                f"hold that many open windows (window_s={self.window_s}, "
                f"lateness_s={self.lateness_s})"
            )

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.window_s)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


#: The ``flow:`` section of a deployment file (every field but ``out_dir``, a command option).
FLOW = Schema("flow", "Settings of the telemetry flow (times in seconds).", fields_of(FlowConfig))

__all__ = ["FLOW", "FlowConfig"]
