import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from synthetic_saes.semisynthetic.language import AXES, Language
from synthetic_saes.semisynthetic.model import (
    ModelConfig, evaluate_language_model, load_language_model, probe_accuracy, recall_margins,
    recall_positions, story_tokens, train_language_model,
)

from .conftest import TINY_MODEL


def test_training_learns_the_language(tiny_language_model):
    _, _, report = tiny_language_model
    curve = report["loss_curve"]
    assert curve[-1][1] < 0.5 * curve[0][1]
    evaluation = report["evaluation"]
    assert evaluation["pole_accuracy"] > 0.9  # recalls the story's pole from the context
    assert evaluation["axis_accuracy"] > 0.9
    assert evaluation["probe_accuracy"]["story_entity"] > 0.9
    assert np.isfinite(evaluation["loss"]) and evaluation["n_recall_positions"] > 64


def test_same_seed_same_weights_in_another_process(tmp_path):
    config = ModelConfig(n_layers=2, d_model=64, n_heads=2, d_mlp=128, train_steps=20,
                         batch_size=16, eval_stories=8, hook="blocks.0.hook_resid_post")
    a, report_a = train_language_model(Language(), config, tmp_path / "a")
    code = ("import json, sys\n"
            "from synthetic_saes.semisynthetic.language import Language\n"
            "from synthetic_saes.semisynthetic.model import ModelConfig, train_language_model\n"
            "train_language_model(Language(), ModelConfig(**json.loads(sys.argv[1])), "
            "sys.argv[2])\n")
    subprocess.run([sys.executable, "-c", code, json.dumps(config.to_dict()),
                    str(tmp_path / "b")], check=True, capture_output=True,
                   env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    # torch's default threads split the backward reductions differently in each process;
    # training runs on one thread so the weights are bit-identical
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (
        tmp_path / "b" / "model.safetensors").read_bytes()
    report_b = json.loads((tmp_path / "b" / "language_model.json").read_text())
    assert report_a == report_b
    b, report_b = train_language_model(Language(), config, tmp_path / "b2")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
    c, _ = train_language_model(Language(), ModelConfig(**{**config.to_dict(), "seed": 1}),
                                tmp_path / "c")
    assert not torch.equal(a.W_E, c.W_E)


def test_a_fresh_process_reproduces_the_saved_evaluation(tiny_language_model):
    directory, _, report = tiny_language_model
    code = (
        "import json, sys\n"
        "from synthetic_saes.semisynthetic.model import load_language_model, "
        "evaluate_language_model\n"
        "model, language, config, _ = load_language_model(sys.argv[1])\n"
        "print(json.dumps(evaluate_language_model(model, language, config)))\n")
    out = subprocess.run([sys.executable, "-c", code, str(directory)], capture_output=True,
                         text=True, check=True, env={"HF_HUB_OFFLINE": "1",
                                                     "PATH": "/usr/bin:/bin"})
    assert json.loads(out.stdout.strip().splitlines()[-1]) == report["evaluation"]


def test_loaded_model_equals_the_trained_one(tiny_language_model):
    directory, model, report = tiny_language_model
    loaded, language, config, saved = load_language_model(directory)
    assert config == TINY_MODEL and saved == report
    stories = language.stories(4, seed=9)
    tokens, mask = story_tokens(language, stories, loaded.tokenizer, config.n_ctx)
    with torch.no_grad():
        x = model(torch.from_numpy(tokens), attention_mask=torch.from_numpy(mask).long())
        y = loaded(torch.from_numpy(tokens), attention_mask=torch.from_numpy(mask).long())
    torch.testing.assert_close(x, y)


def test_recall_margins_equal_a_literal_computation(tiny_language_model):
    _, model, _ = tiny_language_model
    language = Language()
    stories = language.stories(6, seed=5)
    tokens, mask = story_tokens(language, stories, model.tokenizer, TINY_MODEL.n_ctx)
    with torch.no_grad():
        logits = model(torch.from_numpy(tokens), attention_mask=torch.from_numpy(mask).long())
    margins = recall_margins(logits, stories, model.tokenizer)
    vocab = model.tokenizer.get_vocab()
    positions = recall_positions(stories)
    assert len(margins.pole) == len(positions) > 0
    for k, (row, position) in enumerate(positions):
        story = stories[row]
        assert story.words[position - 1] == story.entity  # position counts BOS
        lse = lambda words: float(torch.logsumexp(  # noqa: E731
            logits[row, position].double()[[vocab[w] for w in sorted(words)]], 0))
        firsts = {(a, p): {ph.split()[0] for ph in AXES[a][i]}
                  for a in AXES for i, p in enumerate(("high", "low"))}
        other = "low" if story.pole == "high" else "high"
        pole = lse(firsts[story.axis, story.pole]) - lse(firsts[story.axis, other])
        same = firsts[story.axis, "high"] | firsts[story.axis, "low"]
        rest = set().union(*(v for (a, _), v in firsts.items() if a != story.axis))
        assert margins.pole[k] == pytest.approx(pole, abs=1e-9)
        assert margins.axis[k] == pytest.approx(lse(same) - lse(rest), abs=1e-9)


def test_probe_accuracy_separates_and_does_not_invent():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 600)
    x = rng.standard_normal((600, 8))
    assert probe_accuracy(x, list(labels), seed=0) < 0.5  # chance is 1/3
    x[:, 0] += 5 * labels
    assert probe_accuracy(x, list(labels), seed=0) > 0.97
    with pytest.raises(ValueError, match="two classes"):
        probe_accuracy(x, [1] * 600, seed=0)


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="hook"):
        train_language_model(Language(), ModelConfig(n_layers=1, d_model=16, n_heads=2,
                                                     d_mlp=16, train_steps=1,
                                                     hook="blocks.3.hook_resid_post"), tmp_path)
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="no trained language model"):
        load_language_model(tmp_path / "nothing")
    language = Language()
    tokenizer = language.build_tokenizer(tmp_path / "tok")
    with pytest.raises(ValueError, match="context"):
        story_tokens(language, language.stories(2, seed=0), tokenizer, n_ctx=8)


def test_evaluation_is_deterministic(tiny_language_model):
    _, model, report = tiny_language_model
    assert evaluate_language_model(model, Language(), TINY_MODEL) == report["evaluation"]


def test_a_model_of_another_language_version_is_refused(tiny_language_model, tmp_path):
    import shutil

    directory, _, _ = tiny_language_model
    copy = shutil.copytree(directory, tmp_path / "old")
    vocab = json.loads((copy / "tokenizer.json").read_text())
    words = vocab["model"]["vocab"]
    words["dragon"] = words.pop("tired")  # as if trained before "tired" joined the language
    (copy / "tokenizer.json").write_text(json.dumps(vocab))
    with pytest.raises(ValueError, match="another version of the language"):
        load_language_model(copy)
