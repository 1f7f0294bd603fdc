"""Study contrastive_siblings on the tiny world."""

import json

import pytest

from groundtruth.studies import run_study
from groundtruth.study import study_from_dict


def test_contrastive_siblings(tmp_path, small_data):
    study = study_from_dict({
        "study": {"name": "sib", "kind": "contrastive_siblings"}, "world": {"preset": "tiny"},
        "data": small_data, "families": {"oracle_training_samples": 20480},
        "options": {"corpus_seeds": 3}})
    report = json.loads(run_study(study, tmp_path, progress=False).read_text())
    shared = report["scores"]["shared_parent"]
    assert set(shared) == {"parent_represented", "parent_absorbed", "parent_missing"}
    entry = shared["parent_missing"]["ce_independent"]
    low, high = entry["difference_ci95"]
    assert low <= entry["difference_from_parent_represented"] <= high
    assert report["ground_truth"]["parent_represented"]["gt_mcc"] == pytest.approx(1.0)
    assert (tmp_path / "siblings.png").exists() and (tmp_path / "report.md").exists()
