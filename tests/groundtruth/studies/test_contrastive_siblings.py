"""Study contrastive_siblings on the tiny world."""

import json

import pytest

from groundtruth.studies import run_study
from groundtruth.study import study_from_dict

SMALL_DATA = {"eval_samples": 512, "probe_tasks": 3, "probe_examples": 64, "probe_pool": 4096,
              "probe_min_rate": 0.05,
              "corpus": {"n_subjects": 6, "pairs_per_subject": 2, "story_length": [8, 16]}}


def test_contrastive_siblings(tmp_path):
    study = study_from_dict({
        "study": {"name": "sib", "kind": "contrastive_siblings"}, "world": {"preset": "tiny"},
        "data": SMALL_DATA, "families": {"oracle_training_samples": 20480},
        "options": {"corpus_seeds": 3}})
    report = json.loads(run_study(study, tmp_path, progress=False).read_text())
    shared = report["scores"]["shared_parent"]
    assert set(shared) == {"parent_represented", "parent_absorbed", "parent_missing"}
    entry = shared["parent_missing"]["ce_independent"]
    low, high = entry["difference_ci95"]
    assert low <= entry["difference_from_parent_represented"] <= high
    assert report["ground_truth"]["parent_represented"]["gt_mcc"] == pytest.approx(1.0)
    assert (tmp_path / "siblings.png").exists() and (tmp_path / "report.md").exists()
