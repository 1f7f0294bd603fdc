import pytest

from synthetic_saes.training.config import TrainingConfig, checkpoint_steps


def test_checkpoints_are_log_spaced_and_end_at_the_last_step():
    steps = checkpoint_steps(1000, 6, 1 / 32)
    assert steps == (31, 62, 125, 250, 500, 1000)
    ratios = [b / a for a, b in zip(steps, steps[1:])]
    assert all(1.9 < r < 2.1 for r in ratios)
    assert checkpoint_steps(3, 6, 1 / 32) == (1, 2, 3)  # collapses to distinct steps
    assert checkpoint_steps(10, 1, 0.5) == (10,)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"architecture": "gated"}, "unknown architecture"),
        ({"d_sae": 0}, "d_sae must be a positive int"),
        ({"k": 0}, "needs 1 <= k <= d_sae"),
        ({"k": 10_000}, "needs 1 <= k <= d_sae"),
        ({"training_samples": 10, "batch_size": 64}, "at least one batch"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"adam_beta2": 1.0}, r"adam_beta2 must be in \[0, 1\)"),
        ({"l1_coefficient": -1.0}, "l1_coefficient must be >= 0"),
        ({"architecture": "matryoshka_batchtopk", "d_sae": 64, "k": 4},
         "matryoshka_batchtopk needs matryoshka_widths"),
        ({"architecture": "matryoshka_batchtopk", "d_sae": 64, "k": 4,
          "matryoshka_widths": (16, 16, 64)}, "strictly increasing"),
        ({"architecture": "matryoshka_batchtopk", "d_sae": 64, "k": 4,
          "matryoshka_widths": (32, 16, 64)}, "strictly increasing"),
        ({"architecture": "matryoshka_batchtopk", "d_sae": 64, "k": 4,
          "matryoshka_widths": (16, 32)}, "must end at d_sae=64"),
        ({"architecture": "matryoshka_batchtopk", "d_sae": 64, "k": 4,
          "matryoshka_widths": (0, 64)}, "positive ints"),
        ({"architecture": "matryoshka_batchtopk", "d_sae": 64, "k": None,
          "matryoshka_widths": (16, 64)}, "needs 1 <= k <= d_sae"),
        ({"architecture": "batchtopk", "d_sae": 64, "k": 4, "matryoshka_widths": (16, 64)},
         "matryoshka_widths is only for matryoshka_batchtopk"),
    ],
)
def test_bad_training_settings_raise(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainingConfig(**changes)


def test_round_trip_and_inference_architecture():
    cfg = TrainingConfig(architecture="batchtopk", d_sae=64, k=4)
    assert TrainingConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.inference_architecture == "jumprelu"
    assert TrainingConfig(architecture="relu_l1", k=None).inference_architecture == "relu"
    with pytest.raises(ValueError, match="unknown TrainingConfig keys"):
        TrainingConfig.from_dict({"architektur": "topk"})


def test_matryoshka_config_round_trips_through_json_and_is_hashable():
    import json

    cfg = TrainingConfig(architecture="matryoshka_batchtopk", d_sae=64, k=4,
                         matryoshka_widths=(8, 32, 64))
    back = TrainingConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.matryoshka_widths == (8, 32, 64)
    assert hash(back) == hash(cfg)
    assert cfg.inference_architecture == "jumprelu"


def test_every_architecture_has_a_sparsity_knob_and_an_inference_form():
    from synthetic_saes.training.config import SPARSITY_KNOBS, TRAINING_ARCHITECTURES

    assert set(SPARSITY_KNOBS) == set(TRAINING_ARCHITECTURES)
    for arch in TRAINING_ARCHITECTURES:
        extra = {"matryoshka_widths": (16, 64)} if arch == "matryoshka_batchtopk" else {}
        cfg = TrainingConfig(architecture=arch, d_sae=64, k=4, **extra)
        assert cfg.sparsity_knob in ("k", "l1_coefficient", "l0_coefficient")
        assert cfg.inference_architecture in ("relu", "topk", "jumprelu")
