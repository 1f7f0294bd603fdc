"""An audit on a Tracr-compiled model's residual stream (`[world] kind = "tracr"`): CE-Bench's
scores on program inputs, the ground truth from the compiler's labelled basis."""

import json

import pytest

from groundtruth.audit import run_audit
from groundtruth.study import study_from_dict
from synthetic_saes.semisynthetic.tracr_world import TracrWorldConfig

RAW = {
    "study": {"name": "tiny_tracr", "seed": 0},
    "world": {"kind": "tracr", "program": "reverse"},
    "data": {"eval_samples": 1024, "probe_tasks": 2, "probe_examples": 64, "probe_pool": 4096,
             "corpus": {"n_subjects": 3, "pairs_per_subject": 4, "story_length": [3, 5],
                        "marked_fraction": 0.3}},
    "metrics": {"names": ["gt_f1", "gt_mcc", "ce_contrastive", "ce_independent", "l0"]},
    "families": {"names": ["decoder_noise"], "oracle_training_samples": 10240},
    "training": {"architectures": ["topk"], "widths": [27], "seeds": [0, 1],
                 "n_checkpoints": 2, "training_samples": 8192, "batch_size": 256,
                 "sparsity": {"topk": [2, 4]}},
    "lenses": {"reseed_seeds": 2, "decomposition_seeds": 2, "n_boot": 100},
}


def test_a_tracr_world_section_is_validated():
    study = study_from_dict(RAW)
    assert isinstance(study.world, TracrWorldConfig) and study.world.program == "reverse"
    with pytest.raises(ValueError, match="unknown Tracr program 'nope'"):
        study_from_dict({**RAW, "world": {"kind": "tracr", "program": "nope"}})
    with pytest.raises(ValueError, match="unknown hook 'blocks.9.hook_resid_post'"):
        study_from_dict({**RAW, "world": {"kind": "tracr", "program": "reverse",
                                          "hook_name": "blocks.9.hook_resid_post"}})


def test_the_audit_runs_unchanged_on_a_tracr_world(tmp_path):
    report = json.loads(run_audit(study_from_dict(RAW), tmp_path, progress=False).read_text())
    for name in RAW["metrics"]["names"]:
        assert "gt_correlation" in report["metrics"][name]
    kinds = {s["kind"] for s in report["saes"]}
    assert kinds == {"control", "constructed", "trained"}
    assert "TracrWorld(program='reverse'" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "report.md").exists()
