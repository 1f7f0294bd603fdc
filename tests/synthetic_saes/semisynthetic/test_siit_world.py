"""synthetic_saes.semisynthetic.siit_world: SAEs scored on a SIIT-trained model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from groundtruth.metrics.quality import evaluate_quality
from synthetic_saes.base_world import BaseWorld
from synthetic_saes.families import make_controls
from synthetic_saes.semisynthetic.siit import SIITConfig, pad_token_id
from synthetic_saes.semisynthetic.siit_world import SIITWorld, SIITWorldConfig, siit_hook_names
from synthetic_saes.training import TrainingConfig, train_population

TINY_SIIT = SIITConfig(program="hist", n_layers=2, d_model=16, n_heads=2, d_mlp=32,
                       batch_size=64, train_steps=150, eval_pairs=128, seed=0)


@pytest.fixture(scope="module")
def trained_directory(tmp_path_factory):
    from synthetic_saes.semisynthetic.siit import train_siit

    directory = tmp_path_factory.mktemp("siit_hist")
    train_siit(TINY_SIIT, directory)
    return directory


@pytest.fixture(scope="module")
def world(trained_directory):
    config = SIITWorldConfig(program="hist", siit=TINY_SIIT, fit_sequences=512,
                             quality_sequences=256, sequences_per_batch=128)
    return SIITWorld.build(config, trained_directory)


def test_config_defaults_round_trip_and_errors():
    config = SIITWorldConfig(program="hist", siit=TINY_SIIT)
    assert config.hook == "blocks.1.hook_resid_post"
    assert SIITWorldConfig(program="reverse").hook == "blocks.3.hook_resid_post"
    data = json.loads(json.dumps(config.to_dict()))
    assert SIITWorldConfig.from_dict(data) == config
    with pytest.raises(ValueError, match=r"unknown hook 'blocks\.7\.hook_resid_post' for the "
                                         r"SIIT model; valid hooks: \['hook_embed'") as info:
        SIITWorldConfig(program="hist", siit=TINY_SIIT, hook="blocks.7.hook_resid_post")
    assert "blocks.1.hook_mlp_out" in str(info.value)
    with pytest.raises(ValueError, match="trains 'hist', not the world's program 'reverse'"):
        SIITWorldConfig(program="reverse", siit=TINY_SIIT)
    with pytest.raises(ValueError, match="unknown Tracr program 'nope'"):
        SIITWorldConfig(program="nope")
    with pytest.raises(ValueError, match="unknown SIITWorldConfig keys"):
        SIITWorldConfig.from_dict({"program": "hist", "layer": 0})


def test_every_listed_hook_exists_with_one_vector_per_position(world):
    assert set(siit_hook_names(2)) <= set(world.model.hook_dict)
    ids = np.array([[world.tracr.token_id(t) for t in "abb"]])
    for hook in siit_hook_names(2):
        other = SIITWorld(world.trained, SIITWorldConfig(program="hist", siit=TINY_SIIT,
                                                         hook=hook))
        acts = other.activations(ids)
        assert acts.shape == (3, other.d_in), hook
        # the model runs on the input padded to max_seq_len, as it was trained
        pad = pad_token_id(world.tracr)
        padded = [[world.tracr.bos_id, *ids[0], *[pad] * (world.tracr.max_seq_len - 3)]]
        _, cache = world.model.run_with_cache(torch.tensor(padded))
        np.testing.assert_allclose(acts, cache[hook][0, 1:4].numpy(), rtol=1e-6, atol=1e-6)


def test_features_are_the_program_variables_available_at_the_hook(world):
    assert isinstance(world, BaseWorld)
    assert world.variables == ("tokens", "indices", "hist")
    names = set(world.feature_names)
    assert {"tokens=a", "tokens=c", "indices=0", "indices=4", "hist=1", "hist=5"} <= names
    assert "hist=0" not in names and "tokens=BOS" not in names  # never taken
    early = SIITWorld(world.trained, SIITWorldConfig(program="hist", siit=TINY_SIIT,
                                                     hook="blocks.0.hook_resid_mid"))
    assert early.variables == ("tokens", "indices")  # hist's MLP has not run yet
    sample = world.sample(2048, seed=0)
    fires = sample.features > 0
    for variable in world.variables:
        cols = [n.split("=")[0] == variable for n in world.feature_names]
        assert (fires[:, cols].sum(1) == 1).all(), variable
    # Features are the labels of the compiled model: hand-checked on one input.
    ids = np.array([[world.tracr.token_id("a"), world.tracr.token_id("b"),
                     world.tracr.token_id("a")]])
    carried = [{n for n, on in zip(world.feature_names, row, strict=True) if on}
               for row in world.indicators(ids)]
    assert carried == [{"tokens=a", "indices=0", "hist=2"}, {"tokens=b", "indices=1", "hist=1"},
                       {"tokens=a", "indices=2", "hist=2"}]
    np.testing.assert_allclose(sample.features[fires], np.broadcast_to(
        world.mean_magnitudes, fires.shape)[fires])


def test_the_dictionary_describes_the_activations(world):
    # At the embeddings x = W_E[token] + W_pos[index] is exactly the indicator model.
    embeddings = SIITWorld(world.trained, SIITWorldConfig(
        program="hist", siit=TINY_SIIT, hook="blocks.0.hook_resid_pre", fit_sequences=512,
        quality_sequences=256))
    assert embeddings.quality.explained_variance > 1 - 1e-6
    assert embeddings.quality.probe_accuracy == {"tokens": 1.0, "indices": 1.0}
    # After the layers, the tiny model (150 steps on padded pairs) keeps them above chance
    # (1/3, 1/5, <1/2), superposed: measured 0.79 explained variance, probes tokens 0.60,
    # indices 0.28, hist 0.95.
    quality = world.quality
    assert quality.explained_variance > 0.5, quality
    assert quality.probe_accuracy["tokens"] > 0.45 and quality.probe_accuracy["indices"] > 0.24
    assert quality.probe_accuracy["hist"] > 0.5
    G = world.feature_directions
    np.testing.assert_allclose(np.linalg.norm(G, axis=1), 1.0, rtol=1e-5)
    summary = world.summary()
    assert summary["siit_evaluation"]["n_pairs"] == 128
    json.dumps(summary)


def test_the_same_seed_gives_the_same_batches(world):
    a = world.sample(700, seed=4)
    b = world.sample(700, seed=4)
    c = world.sample(700, seed=5)
    np.testing.assert_array_equal(a.hidden, b.hidden)
    np.testing.assert_array_equal(a.features, b.features)
    assert not np.array_equal(a.hidden, c.hidden)
    assert a.hidden.dtype == np.float32 and a.hidden.shape == (700, world.d_in)


def test_a_folder_trained_with_another_config_is_not_reused(trained_directory):
    other = SIITWorldConfig(program="hist", siit=SIITConfig.from_dict(
        {**TINY_SIIT.to_dict(), "seed": 1}))
    with pytest.raises(ValueError, match="another config"):
        SIITWorld.build(other, trained_directory)


def test_saes_train_and_score_on_the_world(world):
    controls = {c.family: c.params for c in make_controls(world)}
    training = TrainingConfig(architecture="topk", k=3, d_sae=2 * world.num_features,
                              training_samples=16_384, batch_size=256, lr=3e-3,
                              n_checkpoints=1)
    trained = train_population(world, training, seeds=[0], progress=False)
    sample = world.sample(4096, seed=11)
    q = {name: evaluate_quality(p, world, sample=sample) for name, p in controls.items()}
    t = evaluate_quality(trained.params(0), world, sample=sample)
    assert np.isfinite([t.mcc, t.f1]).all()
    assert q["oracle"].mcc > 0.99 and q["oracle"].f1 > t.f1
    for random in ("random_init", "random_l0_matched"):
        assert t.mcc > q[random].mcc, (t, q[random])


def test_the_feature_names_are_known_without_training(world):
    from synthetic_saes.semisynthetic.siit_world import siit_feature_names

    assert siit_feature_names(world.config) == world.feature_names


def test_the_contrastive_corpus_is_the_compiled_world_s_stories_on_this_model(world):
    from synthetic_saes.corpora import CorpusConfig
    from synthetic_saes.semisynthetic import TracrWorld

    config = CorpusConfig(n_subjects=3, pairs_per_subject=2, story_length=(2, 5),
                          marked_fraction=0.3, seed=4)
    corpus = world.contrastive_corpus(config)
    compiled = TracrWorld(world.config.program).contrastive_corpus(config)
    names = world.feature_names
    for ours, theirs in zip(corpus, compiled, strict=True):
        assert np.array_equal(ours.marked_a, theirs.marked_a)
        assert ours.hidden_a.shape == (len(ours.marked_a), world.d_in)
        # the same tokens: the token features agree with the compiled world's exact ones
        tokens = [i for i, n in enumerate(names) if n.startswith("tokens=")]
        exact = [TracrWorld(world.config.program).feature_names.index(names[i]) for i in tokens]
        assert np.array_equal(ours.features_a.toarray()[:, tokens] > 0,
                              theirs.features_a.toarray()[:, exact] > 0)
        # (run alone, not beside its story A: batching moves float32 sums by ~1e-6)
        np.testing.assert_allclose(
            ours.hidden_b, world.activations(np.array([[
                world.tracr.token_id(names[tokens[j]].split("=")[1])
                for j in np.argmax(ours.features_b.toarray()[:, tokens], axis=1)]])),
            atol=1e-5)
