"""The raw-sample anomaly alarm: raised after seconds above the limit, cleared after a quiet
spell, deaf to NaN scores and to the settling minute after warm-up."""

from __future__ import annotations

import pickle

import numpy as np

from twinflow.core.records import TelemetryFrame
from twinflow.operators.sample_alarm import RULE, SampleAlarm


def frame(scores: list[float], start: float = 0.0, share: float = 0.7) -> TelemetryFrame:
    s = np.asarray(scores, dtype=np.float64)
    signals = {"anomaly_sample": s, "anomaly_sample.flow": np.where(s > 1, share, 0.0)}
    return TelemetryFrame("P1", "rig", start + np.arange(len(s), dtype=np.float64), signals)


def test_a_short_excursion_raises_nothing_a_sustained_one_raises_once() -> None:
    alarm = SampleAlarm(raise_s=10.0, clear_s=30.0, settle_s=0.0, settle_n=0)
    assert alarm.update(frame([0.5] * 5 + [3.0] * 9 + [0.5] * 50)) == []
    (raised,) = alarm.update(frame([3.0] * 40, start=64))
    assert (raised.rule, raised.state.value, raised.time.timestamp()) == (RULE, "raised", 74.0)
    assert raised.evidence == {"anomaly.score": 3.0, "anomaly.share.flow": 0.7}
    assert "driven by flow" in raised.message
    assert alarm.update(frame([3.0] * 40, start=104)) == []  # still open: raised once


def test_it_clears_after_the_quiet_spell_with_the_same_id() -> None:
    alarm = SampleAlarm(raise_s=5.0, clear_s=30.0, settle_s=0.0, settle_n=0)
    (raised,) = alarm.update(frame([2.0] * 10))
    assert alarm.update(frame([0.5] * 29, start=10)) == []
    (cleared,) = alarm.update(frame([0.5] * 5, start=39))
    assert cleared.state.value == "cleared" and cleared.alert_id == raised.alert_id
    assert cleared.time.timestamp() == 40.0 and alarm.open is None


def test_nan_scores_neither_raise_nor_clear() -> None:
    alarm = SampleAlarm(raise_s=5.0, clear_s=10.0, settle_s=0.0, settle_n=0)
    (raised,) = alarm.update(frame([2.0] * 6))
    assert alarm.update(frame([float("nan")] * 100, start=6)) == []
    assert alarm.open is raised  # a new operating point: nothing judged, nothing cleared


def test_the_settling_minute_after_warm_up_is_only_watched() -> None:
    alarm = SampleAlarm(raise_s=5.0, clear_s=10.0, settle_s=60.0)
    scores = [float("nan")] * 300 + [2.0] * 50 + [0.5] * 100  # warm-up, then a hot start
    assert alarm.update(frame(scores)) == []
    (raised,) = alarm.update(frame([2.0] * 10, start=450))
    assert raised.time.timestamp() == 455.0


def test_the_alarm_survives_a_snapshot() -> None:
    alarm = SampleAlarm(raise_s=5.0, clear_s=10.0, settle_s=0.0, settle_n=0)
    alarm.update(frame([2.0] * 3))
    resumed = pickle.loads(pickle.dumps(alarm))
    (raised,) = resumed.update(frame([2.0] * 5, start=3))
    assert raised.time.timestamp() == 5.0  # the run above the limit went on across it


def test_an_open_alarm_stays_open_while_the_score_hovers_near_its_limit() -> None:
    alarm = SampleAlarm(raise_s=5.0, clear_s=10.0, settle_s=0.0, settle_n=0, clear_below=0.8)
    (raised,) = alarm.update(frame([2.0] * 6))
    # a weak fault: the score dips under the limit but stays above 0.8 of it
    assert alarm.update(frame([0.9, 1.2] * 50, start=6)) == []
    assert alarm.open is raised
    (cleared,) = alarm.update(frame([0.5] * 20, start=106))
    assert cleared.time.timestamp() == 116.0  # quiet for clear_s at or below 0.8
    # closed, the same hovering raises nothing until a run above 1 lasts raise_s
    assert alarm.update(frame([0.9, 1.2] * 50, start=126)) == []


def test_a_fault_that_ends_at_a_new_level_clears_by_the_recovery_rule() -> None:
    alarm = SampleAlarm(
        raise_s=5.0, clear_s=120.0, settle_s=0.0, settle_n=0, recover=0.1, recover_s=30.0
    )
    (raised,) = alarm.update(frame([50.0] * 20))
    # still above the limit, but a tenth of the peak: the fault is over (and the sample
    # model, by the same rule, re-learns the level, so its scores fall under the limit)
    (cleared,) = alarm.update(frame([3.0] * 31 + [0.5] * 20, start=20))
    assert cleared.alert_id == raised.alert_id and cleared.time.timestamp() == 50.0
    assert "fault is over" in cleared.message and alarm.open is None
    # a fault whose score stays at a third of its peak is still one: no recovery
    alarm = SampleAlarm(
        raise_s=5.0, clear_s=120.0, settle_s=0.0, settle_n=0, recover=0.1, recover_s=30.0
    )
    alarm.update(frame([10.0] * 20))
    assert alarm.update(frame([3.0] * 200, start=20)) == [] and alarm.open is not None


def test_slow_samples_need_three_over_the_limit_to_raise_and_six_quiet_to_clear() -> None:
    # one sample every 5 minutes: 10 s and 2 minutes alone would be met by two samples in a
    # row (raise) and by the second quiet one (clear)
    def slow(scores: list[float], start: int) -> TelemetryFrame:
        f = frame(scores)
        return TelemetryFrame("P1", "rig", (start + np.arange(len(scores))) * 300.0, f.signals)

    alarm = SampleAlarm(settle_s=0.0, settle_n=0)
    assert alarm.update(slow([3.0, 3.0, 0.5], 0)) == []
    (raised,) = alarm.update(slow([3.0, 3.0, 3.0], 3))
    assert raised.time.timestamp() == 5 * 300.0
    assert alarm.update(slow([0.5] * 5 + [3.0], 6)) == []  # five quiet samples: still open
    assert alarm.update(slow([0.5] * 5, 12)) == []
    (cleared,) = alarm.update(slow([0.5], 17))
    assert cleared.state.value == "cleared" and cleared.time.timestamp() == 17 * 300.0


def slow_frame(scores: list[float], start: int, period: float = 300.0) -> TelemetryFrame:
    """Scores one every ``period`` seconds (5 minutes by default) from sample ``start``."""
    f = frame(scores)
    return TelemetryFrame("P1", "rig", (start + np.arange(len(scores))) * period, f.signals)


def test_slow_samples_are_watched_for_thirty_samples_after_warmup_not_one_minute() -> None:
    # at one sample every 5 minutes, the settle's 60 s alone would watch a single sample
    alarm = SampleAlarm()
    assert alarm.update(slow_frame([3.0] * 30, 0)) == []  # the first 30 scores: watched
    (raised,) = alarm.update(slow_frame([3.0] * 3, 30))
    assert raised.time.timestamp() == 32 * 300.0  # three over the limit after the settle
    assert "for 10 min" in raised.message  # the span it really took, not the 10 s asked


def test_at_one_hertz_the_settle_is_still_its_minute() -> None:
    alarm = SampleAlarm()
    assert alarm.update(frame([3.0] * 60)) == []
    (raised,) = alarm.update(frame([3.0] * 11, start=60))
    assert raised.time.timestamp() == 70.0


def test_slow_samples_need_twenty_at_a_tenth_of_the_peak_to_recover() -> None:
    alarm = SampleAlarm(settle_s=0.0, settle_n=0)
    (raised,) = alarm.update(slow_frame([50.0] * 5, 0))
    # 30 s are met by the second low sample; 20 samples are asked as well
    assert alarm.update(slow_frame([3.0] * 19, 5)) == [] and alarm.open is raised
    (cleared,) = alarm.update(slow_frame([3.0], 24))
    assert "fault is over" in cleared.message and cleared.time.timestamp() == 24 * 300.0


def test_a_snapshot_of_an_older_alarm_restores_with_the_new_fields_at_their_defaults() -> None:
    alarm = SampleAlarm(settle_s=0.0, settle_n=0)
    (raised,) = alarm.update(frame([3.0] * 20))
    state = alarm.__getstate__()
    older = state[:-4]  # the alarm before the sample counts of settle and recovery existed
    restored = SampleAlarm.__new__(SampleAlarm)
    restored.__setstate__(older)
    assert restored.open == raised and restored.hot_n == alarm.hot_n
    assert (restored.recover_n, restored.settle_n, restored.low_n, restored.scored_n) == (
        20,
        30,
        0,
        0,
    )
    again = pickle.loads(pickle.dumps(alarm))
    assert pickle.dumps(again.__getstate__()) == pickle.dumps(state)  # NaN fields too
