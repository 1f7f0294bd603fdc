"""Tests of groundtruth.stats: hand cases, scipy agreement, properties, invalid inputs."""

import csv
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from groundtruth import stats
from groundtruth.stats import (
    Discriminability,
    RankCorrelation,
    ReseedNoise,
    bootstrap_ci,
    kendall,
    minimum_detectable_difference,
    partial_rank_correlation,
    partial_spearman,
    rank_correlation,
    ranking_agreement,
    reseed_noise,
    spearman,
    trajectory_discriminability,
    variance_decomposition,
)

CEBENCH_TABLE = (
    Path(__file__).parents[2].parent
    / "shared" / "data" / "cebench-published" / "saebench_gemma2_2b_layer12.csv"
)
Z975 = 1.959963984540054

# Distinct-valued vectors (no ties) and vectors with ties, for property tests.
finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@st.composite
def paired_vectors(draw, min_size=4, max_size=20, ties=True):
    n = draw(st.integers(min_size, max_size))
    elements = st.integers(-5, 5).map(float) if ties else finite
    x = draw(st.lists(elements, min_size=n, max_size=n, unique=not ties))
    y = draw(st.lists(elements, min_size=n, max_size=n, unique=not ties))
    return np.array(x), np.array(y)


def not_constant(v):
    return v.min() < v.max()


def test_public_names_resolve():
    for name in stats.__all__:
        assert hasattr(stats, name), name


# --------------------------------------------------------------------------------------------
# spearman, kendall
# --------------------------------------------------------------------------------------------


def test_rank_correlations_hand_computed():
    # ranks (1,2,3,4) vs (1,3,2,4): sum d^2 = 2, rho = 1 - 6*2/(4*15) = 0.8
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    # 6 pairs, 5 concordant, 1 discordant, no ties: tau = 4/6
    assert kendall([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(2 / 3)
    assert spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    # tau-b with ties: x = (1,1,2), y = (1,2,3): P = 2, Q = 0, T_x = 1, T_y = 0 -> 2/sqrt(2*3)
    assert kendall([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))


@given(paired_vectors(min_size=2))
def test_rank_correlations_equal_scipy(xy):
    x, y = xy
    if not (not_constant(x) and not_constant(y)):
        return
    assert spearman(x, y) == pytest.approx(scipy.stats.spearmanr(x, y).statistic, abs=1e-12)
    assert kendall(x, y) == pytest.approx(scipy.stats.kendalltau(x, y).statistic, abs=1e-12)


@given(paired_vectors(min_size=3, ties=True), st.sampled_from(["exp", "cube", "affine"]))
def test_rank_correlations_invariant_to_increasing_transforms(xy, transform):
    x, y = xy
    if not (not_constant(x) and not_constant(y)):
        return
    f = {"exp": np.exp, "cube": lambda v: v**3, "affine": lambda v: 3 * v - 7}[transform]
    assert spearman(f(x), y) == pytest.approx(spearman(x, y), abs=1e-9)
    assert spearman(x, f(y)) == pytest.approx(spearman(x, y), abs=1e-9)
    assert kendall(f(x), y) == pytest.approx(kendall(x, y), abs=1e-9)
    # a decreasing transform flips the sign
    assert kendall(-x, y) == pytest.approx(-kendall(x, y), abs=1e-9)


@pytest.mark.parametrize("function", [spearman, kendall])
def test_rank_correlations_reject_bad_input(function):
    with pytest.raises(ValueError, match="same number of items: x has 3, y has 2"):
        function([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="needs at least 2 items, got 1"):
        function([1], [1])
    with pytest.raises(ValueError, match="x contains NaN"):
        function([1, np.nan, 3], [1, 2, 3])
    with pytest.raises(ValueError, match="y contains infinite"):
        function([1, 2, 3], [1, 2, np.inf])
    with pytest.raises(ValueError, match="y is constant"):
        function([1, 2, 3], [5, 5, 5])
    with pytest.raises(ValueError, match="x is constant"):
        function([0, 0, 0], [1, 2, 3])
    with pytest.raises(ValueError, match="1-dimensional"):
        function([[1, 2], [3, 4]], [1, 2])


# --------------------------------------------------------------------------------------------
# bootstrap_ci, rank_correlation
# --------------------------------------------------------------------------------------------


def test_bootstrap_ci_equals_literal_loop():
    x = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0])
    rng = np.random.default_rng(7)
    means = [x[rng.integers(0, len(x), size=len(x))].mean() for _ in range(300)]
    expected = tuple(np.quantile(means, [0.05, 0.95]))
    assert bootstrap_ci(np.mean, x, n_boot=300, level=0.9, seed=7) == pytest.approx(expected)


def test_bootstrap_ci_resamples_rows_together():
    x = np.arange(10.0)
    # the statistic sees the same rows of both arrays: x - y is always 0
    assert bootstrap_ci(lambda a, b: float(np.max(np.abs(a - b))), x, x.copy(), n_boot=50) == (
        0.0,
        0.0,
    )
    rows = np.column_stack([x, 2 * x])  # 2-D arrays are resampled by row
    low, high = bootstrap_ci(lambda r: float(np.all(r[:, 1] == 2 * r[:, 0])), rows, n_boot=20)
    assert (low, high) == (1.0, 1.0)


def test_bootstrap_ci_skips_undefined_resamples():
    x = np.array([0.0, 1.0])
    # mean of a resample, NaN when the resample repeats one item: only (0, 1) / (1, 0) count
    low, high = bootstrap_ci(
        lambda a: float(a.mean()) if a.min() < a.max() else math.nan, x, n_boot=40
    )
    assert (low, high) == (0.5, 0.5)
    with pytest.raises(ValueError, match="undefined .NaN. on all 10 bootstrap resamples"):
        bootstrap_ci(lambda a: math.nan, x, n_boot=10)


def test_bootstrap_ci_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one array"):
        bootstrap_ci(np.mean)
    with pytest.raises(ValueError, match="same number of items: array 0 has 3, array 1 has 2"):
        bootstrap_ci(np.mean, [1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="needs at least 2 items, got 1"):
        bootstrap_ci(np.mean, [1.0])
    with pytest.raises(ValueError, match="array 0 contains NaN"):
        bootstrap_ci(np.mean, [1.0, np.nan, 3.0])
    for level in (0.0, 1.0, 95, -0.5, "0.9"):
        with pytest.raises(ValueError, match="level must be"):
            bootstrap_ci(np.mean, [1.0, 2.0], level=level)
    for n_boot in (0, -3, 2.5):
        with pytest.raises(ValueError, match="n_boot must be a positive integer"):
            bootstrap_ci(np.mean, [1.0, 2.0], n_boot=n_boot)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        bootstrap_ci(np.mean, [1.0, 2.0], seed=1.5)


def test_rank_correlation_point_estimates_and_shape():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    y = np.array([2.0, 1.0, 4.0, 3.0, 6.0, 5.0])
    result = rank_correlation(x, y, n_boot=100, seed=3)
    assert isinstance(result, RankCorrelation)
    assert result.n == 6
    assert result.spearman == pytest.approx(scipy.stats.spearmanr(x, y).statistic)
    assert result.kendall == pytest.approx(scipy.stats.kendalltau(x, y).statistic)
    for low, high in (result.spearman_ci95, result.kendall_ci95):
        assert -1.0 <= low <= high <= 1.0
    with pytest.raises(AttributeError):
        result.n = 7  # frozen


def test_rank_correlation_perfect_agreement_has_degenerate_interval():
    x = np.arange(8.0)
    result = rank_correlation(x, np.exp(x), n_boot=50)
    assert result.spearman == pytest.approx(1.0)
    assert result.spearman_ci95 == pytest.approx((1.0, 1.0))
    assert result.kendall_ci95 == pytest.approx((1.0, 1.0))


@settings(max_examples=10)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(20, 40))
def test_rank_correlation_interval_contains_estimate_and_is_reproducible(seed, n):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    y = x + 0.7 * rng.standard_normal(n)
    first = rank_correlation(x, y, n_boot=100, seed=seed)
    assert first.spearman_ci95[0] <= first.spearman <= first.spearman_ci95[1]
    assert first.kendall_ci95[0] <= first.kendall <= first.kendall_ci95[1]
    assert rank_correlation(x, y, n_boot=100, seed=seed) == first


def test_rank_correlation_rejects_bad_input():
    with pytest.raises(ValueError, match="rank_correlation needs at least 4 items, got 3"):
        rank_correlation([1, 2, 3], [3, 2, 1])
    with pytest.raises(ValueError, match="same number of items"):
        rank_correlation([1, 2, 3, 4], [3, 2, 1])
    with pytest.raises(ValueError, match="y contains NaN"):
        rank_correlation([1, 2, 3, 4], [3, 2, np.nan, 1])
    with pytest.raises(ValueError, match="x is constant"):
        rank_correlation([1, 1, 1, 1], [3, 2, 4, 1])
    with pytest.raises(ValueError, match="level must be in"):
        rank_correlation([1, 2, 3, 4], [3, 2, 4, 1], level=1.5)


# --------------------------------------------------------------------------------------------
# cluster bootstrap
# --------------------------------------------------------------------------------------------


@given(seed=st.integers(0, 2**31 - 1), n=st.integers(4, 25), ties=st.booleans())
def test_weighted_statistics_equal_the_expanded_sample(seed, n, ties):
    """A resample given as counts scores exactly like the sample with each item repeated."""
    rng = np.random.default_rng(seed)
    draw = (lambda: rng.integers(-2, 3, n).astype(float)) if ties else (
        lambda: rng.standard_normal(n))
    x, y, z = draw(), draw(), np.column_stack([draw(), rng.standard_normal(n)])
    weights = rng.integers(0, 3, (6, n))
    got = (stats.weighted_spearman(x, y, weights), stats.weighted_kendall(x, y, weights),
           stats.weighted_partial_spearman(x, y, z, weights))
    for b in range(len(weights)):
        idx = np.repeat(np.arange(n), weights[b])
        if len(idx) < 2:
            continue
        want = (stats._spearman_or_nan(x[idx], y[idx]), stats._kendall_or_nan(x[idx], y[idx]),
                stats._partial_spearman_or_nan(x[idx], y[idx], z[idx]))
        for g, w in zip(got, want):
            assert (math.isnan(g[b]) and math.isnan(w)) or g[b] == pytest.approx(w, abs=1e-9)


def test_cluster_bootstrap_draws_whole_clusters_then_their_items():
    clusters = ["a"] * 3 + ["b"] * 3 + ["c"] * 3
    weights = stats.cluster_bootstrap_weights(clusters, n_boot=500, seed=0)
    assert weights.shape == (500, 9) and weights.dtype == np.int64
    assert (weights.sum(axis=1) == 9).all()  # 3 clusters of 3 drawn, 3 items each
    per_cluster = weights.reshape(500, 3, 3).sum(axis=2)
    assert set(np.unique(per_cluster)) <= {0, 3, 6, 9}  # whole clusters, 0 to 3 times
    assert (per_cluster == 0).any() and (weights.reshape(500, 3, 3) >= 2).any()
    again = stats.cluster_bootstrap_weights(clusters, n_boot=500, seed=0)
    assert np.array_equal(weights, again)
    singletons = stats.cluster_bootstrap_weights(np.arange(9), n_boot=200, seed=1)
    assert (singletons.sum(axis=1) == 9).all()


def test_cluster_bootstrap_keeps_each_stratum_whole():
    clusters = ["a", "a", "b", "b", "c", "d", "d", "d"]
    strata = ["s"] * 4 + ["t"] * 4
    weights = stats.cluster_bootstrap_weights(clusters, strata=strata, n_boot=300, seed=2)
    assert (weights[:, :4].sum(axis=1) == 4).all()  # stratum s: 2 clusters of 2
    # stratum t: clusters of 1 and 3 items, two drawn: c c, c d or d d
    assert set(weights[:, 4:].sum(axis=1)) == {2, 4, 6}
    with pytest.raises(ValueError, match="cluster 'a' lies in two strata"):
        stats.cluster_bootstrap_weights(["a", "a", "b"], strata=["s", "t", "t"])
    with pytest.raises(ValueError, match="one label per item"):
        stats.cluster_bootstrap_weights(["a", "b"], strata=["s"])


def _clustered_null(rng, n_clusters, size):
    """x and y independent, each with a strong shared effect per cluster."""
    def draw():
        return np.repeat(rng.standard_normal(n_clusters), size) + 0.3 * rng.standard_normal(
            n_clusters * size)
    return draw(), draw(), np.repeat(np.arange(n_clusters), size)


def test_cluster_intervals_hold_their_level_under_a_clustered_null():
    # 15 clusters of 5 items, no association: the 95% interval should exclude 0 in about 5%
    # of samples. Resampling items one by one (as if independent) excludes it far more often.
    rng = np.random.default_rng(3)
    excluded = {"clusters": 0, "items": 0}
    n_samples = 300
    for k in range(n_samples):
        x, y, clusters = _clustered_null(rng, 15, 5)
        for how, groups in (("clusters", clusters), ("items", None)):
            low, high = rank_correlation(x, y, clusters=groups, n_boot=300, seed=k).spearman_ci95
            excluded[how] += low > 0 or high < 0
    assert 0.02 <= excluded["clusters"] / n_samples <= 0.09, excluded
    assert excluded["items"] / n_samples > 0.2, excluded


def test_rank_correlation_with_clusters_reports_its_units():
    rng = np.random.default_rng(4)
    x, y, clusters = _clustered_null(rng, 6, 4)
    y = y + x
    result = rank_correlation(x, y, clusters=clusters, n_boot=400, seed=0)
    assert result.n == 24 and result.n_units == 6 and result.resampled == stats.CLUSTERED
    assert result.spearman == pytest.approx(spearman(x, y))
    assert result.spearman_ci95[0] <= result.spearman <= result.spearman_ci95[1]
    assert result == rank_correlation(x, y, clusters=clusters, n_boot=400, seed=0)
    plain = rank_correlation(x, y, n_boot=400, seed=0)
    assert plain.n_units == 24 and plain.resampled == "items"
    estimate, interval = partial_rank_correlation(x, y, rng.standard_normal(24),
                                                  clusters=clusters, n_boot=400, seed=0)
    assert interval[0] <= estimate <= interval[1]


# --------------------------------------------------------------------------------------------
# partial_spearman, partial_rank_correlation
# --------------------------------------------------------------------------------------------


def test_partial_spearman_hand_computed():
    # Ranks are the values. Centered z = (-2,-1,0,1,2); x and y each have slope 0.8 on z:
    # residuals (-0.4, 0.8, -1, 1.2, -0.6) and (0.6, -1.2, 1, -0.8, 0.4); dot -3.4, norms^2 3.6
    x, y, z = [1, 3, 2, 5, 4], [2, 1, 4, 3, 5], [1, 2, 3, 4, 5]
    assert partial_spearman(x, y, z) == pytest.approx(-17 / 18)
    # ranks, not values, enter: monotone transforms of any input change nothing
    assert partial_spearman(np.exp(x), y, np.array(z) ** 3) == pytest.approx(-17 / 18)
    # a 2-D covariate with one column is the same
    assert partial_spearman(x, y, np.array(z)[:, None]) == pytest.approx(-17 / 18)


def _spearman_partial_formula(r_xy, r_xz, r_yz):
    return (r_xy - r_xz * r_yz) / math.sqrt((1 - r_xz**2) * (1 - r_yz**2))


@given(seed=st.integers(0, 2**31 - 1), n=st.integers(6, 30), ties=st.booleans())
def test_partial_spearman_one_covariate_matches_formula(seed, n, ties):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(n)
    x = z + rng.standard_normal(n)
    y = -z + rng.standard_normal(n)
    if ties:
        x, y, z = np.round(x), np.round(y), np.round(z)
    r = {name: spearman(a, b) for name, (a, b) in
         {"xy": (x, y), "xz": (x, z), "yz": (y, z)}.items()
         if not_constant(a) and not_constant(b)}
    if len(r) < 3 or max(abs(r["xz"]), abs(r["yz"])) > 1 - 1e-9:
        return
    expected = _spearman_partial_formula(r["xy"], r["xz"], r["yz"])
    assert partial_spearman(x, y, z) == pytest.approx(expected, abs=1e-9)


@given(seed=st.integers(0, 2**31 - 1), n=st.integers(8, 30))
def test_partial_spearman_two_covariates_matches_recursion(seed, n):
    # The partial correlation given (z1, z2) is the partial, given z2, of the partials given z1.
    rng = np.random.default_rng(seed)
    z1, z2 = rng.standard_normal(n), rng.standard_normal(n)
    x = z1 - z2 + rng.standard_normal(n)
    y = z1 + z2 + rng.standard_normal(n)
    r_xy_1 = partial_spearman(x, y, z1)
    r_x2_1 = partial_spearman(x, z2, z1)
    r_y2_1 = partial_spearman(y, z2, z1)
    expected = _spearman_partial_formula(r_xy_1, r_x2_1, r_y2_1)
    covariates = np.column_stack([z1, z2])
    assert partial_spearman(x, y, covariates) == pytest.approx(expected, abs=1e-9)


@given(paired_vectors(min_size=5, ties=False))
def test_partial_spearman_with_independent_ranks_is_symmetric_and_bounded(xy):
    x, y = xy
    z = np.arange(len(x), dtype=float)
    try:
        r = partial_spearman(x, y, z)
    except ValueError:  # x or y is a monotone function of z: undefined
        return
    assert -1.0 <= r <= 1.0
    assert partial_spearman(y, x, z) == pytest.approx(r, abs=1e-12)


def test_partial_rank_correlation_interval():
    rng = np.random.default_rng(0)
    z = rng.standard_normal(30)
    x = z + 0.5 * rng.standard_normal(30)
    y = x + 0.5 * rng.standard_normal(30)
    estimate, (low, high) = partial_rank_correlation(x, y, z, n_boot=200, seed=1)
    assert estimate == pytest.approx(partial_spearman(x, y, z))
    assert -1.0 <= low <= estimate <= high <= 1.0
    assert partial_rank_correlation(x, y, z, n_boot=200, seed=1) == (estimate, (low, high))
    assert partial_rank_correlation(x, y, z, n_boot=200, seed=2) != (estimate, (low, high))


def test_partial_spearman_rejects_bad_input():
    x, y = [1, 3, 2, 5, 4], [2, 1, 4, 3, 5]
    with pytest.raises(ValueError, match="with 1 covariate.s. needs at least 5 items, got 4"):
        partial_spearman(x[:4], y[:4], [1, 2, 3, 4])
    with pytest.raises(ValueError, match="with 2 covariate.s. needs at least 6 items, got 5"):
        partial_spearman(x, y, np.ones((5, 2)))
    with pytest.raises(ValueError, match="covariates has 4"):
        partial_spearman(x, y, [1, 2, 3, 4])
    with pytest.raises(ValueError, match="same number of items"):
        partial_spearman(x, y[:4], [1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match="covariates contains NaN"):
        partial_spearman(x, y, [1, 2, np.nan, 4, 5])
    with pytest.raises(ValueError, match="y is constant"):
        partial_spearman(x, [1, 1, 1, 1, 1], [1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match="fully explained by the covariates"):
        partial_spearman([1, 2, 3, 4, 5], y, [10, 20, 30, 40, 50])
    with pytest.raises(ValueError, match="shape .n. or .n, n_covariates."):
        partial_spearman(x, y, np.ones((5, 1, 1)))
    with pytest.raises(ValueError, match="level must be in"):
        partial_rank_correlation(x, y, [1, 2, 3, 4, 5], level=0)


# --------------------------------------------------------------------------------------------
# ranking_agreement
# --------------------------------------------------------------------------------------------


def _cebench_compare_rankings(prediction, target):
    """A literal transcription of CE-Bench's `compare_rankings` logic (stable sorts)."""
    n = len(prediction)
    order_p = sorted(range(n), key=lambda k: prediction[k], reverse=True)
    order_t = sorted(range(n), key=lambda k: target[k], reverse=True)
    rank_p = {k: r for r, k in enumerate(order_p)}
    rank_t = {k: r for r, k in enumerate(order_t)}
    agree = sum(
        (rank_p[i] < rank_p[j]) == (rank_t[i] < rank_t[j])
        for i, j in itertools.combinations(range(n), 2)
    )
    return agree / (n * (n - 1) / 2)


def test_ranking_agreement_hand_computed():
    assert ranking_agreement([1, 2, 3], [10, 20, 30]) == 1.0
    assert ranking_agreement([1, 2, 3], [30, 20, 10]) == 0.0
    assert ranking_agreement([1, 2, 3], [1, 3, 2]) == pytest.approx(2 / 3)
    # pairs (0,1) tied in prediction -> 1/2, (0,2) and (1,2) concordant: 2.5 / 3
    assert ranking_agreement([1, 1, 2], [1, 2, 3]) == pytest.approx(2.5 / 3)
    assert ranking_agreement([5, 5, 5, 5], [1, 2, 3, 4]) == 0.5
    # input order: tie in the prediction broken for the first-listed item, i.e. as if p0 > p1,
    # which the target (t0 < t1) contradicts: 2 / 3; listed the other way round it agrees
    assert ranking_agreement([1, 1, 2], [1, 2, 3], ties="input_order") == pytest.approx(2 / 3)
    assert ranking_agreement([1, 1, 2], [2, 1, 3], ties="input_order") == 1.0
    # tied in both: concordant under input order, half under "half"
    assert ranking_agreement([1, 1], [7, 7], ties="input_order") == 1.0
    assert ranking_agreement([1, 1], [7, 7]) == 0.5


@given(paired_vectors(min_size=2, ties=True))
def test_ranking_agreement_half_is_one_plus_tau_a_over_two(xy):
    p, t = xy
    n = len(p)
    signs = [np.sign(p[i] - p[j]) * np.sign(t[i] - t[j])
             for i, j in itertools.combinations(range(n), 2)]
    tau_a = sum(signs) / len(signs)
    assert ranking_agreement(p, t) == pytest.approx((1 + tau_a) / 2, abs=1e-12)
    # symmetric, invariant to listing order and to increasing transforms
    assert ranking_agreement(t, p) == pytest.approx(ranking_agreement(p, t), abs=1e-12)
    perm = np.random.default_rng(n).permutation(n)
    assert ranking_agreement(p[perm], t[perm]) == pytest.approx(ranking_agreement(p, t))
    assert ranking_agreement(np.exp(p), t) == pytest.approx(ranking_agreement(p, t))


@given(paired_vectors(min_size=2, ties=True))
def test_ranking_agreement_input_order_equals_cebench_reference(xy):
    p, t = xy
    assert ranking_agreement(p, t, ties="input_order") == pytest.approx(
        _cebench_compare_rankings(list(p), list(t)), abs=1e-12
    )


@given(paired_vectors(min_size=2, ties=False))
def test_ranking_agreement_tie_rules_agree_without_ties(xy):
    p, t = xy
    half = ranking_agreement(p, t)
    assert ranking_agreement(p, t, ties="input_order") == pytest.approx(half, abs=1e-12)
    # without ties it is (1 + tau) / 2 for Kendall's tau (a and b coincide)
    assert half == pytest.approx((1 + scipy.stats.kendalltau(p, t).statistic) / 2, abs=1e-12)


def test_ranking_agreement_reproduces_cebench_published_numbers():
    if not CEBENCH_TABLE.exists():
        pytest.skip(f"CE-Bench's published table is absent ({CEBENCH_TABLE})")
    with CEBENCH_TABLE.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 48
    column = {k: np.array([float(r[k]) for r in rows]) for k in rows[0] if k not in
              ("sae_release", "sae_id", "architecture")}
    c, i, l0, target = (column[k] for k in
                        ("contrastive_score", "independent_score", "l0", "saebench_target"))
    for ties in ("half", "input_order"):
        assert round(ranking_agreement(c + i, target, ties=ties), 4) == 0.7012
        assert round(ranking_agreement(c + i - 0.25 * l0, target, ties=ties), 4) == 0.7730
        assert round(ranking_agreement(-l0, target, ties=ties), 3) == 0.709


def test_ranking_agreement_rejects_bad_input():
    with pytest.raises(ValueError, match="prediction has 3, target has 2"):
        ranking_agreement([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="ranking_agreement needs at least 2 items, got 1"):
        ranking_agreement([1], [1])
    with pytest.raises(ValueError, match="target contains NaN"):
        ranking_agreement([1, 2], [1, np.nan])
    with pytest.raises(ValueError, match="ties must be 'half' or 'input_order'"):
        ranking_agreement([1, 2], [1, 2], ties="strict")


# --------------------------------------------------------------------------------------------
# reseed noise
# --------------------------------------------------------------------------------------------


def test_minimum_detectable_difference_hand_computed():
    assert minimum_detectable_difference(1.0) == pytest.approx(Z975 * math.sqrt(2))
    assert minimum_detectable_difference(1.0) == pytest.approx(2.771807, abs=1e-6)
    z995 = scipy.stats.norm.ppf(0.995)
    assert minimum_detectable_difference(0.5, level=0.99) == pytest.approx(z995 * math.sqrt(2) / 2)
    assert minimum_detectable_difference(0.0) == 0.0


@given(std=st.floats(0, 1e6), factor=st.floats(0, 1e3), level=st.floats(0.5, 0.999))
def test_minimum_detectable_difference_is_linear_in_std(std, factor, level):
    assert minimum_detectable_difference(factor * std, level) == pytest.approx(
        factor * minimum_detectable_difference(std, level), rel=1e-9, abs=1e-300
    )


def test_reseed_noise_hand_computed():
    noise = reseed_noise([1.0, 2.0, 3.0, 4.0, 5.0])
    assert isinstance(noise, ReseedNoise)
    assert noise.mean == 3.0
    assert noise.std == pytest.approx(math.sqrt(2.5))  # sum of squares 10 over 4
    assert noise.cv == pytest.approx(math.sqrt(2.5) / 3)
    assert noise.mdd == pytest.approx(Z975 * math.sqrt(2) * math.sqrt(2.5))
    assert noise.n_seeds == 5
    assert noise.std == pytest.approx(np.std([1, 2, 3, 4, 5], ddof=1))


def test_reseed_noise_coefficient_of_variation_edge_cases():
    assert reseed_noise([-1.0, 1.0]).cv == math.inf  # mean 0, std > 0
    assert reseed_noise([-1.0, -3.0]).cv == pytest.approx(math.sqrt(2) / 2)  # |mean| used
    constant = reseed_noise([4.0, 4.0, 4.0])
    assert (constant.std, constant.cv, constant.mdd) == (0.0, 0.0, 0.0)
    assert reseed_noise([0.0, 0.0]).cv == 0.0


def test_reseed_noise_rejects_bad_input():
    with pytest.raises(ValueError, match="needs at least 2 items, got 1"):
        reseed_noise([1.0])
    with pytest.raises(ValueError, match="values contains NaN"):
        reseed_noise([1.0, np.nan])
    with pytest.raises(ValueError, match="level must be in"):
        reseed_noise([1.0, 2.0], level=1.0)
    with pytest.raises(ValueError, match="1-dimensional"):
        reseed_noise(np.ones((2, 2)))
    with pytest.raises(ValueError, match="std must be a finite non-negative number"):
        minimum_detectable_difference(-1.0)
    with pytest.raises(ValueError, match="std is NaN"):
        minimum_detectable_difference(math.nan)


# --------------------------------------------------------------------------------------------
# variance decomposition
# --------------------------------------------------------------------------------------------


def test_variance_decomposition_hand_computed():
    # c0: t0 (1, 3), t1 (5, 7); c1: t0 (9, 11), t1 (13, 15). Cell means 2, 6, 10, 14;
    # checkpoint means 4, 12; seed means 6, 10; grand mean 8.
    # MS_c = 2*2*(16 + 16) / 1 = 128; MS_t = 2*2*(4 + 4) / 1 = 32; the interaction residuals
    # m_ct - m_c - m_t + m are all 0 -> MS_ct = 0; each value is 1 from its cell mean ->
    # MS_m = 8 / 4 = 2. s_m^2 = 2, s_ct^2 = (0 - 2) / 2 = -1 -> 0, s_t^2 = (32 - 0) / 4 = 8,
    # s_c^2 = (128 - 0) / 4 = 32.
    d = variance_decomposition(np.arange(1.0, 16.0, 2.0).reshape(2, 2, 2))
    assert d["estimates"] == pytest.approx({"checkpoint": 32.0, "seed": 8.0,
                                            "seed_by_checkpoint": -1.0, "metric_seed": 2.0})
    assert d["components"] == pytest.approx({"checkpoint": 32.0, "training_seed": 8.0,
                                             "metric_seed": 2.0})
    assert d["truncated"] == ["seed_by_checkpoint"]
    assert d["checkpoint"] == pytest.approx(32 / 42)
    assert d["training_seed"] == pytest.approx(8 / 42)
    assert d["metric_seed"] == pytest.approx(2 / 42)
    assert d["total_variance"] == pytest.approx(42.0)


def _planted(rng, shape, trend_sd, seed_sd, wander_sd, metric_sd):
    """v_ctm = a_c + s_t + (as)_ct + e_ctm: a trend over checkpoints, a lasting offset per
    training seed, each seed's wandering, metric noise (standard deviations given)."""
    c, t, m = shape
    return (trend_sd * rng.standard_normal((c, 1, 1)) + seed_sd * rng.standard_normal((1, t, 1))
            + wander_sd * rng.standard_normal((c, t, 1))
            + metric_sd * rng.standard_normal((c, t, m)))


def test_variance_decomposition_recovers_planted_components():
    d = variance_decomposition(_planted(np.random.default_rng(0), (60, 40, 20),
                                        2.0, 0.8, 0.6, 0.5))
    assert d["components"]["checkpoint"] == pytest.approx(4.0, rel=0.25)
    assert d["estimates"]["seed"] == pytest.approx(0.64, rel=0.35)
    assert d["estimates"]["seed_by_checkpoint"] == pytest.approx(0.36, rel=0.1)
    assert d["components"]["training_seed"] == pytest.approx(1.0, rel=0.25)
    assert d["components"]["metric_seed"] == pytest.approx(0.25, rel=0.05)


def test_variance_decomposition_is_unbiased_on_the_audit_design():
    # The audit's design (6 checkpoints, 3 training seeds, 2 metric seeds): averaged over many
    # draws, the untruncated estimates land on the planted components (within 4 standard
    # errors), for pure metric noise and for every source at once.
    rng = np.random.default_rng(1)
    for sds in ((0.0, 0.0, 0.0, 1.0), (1.0, 0.5, 0.4, 0.3)):
        runs = [variance_decomposition(_planted(rng, (6, 3, 2), *sds)) for _ in range(3000)]
        planted = dict(zip(("checkpoint", "seed", "seed_by_checkpoint", "metric_seed"),
                           np.square(sds)))
        for source, truth in planted.items():
            estimates = np.array([r["estimates"][source] for r in runs])
            assert abs(estimates.mean() - truth) < 4 * estimates.std() / np.sqrt(len(runs)), (
                sds, source)
    noise_only = [variance_decomposition(_planted(rng, (6, 3, 2), 0, 0, 0, 1.0))
                  for _ in range(500)]
    assert np.mean([r["metric_seed"] for r in noise_only]) > 0.75


def test_variance_decomposition_pure_sources():
    checkpoint_only = np.broadcast_to(np.arange(3.0)[:, None, None], (3, 4, 5))
    assert variance_decomposition(checkpoint_only)["checkpoint"] == pytest.approx(1.0)
    metric_only = np.broadcast_to(np.array([1.0, -1.0]), (3, 4, 2))
    assert variance_decomposition(metric_only)["metric_seed"] == pytest.approx(1.0)
    flat = variance_decomposition(np.full((2, 3, 4), 7.0))
    assert [flat[k] for k in ("checkpoint", "training_seed", "metric_seed")] == [None] * 3
    assert flat["total_variance"] == 0.0


@given(
    seed=st.integers(0, 2**31 - 1),
    shape=st.tuples(st.integers(2, 4), st.integers(2, 4), st.integers(2, 4)),
    shift=st.floats(-1e3, 1e3),
    scale=st.floats(0.01, 100),
)
def test_variance_decomposition_fractions_and_invariance(seed, shape, shift, scale):
    values = np.random.default_rng(seed).standard_normal(shape)
    d = variance_decomposition(values)
    fractions = [d[k] for k in ("checkpoint", "training_seed", "metric_seed")]
    assert all(0.0 <= f <= 1.0 for f in fractions) and sum(fractions) == pytest.approx(1.0)
    kept = {k: max(0.0, e) for k, e in d["estimates"].items()}
    assert d["components"] == pytest.approx({
        "checkpoint": kept["checkpoint"], "metric_seed": kept["metric_seed"],
        "training_seed": kept["seed"] + kept["seed_by_checkpoint"]})
    moved = variance_decomposition(scale * values + shift)
    for k in ("checkpoint", "training_seed", "metric_seed"):
        assert moved[k] == pytest.approx(d[k], abs=1e-6)
        assert moved["components"][k] == pytest.approx(scale**2 * d["components"][k],
                                                       rel=1e-6, abs=1e-9)


def test_variance_decomposition_rejects_bad_input():
    with pytest.raises(ValueError, match="3-dimensional"):
        variance_decomposition(np.ones((2, 2)))
    with pytest.raises(ValueError, match="n_training_seeds is 0"):
        variance_decomposition(np.ones((2, 0, 2)))
    with pytest.raises(ValueError, match="n_metric_seeds is 1"):
        variance_decomposition(np.ones((3, 2, 1)))
    with pytest.raises(ValueError, match="values contains NaN"):
        variance_decomposition(np.full((2, 2, 2), np.nan))


# --------------------------------------------------------------------------------------------
# trajectory discriminability
# --------------------------------------------------------------------------------------------


def test_trajectory_discriminability_hand_computed():
    # noise_std 1 -> MDD = 2.7718. Seed 0: metric (0, 1, 5), truth rising: pair (0,1) moves
    # 1 < MDD (fail), (0,2) 5 and (1,2) 4 in the right direction (pass). Seed 1: metric
    # (0, 4, 0), truth (0, 0, -1): (0,1) truth tied (fail), (0,2) metric tied (fail), (1,2)
    # metric -4, truth -1 (pass). 3 of 6.
    metric = np.array([[0.0, 1.0, 5.0], [0.0, 4.0, 0.0]])
    truth = np.array([[0.0, 1.0, 2.0], [0.0, 0.0, -1.0]])
    result = trajectory_discriminability(metric, truth, noise_std=1.0)
    assert isinstance(result, Discriminability)
    assert result.n_pairs == 6
    assert result.discriminability == pytest.approx(3 / 6)
    # seed-averaged trajectory (0, 2.5, 2.5): std = sqrt((25/9 + 2 * 25/36) / 2)
    assert result.snr == pytest.approx(np.std([0.0, 2.5, 2.5], ddof=1))
    # pooled slope = slope of the mean trajectory: centered index (-1, 0, 1), centered mean
    # metric (-5/3, 5/6, 5/6) -> (5/3 + 5/6) / 2 = 1.25; truth's pooled slope is 0.25
    # > 0; fitted change over 2 steps 2.5, over noise_std 1.
    assert result.slope_over_noise == pytest.approx(2.5)
    halved = trajectory_discriminability(metric, truth, noise_std=0.5)
    assert halved.snr == pytest.approx(2 * result.snr)
    assert halved.slope_over_noise == pytest.approx(2 * result.slope_over_noise)


def test_trajectory_discriminability_matches_literal_reference():
    rng = np.random.default_rng(4)
    metric = np.cumsum(rng.standard_normal((3, 6)), axis=1)
    truth = np.cumsum(rng.standard_normal((3, 6)), axis=1)
    noise_std, level = 0.8, 0.9
    result = trajectory_discriminability(metric, truth, noise_std=noise_std, level=level)
    mdd = scipy.stats.norm.ppf(0.95) * math.sqrt(2) * noise_std
    passed = total = 0
    for s in range(3):
        for i, j in itertools.combinations(range(6), 2):
            d, g = metric[s, j] - metric[s, i], truth[s, j] - truth[s, i]
            total += 1
            passed += abs(d) > mdd and g != 0 and (d > 0) == (g > 0)
    assert result.n_pairs == total == 45
    assert result.discriminability == pytest.approx(passed / total)
    index = np.tile(np.arange(6.0), 3)
    slope_m = scipy.stats.linregress(index, metric.ravel()).slope
    slope_g = scipy.stats.linregress(index, truth.ravel()).slope
    assert result.slope_over_noise == pytest.approx(slope_m * 5 * np.sign(slope_g) / noise_std)
    assert result.snr == pytest.approx(np.std(metric.mean(axis=0), ddof=1) / noise_std)


def test_trajectory_discriminability_noiseless_and_reversed_metrics():
    truth = np.array([[0.0, 1.0, 2.0]])
    noiseless = trajectory_discriminability(np.array([[0.0, 0.1, 0.2]]), truth, noise_std=0.0)
    assert noiseless.snr == math.inf
    assert noiseless.slope_over_noise == math.inf
    assert noiseless.discriminability == 1.0  # MDD 0: any difference in the right direction
    reversed_ = trajectory_discriminability(np.array([[5.0, 0.0, -5.0]]), truth, noise_std=0.0)
    assert reversed_.slope_over_noise == -math.inf
    assert reversed_.discriminability == 0.0
    flat = trajectory_discriminability(np.ones((2, 3)), np.ones((2, 3)), noise_std=0.0)
    assert (flat.snr, flat.slope_over_noise, flat.discriminability) == (0.0, 0.0, 0.0)


def test_trajectory_discriminability_rejects_bad_input():
    ok = np.zeros((2, 3))
    with pytest.raises(ValueError, match="same shape"):
        trajectory_discriminability(ok, np.zeros((2, 4)), noise_std=1.0)
    with pytest.raises(ValueError, match="2-dimensional"):
        trajectory_discriminability(np.zeros(3), np.zeros(3), noise_std=1.0)
    with pytest.raises(ValueError, match="needs at least 2 items, got 1"):
        trajectory_discriminability(np.zeros((2, 1)), np.zeros((2, 1)), noise_std=1.0)
    with pytest.raises(ValueError, match="at least 1 training seed"):
        trajectory_discriminability(np.zeros((0, 3)), np.zeros((0, 3)), noise_std=1.0)
    with pytest.raises(ValueError, match="ground_truth contains NaN"):
        trajectory_discriminability(ok, np.full((2, 3), np.nan), noise_std=1.0)
    with pytest.raises(ValueError, match="noise_std must be a finite non-negative"):
        trajectory_discriminability(ok, ok, noise_std=-0.1)
    with pytest.raises(ValueError, match="level must be in"):
        trajectory_discriminability(ok, ok, noise_std=1.0, level=2.0)


def test_vectorised_bootstraps_equal_the_loops():
    """The batched statistics see the same resamples and give the same intervals."""
    from groundtruth import stats as S

    rng = np.random.default_rng(7)
    x = rng.normal(size=30)
    y = x + rng.normal(size=30)
    y[:5] = y[0]  # ties
    z = rng.normal(size=(30, 2))
    for loop, batch, arrays in ((S._spearman_or_nan, S._spearman_batch, (x, y)),
                                (S._kendall_or_nan, S._kendall_batch, (x, y)),
                                (S._partial_spearman_or_nan, S._partial_spearman_batch,
                                 (x, y, z))):
        slow = S.bootstrap_ci(loop, *arrays, n_boot=300, seed=3)
        fast = S.bootstrap_ci(loop, *arrays, n_boot=300, seed=3, batched=batch)
        assert fast == pytest.approx(slow, abs=1e-9), loop.__name__
