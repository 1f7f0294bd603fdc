"""The published audit's claims judged on hand-made report entries whose answers are known."""

import pytest

from groundtruth.published_audit import CLAIMS, judge_claims


def _entry(*, within=(0.6, (0.4, 0.8)), trend=(0.5, (0.3, 0.7)), separated=(0.7, (0.6, 0.8)),
           precise=True, separates=True, tracks="tracks", kind="probing"):
    return {"kind": kind,
            "within_strata": {"gt_f1": {"mean_spearman": within[0], "mean_spearman_ci95":
                                        list(within[1]), "n_units": 12}},
            "training_trend": {"mean_spearman": trend[0], "mean_spearman_ci95": list(trend[1]),
                               "n_runs": 6},
            "variants": {"separated": separated[0], "separated_ci95": list(separated[1]),
                         "n_pairs": 9},
            "verdict": {"overall": "trustworthy", "tracks": tracks, "precise": precise,
                        "separates": separates, "confounded": False}}


def _report(**metrics):
    return {"config": {"lenses": {"ground_truth": ["gt_f1"]},
                       "verdict": {"discriminability": 0.5}},
            "metrics": {"gt_f1": _entry(kind="ground_truth"), **metrics}}


def _status(report, key):
    return judge_claims(report)["claims"][key]["status"]


def test_every_claim_is_not_measured_without_saebench_metrics():
    judged = judge_claims(_report(probe_k1=_entry()))
    assert set(judged["claims"]) == {c.key for c in CLAIMS}
    assert judged["counts"] == {"not measured": len(CLAIMS)}


@pytest.mark.parametrize("ci, status", [((-0.6, -0.2), "agree"), ((0.1, 0.5), "disagree"),
                                        ((-0.3, 0.2), "inconclusive")])
def test_tpp_worse_with_training_reads_the_training_trend_of_tpp_top20(ci, status):
    report = _report(tpp_top20=_entry(trend=(sum(ci) / 2, ci)), tpp_top2=_entry())
    assert _status(report, "tpp_worse_with_training") == status


def test_scr_at_large_n_uses_the_largest_n_measured():
    report = _report(scr_top20=_entry(), scr_top100=_entry(),
                     scr_top500=_entry(within=(-0.5, (-0.7, -0.2))))
    finding = judge_claims(report)["claims"]["scr_negative_at_large_n"]
    assert finding["status"] == "agree" and "scr_top500" in finding["measured"]
    report["metrics"]["scr_top500"] = _entry(within=(0.5, (0.2, 0.7)))
    assert _status(report, "scr_negative_at_large_n") == "disagree"
    assert _status(_report(scr_top20=_entry()), "scr_negative_at_large_n") == "not measured"


def test_tpp_and_scr_fail_several_lenses_counts_failed_rules():
    bad = _entry(precise=False, separates=False)
    assert _status(_report(tpp_top20=bad, scr_top20=bad), "tpp_scr_fail_lenses") == "agree"
    assert _status(_report(tpp_top20=_entry(), scr_top20=_entry()),
                   "tpp_scr_fail_lenses") == "disagree"
    assert _status(_report(tpp_top20=bad, scr_top20=_entry()),
                   "tpp_scr_fail_lenses") == "inconclusive"


def test_sae_probes_most_reliable_needs_its_interval_above_the_best_rival():
    apart = _report(sae_probes_top1=_entry(within=(0.8, (0.7, 0.9))),
                    sparse_probing_top1=_entry(within=(0.4, (0.2, 0.6))),
                    tpp_top20=_entry(within=(0.1, (-0.1, 0.3))))
    assert _status(apart, "sae_probes_most_reliable") == "agree"
    overlap = _report(sae_probes_top1=_entry(within=(0.6, (0.4, 0.8))),
                      sparse_probing_top1=_entry(within=(0.5, (0.3, 0.7))))
    assert _status(overlap, "sae_probes_most_reliable") == "inconclusive"
    beaten = _report(sae_probes_top1=_entry(within=(0.2, (0.1, 0.3))),
                     sparse_probing_top1=_entry(within=(0.8, (0.7, 0.9))))
    assert _status(beaten, "sae_probes_most_reliable") == "disagree"


@pytest.mark.parametrize("ci, status", [((0.1, 0.4), "agree"), ((0.6, 0.9), "disagree"),
                                        ((0.3, 0.7), "inconclusive")])
def test_sae_probes_variants_against_the_discriminability_line(ci, status):
    report = _report(sae_probes_top1=_entry(separated=(sum(ci) / 2, ci)))
    assert _status(report, "sae_probes_cannot_separate_variants") == status


def test_others_noisy_counts_metrics_failing_precision_or_discriminability():
    all_noisy = _report(sparse_probing_top1=_entry(precise=False),
                        core_cossim=_entry(kind="reconstruction", separates=False))
    assert _status(all_noisy, "others_noisy") == "agree"
    none = _report(sparse_probing_top1=_entry(), core_cossim=_entry(kind="reconstruction"))
    assert _status(none, "others_noisy") == "disagree"
