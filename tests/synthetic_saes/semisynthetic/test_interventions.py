import numpy as np
import pytest
import torch

from synthetic_saes.sae_params import SAEParams
from synthetic_saes.semisynthetic.interventions import (
    dictionary_interventions, pole_tokens, run_with_replaced, sae_interventions,
)
from synthetic_saes.semisynthetic.model import recall_margins, story_tokens


def _exact_sae(d: int) -> SAEParams:
    """ReLU SAE with latents +e_i and -e_i: reconstructs every input exactly."""
    eye = np.eye(d, dtype=np.float32)
    return SAEParams(W_enc=np.concatenate([eye, -eye], 1), b_enc=np.zeros(2 * d),
                     W_dec=np.concatenate([eye, -eye], 0), b_dec=np.zeros(d),
                     apply_b_dec_to_input=False)


def test_an_unedited_run_is_the_model(tiny_language_world):
    world = tiny_language_world
    stories = world.language.stories(4, seed=3)
    acts, logits = run_with_replaced(world, stories, None)
    tokens, mask = story_tokens(world.language, stories, world.tokenizer, world.model.cfg.n_ctx)
    with torch.no_grad():
        clean = world.model(torch.from_numpy(tokens), attention_mask=torch.from_numpy(mask).long())
    torch.testing.assert_close(logits, clean)
    np.testing.assert_allclose(acts, world.story_activations(stories), atol=1e-6)
    push = 5.0 * np.random.default_rng(0).standard_normal(world.d_in).astype(np.float32)
    edited_acts, edited = run_with_replaced(world, stories, lambda x: x + push,
                                            where=pole_tokens(stories))
    assert edited_acts.shape[0] == pole_tokens(stories).sum()
    margins = recall_margins(edited, stories, world.tokenizer).pole
    assert not np.allclose(margins, recall_margins(clean, stories, world.tokenizer).pole)


def test_an_exact_sae_is_sufficient_and_controls_like_a_full_patch(tiny_language_world):
    world = tiny_language_world
    scores = sae_interventions(world, _exact_sae(world.d_in), ks=(1, 2 * world.d_in),
                               n_stories=16, n_pairs=16)
    assert scores.sufficiency == pytest.approx(1.0, abs=1e-4)
    assert scores.clean_margin > 0 and scores.full_patch_success > 0.9
    # editing every latent is the full patch; one latent per token is not enough
    assert scores.control_success[2 * world.d_in] == pytest.approx(scores.full_patch_success)
    assert scores.control_success[1] < scores.control_success[2 * world.d_in]


def test_the_dictionary_is_sufficient_necessary_and_controls(tiny_language_world):
    scores = dictionary_interventions(tiny_language_world, n_stories=32, n_pairs=32)
    assert scores.sufficiency > 0.7
    assert scores.necessity > 0.7
    assert scores.control_success[0] > 0.8


def test_the_oracle_controls_and_a_random_sae_barely(tiny_language_world,
                                                     tiny_language_controls):
    def control(name):
        return sae_interventions(tiny_language_world, tiny_language_controls[name],
                                 n_stories=16, n_pairs=32, ks=(4,)).control_success[4]

    oracle, random = control("oracle"), control("random_init")
    assert oracle > random + 0.2 and random < 0.3


def test_bad_inputs_are_clear_errors(tiny_language_world):
    world = tiny_language_world
    with pytest.raises(ValueError, match="d_in"):
        sae_interventions(world, _exact_sae(world.d_in + 1))
    with pytest.raises(ValueError, match="k must be >= 1"):
        sae_interventions(world, _exact_sae(world.d_in), ks=(0,))
    with pytest.raises(ValueError, match="finite"):
        run_with_replaced(world, world.language.stories(2, seed=0),
                          lambda x: np.full_like(x, np.nan))


def _exact(d: int) -> SAEParams:
    eye = np.eye(d, dtype=np.float32)
    return SAEParams(W_enc=np.concatenate([eye, -eye], axis=1), b_enc=np.zeros(2 * d),
                     W_dec=np.concatenate([eye, -eye]), b_dec=np.zeros(d))


def test_a_sublayer_rebuilt_from_exact_residual_saes_acts_as_an_exact_sae_at_the_sublayer(
        tiny_language_world):
    from dataclasses import replace

    from synthetic_saes.semisynthetic.interventions import sublayer_interventions
    from synthetic_saes.semisynthetic.sublayer import SublayerSAE
    from synthetic_saes.semisynthetic.world import LanguageWorld

    base = tiny_language_world
    world = LanguageWorld(base.model, base.language,
                          replace(base.config, hook="blocks.0.hook_attn_out"),
                          model_report=base.model_report)
    exact = _exact(world.d_in)
    rebuilt = sublayer_interventions(world, SublayerSAE(before=exact, after=exact),
                                     n_stories=16, n_pairs=8)
    direct = sae_interventions(world, exact, n_stories=16, n_pairs=8, ks=(1,))
    assert rebuilt.sufficiency == pytest.approx(1.0, abs=1e-4)
    assert rebuilt.sufficiency == pytest.approx(direct.sufficiency, abs=1e-4)
    assert rebuilt.necessity == pytest.approx(direct.necessity, abs=1e-4)
    assert rebuilt.control_success == {}
    # a reconstruction that drops the sublayer entirely is not sufficient
    zero = SAEParams(W_enc=np.zeros((world.d_in, 1)), b_enc=-np.ones(1),
                     W_dec=np.zeros((1, world.d_in)), b_dec=np.zeros(world.d_in))
    dropped = sublayer_interventions(world, SublayerSAE(before=zero, after=zero),
                                     n_stories=16, n_pairs=8)
    assert dropped.sufficiency < rebuilt.sufficiency
