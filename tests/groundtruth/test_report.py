"""report.verdict and the reliability card on hand-made lens outputs."""

import pytest

from groundtruth.report import reliability_card, verdict
from groundtruth.study import VerdictRules

RULES = VerdictRules()


def entry(*, within=(0.8, [0.6, 0.9]), within_note=None, ratio=0.05,
          discriminability=0.9, spearman=0.7, partial=0.6, explained=False):
    """A metric's lens outputs, good on every rule unless told otherwise."""
    mean, interval = within
    within_entry = {"mean_spearman": mean, "mean_spearman_ci95": interval, "n_units": 19,
                    "n_strata": 10, "resampled": "within each stratum", "strata": {}}
    if within_note:
        within_entry["note"] = within_note
    return {
        "description": "a metric",
        "within_strata": {"gt_f1": within_entry},
        "precision": {"median_ratio": ratio,
                      **({} if ratio is not None else {"note": "no stratum has a spread"})},
        "trajectory": {"discriminability": discriminability, "snr": 3.0},
        "gt_correlation": {"gt_f1": {
            "spearman": spearman, "spearman_ci95": [0.5, 0.8], "n_saes": 75, "n_units": 19,
            "partial_spearman_width_l0": partial, "partial_spearman_width_l0_ci95": [0.4, 0.7],
            "explained_by_width_l0": explained}},
        "reseed": {"cv": 0.1, "std": 0.01, "mdd_unpaired": 0.03, "n_seeds": 5,
                   "paired": {"256": {"mdd": 0.02}}},
        "variance_decomposition": {"components": {"checkpoint": 1.0, "training_seed": 0.04,
                                                  "metric_seed": 0.01}},
        "control_ranks": {"oracle": 1},
    }


def test_a_metric_good_on_every_rule_is_trustworthy():
    v = verdict(entry(), RULES, "gt_f1")
    assert v == {"overall": "trustworthy", "tracks": "tracks", "precise": True,
                 "separates": True, "confounded": False, "reasons": []}


@pytest.mark.parametrize(("interval", "tracks"), [
    ([0.51, 0.9], "tracks"), ([0.5, 0.9], "inconclusive"), ([-0.2, 0.29], "does not track"),
    ([0.1, 0.3], "inconclusive"),
])
def test_tracking_reads_the_within_stratum_interval(interval, tracks):
    v = verdict(entry(within=(0.4, interval)), RULES, "gt_f1")
    assert v["tracks"] == tracks
    assert (v["overall"] == "trustworthy") == (tracks == "tracks")


def test_undefined_tracking_is_not_a_verdict_of_no_tracking():
    v = verdict(entry(within=(None, None), within_note="no stratum has enough SAEs"), RULES,
                "gt_f1")
    assert v["tracks"] == "undefined" and v["overall"] == "not trustworthy"
    assert "no stratum has enough SAEs" in v["reasons"][0]


def test_tracking_on_too_few_independent_units_is_undefined():
    e = entry(within=(0.98, [0.94, 1.0]))
    e["within_strata"]["gt_f1"]["n_units"] = 1  # e.g. only one oracle's families vary
    v = verdict(e, RULES, "gt_f1")
    assert v["tracks"] == "undefined" and "1 independent unit" in v["reasons"][0]


def test_precision_noise_and_undefined_precision():
    noisy = verdict(entry(ratio=0.4), RULES, "gt_f1")
    assert noisy["precise"] is False and "noisy" in noisy["reasons"][0]
    undefined = verdict(entry(ratio=None), RULES, "gt_f1")
    assert undefined["precise"] is False and "undefined" in undefined["reasons"][0]


def test_separation_needs_trajectories():
    assert verdict(entry(discriminability=0.49), RULES, "gt_f1")["separates"] is False
    none = verdict(entry(discriminability=None), RULES, "gt_f1")
    assert none["separates"] is False and "no training trajectories" in none["reasons"][0]


def test_confounded_when_the_partial_drops_or_width_and_l0_explain_it_all():
    assert verdict(entry(spearman=0.7, partial=0.39), RULES, "gt_f1")["confounded"] is True
    assert verdict(entry(spearman=0.7, partial=0.41), RULES, "gt_f1")["confounded"] is False
    explained = verdict(entry(partial=None, explained=True), RULES, "gt_f1")
    assert explained["confounded"] is True and "explain" in explained["reasons"][0]
    undefined_gt = verdict(entry(partial=None), RULES, "gt_f1")  # e.g. the ground truth is
    assert undefined_gt["confounded"] is False                 # explained, not the metric


def test_the_card_carries_what_a_reviewer_cites():
    e = entry()
    e["verdict"] = verdict(e, RULES, "gt_f1")
    card = reliability_card("m", e, "gt_f1")
    assert card["verdict"] == "trustworthy"
    assert card["noise"]["paired_mdd_by_width"] == {"256": 0.02}
    assert card["noise"]["training_seed_std"] == pytest.approx(0.2)
    assert card["tracking"]["within_strata"]["ci95"] == [0.6, 0.9]
    assert card["tracking"]["pooled"]["n_units"] == 19
    assert card["confounds"]["partial_spearman_width_l0"] == 0.6
