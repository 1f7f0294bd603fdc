"""groundtruth.studies.predictors: the fitted predictors of the published and holdout studies."""

import numpy as np

from groundtruth.studies.predictors import fit_alpha, width_then_minus_l0


def test_fit_alpha_picks_the_agreeing_weight():
    # C + I - alpha L0 = (1 - alpha) * L0 ranks like the target only when alpha > 1.
    l0 = np.array([3.0, 2.0, 1.0])
    assert fit_alpha(l0, np.zeros(3), l0, [1.0, 2.0, 3.0], [0.0, 0.5, 2.0]) == 2.0


def test_width_then_minus_l0_ranks_by_width_first_then_by_lower_l0():
    values = width_then_minus_l0([16, 16, 4, 4], [10.0, 20.0, 1.0, 500.0])
    assert np.argsort(-values).tolist() == [0, 1, 2, 3]
