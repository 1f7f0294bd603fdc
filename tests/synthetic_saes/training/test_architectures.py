import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from synthetic_saes.training.architectures import (
    MemberKnobs,
    _batch_topk_mask,
    _topk_mask,
    aux_k_loss,
    forward,
    heaviside,
    inference_encode,
    jumprelu,
    matryoshka_inner_losses,
    member_knobs,
    sae_loss,
)
from synthetic_saes.training.config import TrainingConfig


def _params(rng, d_in=5, d_sae=8):
    return {
        "W_enc": jnp.asarray(rng.standard_normal((d_in, d_sae)), jnp.float32),
        "b_enc": jnp.asarray(rng.standard_normal(d_sae) * 0.1, jnp.float32),
        "W_dec": jnp.asarray(rng.standard_normal((d_sae, d_in)), jnp.float32),
        "b_dec": jnp.asarray(rng.standard_normal(d_in) * 0.1, jnp.float32),
        "log_threshold": jnp.full(d_sae, np.log(0.3), jnp.float32),
    }


def test_jumprelu_pseudo_derivatives_by_hand():
    pre = jnp.array([[0.9, 1.2, 2.0]])
    threshold = jnp.array([1.0, 1.0, 1.0])
    bandwidth = 0.5
    out = jumprelu(pre, threshold, bandwidth)
    assert out.tolist() == [[0.0, pytest.approx(1.2), 2.0]]
    g_pre, g_thr = jax.grad(lambda p, t: jumprelu(p, t, bandwidth).sum(), argnums=(0, 1))(
        pre, threshold)
    # d/dpre = H(pre - t); d/dt = -(t / bw) K((pre - t) / bw), K = 1 on |u| < 1/2
    assert g_pre.tolist() == [[0.0, 1.0, 1.0]]
    assert g_thr.tolist() == pytest.approx([-2.0, -2.0, 0.0])
    g_step = jax.grad(lambda t: heaviside(pre, t, bandwidth).sum())(threshold)
    assert g_step.tolist() == pytest.approx([-2.0, -2.0, 0.0])


@pytest.mark.parametrize("architecture, k", [("topk", 3), ("batchtopk", 3), ("relu_l1", None),
                                             ("jumprelu", None)])
def test_forward_sparsity_rules(architecture, k):
    rng = np.random.default_rng(0)
    p = _params(rng)
    x = jnp.asarray(rng.standard_normal((6, 5)), jnp.float32)
    out = forward(p, x, TrainingConfig(architecture=architecture, d_sae=8, k=k))
    active = np.asarray(out.latents != 0)
    if architecture == "topk":
        assert (active.sum(1) <= 3).all()
    if architecture == "batchtopk":
        assert active.sum() <= 3 * 6
    if architecture == "jumprelu":
        assert (np.asarray(out.latents)[active] > 0.3 - 1e-6).all()
    np.testing.assert_allclose(out.x_hat, np.asarray(out.latents) @ np.asarray(p["W_dec"])
                               + np.asarray(p["b_dec"]), rtol=1e-5, atol=1e-5)


def test_loss_is_mse_plus_penalty():
    rng = np.random.default_rng(1)
    p = _params(rng)
    x = jnp.asarray(rng.standard_normal((4, 5)), jnp.float32)
    cfg = TrainingConfig(architecture="relu_l1", d_sae=8, k=None, l1_coefficient=0.5)
    loss, (out, mse) = sae_loss(p, x, cfg)
    expected_mse = float(((np.asarray(out.x_hat) - np.asarray(x)) ** 2).sum(1).mean())
    assert float(mse) == pytest.approx(expected_mse, rel=1e-5)
    penalty = 0.5 * float(np.abs(np.asarray(out.latents)).sum(1).mean())
    assert float(loss) == pytest.approx(expected_mse + penalty, rel=1e-5)


def test_aux_k_is_zero_without_dead_latents_and_trains_only_dead_ones():
    rng = np.random.default_rng(2)
    p = _params(rng)
    x = jnp.asarray(rng.standard_normal((4, 5)), jnp.float32)
    cfg = TrainingConfig(architecture="topk", d_sae=8, k=2)
    _, (out, _) = sae_loss(p, x, cfg)
    none_dead = jnp.zeros(8, bool)
    assert float(aux_k_loss(p, x, out, none_dead, 2, 1.0)) == 0.0
    dead = jnp.array([True, True, False, False, False, False, False, False])
    grad = jax.grad(lambda q: aux_k_loss(q, x, forward(q, x, cfg), dead, 2, 1.0))(p)
    # only dead latents' decoder rows receive gradient from AuxK
    assert np.abs(np.asarray(grad["W_dec"])[2:]).max() == 0.0
    assert np.abs(np.asarray(grad["W_dec"])[:2]).max() > 0.0


def test_inference_encode_matches_the_sae_params_semantics():
    from synthetic_saes.sae_params import SAEParams

    rng = np.random.default_rng(3)
    p = _params(rng)
    x = rng.standard_normal((7, 5)).astype(np.float32)
    threshold = np.full(8, 0.2, np.float32)
    for arch, extra in (("relu", {}), ("topk", {"k": 3}), ("jumprelu", {"threshold": threshold})):
        ours = inference_encode(p, jnp.asarray(x), arch, **extra)
        sp = SAEParams(W_enc=p["W_enc"], b_enc=p["b_enc"], W_dec=p["W_dec"], b_dec=p["b_dec"],
                       architecture=arch, **extra)
        np.testing.assert_allclose(np.asarray(ours), sp.encode(x), atol=1e-5)


def _literal_topk_mask(values, k):
    """Each row's k largest entries in lax.top_k's total order: -0.0 below +0.0, equal values
    to the lower index."""
    mask = np.zeros(values.shape, bool)
    for r, row in enumerate(values):
        order = sorted(range(len(row)), key=lambda j: (-row[j], bool(np.signbit(row[j])), j))
        mask[r, order[:k]] = True
    return mask


_N, _D = 4, 7  # fixed shapes: one compilation serves every example
_row_mask = jax.jit(lambda v, k_used: _topk_mask(v, _D, k_used))
_batch_mask = jax.jit(lambda v, k_used: _batch_topk_mask(v, _D, k_used))


@given(st.integers(0, 10_000), st.integers(1, _D), st.booleans())
def test_topk_masks_at_a_larger_static_k_keep_exactly_the_top_k_used(seed, k_used, ties):
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((_N, _D)).astype(np.float32)
    if ties:  # coarse values: many exact ties (and -0.0), broken the same way in both paths
        values = np.round(values).astype(np.float32)
    ours = np.asarray(_row_mask(jnp.asarray(values), k_used))
    np.testing.assert_array_equal(ours, _literal_topk_mask(values, k_used))
    batch = np.asarray(_batch_mask(jnp.asarray(values), k_used))
    flat = _literal_topk_mask(values.reshape(1, -1), k_used * _N).reshape(values.shape)
    np.testing.assert_array_equal(batch, flat)


@pytest.mark.parametrize("k", [1, 3, _D])
def test_topk_masks_with_a_static_k_equal_the_literal_ones(k):
    values = np.round(np.random.default_rng(k).standard_normal((_N, _D))).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(_topk_mask(jnp.asarray(values), k)),
                                  _literal_topk_mask(values, k))
    flat = _literal_topk_mask(values.reshape(1, -1), k * _N).reshape(values.shape)
    np.testing.assert_array_equal(np.asarray(_batch_topk_mask(jnp.asarray(values), k)), flat)


@pytest.mark.parametrize("architecture", ["topk", "batchtopk", "matryoshka_batchtopk",
                                          "relu_l1", "jumprelu"])
def test_knobs_as_traced_values_give_the_config_loss_bit_for_bit(architecture):
    rng = np.random.default_rng(4)
    p = _params(rng)
    x = jnp.asarray(rng.standard_normal((6, 5)), jnp.float32)
    extra = {"matryoshka_widths": (2, 5, 8)} if architecture == "matryoshka_batchtopk" else {}
    small = TrainingConfig(architecture=architecture, d_sae=8, k=3, l1_coefficient=0.4,
                           l0_coefficient=0.6, **extra)
    wide = TrainingConfig(architecture=architecture, d_sae=8, k=7, l1_coefficient=9.0,
                          l0_coefficient=9.0, **extra)  # the group's template: k_max = 7
    knobs = jax.tree.map(lambda a: a[0], member_knobs([small]))
    expected, (out_e, _) = jax.jit(lambda q, y: sae_loss(q, y, small))(p, x)
    got, (out_g, _) = jax.jit(lambda q, y, kn: sae_loss(q, y, wide, kn))(p, x, knobs)
    assert float(got) == float(expected)
    np.testing.assert_array_equal(np.asarray(out_g.latents), np.asarray(out_e.latents))


def test_member_knobs_are_run_major_and_typed():
    cfgs = [TrainingConfig(architecture="topk", d_sae=8, k=2),
            TrainingConfig(architecture="topk", d_sae=8, k=5)]
    knobs = member_knobs(cfgs, repeats=3)
    assert isinstance(knobs, MemberKnobs)
    assert knobs.k.tolist() == [2, 2, 2, 5, 5, 5] and knobs.k.dtype == jnp.int32
    assert knobs.l1_coefficient.dtype == jnp.float32
    relu = member_knobs([TrainingConfig(architecture="relu_l1", k=None, l1_coefficient=0.25)])
    assert relu.k.tolist() == [0] and relu.l1_coefficient.tolist() == [0.25]


def _literal_matryoshka_losses(p, x, latents, widths):
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    latents, x = np.asarray(latents, np.float64), np.asarray(x, np.float64)
    out = []
    for w in widths[:-1]:
        recon = latents[:, :w] @ p["W_dec"][:w] + p["b_dec"]
        out.append(((recon - x) ** 2).sum(1).mean())
    return np.array(out)


@pytest.mark.parametrize("widths", [(8,), (1, 8), (3, 4, 8), (1, 2, 3, 4, 5, 6, 7, 8)])
def test_matryoshka_inner_losses_match_a_literal_prefix_decode(widths):
    rng = np.random.default_rng(len(widths))
    p = _params(rng)
    x = jnp.asarray(rng.standard_normal((6, 5)), jnp.float32)
    latents = jnp.asarray(np.maximum(rng.standard_normal((6, 8)), 0), jnp.float32)
    ours = np.asarray(matryoshka_inner_losses(p, x, latents, widths))
    np.testing.assert_allclose(ours, _literal_matryoshka_losses(p, x, latents, widths),
                               rtol=1e-5)
    assert ours.shape == (len(widths) - 1,)


def test_matryoshka_loss_by_hand():
    # one sample, two latents of widths (1, 2): inner level uses latent 0 only
    p = {"W_enc": jnp.eye(2, dtype=jnp.float32), "b_enc": jnp.zeros(2, jnp.float32),
         "W_dec": jnp.eye(2, dtype=jnp.float32), "b_dec": jnp.zeros(2, jnp.float32)}
    x = jnp.array([[3.0, 4.0]], jnp.float32)
    cfg = TrainingConfig(architecture="matryoshka_batchtopk", d_sae=2, k=2,
                         matryoshka_widths=(1, 2))
    loss, (_, mse) = sae_loss(p, x, cfg)
    assert float(mse) == 0.0  # both latents on, identity SAE
    assert float(loss) == pytest.approx(16.0)  # prefix (3, 0) misses 4 ** 2
