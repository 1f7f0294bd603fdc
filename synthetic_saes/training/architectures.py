"""Per-seed SAE forward passes and losses in JAX, one pure function per architecture.

Parameters of one seed are a dict: W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in],
b_dec [d_in], and for jumprelu log_threshold [d_sae]. All losses are

    loss = mean_batch ||x - x_hat||^2 + sparsity penalty (+ AuxK for topk / batchtopk)

with the squared error summed over d_in (as sae_lens does), decoder rows at unit norm.
matryoshka_batchtopk adds, for every nested prefix width w of `matryoshka_widths` but the last,
mean_batch ||x - (latents[:, :w] @ W_dec[:w] + b_dec)||^2 (sae_lens's
MatryoshkaBatchTopKTrainingSAE).

The sparsity knob of one member (k, l1_coefficient, l0_coefficient) may be a traced scalar
(`MemberKnobs`), so runs that differ only in it share one compiled, vmapped step: topk and
batchtopk then select at the static k of the config (the group's largest) and keep the first
k of that sorted selection, which is exactly the selection at k (lax.top_k breaks ties by index).

References:
    Gao et al., "Scaling and evaluating sparse autoencoders" (TopK, AuxK), arXiv:2406.04093
    Bussmann et al., "BatchTopK sparse autoencoders", arXiv:2412.06410
    Rajamanoharan et al., "Jumping ahead: JumpReLU SAEs", arXiv:2407.14435
    Bussmann et al., "Learning multi-level features with Matryoshka SAEs", arXiv:2503.17547
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from synthetic_saes.training.config import TrainingConfig

__all__ = [
    "MemberKnobs",
    "member_knobs",
    "ForwardOutput",
    "pre_activations",
    "forward",
    "sae_loss",
    "aux_k_loss",
    "matryoshka_inner_losses",
    "jumprelu",
    "heaviside",
    "inference_encode",
]


class MemberKnobs(NamedTuple):
    """The sparsity knobs of one SAE (scalars) or of M stacked SAEs (each [M]).

    k: int32, active latents (topk family; at most the config's k); l1_coefficient,
    l0_coefficient: float32 penalty weights (relu_l1, jumprelu).
    """

    k: jax.Array
    l1_coefficient: jax.Array
    l0_coefficient: jax.Array


def member_knobs(configs, repeats: int = 1) -> MemberKnobs:
    """The knobs of each config, each repeated `repeats` times (run-major), as [M] arrays.

    For a topk-family config without k (never valid) k is 0; unused knobs keep their values.
    """
    def column(name, dtype):
        values = [getattr(c, name) or 0 for c in configs for _ in range(repeats)]
        return jnp.asarray(values, dtype)

    return MemberKnobs(column("k", jnp.int32), column("l1_coefficient", jnp.float32),
                       column("l0_coefficient", jnp.float32))


def _knobs(config: TrainingConfig, knobs: MemberKnobs | None) -> MemberKnobs:
    if knobs is not None:
        return knobs
    return MemberKnobs(None, config.l1_coefficient, config.l0_coefficient)


class ForwardOutput(NamedTuple):
    """pre [n, d_sae], latents [n, d_sae], x_hat [n, d_in]."""

    pre: jax.Array
    latents: jax.Array
    x_hat: jax.Array


def pre_activations(params: dict, x: jax.Array) -> jax.Array:
    return (x - params["b_dec"]) @ params["W_enc"] + params["b_enc"]


def _rectangle(u: jax.Array) -> jax.Array:
    return (jnp.abs(u) < 0.5).astype(u.dtype)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def jumprelu(pre: jax.Array, threshold: jax.Array, bandwidth: float) -> jax.Array:
    """pre * H(pre - threshold) for pre [n, d_sae], threshold [d_sae].

    Pseudo-derivative: d/dthreshold := -(threshold / bandwidth) K((pre - threshold) / bandwidth),
    K the rectangle kernel; d/dpre = H(pre - threshold).
    """
    return pre * (pre > threshold)


def _jumprelu_fwd(pre, threshold, bandwidth):
    return jumprelu(pre, threshold, bandwidth), (pre, threshold)


def _jumprelu_bwd(bandwidth, residual, g):
    pre, threshold = residual
    on = (pre > threshold).astype(pre.dtype)
    d_threshold = -(threshold / bandwidth) * _rectangle((pre - threshold) / bandwidth) * g
    return g * on, d_threshold.sum(axis=0)


jumprelu.defvjp(_jumprelu_fwd, _jumprelu_bwd)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def heaviside(pre: jax.Array, threshold: jax.Array, bandwidth: float) -> jax.Array:
    """H(pre - threshold); d/dthreshold := -(1 / bandwidth) K((pre - threshold) / bandwidth)."""
    return (pre > threshold).astype(pre.dtype)


def _heaviside_fwd(pre, threshold, bandwidth):
    return heaviside(pre, threshold, bandwidth), (pre, threshold)


def _heaviside_bwd(bandwidth, residual, g):
    pre, threshold = residual
    d_threshold = -(1.0 / bandwidth) * _rectangle((pre - threshold) / bandwidth) * g
    return jnp.zeros_like(pre), d_threshold.sum(axis=0)


heaviside.defvjp(_heaviside_fwd, _heaviside_bwd)


def _topk_mask(values: jax.Array, k: int, k_used: jax.Array | None = None) -> jax.Array:
    """Boolean mask of each row's k largest entries (only the first k_used <= k of them)."""
    _, idx = jax.lax.top_k(values, k)
    rows = jnp.arange(values.shape[0])[:, None]
    keep = True if k_used is None else jnp.arange(k) < k_used
    return jnp.zeros(values.shape, dtype=bool).at[rows, idx].set(keep)


def _batch_topk_mask(values: jax.Array, k: int, k_used: jax.Array | None = None) -> jax.Array:
    """Mask of the k * n largest entries of the whole [n, d_sae] batch (first k_used * n)."""
    flat = values.reshape(-1)
    n = values.shape[0]
    _, idx = jax.lax.top_k(flat, k * n)
    keep = True if k_used is None else jnp.arange(k * n) < k_used * n
    return jnp.zeros(flat.shape, dtype=bool).at[idx].set(keep).reshape(values.shape)


def forward(params: dict, x: jax.Array, config: TrainingConfig,
            knobs: MemberKnobs | None = None) -> ForwardOutput:
    """Training-time forward pass of one seed on x [n, d_in].

    knobs: this seed's sparsity knobs (traced scalars); None uses the config's. A knob k may
    not exceed config.k, the static width of the top-k selection.
    """
    k_used = None if knobs is None else knobs.k
    pre = pre_activations(params, x)
    arch = config.architecture
    if arch == "relu_l1":
        latents = jax.nn.relu(pre)
    elif arch == "topk":
        latents = jnp.where(_topk_mask(pre, config.k, k_used), jax.nn.relu(pre), 0.0)
    elif arch in ("batchtopk", "matryoshka_batchtopk"):
        acts = jax.nn.relu(pre)
        latents = jnp.where(_batch_topk_mask(acts, config.k, k_used), acts, 0.0)
    else:  # jumprelu
        latents = jumprelu(pre, jnp.exp(params["log_threshold"]), config.jumprelu_bandwidth)
    x_hat = latents @ params["W_dec"] + params["b_dec"]
    return ForwardOutput(pre, latents, x_hat)


def matryoshka_inner_losses(params: dict, x: jax.Array, latents: jax.Array,
                            widths: tuple[int, ...]) -> jax.Array:
    """[len(widths) - 1] reconstruction losses of the nested prefixes but the last (the whole
    SAE): for each w, mean_batch ||x - (latents[:, :w] @ W_dec[:w] + b_dec)||^2.

    Decoded cumulatively level by level, as sae_lens's `_iterable_decode` does.
    """
    decoded = params["b_dec"]
    losses = []
    start = 0
    for width in widths[:-1]:
        decoded = latents[:, start:width] @ params["W_dec"][start:width] + decoded
        losses.append(((decoded - x) ** 2).sum(-1).mean())
        start = width
    return jnp.stack(losses) if losses else jnp.zeros(0, x.dtype)


def sae_loss(params: dict, x: jax.Array, config: TrainingConfig,
             knobs: MemberKnobs | None = None):
    """(loss, (ForwardOutput, mse)) of one seed on the batch x [n, d_in].

    mse is the whole SAE's reconstruction loss; for matryoshka_batchtopk the loss adds the
    inner prefixes' (`matryoshka_inner_losses`). knobs: as in `forward`.
    """
    out = forward(params, x, config, knobs)
    coefficients = _knobs(config, knobs)
    mse = ((out.x_hat - x) ** 2).sum(-1).mean()
    if config.architecture == "relu_l1":
        penalty = coefficients.l1_coefficient * jnp.abs(out.latents).sum(-1).mean()
    elif config.architecture == "jumprelu":
        l0 = heaviside(out.pre, jnp.exp(params["log_threshold"]), config.jumprelu_bandwidth)
        penalty = coefficients.l0_coefficient * l0.sum(-1).mean()
    elif config.architecture == "matryoshka_batchtopk":
        penalty = matryoshka_inner_losses(params, x, out.latents, config.matryoshka_widths).sum()
    else:
        penalty = 0.0
    return mse + penalty, (out, mse)


def aux_k_loss(params: dict, x: jax.Array, out: ForwardOutput, dead: jax.Array, aux_k: int,
               coefficient: float) -> jax.Array:
    """AuxK: the top aux_k dead latents reconstruct the (stopped) residual x - x_hat.

    Scaled by min(#dead / aux_k, 1), as sae_lens and Gao et al. do; zero with no dead latent.
    """
    residual = jax.lax.stop_gradient(x - out.x_hat)
    masked = jnp.where(dead[None, :], out.pre, -jnp.inf)
    k = min(aux_k, dead.shape[0])
    acts = jnp.where(_topk_mask(masked, k) & dead[None, :], jax.nn.relu(out.pre), 0.0)
    recon = acts @ params["W_dec"]
    n_dead = dead.sum()
    scale = jnp.minimum(n_dead / aux_k, 1.0)
    return coefficient * scale * ((recon - residual) ** 2).sum(-1).mean()


def inference_encode(params: dict, x: jax.Array, architecture: str, *, k: int | None = None,
                     threshold: jax.Array | None = None) -> jax.Array:
    """Inference encode with the exported semantics (see `SAEParams`): relu / topk / jumprelu."""
    pre = pre_activations(params, x)
    acts = jax.nn.relu(pre)
    if architecture == "relu":
        return acts
    if architecture == "topk":
        return jnp.where(_topk_mask(pre, k), acts, 0.0)
    if architecture == "jumprelu":
        return jnp.where(pre > threshold, acts, 0.0)
    raise ValueError(f"unknown inference architecture {architecture!r}")
