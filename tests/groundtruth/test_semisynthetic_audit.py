"""The audit on the language world (semi-synthetic tier), end to end on a small study."""

import json

import pytest

from groundtruth.audit import run_audit
from groundtruth.study import load_study, study_from_dict
from synthetic_saes.semisynthetic.world import LanguageWorldConfig

MODEL = {"n_layers": 2, "d_model": 48, "n_heads": 2, "d_mlp": 96, "train_steps": 300,
         "batch_size": 16, "lr": 0.005, "eval_stories": 64, "hook": "blocks.0.hook_resid_post"}
RAW = {
    "study": {"name": "tiny_language_audit", "seed": 0},
    "world": {"kind": "language", "fit_stories": 256, "quality_stories": 64,
              "stories_per_batch": 64, "model": MODEL},
    "data": {"eval_samples": 1024, "probe_tasks": 2, "probe_examples": 64, "probe_pool": 4096,
             "corpus": {"n_subjects": 4, "pairs_per_subject": 2}},
    "metrics": {"names": ["ce_contrastive", "ce_independent_v1", "gt_f1", "gt_mcc",
                          "explained_variance"]},
    "families": {"names": ["decoder_noise"]},
    "training": {"architectures": ["topk"], "widths": [64], "seeds": [0, 1],
                 "n_checkpoints": 3, "training_samples": 8192, "batch_size": 256,
                 "sparsity": {"topk": [2, 4]}},
    "lenses": {"reseed_seeds": 3, "decomposition_seeds": 2, "n_boot": 200},
}


def _reference_report(path):
    """A stand-in for the synthetic audit's report: two metrics' correlations and verdicts."""
    entry = lambda rho: {"gt_correlation": {"gt_f1": {"spearman": rho,  # noqa: E731
                                                      "spearman_ci95": [rho - 0.2, rho + 0.2]}},
                         "verdict": {"overall": "does not track"}}
    path.write_text(json.dumps({"config": {"name": "ce_vs_groundtruth"},
                                "world": {"summary": "World(cpu)"},
                                "metrics": {"ce_contrastive": entry(0.12),
                                            "gt_f1": entry(1.0)}}))
    return path


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    out = tmp_path_factory.mktemp("language_audit")
    reference = _reference_report(out.parent / "reference_report.json")
    study = study_from_dict({**RAW, "options": {"compare_with": str(reference)}})
    path = run_audit(study, out, progress=False)
    return out, json.loads(path.read_text())


def test_the_language_world_is_parsed_and_validated():
    study = study_from_dict(RAW)
    assert isinstance(study.world, LanguageWorldConfig)
    assert study.world.model.d_model == 48
    with pytest.raises(ValueError, match=r"\[world\] unknown kind"):
        study_from_dict({**RAW, "world": {"kind": "hub"}})
    with pytest.raises(ValueError, match=r"\[world\].*fit_storys"):
        study_from_dict({**RAW, "world": {"kind": "language", "fit_storys": 3}})
    with pytest.raises(ValueError, match="runs audit studies"):
        study_from_dict({**RAW, "study": {"name": "x", "kind": "width_confound"}})
    shipped = load_study("experiments/semisynthetic_ce.toml")
    assert isinstance(shipped.world, LanguageWorldConfig)
    assert shipped.options["compare_with"].endswith("cpu_short_training/report.json")


def test_the_audit_runs_on_the_language_world(audited):
    out, report = audited
    assert (out / "language_model" / "language_model.json").exists()
    truth = report["world"]["ground_truth"]
    assert truth["hook"] == "blocks.0.hook_resid_post"
    assert truth["dictionary_quality"]["explained_variance"] > 0.5
    assert report["sanity"]["ok"]
    ranks = report["sanity"]["control_ranks_on_ground_truth"]["gt_f1"]
    assert ranks["oracle"] == 1
    for name in ("ce_contrastive", "ce_independent_v1"):
        c = report["metrics"][name]["gt_correlation"]["gt_f1"]
        assert -1 <= c["spearman_ci95"][0] <= c["spearman"] <= c["spearman_ci95"][1] <= 1
    markdown = (out / "report.md").read_text()
    assert "The ground truth on this world" in markdown
    assert "Through the model's outputs" in markdown and (out / "steering.png").exists()
    outputs = report["model_outputs"]
    assert outputs["interventions"]["dictionary"]["sufficiency"] > 0.5
    assert set(outputs["steering"]["steerers"]) >= {"dictionary"}


def test_the_report_sits_beside_the_reference(audited):
    _, report = audited
    comparison = report["comparison"]
    assert comparison["found"] and comparison["reference_study"] == "ce_vs_groundtruth"
    row = comparison["metrics"]["ce_contrastive"]
    assert row["reference_spearman"] == 0.12 and row["reference_spearman_ci95"] == [
        pytest.approx(-0.08), pytest.approx(0.32)]
    assert row["spearman"] == report["metrics"]["ce_contrastive"]["gt_correlation"]["gt_f1"][
        "spearman"]
    assert comparison["metrics"]["ce_independent_v1"]["reference_spearman"] is None


def test_a_resumed_run_reuses_the_model_and_gives_the_same_report(audited):
    out, report = audited
    weights = out / "language_model" / "model.safetensors"
    before = weights.stat().st_mtime_ns if weights.exists() else None
    study = study_from_dict({**RAW, "options": {"compare_with": report["comparison"][
        "reference"]}})
    again = json.loads(run_audit(study, out, progress=False).read_text())
    assert again == report
    if before is not None:
        assert weights.stat().st_mtime_ns == before
