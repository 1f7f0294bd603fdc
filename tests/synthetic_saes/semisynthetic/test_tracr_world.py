"""synthetic_saes.semisynthetic.tracr_world: SAEs scored against Tracr's labelled basis."""

from __future__ import annotations

import json

import numpy as np
import pytest

from groundtruth.metrics.quality import evaluate_quality
from synthetic_saes.base_world import BaseWorld
from synthetic_saes.sae_params import SAEParams
from synthetic_saes.semisynthetic.tracr_models import PROGRAMS, residual_hook_names
from synthetic_saes.semisynthetic.tracr_world import TracrWorld, TracrWorldConfig
from synthetic_saes.training import TrainingConfig, train_population


@pytest.fixture(scope="module")
def worlds():
    return {name: TracrWorld(name) for name in PROGRAMS}


def oracle_sae(world: TracrWorld) -> SAEParams:
    """Decoder = the true directions, encoder reads each coordinate, threshold at half the
    smallest firing value."""
    G = world.feature_directions
    return SAEParams(W_enc=G.T, b_enc=np.zeros(world.num_features), W_dec=G, b_dec=world.bias,
                     architecture="jumprelu", threshold=0.5 * world.min_magnitudes)


def random_sae(world: TracrWorld, seed: int) -> SAEParams:
    """Random unit decoder rows, tied encoder, relu, zero biases (as families.random_init)."""
    rng = np.random.default_rng(seed)
    D = rng.standard_normal((world.num_features, world.d_in))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    return SAEParams(W_enc=D.T, b_enc=np.zeros(world.num_features), W_dec=D,
                     b_dec=np.zeros(world.d_in), architecture="relu")


def test_config_defaults_validation_and_round_trip():
    config = TracrWorldConfig(program="reverse")
    assert config.hook_name == "blocks.3.hook_resid_post"
    assert config.max_length == 5
    data = config.to_dict()
    json.dumps(data)
    assert TracrWorldConfig.from_dict(data) == config
    assert config.replace(seed=3).seed == 3
    with pytest.raises(ValueError, match="unknown Tracr program 'nope'"):
        TracrWorldConfig(program="nope")
    with pytest.raises(ValueError, match="min_length"):
        TracrWorldConfig(program="hist", min_length=4, max_length=2)
    with pytest.raises(ValueError, match="max_seq_len=5"):
        TracrWorldConfig(program="hist", max_length=6)
    with pytest.raises(ValueError, match="seed"):
        TracrWorldConfig(program="hist", seed=-1)
    with pytest.raises(ValueError, match="unknown TracrWorldConfig keys"):
        TracrWorldConfig.from_dict({"program": "hist", "layer": 0})


def test_a_bad_hook_is_named_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown hook 'blocks\.7\.hook_resid_post'") as info:
        TracrWorldConfig(program="hist", hook_name="blocks.7.hook_resid_post")
    assert "blocks.0.hook_resid_mid" in str(info.value)


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_hidden_is_exactly_bias_plus_features_on_the_directions(worlds, program):
    world = worlds[program]
    assert isinstance(world, BaseWorld)
    sample = world.sample(4096, seed=0)
    np.testing.assert_allclose(world.encode_features(sample.features), sample.hidden,
                               rtol=0, atol=1e-5)
    assert (sample.features >= 0).all()
    assert world.excluded_labels == ()
    # No dead features; directions are unit one-hot rows; the bias is the `one` dimension.
    assert (world.firing_rates(4096) > 0).all()
    G = world.feature_directions
    assert G.shape == (world.num_features, world.d_in)
    np.testing.assert_array_equal(G.sum(1), 1.0)
    np.testing.assert_array_equal(np.abs(G).max(1), 1.0)
    assert world.bias.sum() == 1.0
    assert world.model.residual_labels[int(np.argmax(world.bias))].variable == "one"
    assert len(world.feature_names) == world.num_features
    assert world.hierarchy.num_features == world.num_features


def test_categorical_features_are_indicators(worlds):
    world = worlds["reverse"]
    sample = world.sample(4096, seed=1)
    categorical = [label.encoding == "categorical" for label in world.feature_labels]
    values = sample.features[:, categorical]
    # 0 or 1 up to the float32 rounding of Tracr's weights (~5e-7).
    assert ((values == 0) | (np.abs(values - 1) < 1e-5)).all()
    # Exactly one value of each categorical variable per position.
    for variable in ("tokens", "indices", "length", "reverse"):
        cols = [label.variable == variable for label in world.feature_labels]
        assert ((sample.features[:, cols] > 0).sum(1) == 1).all()
    names = set(world.feature_names)
    assert {"tokens=1", "indices=4", "reverse=3", "length=5"} <= names
    assert "length=0" not in names  # inputs are never empty
    assert "one" not in names and "tokens=BOS" not in names


def test_features_grow_with_depth():
    counts = [TracrWorld(TracrWorldConfig(program="reverse", hook_name=hook)).num_features
              for hook in residual_hook_names(4)]
    assert counts == sorted(counts)
    assert counts[0] == 8  # tokens (3) and indices (5) at the embeddings


def test_the_same_seed_gives_the_same_batches(worlds):
    world = worlds["hist"]
    a = [b for b, _ in zip(world.stream(300, seed=4), range(3), strict=False)]
    b = [b for b, _ in zip(world.stream(300, seed=4), range(3), strict=False)]
    c = next(iter(world.stream(300, seed=5)))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.hidden, y.hidden)
        np.testing.assert_array_equal(x.features, y.features)
        assert x.hidden.shape == (300, world.d_in) and x.hidden.dtype == np.float32
    assert not np.array_equal(a[0].hidden, c.hidden)
    np.testing.assert_array_equal(world.sample(500, seed=2).hidden,
                                  world.sample(500, seed=2).hidden)


def test_input_lengths_follow_the_config():
    world = TracrWorld(TracrWorldConfig(program="reverse", min_length=3, max_length=3))
    names = set(world.feature_names)
    assert "length=3" in names and "length=2" not in names and "indices=3" not in names
    assert world.true_l0(1024) == pytest.approx(7.0)


def test_mean_magnitudes_match_the_data(worlds):
    world = worlds["frac_prevs"]
    sample = world.sample(16_384, seed=3)
    fires = sample.features > 0
    observed = (sample.features * fires).sum(0) / fires.sum(0)
    np.testing.assert_allclose(world.mean_magnitudes, observed, atol=0.02)
    assert "frac_prevs" in world.feature_names and "is_x" in world.feature_names


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_oracle_beats_trained_saes_which_beat_random_ones(worlds, program):
    world = worlds[program]
    sample = world.sample(8192, seed=123)

    def score(params):
        quality = evaluate_quality(params, world, sample=sample)
        return quality.mcc, quality.f1

    oracle = score(oracle_sae(world))
    random = np.array([score(random_sae(world, seed)) for seed in range(4)])
    trained = []
    k = int(round(world.true_l0(4096)))
    for architecture, extra in (("topk", {"k": k}), ("relu_l1", {"k": None,
                                                                 "l1_coefficient": 0.05})):
        config = TrainingConfig(architecture=architecture, d_sae=world.num_features,
                                training_samples=65_536, batch_size=512, lr=1e-2,
                                n_checkpoints=1, dead_window_steps=200, **extra)
        population = train_population(world, config, seeds=(0, 1), progress=False)
        trained += [score(population.params(i)) for i in range(population.n_seeds)]
    trained = np.array(trained)
    assert oracle[0] > 0.999 and oracle[1] > 0.999
    assert (oracle - trained >= 0.2).all(), trained
    assert (trained >= random.mean(0)).all(), (trained, random)
    assert (trained.mean(0) - random.mean(0) >= (0.03, 0.05)).all(), (trained, random)
