import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from groundtruth.convergence import CONVERGED_GAIN, convergence_summary, last_doubling_gain


def test_the_gain_over_the_last_doubling_of_a_planted_curve():
    # v = log2(t): over the last doubling it rises by exactly 1, so gain = 1 / log2(T)
    steps = [2 ** i for i in range(1, 11)]
    values = np.log2(steps)
    assert last_doubling_gain(steps, values) == pytest.approx(1 / 10)


def test_half_of_training_between_checkpoints_is_interpolated_in_log_steps():
    # T/2 = 50 lies between 10 and 100 at log-fraction log(5)/log(10) of the way
    steps, values = [10, 100], [0.2, 0.8]
    v_half = 0.2 + 0.6 * np.log(5) / np.log(10)
    assert last_doubling_gain(steps, values) == pytest.approx((0.8 - v_half) / 0.8)


def test_flat_falling_zero_and_unmeasurable_curves():
    assert last_doubling_gain([1, 2, 4, 8], [0.5, 0.6, 0.7, 0.7]) == 0.0
    assert last_doubling_gain([1, 2, 4, 8], [0.5, 0.6, 0.8, 0.7]) < 0
    assert last_doubling_gain([1, 2, 4, 8], [0, 0, 0, 0]) == 0.0
    assert last_doubling_gain([1, 2, 4, 8], [0.1, 0.1, 0.1, 0.0]) == -np.inf
    assert last_doubling_gain([5, 8], [0.1, 0.2]) is None  # first checkpoint after T/2


@pytest.mark.parametrize("steps, values, match", [
    ([1], [0.1], "at least two"),
    ([2, 1], [0.1, 0.2], "increasing"),
    ([0, 1], [0.1, 0.2], "positive"),
    ([1, 2], [0.1], "one length"),
    ([1, 2], [0.1, np.nan], "non-finite"),
])
def test_bad_curves_are_named(steps, values, match):
    with pytest.raises(ValueError, match=match):
        last_doubling_gain(steps, values)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.01, 1.0), min_size=3, max_size=8), st.floats(0.1, 10))
def test_the_gain_does_not_depend_on_the_curve_scale(values, scale):
    steps = [2 ** i for i in range(len(values))]
    a = last_doubling_gain(steps, values)
    b = last_doubling_gain(steps, np.asarray(values) * scale)
    assert a == pytest.approx(b, rel=1e-9, abs=1e-12)


def test_the_summary_takes_the_median_over_seeds_and_judges_every_run():
    steps = [1, 2, 4, 8]
    flat = np.array([[0.5, 0.6, 0.7, 0.7], [0.5, 0.6, 0.7, 0.701], [0.5, 0.6, 0.7, 0.9]])
    rising = np.array([[0.1, 0.2, 0.4, 0.8]] * 2)
    summary = convergence_summary({"flat": (steps, flat), "rising": (steps, rising)})
    assert summary["threshold"] == CONVERGED_GAIN
    assert summary["per_run"]["flat"]["gain"] == pytest.approx(0.001 / 0.701)
    assert summary["per_run"]["flat"]["converged"]
    assert summary["per_run"]["rising"]["gain"] == pytest.approx(0.5)
    assert not summary["per_run"]["rising"]["converged"]
    assert (summary["n_runs"], summary["n_converged"], summary["converged"]) == (2, 1, False)
    assert summary["max_gain"] == pytest.approx(0.5)
    only_flat = convergence_summary({"flat": (steps, flat)})
    assert only_flat["converged"]
    with pytest.raises(ValueError, match="threshold"):
        convergence_summary({}, threshold=0)


def test_a_run_whose_ground_truth_falls_to_zero_is_converged_and_writes_as_json():
    import json

    steps = [1, 2, 4, 8]
    summary = convergence_summary({"collapsed": (steps, np.array([[0.2, 0.3, 0.1, 0.0],
                                                                  [0.2, 0.3, 0.1, 0.0]])),
                                   "rising": (steps, np.array([[0.1, 0.2, 0.4, 0.8]]))})
    collapsed = summary["per_run"]["collapsed"]
    assert collapsed["converged"] and collapsed["gain"] is None
    assert collapsed["seed_gains"] == [None, None] and "0 at the end" in collapsed["note"]
    assert summary["n_measurable"] == 1 and summary["max_gain"] == pytest.approx(0.5)
    json.dumps(summary, allow_nan=False)  # no infinity reaches a report
