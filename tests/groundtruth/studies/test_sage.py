"""The sage study end to end on a tiny language model and a tiny SIIT model (the fast variant
of experiments/semisynthetic_sage.toml), and its bad-input errors."""

import json

import pytest

from groundtruth.studies import run_study
from groundtruth.study import load_study, repository_path, study_from_dict

MODEL = {"n_layers": 2, "d_model": 48, "n_heads": 2, "d_mlp": 96, "train_steps": 300,
         "batch_size": 16, "lr": 0.005, "eval_stories": 64, "hook": "blocks.0.hook_resid_post"}
PROGRAM_TRAINING = {"architectures": ["topk"], "widths": [32], "seeds": [0, 1],
                    "n_checkpoints": 2, "training_samples": 4096, "batch_size": 256,
                    "lr": 0.01, "sparsity": {"topk": [2, 4, 8]}}
RAW = {
    "study": {"name": "tiny_sage", "kind": "sage", "seed": 0},
    "world": {"kind": "language", "fit_stories": 128, "quality_stories": 64,
              "stories_per_batch": 64, "model": MODEL},
    "data": {"eval_samples": 512, "probe_tasks": 2, "probe_examples": 64, "probe_pool": 2048,
             "corpus": {"n_subjects": 4, "pairs_per_subject": 2}},
    "metrics": {"names": ["ce_contrastive", "ce_independent", "gt_f1", "gt_mcc", "l0"]},
    # no constructed SAEs: the oracle's fit is the slowest step (its audits are tested apart)
    "families": {"names": [], "controls": False},
    "training": {"architectures": ["topk"], "widths": [32], "seeds": [0, 1],
                 "n_checkpoints": 2, "training_samples": 4096, "batch_size": 256,
                 "sparsity": {"topk": [2, 4, 8]}},
    "lenses": {"reseed_seeds": 2, "decomposition_seeds": 2, "n_boot": 100},
    "options": {
        "localisation_pairs": 8, "localisation_resamples": 200, "programs": ["reverse"],
        "sublayer": {"width": 16, "seeds": [0, 1], "training_samples": 4096,
                     "eval_stories": 32, "intervention_stories": 8},
        "program_data": {"eval_samples": 512, "probe_tasks": 2, "probe_examples": 64,
                         "probe_pool": 2048,
                         "corpus": {"n_subjects": 3, "pairs_per_subject": 2,
                                    "story_length": [3, 5], "marked_fraction": 0.3}},
        "program_families": {"names": [], "controls": False},
        "program_training": PROGRAM_TRAINING,
        "siit": {"train_steps": 40, "eval_pairs": 128, "batch_size": 32},
        "siit_world": {"fit_sequences": 256, "quality_sequences": 64},
    },
}


@pytest.fixture(scope="module")
def studied(tmp_path_factory):
    out = tmp_path_factory.mktemp("sage")
    path = run_study(study_from_dict(RAW), out, progress=False)
    return out, json.loads(path.read_text())


def test_the_study_locates_audits_rebuilds_and_compares(studied):
    out, report = studied
    top = report["localisation"]["top"]
    assert top["residual"]["hook"].split(".hook_")[1].startswith("resid")
    assert top["sublayer"]["hook"].split(".hook_")[1] in ("attn_out", "mlp_out")
    assert set(report["points"]) == {"residual", "sublayer"}
    # every selected point has its dictionary's quality
    selected = report["localisation"]["selected"]
    assert all(0 < q["explained_variance"] <= 1 for q in selected.values())
    assert all(p["hook"] in selected for p in top.values()
               if p["low"] > report["localisation"]["selection_threshold"])
    for point in report["points"].values():
        assert "ce_contrastive" in point["scores"]
        assert (out / point["folder"] / "report.md").exists()
    summary = report["sublayer"]["summary"]
    assert set(summary) == {"reconstructed", "direct", "direct_2x"}
    assert report["sublayer"]["latents"] == {"reconstructed": 32, "direct": 16, "direct_2x": 32}
    assert set(report["programs"]) == {"tracr_reverse", "siit_reverse"}
    text = (out / "report.md").read_text()
    assert text.startswith("# SAGE and SIIT") and "**The answer.**" in text
    for plot in ("localisation.png", "sage_summary.png"):
        assert (out / plot).stat().st_size > 0


def test_a_rerun_resumes_and_gives_the_same_report(studied):
    out, report = studied
    again = json.loads(run_study(study_from_dict(RAW), out, progress=False).read_text())
    assert again == report


@pytest.mark.parametrize("options, message", [
    ({"programs": ["frac_prevs"]}, "have no SIIT training"),
    ({"localisation_pair": 3}, "localisation_pair"),
    ({"siit": {"train_step": 3}}, "train_step"),
    ({"sublayer": {"seeds": [0]}}, "at least two seeds"),
    ({"selection_threshold": 1.5}, "selection_threshold"),
    ({"siit_world": {"hook": "blocks.7.hook_resid_post"}}, "unknown hook"),
    ({"siit": {"alignment": [["reverse", "blocks.9.hook_mlp_out", None]]}}, "blocks.9"),
])
def test_bad_options_fail_before_any_work(tmp_path, options, message):
    from groundtruth.studies.sage import _study_parts

    study = study_from_dict({**RAW, "options": {**RAW["options"], **options}})
    with pytest.raises(ValueError, match=message):
        _study_parts(study)


def test_a_sage_study_needs_the_language_world():
    with pytest.raises(ValueError, match="sage study runs on the language model"):
        study_from_dict({**RAW, "world": {"preset": "tiny"}})


def test_the_shipped_study_validates():
    from groundtruth.studies.sage import _study_parts

    study = load_study(repository_path("experiments/semisynthetic_sage.toml"))
    options, audits = _study_parts(study)
    assert set(audits) == {"tracr_reverse", "siit_reverse", "tracr_hist", "siit_hist"}
    assert options.sublayer.seeds == (0, 1, 2)
