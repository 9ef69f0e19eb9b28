"""Time order of recorded rows: what is kept goes forward; one bad stamp costs one row."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from twinflow.connectors.recorded.order import first_finite, longest_increasing, out_of_order


def kept(t: np.ndarray, last: float) -> np.ndarray:
    back, dup, ahead = out_of_order(t, last)
    assert not (back & dup).any() and not (back & ahead).any() and not (dup & ahead).any()
    return t[~(back | dup | ahead)]


def test_rows_in_order_are_all_kept_and_repeats_are_duplicates() -> None:
    t = np.array([1.0, 2.0, 2.0, 3.0])
    back, dup, ahead = out_of_order(t, 0.0)
    assert dup.tolist() == [False, False, True, False] and not back.any() and not ahead.any()


def test_one_row_stamped_far_ahead_costs_that_row_only() -> None:
    t = np.array([1.0, 2.0, 1e9, 3.0, 4.0, 5.0])
    back, dup, ahead = out_of_order(t, 0.0)
    assert ahead.tolist() == [False, False, True, False, False, False]
    assert not back.any() and not dup.any()


def test_rows_before_the_last_batch_go_backwards() -> None:
    back, _, _ = out_of_order(np.array([5.0, 11.0, 12.0]), 10.0)
    assert back.tolist() == [True, False, False]


@given(st.lists(st.integers(0, 30), max_size=40), st.integers(-1, 10))
def test_kept_rows_go_strictly_forward_and_are_a_longest_run(xs: list[int], last: int) -> None:
    t = np.array(xs, dtype=np.float64)
    k = kept(t, float(last))
    assert (np.diff(k) > 0).all() and (k > last).all()
    if (np.diff(t) < 0).any() or (t.size and t[0] <= last):  # out of order: a longest run
        assert k.size == longest_increasing(t[t > last]).size


def test_first_finite_skips_nan() -> None:
    assert first_finite(np.array([np.nan, 4.0, 5.0])) == 4.0
    assert first_finite(np.array([np.nan])) == 0.0
