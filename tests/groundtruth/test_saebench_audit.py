"""SAEBench's metrics through a whole (tiny) audit: every lens, and the published audit's
claims judged in the report (the fast variant of experiments/saebench_metrics.toml)."""

import json

import pytest

from groundtruth.audit import run_audit
from groundtruth.published_audit import CLAIMS
from groundtruth.study import load_study, repository_path, study_from_dict

RAW = {
    "study": {"name": "tiny_saebench", "seed": 0},
    "world": {"preset": "tiny"},
    "data": {"eval_samples": 1024, "probe_tasks": 2, "probe_examples": 64, "probe_pool": 4096,
             "probe_min_rate": 0.05,
             "corpus": {"n_subjects": 6, "pairs_per_subject": 2, "story_length": [8, 16]}},
    "metrics": {"names": ["gt_f1", "gt_mcc", "sparse_probing_top1", "sae_probes_top1",
                          "tpp_top2", "tpp_top20", "scr_top20", "scr_top500",
                          "absorption_hierarchy", "core_cossim", "ce_contrastive"]},
    "families": {"names": ["decoder_noise"], "oracle_training_samples": 20480},
    "training": {"architectures": ["topk", "matryoshka_batchtopk"], "widths": [32],
                 "seeds": [0, 1], "n_checkpoints": 2, "training_samples": 12800,
                 "batch_size": 256, "sparsity": {"topk": [2, 4], "matryoshka_batchtopk": [2, 4]},
                 "matryoshka_fractions": [0.5, 1.0]},
    "lenses": {"reseed_seeds": 3, "decomposition_seeds": 2, "n_boot": 200},
}


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    out = tmp_path_factory.mktemp("saebench_audit")
    path = run_audit(study_from_dict(RAW), out, progress=False)
    return out, json.loads(path.read_text())


def test_every_saebench_metric_goes_through_every_lens(audited):
    _, report = audited
    for name in RAW["metrics"]["names"]:
        entry = report["metrics"][name]
        for lens in ("reseed", "gt_correlation", "within_strata", "precision", "trajectory",
                     "training_trend", "variants", "verdict"):
            assert lens in entry, (name, lens)
    # matryoshka runs are trained and judged like the others
    assert any(s["run"].startswith("matryoshka_batchtopk/") for s in report["saes"]
               if s["kind"] == "trained")


def test_the_report_judges_the_published_audit_claim_by_claim(audited):
    out, report = audited
    published = report["published_audit"]
    assert set(published["claims"]) == {c.key for c in CLAIMS}
    statuses = {f["status"] for f in published["claims"].values()}
    assert statuses <= {"agree", "disagree", "inconclusive", "not measured"}
    # the claims this study measures are judged, not skipped
    for key in ("tpp_worse_with_training", "scr_negative_at_large_n", "tpp_scr_fail_lenses"):
        assert published["claims"][key]["status"] != "not measured", key
    text = (out / "report.md").read_text()
    assert "## Against the published audit" in text
    assert "TPP scores SAEs worse the longer they train." in text


def test_the_study_config_loads_and_names_registered_metrics():
    study = load_study(repository_path("experiments/saebench_metrics.toml"))
    assert "matryoshka_batchtopk" in study.training.architectures
    assert {"sae_probes_top16", "tpp_top20", "scr_top20"} <= set(study.metrics)
