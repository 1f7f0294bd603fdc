"""Codes scored directly give an ordinary SAE's evaluate_quality scores."""

import numpy as np
import pytest

from groundtruth.metrics.codes_quality import codes_quality
from groundtruth.metrics.quality import evaluate_quality
from synthetic_saes.sae_params import SAEParams
from synthetic_saes.worlds import build_world


@pytest.mark.parametrize("architecture", ["relu", "topk"])
def test_an_sae_s_own_codes_give_its_evaluate_quality_scores(architecture):
    world = build_world("tiny")
    rng = np.random.default_rng(3)
    W = rng.standard_normal((48, world.d_in)).astype(np.float32)
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    sae = SAEParams(W_enc=W.T.copy(), b_enc=np.full(48, -0.1, np.float32), W_dec=W,
                    b_dec=np.zeros(world.d_in, np.float32), architecture=architecture,
                    k=5 if architecture == "topk" else None)
    sample = world.sample(2048, seed=1)
    expected = evaluate_quality(sae, world, sample=sample)
    codes = sae.encode(sample.hidden)
    got = codes_quality(codes, sae.decode(codes), sample.hidden, sample.features, sae.W_dec,
                        world.feature_directions)
    for name in ("mcc", "mmcs", "recovery", "uniqueness", "precision", "recall", "f1",
                 "explained_variance", "l0", "dead_latents"):
        assert got[name] == pytest.approx(getattr(expected, name), rel=1e-6, abs=1e-7), name


def test_perfect_codes_score_one_and_bad_shapes_are_named():
    G = np.eye(4, dtype=np.float32)
    a = np.array([[1, 0, 0, 0], [0, 2, 0, 0], [0, 0, 0, 3], [1, 0, 1, 0]], dtype=np.float32)
    got = codes_quality(a, a @ G, a @ G, a, G, G)
    assert got["f1"] == 1 and got["mcc"] == pytest.approx(1) and got["explained_variance"] == 1
    with pytest.raises(ValueError, match="shapes do not agree"):
        codes_quality(a[:3], a @ G, a @ G, a, G, G)
    with pytest.raises(ValueError, match="at least one sample"):
        codes_quality(a[:0], a[:0], a[:0], a[:0], G, G)
