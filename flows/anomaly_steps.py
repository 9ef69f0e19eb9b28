"""The anomaly models' step adapters: raw-sample scores, the raw-sample alarm, window models.

Split from :mod:`twinflow.flows.steps` (same conventions): each adapter fits a model of
``models/`` or ``operators/`` to a Bytewax operator's callable shape.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from twinflow.core.records import (
    Alert,
    Frame,
    TelemetryFrame,
    WindowFeatures,
)
from twinflow.flows.config import FlowConfig
from twinflow.flows.steps import TypeOf
from twinflow.models.anomaly import WindowAnomalyDetector
from twinflow.models.spc import SpcDetector
from twinflow.operators.anomaly_profile import anomaly_of, operating_signals
from twinflow.operators.catalog import TwinType
from twinflow.operators.rules import DRIVER_PREFIX, SHARE_PREFIX
from twinflow.operators.sample_alarm import SampleAlarm
from twinflow.operators.sample_anomaly import (
    RESOLUTION,
    SAMPLE_PREFIX,
    SAMPLE_SIGNAL,
    SampleScorer,
    SampleSettings,
)


def sample_settings(config: FlowConfig) -> SampleSettings:
    """The raw-sample model's settings from the flow's (before a type's overrides)."""
    return SampleSettings(
        enabled=config.sample_anomaly,
        warmup=config.sample_warmup,
        warmup_s=config.sample_warmup_s,
        warmup_slow_s=config.sample_warmup_slow_s,
        warmup_shift=config.sample_warmup_shift,
        warmup_max=config.sample_warmup_max,
        track=config.sample_track,
        quantile=config.sample_quantile,
        margin=config.sample_margin,
        smooth=config.sample_smooth,
        hold=config.sample_hold,
        half_life=config.sample_half_life,
        long_s=config.sample_long_s,
        hold_s=config.sample_hold_s,
        half_life_s=config.sample_half_life_s,
        smooth_s=config.sample_smooth_s,
        recover_s=config.sample_recover_s,
        refit_s=config.sample_refit_s,
        adapt=config.anomaly_adapt,
        seed=config.seed,
    )


@dataclass(frozen=True)
class SampleAnomalyStep:
    """``samples`` (stateful_map): score each raw sample of a frame with the twin's sample
    model, adding the ``anomaly_sample`` signal (see :mod:`twinflow.operators.sample_anomaly`)."""

    settings: SampleSettings = field(default_factory=SampleSettings)
    type_of: TypeOf = field(default_factory=TypeOf)

    @classmethod
    def from_config(cls, config: FlowConfig, type_of: TypeOf | None = None) -> SampleAnomalyStep:
        return cls(sample_settings(config), type_of or TypeOf())

    def __call__(
        self, scorer: SampleScorer | None, frame: Frame
    ) -> tuple[SampleScorer | None, Frame]:
        if not isinstance(frame, TelemetryFrame):
            return scorer, frame
        if scorer is None:
            kind = self.type_of(frame.twin_id, frame.twin_type)
            if kind is None:
                return None, frame
            scorer = SampleScorer(kind, frame, self.settings)
        return scorer, scorer.score(frame)


@dataclass(frozen=True)
class SampleAlarmStep:
    """``sample_alarms`` (stateful_flat_map): each twin's raw-sample anomaly alarm, raised
    and cleared in seconds from its ``anomaly_sample`` scores (see
    :mod:`twinflow.operators.sample_alarm`)."""

    raise_s: float = 10.0
    clear_s: float = 120.0
    settle_s: float = 60.0
    raise_n: int = 3
    clear_n: int = 6
    settle_n: int = 30
    recover_n: int = 20

    @classmethod
    def from_config(cls, config: FlowConfig) -> SampleAlarmStep:
        return cls(
            config.sample_alarm_for_s,
            config.sample_alarm_clear_s,
            config.sample_alarm_settle_s,
            config.sample_alarm_raise_n,
            config.sample_alarm_clear_n,
            config.sample_alarm_settle_n,
            config.sample_alarm_recover_n,
        )

    def __call__(
        self, alarm: SampleAlarm | None, frame: Frame
    ) -> tuple[SampleAlarm | None, list[Alert]]:
        if not isinstance(frame, TelemetryFrame) or SAMPLE_SIGNAL not in frame.signals:
            return alarm, []
        if alarm is None:
            alarm = SampleAlarm(
                raise_s=self.raise_s,
                clear_s=self.clear_s,
                settle_s=self.settle_s,
                raise_n=self.raise_n,
                clear_n=self.clear_n,
                settle_n=self.settle_n,
                recover_n=self.recover_n,
            )
        return alarm, alarm.update(frame)


class WindowModel(Protocol):
    """One twin's window-level model: a :class:`WindowAnomalyDetector` or an
    :class:`SpcDetector` (one named type, so Bytewax's ``stateful_map`` types check)."""

    @property
    def warm(self) -> bool: ...

    def explain(self, x: Mapping[str, float], top: int = 3) -> dict[str, float]: ...


#: A window's mean sample score above this is an anomalous window.
SAMPLE_MEAN = SAMPLE_SIGNAL + ".mean"


def _floor(kind: TwinType | None, signal: str) -> float:
    """The least spread of a signal's window mean: a share of its declared range (0 for a
    derived signal)."""
    if kind is None or signal not in kind.signal_names:
        return 0.0
    spec = kind.signal(signal)
    return RESOLUTION * (spec.high - spec.low)


def _window_inputs(features: Mapping[str, float]) -> dict[str, float]:
    """The features a window model learns from: all but the sample model's."""
    return {k: v for k, v in features.items() if not k.startswith(SAMPLE_PREFIX)}


@dataclass(frozen=True)
class AnomalyStep:
    """``anomaly`` (stateful_map): score each window with the twin's window model, then
    learn; a window whose mean raw-sample score passes 1 is anomalous too. An anomalous
    window names what drives it: the window model's deviating features
    (``anomaly.z.<feature>``) and the sample model's signals (``anomaly.share.<signal>``)."""

    warmup: int
    quantile: float
    margin: float
    seed: int
    learn_below: float = 0.9
    min_std: float = 0.01
    rel_std: float = 0.01
    max_features: int = 128
    type_of: TypeOf = field(default_factory=TypeOf)
    detector: str = "spc"
    adapt: bool = True

    @classmethod
    def from_config(cls, config: FlowConfig, type_of: TypeOf | None = None) -> AnomalyStep:
        return cls(
            config.anomaly_warmup,
            config.anomaly_quantile,
            config.anomaly_margin,
            config.seed,
            config.anomaly_learn_below,
            config.anomaly_min_std,
            config.anomaly_rel_std,
            config.anomaly_max_features,
            type_of or TypeOf(),
            config.anomaly_detector,
            config.anomaly_adapt,
        )

    def new_model(self, w: WindowFeatures, x: Mapping[str, float]) -> WindowModel:
        """The twin's window model: the type's ``anomaly.detector``, else the flow's."""
        kind = self.type_of(w.twin_id, w.twin_type)
        a = anomaly_of(kind) if kind is not None else None
        adapt = self.adapt if a is None or a.adapt is None else a.adapt
        choice = (a.detector if a is not None else None) or self.detector
        if choice == "spc":
            settings = operating_signals(kind) if kind is not None else ()
            means = sorted(k for k in x if k.endswith(".mean"))
            operating = [k for k in means if k.removesuffix(".mean") in settings]
            if len(means) > len(operating):
                cols = [*operating, *(k for k in means if k not in operating)]
                return SpcDetector(
                    means,
                    operating=operating,
                    warmup=max(self.warmup, 8),
                    quantile=self.quantile,
                    margin=self.margin,
                    adapt=adapt,
                    hold=1,
                    refit_every=6,
                    relearn=1,
                    floors=[_floor(kind, k.removesuffix(".mean")) for k in cols],
                    recover=0.0,  # the recovery rule is measured on raw samples only
                    seed=self.seed,
                )
        return WindowAnomalyDetector(
            warmup=self.warmup,
            quantile=self.quantile,
            margin=self.margin,
            seed=self.seed,
            learn_below=self.learn_below if adapt else 0.0,
            min_std=self.min_std,
            rel_std=self.rel_std,
            max_features=self.max_features,
        )

    def __call__(
        self, model: WindowModel | None, w: WindowFeatures
    ) -> tuple[WindowModel, WindowFeatures]:
        x = _window_inputs(w.features)
        if model is None:
            model = self.new_model(w, x)
        if isinstance(model, SpcDetector):
            judged = model.learn_one(x, w.end.timestamp())  # NaN: warm-up, new point
            score: float | None = judged if math.isfinite(judged) else None
            threshold: float | None = 1.0 if model.warm else None
        elif isinstance(model, WindowAnomalyDetector):
            score, threshold = model.score_one(x), model.threshold
        else:
            raise TypeError(f"anomaly: unknown window model {type(model).__name__}")
        sampled = w.features.get(SAMPLE_MEAN)
        if sampled is not None and math.isfinite(sampled):
            if threshold is None or score is None or not math.isfinite(score):
                score, threshold = sampled, 1.0
            else:
                score = max(score, sampled * threshold)
        out = replace(w, anomaly_score=score, anomaly_threshold=threshold)
        if out.is_anomalous:  # name what drives it
            drivers = {DRIVER_PREFIX + k: v for k, v in model.explain(x).items()}
            drivers.update(_sample_drivers(w.features))
            out = replace(out, features={**w.features, **drivers})
        if isinstance(model, WindowAnomalyDetector):
            model.learn_one(x)
        return model, out


def _sample_drivers(features: Mapping[str, float], top: int = 3) -> dict[str, float]:
    """The signals with the largest mean share of the sample model's score in a window."""
    shares = {
        k.removeprefix(SAMPLE_PREFIX).removesuffix(".mean"): v
        for k, v in features.items()
        if k.startswith(SAMPLE_PREFIX)
        and k.endswith(".mean")
        and k != SAMPLE_MEAN
        and math.isfinite(v)
    }
    ranked = sorted(shares.items(), key=lambda kv: -kv[1])[:top]
    return {SHARE_PREFIX + k: round(v, 3) for k, v in ranked}
