"""Sublayer reconstruction from residual SAEs: exact on exact dictionaries, equal to a literal
reference, and clear about bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from synthetic_saes.sae_params import SAEParams
from synthetic_saes.semisynthetic.sublayer import (
    SublayerSAE,
    language_sublayer_activations,
    residual_hooks_around,
    sublayer_activations,
)
from synthetic_saes.semisynthetic.tracr_models import load_tracr_model


def _exact_sae(d: int) -> SAEParams:
    """An SAE that reconstructs every x exactly: f = [relu(x), relu(-x)], W_dec = [I; -I]."""
    eye = np.eye(d, dtype=np.float32)
    return SAEParams(W_enc=np.concatenate([eye, -eye], axis=1), b_enc=np.zeros(2 * d),
                     W_dec=np.concatenate([eye, -eye]), b_dec=np.zeros(d))


def _random_sae(rng, d: int, d_sae: int, architecture: str = "relu") -> SAEParams:
    extra = {}
    if architecture == "jumprelu":
        extra["threshold"] = rng.uniform(0, 0.5, d_sae)
    if architecture == "topk":
        extra["k"] = min(3, d_sae)
    return SAEParams(W_enc=rng.normal(size=(d, d_sae)), b_enc=rng.normal(size=d_sae) * 0.1,
                     W_dec=rng.normal(size=(d_sae, d)), b_dec=rng.normal(size=d) * 0.1,
                     architecture=architecture, **extra)


def _literal(before: SAEParams, after: SAEParams, r_before, r_after):
    """Row by row, from the formulas: codes [f_a(r_a), -f_b(r_b)] and h_hat."""
    codes, recon = [], []
    for rb, ra in zip(r_before.astype(np.float64), r_after.astype(np.float64)):
        parts = []
        for sae, x, sign in ((after, ra, 1.0), (before, rb, -1.0)):
            pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
            f = np.maximum(pre, 0.0)
            if sae.architecture == "jumprelu":
                f = f * (pre > sae.threshold)
            if sae.architecture == "topk":
                keep = np.argsort(-pre, kind="stable")[:sae.k]
                mask = np.zeros_like(f)
                mask[keep] = 1.0
                f = f * mask
            parts.append(sign * f)
        code = np.concatenate(parts)
        codes.append(code)
        recon.append(parts[0] @ after.W_dec + after.b_dec
                     - (-parts[1]) @ before.W_dec - before.b_dec)
    d_sae = after.d_sae + before.d_sae
    return np.asarray(codes).reshape(-1, d_sae), np.asarray(recon).reshape(-1, after.d_in)


def test_exact_residual_saes_recover_the_attention_output_of_a_real_model():
    tracr = load_tracr_model("reverse")
    tokens = np.stack([tracr.encode([1, 3, 2, 2]).numpy(), tracr.encode([2, 1, 1, 3]).numpy()])
    for hook in ("blocks.3.hook_attn_out", "blocks.1.hook_mlp_out"):
        acts = sublayer_activations(tracr.model, tokens, hook)
        d = tracr.d_model
        rb, h, ra = (a.reshape(-1, d) for a in acts)
        assert np.abs(h).max() > 0.5  # the sublayer writes something here
        sae = SublayerSAE(before=_exact_sae(d), after=_exact_sae(d))
        np.testing.assert_allclose(sae.reconstruct(rb, ra), h, atol=1e-5)
        np.testing.assert_allclose(sae.decode(sae.encode(rb, ra)), h, atol=1e-5)
        np.testing.assert_allclose(sae.decode(sae.encode_sublayer(h, rb)), h, atol=1e-5)
        # one dictionary at both ends: the change of its code is the sublayer's code
        np.testing.assert_allclose(sae.shared_codes(rb, ra) @ sae.after.W_dec, h, atol=1e-5)


def test_planted_sparse_features_the_sublayer_writes_are_its_shared_code():
    rng = np.random.default_rng(0)
    d, k, n = 12, 8, 50
    basis = np.linalg.qr(rng.normal(size=(d, d)))[0][:k]  # k orthonormal feature directions
    carried = rng.exponential(size=(n, k)) * (rng.random((n, k)) < 0.3)
    written = rng.exponential(size=(n, k)) * (rng.random((n, k)) < 0.2)
    r_before = carried @ basis
    h = written @ basis
    sae = SAEParams(W_enc=basis.T, b_enc=np.zeros(k), W_dec=basis, b_dec=np.zeros(d))
    sub = SublayerSAE(before=sae, after=sae)
    assert sub.shared
    np.testing.assert_allclose(sub.shared_codes(r_before, r_before + h), written, atol=1e-5)
    codes = sub.encode(r_before, r_before + h)
    np.testing.assert_allclose(codes[:, :k], carried + written, atol=1e-5)
    np.testing.assert_allclose(codes[:, k:], -carried, atol=1e-5)
    np.testing.assert_allclose(sub.decode(codes), h, atol=1e-5)


@pytest.mark.parametrize("architecture", ["relu", "jumprelu", "topk"])
@pytest.mark.parametrize("n", [0, 1, 9])
def test_codes_and_reconstruction_equal_a_literal_reference(architecture, n):
    rng = np.random.default_rng(n)
    d = 6
    before = _random_sae(rng, d, 5, architecture)
    after = _random_sae(rng, d, 7, architecture)
    r_before = rng.normal(size=(n, d)).astype(np.float32)
    r_after = rng.normal(size=(n, d)).astype(np.float32)
    sub = SublayerSAE(before=before, after=after)
    codes, recon = _literal(before, after, r_before, r_after)
    assert sub.encode(r_before, r_after).shape == (n, 12)
    np.testing.assert_allclose(sub.encode(r_before, r_after), codes, atol=1e-4)
    np.testing.assert_allclose(sub.reconstruct(r_before, r_after), recon, atol=1e-4)
    np.testing.assert_allclose(sub.decode(sub.encode(r_before, r_after)), recon, atol=1e-4)
    assert sub.W_dec.shape == (12, d) and sub.d_sae == 12 and sub.d_in == d
    np.testing.assert_array_equal(sub.b_dec, after.b_dec - before.b_dec)


@given(st.integers(0, 2**31 - 1))
def test_decoding_the_codes_is_the_difference_of_the_two_reconstructions(seed):
    rng = np.random.default_rng(seed)
    d = int(rng.integers(1, 6))
    before, after = _random_sae(rng, d, int(rng.integers(1, 6))), _random_sae(rng, d, 4)
    r_before, r_after = rng.normal(size=(4, d)), rng.normal(size=(4, d))
    sub = SublayerSAE(before=before, after=after)
    expected = after.decode(after.encode(r_after)) - before.decode(before.encode(r_before))
    np.testing.assert_allclose(sub.decode(sub.encode(r_before, r_after)), expected,
                               rtol=1e-4, atol=1e-4)


def test_residual_hooks_around_sublayers_and_bad_hooks():
    assert residual_hooks_around("blocks.2.hook_mlp_out") == ("blocks.2.hook_resid_mid",
                                                              "blocks.2.hook_resid_post")
    for bad in ("blocks.0.hook_resid_mid", "attn_out", "blocks.x.hook_attn_out"):
        with pytest.raises(ValueError, match="is not a sublayer hook"):
            residual_hooks_around(bad)
    tracr = load_tracr_model("hist")
    with pytest.raises(ValueError, match="the model has no hook 'blocks.3.hook_resid_pre'"):
        sublayer_activations(tracr.model, tracr.encode(["a"])[None], "blocks.3.hook_attn_out")


def test_bad_input_is_a_clear_error():
    rng = np.random.default_rng(0)
    before, after = _random_sae(rng, 4, 3), _random_sae(rng, 4, 3)
    sub = SublayerSAE(before=before, after=after)
    with pytest.raises(ValueError, match="different residual widths"):
        SublayerSAE(before=_random_sae(rng, 5, 3), after=after)
    with pytest.raises(ValueError, match="before must be an SAEParams"):
        SublayerSAE(before="sae", after=after)
    with pytest.raises(ValueError, match=r"resid_after must be \[n, 4\]"):
        sub.encode(np.zeros((2, 4)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="resid_before has 2 rows but resid_after has 3"):
        sub.encode(np.zeros((2, 4)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="resid_before contains NaN"):
        sub.reconstruct(np.full((1, 4), np.nan), np.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"codes must be \[n, 6\]"):
        sub.decode(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="sublayer has 1 rows but resid_before has 2"):
        sub.encode_sublayer(np.zeros((1, 4)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="needs one dictionary at both ends"):
        sub.shared_codes(np.zeros((1, 4)), np.zeros((1, 4)))


def test_language_activations_line_up_with_the_world_at_the_sublayer(tiny_language_world):
    from dataclasses import replace

    from synthetic_saes.semisynthetic.world import LanguageWorld

    world = tiny_language_world
    stories = world.language.stories(5, seed=3)
    hook = "blocks.0.hook_attn_out"
    acts = language_sublayer_activations(world, stories, hook)
    at_sublayer = LanguageWorld(world.model, world.language, replace(world.config, hook=hook))
    np.testing.assert_array_equal(acts.sublayer, at_sublayer.story_activations(stories))
    assert acts.sublayer.shape == (sum(len(s.words) for s in stories), world.d_in)
    np.testing.assert_allclose(acts.resid_before + acts.sublayer, acts.resid_after, atol=1e-5)
