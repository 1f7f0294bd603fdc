"""Study regression_holdout on a tiny audit run."""

import json

from groundtruth.studies import run_study
from groundtruth.study import study_from_dict

TINY_AUDIT_TOML = """
[study]
name = "tiny_source"
kind = "audit"
[world]
preset = "tiny"
[data]
eval_samples = 512
probe_tasks = 3
probe_examples = 64
probe_pool = 4096
probe_min_rate = 0.05
[data.corpus]
n_subjects = 6
pairs_per_subject = 2
story_length = [8, 16]
[metrics]
names = ["ce_contrastive", "ce_independent", "gt_f1", "gt_mcc"]
[families]
names = ["decoder_noise", "dropped", "merged"]
oracle_training_samples = 20480
[training]
architectures = ["topk", "relu_l1"]
widths = [16, 32]
seeds = [0, 1]
n_checkpoints = 2
training_samples = 10240
batch_size = 256
[training.sparsity]
topk = [2, 4]
relu_l1 = [0.3, 1.0]
[lenses]
reseed_seeds = 2
decomposition_seeds = 2
n_boot = 100
"""


def test_regression_holdout_on_an_audit_run(tmp_path):
    source = tmp_path / "tiny_source.toml"
    source.write_text(TINY_AUDIT_TOML)
    study = study_from_dict({
        "study": {"name": "holdout", "kind": "regression_holdout"},
        "options": {"source_study": str(source), "source_run": str(tmp_path / "source_run")}})
    report = json.loads(run_study(study, tmp_path / "out", progress=False).read_text())
    assert report["groups"] == ["constructed", "relu_l1", "topk"]
    folds = report["holdout"]["folds"]
    assert sorted(f["architecture"] for f in folds) == report["groups"]
    assert (tmp_path / "source_run" / "report.json").exists()
    assert (tmp_path / "out" / "holdout.png").exists()
    for fold in folds:
        for value in fold["agreement"].values():
            assert 0.0 <= value <= 1.0
