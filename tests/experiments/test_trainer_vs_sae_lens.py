"""experiments/trainer_vs_sae_lens.py: our multi-seed trainer against sae_lens's train_toy_sae."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from synthetic_saes.training import TrainingConfig
from synthetic_saes.worlds import build_world

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "trainer_vs_sae_lens.py"


@pytest.fixture(scope="module")
def experiment():
    spec = importlib.util.spec_from_file_location("trainer_vs_sae_lens", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_comparison_scores_every_seed_of_both_trainers(experiment, tiny_world):
    config = TrainingConfig(architecture="topk", d_sae=64, k=4, batch_size=256, lr=3e-3,
                            training_samples=8192, n_checkpoints=3)
    result = experiment.compare_with_sae_lens(tiny_world, config, seeds=(0, 1),
                                              baseline_seeds=(0, 1), eval_samples=2048)
    assert len(result["ours"]) == 2 and len(result["sae_lens"]) == 2
    for row in result["ours"] + result["sae_lens"]:
        assert 0 <= row["f1"] <= 1 and 0 <= row["mcc"] <= 1 and 0 < row["l0"] <= 4
    assert np.array(result["trajectory_f1"]).shape == (2, len(result["checkpoint_steps"]))
    assert result["config"] == config.to_dict()
    assert "MCC" in experiment.summary(result)


@pytest.mark.slow
def test_multi_seed_topk_matches_train_toy_sae(experiment):
    cpu_world = build_world("cpu")
    config = TrainingConfig(architecture="topk", d_sae=512, k=16, batch_size=1024, lr=1e-3,
                            training_samples=512_000)
    result = experiment.compare_with_sae_lens(cpu_world, config, seeds=tuple(range(8)),
                                              baseline_seeds=(0, 1, 2))
    ours = np.mean([r["mcc"] for r in result["ours"]])
    theirs = np.mean([r["mcc"] for r in result["sae_lens"]])
    assert abs(ours - theirs) <= 0.05, (ours, theirs)
    trajectory = np.array(result["trajectory_f1"])  # [seed, checkpoint]
    assert np.all(trajectory[:, -1] > trajectory[:, 0] + 0.05)
    assert np.all(np.diff(trajectory.mean(axis=0)) > 0)
