"""SAEBench's core reconstruction and sparsity metrics, as its core eval computes them.

From `sae_bench/evals/core/main.py` (`get_sparsity_and_variance_metrics`,
`calculate_misc_metrics`; SAEBench commit 8042bb38), on samples x [n, d_in] with latents
z = encode(x) [n, d_sae] and reconstructions x_hat = decode(z) [n, d_in], all the samples
forming one batch:

    explained_variance         1 - mean_i ||x_i - x_hat_i||^2 / (S - (S / d_in)^2),
                               S = mean_i ||x_i||^2. This is SAEBench's code as written
                               (`mean_act_per_dimension` holds E[x_d^2], not E[x_d], and
                               `torch.cat(...).mean()` averages it over d): the variance it
                               divides by is about zero, not about the mean (SAELens #659,
                               fixed there in #665). Our `explained_variance` metric uses the
                               textbook 1 - E||x - x_hat||^2 / E||x - mean x||^2.
    explained_variance_legacy  mean_i [1 - ||x_i - x_hat_i||^2 / ||x_i - mean_batch x||^2], the
                               per-token formula the SAEBench paper reports (SAEBench issue #76).
    cossim                     mean_i <x_i, x_hat_i> / (||x_i|| ||x_hat_i||), in [-1, 1].
    l2_ratio                   mean_i ||x_hat_i|| / ||x_i||, an ||x_i|| below 1e-4 read as 1.
    relative_reconstruction_bias  mean_i ||x_hat_i||^2 / mean_i <x_i, x_hat_i>
                               (Eq. 10 of arXiv:2404.16014); 1 is unbiased.
    l0                         mean_i #{j: z_ij != 0}.
    frac_alive                 fraction of latents j with z_ij > 0 for some i, in [0, 1].

SAEBench runs these over many language-model batches (and masks BOS / pad tokens); with equal
batches its batch means equal the means here, except the legacy formula's per-batch mean.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["CoreMetrics", "core_metrics"]


class CoreMetrics(NamedTuple):
    """SAEBench's core metrics of one SAE on one sample (see the module docstring)."""

    explained_variance: float
    explained_variance_legacy: float
    cossim: float
    l2_ratio: float
    relative_reconstruction_bias: float | None
    l0: float
    frac_alive: float


def core_metrics(x: np.ndarray, latents: np.ndarray, x_hat: np.ndarray) -> CoreMetrics:
    """SAEBench's core metrics from inputs, latents and reconstructions (float64 sums).

    Args:
        x: finite [n, d_in], n >= 2.  latents: finite [n, d_sae].  x_hat: finite [n, d_in].

    Returns:
        A `CoreMetrics`.

    Raises:
        ValueError: bad shapes, non-finite values, fewer than 2 samples, a zero input, a
            sample equal to the batch mean (its legacy ratio would be infinite) or zero total
            variance.

    A zero reconstruction (an SAE with b_dec = 0 where no latent fires: untrained, dead or
    random SAEs do this) has cosine 0 with its input, as torch's `cosine_similarity` has it;
    SAEBench's own formula divides by its zero norm and returns NaN for the whole batch.
    `relative_reconstruction_bias` is None when mean <x, x_hat> is 0 (it is not registered).

    Examples:
        >>> x = np.array([[1.0, 0.0], [0.0, 2.0]])
        >>> m = core_metrics(x, np.array([[1.0], [0.0]]), x)
        >>> m.cossim, m.l2_ratio, m.explained_variance, m.l0, m.frac_alive
        (1.0, 1.0, 1.0, 0.5, 1.0)
    """
    x = np.asarray(x, dtype=np.float64)
    z = np.asarray(latents)
    x_hat = np.asarray(x_hat, dtype=np.float64)
    if x.ndim != 2 or x_hat.shape != x.shape or z.ndim != 2 or z.shape[0] != x.shape[0]:
        raise ValueError(f"need x and x_hat [n, d_in] and latents [n, d_sae], got {x.shape}, "
                         f"{x_hat.shape} and {z.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 samples, got {x.shape[0]}")
    for name, a in (("x", x), ("latents", z), ("x_hat", x_hat)):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains NaN or Inf")
    norm_in = np.linalg.norm(x, axis=1)
    norm_out = np.linalg.norm(x_hat, axis=1)
    if (norm_in == 0).any():
        raise ValueError(f"{int((norm_in == 0).sum())} inputs are zero vectors: their cosine "
                         "similarity with a reconstruction is undefined")
    resid = ((x - x_hat) ** 2).sum(axis=1)
    around_mean = ((x - x.mean(axis=0)) ** 2).sum(axis=1)
    if (around_mean == 0).any():
        raise ValueError("a sample equals the batch mean: the legacy explained variance is "
                         "undefined")
    s = float((x**2).sum(axis=1).mean())
    total = s - (s / x.shape[1]) ** 2
    if total == 0:
        raise ValueError("the total variance of SAEBench's formula is zero")
    dot = (x * x_hat).sum(axis=1)
    cosine = np.divide(dot, norm_in * norm_out, out=np.zeros_like(dot), where=norm_out > 0)
    return CoreMetrics(
        explained_variance=float(1 - resid.mean() / total),
        explained_variance_legacy=float((1 - resid / around_mean).mean()),
        cossim=float(cosine.mean()),
        l2_ratio=float((norm_out / np.where(norm_in < 1e-4, 1.0, norm_in)).mean()),
        relative_reconstruction_bias=(float((norm_out**2).mean() / dot.mean())
                                      if dot.mean() != 0 else None),
        l0=float((z != 0).sum(axis=1).mean()),
        frac_alive=float((z > 0).any(axis=0).mean()),
    )
