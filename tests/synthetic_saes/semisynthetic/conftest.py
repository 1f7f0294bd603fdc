"""A small language model trained once per session (about 10 s) and its world."""

from __future__ import annotations

import pytest

from synthetic_saes.semisynthetic.model import ModelConfig

TINY_MODEL = ModelConfig(n_layers=2, d_model=48, n_heads=2, d_mlp=96, train_steps=300,
                         batch_size=16, lr=5e-3, eval_stories=64,
                         hook="blocks.0.hook_resid_post", seed=0)


@pytest.fixture(scope="session")
def tiny_language_model(tmp_path_factory):
    """(directory, model, report) of TINY_MODEL trained on the default language."""
    from synthetic_saes.semisynthetic.language import Language
    from synthetic_saes.semisynthetic.model import train_language_model

    directory = tmp_path_factory.mktemp("language_model")
    model, report = train_language_model(Language(), TINY_MODEL, directory)
    return directory, model, report


@pytest.fixture(scope="session")
def tiny_language_world(tiny_language_model):
    from synthetic_saes.semisynthetic.world import LanguageWorld, LanguageWorldConfig

    directory, _, _ = tiny_language_model
    config = LanguageWorldConfig(model=TINY_MODEL, fit_stories=256, quality_stories=64,
                                 stories_per_batch=64)
    return LanguageWorld.build(config, directory)


@pytest.fixture(scope="session")
def tiny_language_controls(tiny_language_world):
    """family -> SAEParams of the world's controls (the oracle fitted once)."""
    from synthetic_saes.families import make_controls

    return {c.family: c.params for c in make_controls(tiny_language_world)}
