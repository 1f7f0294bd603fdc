import pytest

from groundtruth.study import default_study_path, load_study, repository_path, study_from_dict

BASE = {"study": {"name": "t"}, "world": {"preset": "tiny"}}


def test_the_default_and_shipped_studies_load():
    study = load_study(default_study_path())
    assert study.name == "ce_vs_groundtruth" and study.kind == "audit"
    assert len(study.training.architectures) >= 2 and len(study.training.widths) >= 2
    assert len(study.training.seeds) >= 3 and study.training.n_checkpoints >= 6
    assert all(len(study.training.sparsity[a]) >= 3 for a in study.training.architectures)
    experiments = default_study_path().parent
    for path in sorted(experiments.glob("*.toml")):
        assert load_study(path).name == path.stem


@pytest.mark.parametrize(
    "raw, message",
    [
        ({**BASE, "studdy": {}}, "unknown study sections"),
        ({"study": {"name": "t", "knd": "audit"}}, r"\[study\] unknown keys \['knd'\]"),
        ({**BASE, "study": {"name": "t", "kind": "survey"}}, "unknown study kind"),
        ({**BASE, "metrics": {"names": ["ce_contrastive", "ce_contrast"]}}, "unknown metric 'ce_contrast'"),
        ({**BASE, "world": {"preset": "huge"}}, "unknown preset 'huge'"),
        ({**BASE, "world": {"preset": "tiny", "num_featurs": 3}}, r"\[world\]"),
        ({**BASE, "families": {"names": ["noisy"]}}, "unknown families"),
        ({**BASE, "training": {"architectures": ["gated"]}}, "unknown architectures"),
        ({**BASE, "training": {"widths": [0]}}, "training.widths must be a positive int"),
        ({**BASE, "training": {"seeds": [0, 0]}}, "must be distinct"),
        ({**BASE, "training": {"epochs": 3}}, r"\[training\] unknown TrainingPlan keys"),
        ({**BASE, "training": {"matryoshka_fractions": [0.5, 0.25, 1.0]}},
         "matryoshka_fractions must increase strictly"),
        ({**BASE, "training": {"matryoshka_fractions": [0.25, 0.5]}}, "and end at 1"),
        ({**BASE, "training": {"architectures": ["matryoshka_batchtopk"], "widths": [10],
                               "matryoshka_fractions": [0.12, 0.14, 1.0],
                               "sparsity": {"matryoshka_batchtopk": [2]}}},
         r"training: matryoshka_widths must be strictly increasing, got \(1, 1, 10\)"),
        ({**BASE, "training": {"architectures": ["matryoshka_batchtopk"], "widths": [4],
                               "sparsity": {"matryoshka_batchtopk": [2]}}},
         r"matryoshka_widths must be positive ints, got \(0, 1, 2, 4\)"),
        ({**BASE, "lenses": {"reseed_seeds": 1}}, "reseed_seeds must be >= 2"),
        ({**BASE, "lenses": {"ground_truth": ["gt_f2"]}}, "unknown metric 'gt_f2'"),
        ({**BASE, "data": {"eval_sampels": 5}}, r"\[data\] unknown DataConfig keys"),
        ({"study": {}}, "needs a name"),
    ],
)
def test_a_bad_config_is_a_clear_error(raw, message):
    with pytest.raises(ValueError, match=message):
        study_from_dict(raw)


def test_missing_or_broken_files(tmp_path):
    with pytest.raises(ValueError, match="no study file"):
        load_study(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[study\nname = 3")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_study(bad)


def test_a_matryoshka_plan_gives_each_width_its_nested_prefixes():
    from groundtruth.population import training_configs

    study = study_from_dict({**BASE, "training": {
        "architectures": ["matryoshka_batchtopk", "topk"], "widths": [64, 128],
        "matryoshka_fractions": [0.25, 0.5, 1.0],
        "sparsity": {"matryoshka_batchtopk": [4, 8], "topk": [4]}}})
    runs = {key: config for key, config, _, _ in training_configs(study.training)}
    assert runs["matryoshka_batchtopk/k=8/w128"].matryoshka_widths == (32, 64, 128)
    assert runs["matryoshka_batchtopk/k=4/w64"].matryoshka_widths == (16, 32, 64)
    assert runs["topk/k=4/w64"].matryoshka_widths is None
    assert study.training.sparsity_knob["matryoshka_batchtopk"] == "k"


def test_the_default_study_trains_on_the_small_preset_and_keeps_the_short_one():
    from synthetic_saes.worlds import build_world

    study = load_study(default_study_path())
    assert study.world.num_features == 512 and study.world.hidden_dim == 128
    assert set(study.training.architectures) == {"topk", "jumprelu"}
    # the studies whose published numbers rest on the earlier default still point at it
    short = load_study(repository_path("experiments/cpu_short_training.toml"))
    assert short.world.num_features == 2048 and short.training.training_samples == 61_440
    options = load_study(repository_path("experiments/regression_holdout.toml")).options
    assert options["source_study"] == "experiments/cpu_short_training.toml"
    options = load_study(repository_path("experiments/calibration.toml")).options
    assert options["source_study"] == "experiments/ce_vs_groundtruth.toml"  # calibrates the default
    # its contrastive corpus needs n_subjects sibling pairs
    world = build_world(study.world)
    assert len(world.hierarchy.sibling_pairs()) >= study.data.corpus.n_subjects
