import numpy as np
import pytest
import torch
from sae_lens.synthetic import SyntheticModel

from synthetic_saes.worlds import PRESETS, World, WorldConfig, build_world, preset


def test_tiny_world_exposes_its_ground_truth(tiny_world):
    w = tiny_world
    assert w.feature_directions.shape == (64, 32)
    np.testing.assert_allclose(np.linalg.norm(w.feature_directions, axis=1), 1.0, atol=1e-5)
    assert w.bias.shape == (32,)
    assert w.firing_probabilities.shape == w.mean_magnitudes.shape == (64,)
    assert not w.feature_directions.flags.writeable
    # 4 roots, branching 2, depth 2: 4 + 8 + 16 features, 12 parents, all exclusive
    assert w.hierarchy.num_parents == 12
    assert len(w.hierarchy.exclusive_parents()) == 12


def test_samples_are_sparse_sums_of_the_true_directions(tiny_world):
    s = tiny_world.sample(500, seed=1)
    assert s.hidden.shape == (500, 32) and s.features.shape == (500, 64)
    assert (s.features >= 0).all()
    np.testing.assert_allclose(
        s.hidden, s.features @ tiny_world.feature_directions + tiny_world.bias, atol=1e-4
    )
    np.testing.assert_allclose(tiny_world.encode_features(s.features), s.hidden, atol=1e-4)


def test_hierarchy_rules_hold_in_samples(tiny_world):
    s = tiny_world.sample(4000, seed=2)
    fires = s.features > 0
    h = tiny_world.hierarchy
    for child, parent in enumerate(h.parent):
        if parent >= 0:
            assert not (fires[:, child] & ~fires[:, parent]).any(), "a child fired without its parent"
    for parent in h.exclusive_parents():
        assert fires[:, list(h.children[parent])].sum(axis=1).max() <= 1


def test_same_seed_same_samples_whatever_the_global_rng_does(tiny_world):
    a = tiny_world.sample(300, seed=5)
    torch.manual_seed(999)
    torch.rand(10)
    b = tiny_world.sample(300, seed=5)
    c = tiny_world.sample(300, seed=6)
    assert np.array_equal(a.hidden, b.hidden) and np.array_equal(a.features, b.features)
    assert not np.array_equal(a.hidden, c.hidden)


def test_sample_in_batches_equals_the_stream(tiny_world):
    whole = tiny_world.sample(100, seed=3, batch_size=100)
    first = next(tiny_world.stream(100, seed=3))
    assert np.array_equal(whole.hidden, first.hidden)


def test_same_seed_same_world():
    a, b = build_world("tiny"), build_world("tiny")
    assert np.array_equal(a.feature_directions, b.feature_directions)
    assert np.array_equal(a.firing_probabilities, b.firing_probabilities)
    other = build_world(preset("tiny", seed=1))
    assert not np.array_equal(a.feature_directions, other.feature_directions)


def test_save_and_load_change_nothing(tiny_world, tmp_path):
    tiny_world.save(tmp_path / "w")
    loaded = World.load(tmp_path / "w")
    assert loaded.config == tiny_world.config
    for name in ("feature_directions", "bias", "firing_probabilities", "mean_magnitudes"):
        assert np.array_equal(getattr(loaded, name), getattr(tiny_world, name)), name
    assert np.array_equal(loaded.hierarchy.parent, tiny_world.hierarchy.parent)
    assert loaded.hierarchy.children == tiny_world.hierarchy.children
    a, b = tiny_world.sample(200, seed=4), loaded.sample(200, seed=4)
    assert np.array_equal(a.hidden, b.hidden) and np.array_equal(a.features, b.features)


def test_a_plain_sae_lens_model_directory_loads_as_a_world(tiny_world, tmp_path):
    tiny_world.model.save(tmp_path / "plain")
    loaded = World.load(tmp_path / "plain")
    assert loaded.config is None
    assert np.array_equal(loaded.feature_directions, tiny_world.feature_directions)


def test_loading_something_else_fails_clearly(tmp_path):
    with pytest.raises(ValueError, match="no world directory"):
        World.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a saved world"):
        World.load(tmp_path / "empty")


def test_cpu_preset_shape():
    cfg = PRESETS["cpu"]
    assert 2000 <= cfg.num_features <= 5000 and 200 <= cfg.hidden_dim <= 600
    assert cfg.hierarchy_roots > 0 and cfg.mutually_exclusive_portion == 1.0
    assert cfg.correlation_rank > 0


def test_synthsaebench16k_preset_is_the_published_configuration():
    cfg = PRESETS["synthsaebench16k"].to_synthetic_model_config().to_dict()
    expected = {
        "num_features": 16384,
        "hidden_dim": 768,
        "firing_probability": {"exponent": 0.5, "max_prob": 0.4, "min_prob": 5e-4,
                               "generator_name": "zipfian"},
        "hierarchy": {"total_root_nodes": 128, "branching_factor": 4, "max_depth": 3,
                      "mutually_exclusive_portion": 1.0, "mutually_exclusive_min_depth": 0,
                      "mutually_exclusive_max_depth": None, "compensate_probabilities": True,
                      "scale_children_by_parent": True},
        "orthogonalization": {"num_steps": 100, "lr": 3e-4, "chunk_size": 1024},
        "correlation": {"rank": 25, "correlation_scale": 0.1, "seed": None},
        "std_firing_magnitudes": {"mean": 0.5, "std": 0.5, "min_value": None,
                                  "max_value": None, "generator_name": "folded_normal"},
        "mean_firing_magnitudes": {"start": 5.0, "end": 4.0, "generator_name": "linear"},
        "bias": 0.5,
        "dtype": "float32",
        "seed": 42,
    }
    assert cfg == expected


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match="tiny"):
        preset("huge")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"num_features": 0}, "num_features must be a positive int"),
        ({"hidden_dim": -3}, "hidden_dim must be a positive int"),
        ({"max_firing_probability": 1.5}, r"max_firing_probability must be in \(0, 1\]"),
        ({"min_firing_probability": 0.0}, r"min_firing_probability must be in \(0, 1\]"),
        ({"min_firing_probability": 0.5, "max_firing_probability": 0.4}, "must be below"),
        ({"hierarchy_roots": 40}, "needs 280 features but the world has num_features=64"),
        ({"hierarchy_branching": 1}, "hierarchy_branching must be >= 2"),
        ({"mutually_exclusive_portion": 1.2}, "mutually_exclusive_portion"),
        ({"correlation_scale": 1.0}, "correlation_scale"),
        ({"bias": -1.0}, "bias must be >= 0"),
        ({"seed": -1}, "seed must be a non-negative int"),
    ],
)
def test_impossible_world_settings_raise_naming_the_problem(changes, message):
    with pytest.raises(ValueError, match=message):
        preset("tiny", **changes)


def test_config_round_trips_and_rejects_typos():
    cfg = PRESETS["cpu"]
    assert WorldConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown WorldConfig keys"):
        WorldConfig.from_dict({**cfg.to_dict(), "num_featurs": 3})


def test_world_wraps_any_synthetic_model(tiny_world):
    world = World(SyntheticModel(tiny_world.config.to_synthetic_model_config()))
    assert np.array_equal(world.feature_directions, tiny_world.feature_directions)
    with pytest.raises(ValueError, match="d_in=31 but the world has d_in=32"):
        world.check_d_in(31)


def test_sample_hidden_is_the_sample_s_activations():
    world = build_world("tiny")
    for n, batch_size in ((1, 4096), (1000, 256), (5000, 4096)):
        expected = world.sample(n, seed=3, batch_size=batch_size).hidden
        np.testing.assert_array_equal(world.sample_hidden(n, seed=3, batch_size=batch_size),
                                      expected)
