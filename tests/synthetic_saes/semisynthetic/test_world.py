import json

import numpy as np
import pytest

from cebench.activations import compute_activations
from cebench.cli import main as cebench_main
from cebench.datasets import load_contrastive_dataset, tokenize_dataset, write_contrastive_dataset
from cebench.scores import score_latents
from groundtruth.metrics.quality import evaluate_quality
from synthetic_saes.corpora import CorpusConfig
from synthetic_saes.semisynthetic.world import (
    LanguageWorld, LanguageWorldConfig, story_indicators,
)
from synthetic_saes.training import TrainingConfig, train_population

from .conftest import TINY_MODEL


def test_a_hook_the_model_lacks_is_refused_before_any_training():
    for hook in ("blocks.7.hook_resid_post", "blocks.0.hook_nope", "blocks.0.mlp.hook_post"):
        with pytest.raises(ValueError, match=f"unknown hook '{hook}' for a 2-layer model"):
            LanguageWorldConfig(model=TINY_MODEL, hook=hook)
    with pytest.raises(ValueError, match="unknown hook 'embed'"):
        TINY_MODEL.__class__(**{**TINY_MODEL.to_dict(), "hook": "embed"})
    # every readable hook is accepted, sublayers included
    for hook in ("blocks.1.hook_attn_out", "blocks.0.hook_mlp_out", "blocks.1.hook_resid_mid"):
        assert LanguageWorldConfig(model=TINY_MODEL, hook=hook).hook_name == hook


def test_a_folder_trained_with_another_config_is_not_reused(tiny_language_model):
    directory, _, _ = tiny_language_model
    other = LanguageWorldConfig(model=TINY_MODEL.__class__(**{**TINY_MODEL.to_dict(),
                                                             "seed": 5}))
    with pytest.raises(ValueError, match="another config"):
        LanguageWorld.build(other, directory)


def test_the_dictionary_fit_shows_progress_and_equals_the_silent_fit(tiny_language_world,
                                                                    capsys):
    world = tiny_language_world
    shown = LanguageWorld(world.model, world.language, world.config, progress=True)
    np.testing.assert_array_equal(shown.dictionary.directions, world.dictionary.directions)
    err = capsys.readouterr().err
    assert "activations for the supervised dictionary fit" in err
    assert f"{world.config.fit_stories}/{world.config.fit_stories}" in err


def test_samples_are_hook_activations_with_their_labels(tiny_language_world):
    world = tiny_language_world
    a = world.sample(3000, seed=4)
    b = world.sample(3000, seed=4)
    c = world.sample(3000, seed=5)
    np.testing.assert_array_equal(a.hidden, b.hidden)
    np.testing.assert_array_equal(a.features, b.features)
    assert not np.array_equal(a.hidden, c.hidden)
    # every token carries its word and the features' values are the dictionary's norms
    words = np.array([n.startswith("word=") for n in world.feature_names])
    assert ((a.features[:, words] > 0).sum(axis=1) == 1).all()
    on = a.features > 0
    np.testing.assert_allclose(a.features[on], np.broadcast_to(world.mean_magnitudes,
                                                               a.features.shape)[on])
    assert 1.5 < on.sum(axis=1).mean() < 3  # true L0: word plus the occasional attribute


def test_story_activations_are_what_the_model_computes(tiny_language_world):
    import torch

    world = tiny_language_world
    stories = world.language.stories(3, seed=1)
    acts = world.story_activations(stories)
    for row, story in enumerate(stories):
        ids = [world.tokenizer.bos_token_id, *world.language.encode(story, world.tokenizer)]
        with torch.no_grad():
            _, cache = world.model.run_with_cache(torch.tensor([ids]))
        start = sum(len(s.words) for s in stories[:row])
        np.testing.assert_allclose(acts[start:start + len(story.words)],
                                   cache[world.config.hook_name][0, 1:].numpy(), atol=1e-5)
    assert story_indicators(stories, world.feature_names).shape == (len(acts),
                                                                    world.num_features)


def test_the_dictionary_describes_the_activations(tiny_language_world):
    world = tiny_language_world
    quality = world.quality
    assert quality.explained_variance > 0.5
    assert quality.probe_accuracy["story_entity"] > 0.9
    names = world.feature_names
    assert len(set(names)) == len(names) == world.num_features
    np.testing.assert_allclose(np.linalg.norm(world.feature_directions, axis=1), 1, atol=1e-5)
    knight, person = names.index("word=knight"), names.index("category=person")
    assert world.hierarchy.parent[knight] == person
    assert world.hierarchy.mutually_exclusive[person]
    summary = world.summary()
    assert summary["model_evaluation"]["pole_accuracy"] > 0.9
    json.dumps(summary)


def test_oracle_tops_the_ground_truth_and_random_saes_sit_at_the_bottom(
        tiny_language_world, tiny_language_controls):
    world = tiny_language_world
    controls = tiny_language_controls
    training = TrainingConfig(architecture="topk", k=4, d_sae=128, training_samples=20480,
                              batch_size=256, lr=3e-3, n_checkpoints=1)
    trained = train_population(world, training, seeds=[0, 1], progress=False)
    sample = world.sample(4096, seed=11)
    q = {name: evaluate_quality(p, world, sample=sample) for name, p in controls.items()}
    q_trained = [evaluate_quality(trained.params(i), world, sample=sample) for i in range(2)]
    assert q["oracle"].mcc == pytest.approx(1.0, abs=1e-5)
    assert q["oracle"].f1 > 0.8
    for t in q_trained:
        assert q["oracle"].f1 > t.f1 + 0.2 and q["oracle"].mcc > t.mcc
        for random in ("random_init", "random_l0_matched"):
            assert t.f1 > q[random].f1 and t.mcc > q[random].mcc + 0.1
    for random in ("random_init", "random_l0_matched"):
        assert q[random].f1 < 0.1 and q[random].mcc < 0.4


def test_the_corpus_is_the_cebench_pipeline_on_the_written_dataset(tiny_language_world,
                                                                    tmp_path):
    world = tiny_language_world
    config = CorpusConfig(n_subjects=3, pairs_per_subject=2, seed=21)
    corpus = world.contrastive_corpus(config)
    assert len(corpus) == 6
    rows = world.language.dataset_rows(6, seed=21, schema="v1")
    dataset = load_contrastive_dataset(write_contrastive_dataset(rows, tmp_path / "s.jsonl"))
    acts, lengths, marked = compute_activations(world.model, world.config.hook_name,
                                                tokenize_dataset(dataset, world.tokenizer))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    for i, pair in enumerate(corpus):
        np.testing.assert_array_equal(pair.hidden_a, acts[offsets[2 * i]:offsets[2 * i + 1]])
        np.testing.assert_array_equal(pair.hidden_b,
                                      acts[offsets[2 * i + 1]:offsets[2 * i + 2]])
        np.testing.assert_array_equal(pair.marked_a, marked[offsets[2 * i]:offsets[2 * i + 1]])
        assert pair.marked_a.sum() > 0 and not pair.marked_a[0]  # BOS first, never marked
        assert pair.features_a.shape == (len(pair.hidden_a), world.num_features)
        assert pair.features_a[0].nnz == 0  # BOS carries no feature
        high = pair.subject.high
        assert world.feature_names[high].endswith(":high")
        assert pair.features_a[:, high].nnz > 0 and pair.features_b[:, high].nnz == 0


def test_cebench_score_on_the_model_folder_equals_the_audits_ce(
        tiny_language_model, tiny_language_world, tiny_language_controls, tmp_path):
    directory, _, _ = tiny_language_model
    world = tiny_language_world
    sae = tiny_language_controls["oracle"]
    sae_dir = sae.save(tmp_path / "oracle_sae", model_name="language",
                       hook_name=world.config.hook_name)
    rows = world.language.dataset_rows(6, seed=21, schema="v1")
    dataset = write_contrastive_dataset(rows, tmp_path / "stories.jsonl")
    for variant in ("v1", "v4"):
        out = tmp_path / variant
        assert cebench_main(["score", "--sae", str(sae_dir), "--model", str(directory),
                             "--dataset", str(dataset), "--output-folder", str(out),
                             "--variant", variant, "--no-progress"]) == 0
        result = json.loads(next(out.glob("*_eval_results.json")).read_text())
        metrics = result["eval_result_metrics"]["ce_bench"]
        corpus = world.contrastive_corpus(CorpusConfig(n_subjects=3, pairs_per_subject=2,
                                                       seed=21))
        ours = score_latents([(sae.encode(p.hidden_a), sae.encode(p.hidden_b)) for p in corpus],
                             variant=variant,
                             marked=corpus.marked_masks() if variant == "v1" else None)
        assert metrics["contrastive_score"] == pytest.approx(ours.contrastive, rel=1e-4)
        assert metrics["independent_score"] == pytest.approx(ours.independent, rel=1e-4)


def test_cebench_refuses_a_story_with_words_outside_the_vocabulary(tiny_language_model,
                                                                   tmp_path, capsys):
    directory, model, _ = tiny_language_model
    rows = [{"story1": "the fox won the final .", "story2": "the dragon lost the final .",
             "subject1": "outcome high", "subject2": "outcome low", "subject_id": "outcome",
             "subject_title": "outcome"}]
    dataset = load_contrastive_dataset(write_contrastive_dataset(rows, tmp_path / "s.jsonl"))
    with pytest.raises(ValueError, match="row 0, story b: 'dragon' is outside"):
        tokenize_dataset(dataset, model.tokenizer)
