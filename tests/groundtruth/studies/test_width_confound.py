"""Study width_confound on the tiny world."""

import json

import pytest

from groundtruth.studies import run_study
from groundtruth.study import study_from_dict


def test_width_confound(tmp_path, small_data):
    study = study_from_dict({
        "study": {"name": "wc", "kind": "width_confound"}, "world": {"preset": "tiny"},
        "data": small_data, "families": {"oracle_training_samples": 20480},
        "options": {"corpus_seeds": 3, "oracle_widths": [8, 16, 32, 64],
                    "random_widths": [8, 32, 128]}})
    report = json.loads(run_study(study, tmp_path, progress=False).read_text())
    random = report["scores"]["random"]["ce_contrastive"]
    assert random["widths"] == [8, 32, 128]
    assert random["log_log_exponent"] > 0.2, "max-z scores grow with width"
    low, high = random["log_log_exponent_ci95"]
    assert low <= random["log_log_exponent"] <= high
    with pytest.raises(ValueError, match="oracle_widths must lie in"):
        run_study(study_from_dict({
            "study": {"name": "wc", "kind": "width_confound"}, "world": {"preset": "tiny"},
            "options": {"oracle_widths": [1000]}}), tmp_path / "bad", progress=False)
