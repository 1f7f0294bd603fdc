"""The lenses on hand-made inputs whose answers are known, edge cases included."""

import math

import numpy as np
import pytest

from groundtruth import stats
from groundtruth.lenses import (
    control_ranks, correlation_lens, decomposition_lens, precision_lens, reseed_lens,
    stratified_lens, training_trend_lens, trajectory_lens, variant_lens,
)

Z = stats.two_sided_z(0.95)


# ---- reseed noise ---------------------------------------------------------------------------


def test_paired_noise_is_the_std_of_differences_under_the_same_seeds():
    values = {"a": [1.0, 2.0, 3.0], "b": [1.0, 2.0, 4.0], "c": [5.0, 5.0, 5.0]}
    lens = reseed_lens(values, {"a": 8, "b": 8, "c": 16})
    # a - b over seeds: 0, 0, -1 -> variance 1/3 (ddof 1)
    assert lens["paired"]["8"] == pytest.approx({"std": math.sqrt(1 / 3),
                                                 "mdd": Z * math.sqrt(1 / 3), "n_pairs": 1})
    assert lens["paired"]["16"]["std"] is None and "fewer than two" in lens["paired"]["16"]["note"]
    pooled = math.sqrt((1.0 + (7 / 3) + 0.0) / 3)  # per-SAE variances 1, 7/3, 0
    assert lens["std"] == pytest.approx(pooled)
    assert lens["mdd_unpaired"] == pytest.approx(Z * math.sqrt(2) * pooled)


def test_noise_shared_by_two_saes_cancels_in_their_difference():
    seed_noise = np.array([0.3, -1.2, 0.8, 0.1])
    lens = reseed_lens({"a": 1.0 + seed_noise, "b": 2.0 + seed_noise}, {"a": 4, "b": 4})
    assert lens["std"] > 0.5  # each SAE alone looks noisy
    assert lens["paired"]["4"]["std"] == pytest.approx(0.0, abs=1e-12)  # their order does not


# ---- pooled correlation ---------------------------------------------------------------------

WIDTH = np.array([8, 8, 8, 16, 16, 16, 32, 32, 32], dtype=float)
L0 = np.array([3, 5, 4, 6, 2, 7, 1, 9, 8], dtype=float)
CLUSTERS = ["u1", "u1", "u2", "u2", "u3", "u3", "u4", "u4", "u5"]


def test_a_constant_metric_has_no_correlation_and_says_why():
    out = correlation_lens(np.ones(9), {"gt": np.arange(9.0)}, width=WIDTH, l0=L0,
                           clusters=CLUSTERS, n_boot=50, seed=0)["gt"]
    assert out["spearman"] is None and out["spearman_ci95"] is None
    assert "constant" in out["note"]


@pytest.mark.parametrize("metric", [3.0 - 2.0 * L0, WIDTH], ids=["minus_l0", "width"])
def test_a_metric_that_is_width_or_l0_is_fully_confounded(metric):
    # its ranks are a linear function of the covariates' ranks: nothing is left to correlate
    out = correlation_lens(metric, {"gt": np.arange(9.0)}, width=WIDTH, l0=L0,
                           clusters=CLUSTERS, n_boot=50, seed=0)["gt"]
    assert out["explained_by_width_l0"] is True
    assert out["partial_spearman_width_l0"] is None and "entirely" in out["note"]


def test_pooled_correlation_counts_clusters_and_brackets_its_estimate():
    gt = np.arange(9.0)
    metric = gt + np.array([0.5, -0.5, 0.2, 0.1, -0.3, 0.4, 0.0, 0.6, -0.2])
    out = correlation_lens(metric, {"gt": gt}, width=WIDTH, l0=L0, clusters=CLUSTERS,
                           n_boot=200, seed=0)["gt"]
    assert out["n_saes"] == 9 and out["n_units"] == 5
    assert out["spearman"] == pytest.approx(stats.spearman(metric, gt))
    assert out["spearman_ci95"][0] <= out["spearman"] <= out["spearman_ci95"][1]
    assert out["explained_by_width_l0"] is False and out["partial_spearman_width_l0"] is not None


# ---- within strata --------------------------------------------------------------------------


def test_within_strata_sees_what_pooling_hides():
    # Inside each stratum the metric orders SAEs exactly as ground truth; between strata it
    # is reversed (a width effect). Pooled, it looks anti-correlated.
    gt = np.array([1, 2, 3, 4, 11, 12, 13, 14], dtype=float)
    metric = np.array([21, 22, 23, 24, 1, 2, 3, 4], dtype=float)
    strata = ["s"] * 4 + ["t"] * 4
    clusters = ["a", "a", "b", "b", "c", "c", "d", "d"]
    within = stratified_lens(metric, gt, strata=strata, clusters=clusters, n_boot=200, seed=0)
    assert within["mean_spearman"] == pytest.approx(1.0)
    assert within["mean_spearman_ci95"] == pytest.approx([1.0, 1.0])
    assert within["n_strata"] == 2 and within["n_units"] == 4
    assert stats.spearman(metric, gt) < 0


def test_strata_too_small_or_constant_are_left_out_with_their_reason():
    gt = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9], dtype=float)
    metric = np.array([1, 2, 3, 7, 7, 7, 9, 8, 10], dtype=float)
    strata = ["s", "s", "s", "flat", "flat", "flat", "tiny", "tiny", None]
    out = stratified_lens(metric, gt, strata=strata, clusters=list("abcdefghi"), n_boot=100,
                          seed=0)
    assert out["strata"]["s"]["spearman"] == pytest.approx(1.0)
    assert out["strata"]["flat"]["spearman"] is None
    assert "constant" in out["strata"]["flat"]["note"]
    assert out["strata"]["tiny"]["spearman"] is None and "fewer than 3" in out["strata"]["tiny"]["note"]
    assert out["n_strata"] == 1 and out["mean_spearman"] == pytest.approx(1.0)
    none = stratified_lens(metric, gt, strata=[None] * 9, clusters=list("abcdefghi"),
                           n_boot=100, seed=0)
    assert none["mean_spearman"] is None and none["mean_spearman_ci95"] is None
    assert "no stratum" in none["note"]


def test_a_cluster_shared_by_strata_counts_once():
    gt = np.arange(8.0)
    metric = gt.copy()
    out = stratified_lens(metric, gt, strata=["s"] * 4 + ["t"] * 4, clusters=["oracle"] * 8,
                          n_boot=100, seed=0)
    assert out["n_units"] == 1 and out["strata"]["s"]["n_units"] == 1


# ---- precision ------------------------------------------------------------------------------


def test_precision_is_the_median_ratio_of_paired_mdd_to_within_stratum_iqr():
    metric = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 0.0, 10.0, 20.0, 30.0, 40.0, 5.0, 5.0, 5.0])
    strata = ["s"] * 5 + ["t"] * 5 + ["flat"] * 3
    widths = [8] * 5 + [16] * 5 + [8] * 3
    paired = {"8": {"mdd": 0.5}, "16": {"mdd": 3.0}}
    out = precision_lens(metric, strata=strata, widths=widths, paired=paired)
    # IQR of 0..4 is 2 (ratio 0.25); of 0, 10, 20, 30, 40 is 20 (ratio 0.15)
    assert out["strata"]["s"]["ratio"] == pytest.approx(0.25)
    assert out["strata"]["t"]["ratio"] == pytest.approx(0.15)
    assert out["strata"]["flat"]["ratio"] is None and "does not vary" in out["strata"]["flat"]["note"]
    assert out["median_ratio"] == pytest.approx(0.2)
    no_noise = precision_lens(metric, strata=strata, widths=widths, paired={})
    assert no_noise["median_ratio"] is None and "no stratum" in no_noise["note"]


# ---- trajectories and variance --------------------------------------------------------------


def test_trajectories_use_the_paired_mdd_and_never_average_infinity():
    gt = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    metric = gt * 0.1
    loose = trajectory_lens({"r": (metric, gt, 0.01, 10.0)})
    assert loose["discriminability"] == 0.0  # no step beats a paired MDD of 10
    tight = trajectory_lens({"r": (metric, gt, 0.01, 0.05)})
    assert tight["discriminability"] == 1.0
    noiseless = trajectory_lens({"r": (metric, gt, 0.0, 0.0)})
    assert noiseless["snr"] is None and "no reseed noise" in noiseless["snr_note"]
    assert noiseless["per_run"]["r"]["snr"] is None
    empty = trajectory_lens({})
    assert empty["discriminability"] is None and empty["n_runs"] == 0


def test_decomposition_lens_averages_components_then_takes_fractions():
    a = np.broadcast_to(np.arange(3.0)[:, None, None], (3, 2, 2))  # checkpoint only
    b = np.broadcast_to(np.array([1.0, -1.0]), (3, 2, 2))  # metric seed only
    out = decomposition_lens({"a": a, "b": b})
    ca = stats.variance_decomposition(a)["components"]["checkpoint"]
    cb = stats.variance_decomposition(b)["components"]["metric_seed"]
    assert out["components"]["checkpoint"] == pytest.approx(ca / 2)
    assert out["checkpoint"] == pytest.approx(ca / (ca + cb))
    assert out["n_runs"] == 2
    nothing = decomposition_lens({})
    assert nothing["checkpoint"] is None and "no trajectory" in nothing["note"]
    flat = decomposition_lens({"f": np.ones((2, 2, 2))})
    assert flat["checkpoint"] is None and "constant" in flat["note"]


def test_control_ranks_share_ties():
    ranks = control_ranks({"x": 3.0, "y": 3.0, "z": 1.0}, {"oracle": "x", "random": "z"})
    assert ranks == {"oracle": 1, "random": 3}


def test_training_trend_sees_a_metric_that_falls_as_training_goes_on():
    rising = np.array([[0.1, 0.2, 0.3, 0.4], [0.1, 0.3, 0.2, 0.5]])
    falling = -rising
    flat = np.ones((2, 4))
    out = training_trend_lens({"a": rising, "b": rising + 1}, n_boot=200, seed=0)
    assert out["mean_spearman"] == pytest.approx((1.0 + 0.8) / 2)
    down = training_trend_lens({"a": falling, "b": falling, "c": falling * 2}, n_boot=200)
    assert down["mean_spearman"] < 0 and down["mean_spearman_ci95"][1] < 0
    assert down["n_falling"] == 3
    mixed = training_trend_lens({"a": rising, "b": flat}, n_boot=200)
    assert mixed["n_flat"] == 2 and mixed["per_run"]["b"] == 0.0
    assert training_trend_lens({"a": rising})["mean_spearman_ci95"] is None
    assert training_trend_lens({})["note"] == "no training runs"
    with pytest.raises(ValueError, match="at least two"):
        training_trend_lens({"a": np.ones((2, 1))})


def _literal_separated(finals, mdd):
    """Pairs of one group, different ground truth; separated when the metric agrees in sign
    and exceeds the group's MDD."""
    runs = list(finals)
    valid = sep = 0
    for i, a in enumerate(runs):
        for b in runs[i + 1:]:
            ga, ma, ta = finals[a][0], np.mean(finals[a][1]), np.mean(finals[a][2])
            gb, mb, tb = finals[b][0], np.mean(finals[b][1]), np.mean(finals[b][2])
            if ga != gb or ta == tb:
                continue
            valid += 1
            sep += (np.sign(ma - mb) == np.sign(ta - tb)) and abs(ma - mb) > mdd[ga]
    return sep / valid


def test_variant_separation_counts_pairs_of_one_architecture_and_width():
    rng = np.random.default_rng(0)
    finals = {f"r{i}": ("topk w8" if i < 4 else "relu w8", rng.normal(size=3),
                        rng.normal(size=3)) for i in range(7)}
    mdd = {"topk w8": 0.3, "relu w8": 0.0}
    out = variant_lens(finals, mdd, n_boot=300, seed=1)
    assert out["separated"] == pytest.approx(_literal_separated(finals, mdd))
    assert out["n_pairs"] == 6 + 3 and out["unmeasured"] == []
    # a group without a paired MDD is left out, not judged as noiseless
    partial = variant_lens(finals, {"topk w8": 0.3, "relu w8": None}, n_boot=300, seed=1)
    topk = {r: v for r, v in finals.items() if v[0] == "topk w8"}
    assert partial["n_pairs"] == 6 and partial["unmeasured"] == ["relu w8"]
    assert partial["separated"] == pytest.approx(_literal_separated(topk, mdd))
    lo, hi = out["separated_ci95"]
    assert 0 <= lo <= hi <= 1
    # a metric equal to ground truth separates every pair when its MDD is 0
    truth = {r: (grp, gt, gt) for r, (grp, _, gt) in finals.items()}
    assert variant_lens(truth, {"topk w8": 0.0, "relu w8": 0.0})["separated"] == 1.0
    # an MDD larger than every difference separates none
    assert variant_lens(truth, {"topk w8": 1e9, "relu w8": 1e9})["separated"] == 0.0
    lone = {"a": ("x", [1.0], [1.0]), "b": ("y", [2.0], [2.0])}
    assert variant_lens(lone, {"x": 0.1, "y": 0.1})["n_pairs"] == 0
