"""SAEBench's probe-ablation primitives, shared by TPP and SCR: probes, attribution, ablation.

Each function mirrors one function of SAEBench's `sae_bench/evals/scr_and_tpp/main.py` or
`sae_bench/evals/sparse_probing/probe_training.py` (adamkarvonen/SAEBench @ 8042bb38):

    balanced_probe_set   prepare_probe_data: a class against its paired class (SCR) or against
                         an equal number of samples drawn evenly from the other classes (TPP)
    train_probe          a linear probe (see the deviation below); accuracy = mean(logit > 0 == y)
    latent_effects       get_effects_per_class_precomputed_acts:
                             effect_j = (mean_pos f_j - mean_neg f_j) * (w . d_j)
                         with the mean difference clamped at 0 for TPP and |effect| for SCR
    select_top_n         select_top_n_features: the top min(n, #nonzero effects) latents
    ablate_latents       ablated_precomputed_activations: zero the selected latents and decode,
                         keeping the SAE error: x' = decode(f with f_S = 0) + (x - decode(f))
                         = x - f_S @ W_dec[S]

Deviation, by design of this project: SAEBench's SCR/TPP train their probes with torch
(`train_probe_gpu`: AdamW lr 1e-3, batch 16, 20 epochs, L1 1e-3, the epoch of best *test*
accuracy kept); here probes are scikit-learn's `LogisticRegression` (L2, C = 1, max_iter 1000,
SAEBench's `train_sklearn_probe` settings), deterministic and fitted without the test set.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

__all__ = ["LinearProbe", "balanced_probe_set", "train_probe", "probe_accuracy",
           "latent_effects", "select_top_n", "ablate_latents"]


class LinearProbe(NamedTuple):
    """A binary linear probe: predicts 1 where x @ weight + bias > 0.

    Attributes:
        weight: float64 [d_in].
        bias: float.
    """

    weight: np.ndarray
    bias: float

    def logits(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) @ self.weight + self.bias


def balanced_probe_set(positive: np.ndarray, negatives: list[np.ndarray], *,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a probing set: all `positive` rows (label 1) and as many negative rows (label 0).

    With one negative array (SCR's paired class) its rows are subsampled; with several (TPP's
    other classes) ceil(n_pos / n_classes) rows are drawn from each, then n_pos of those; the
    set is shuffled, as SAEBench's `prepare_probe_data` does.

    Args:
        positive: [n_pos, d] rows of the class.
        negatives: the other classes' rows, each [n_i, d].
        rng: the generator of the draws and the shuffle.

    Returns:
        x [2 n_pos, d] and labels int64 [2 n_pos].

    Raises:
        ValueError: no negatives, or fewer negative rows than positive rows.
    """
    if not negatives:
        raise ValueError("a probing set needs at least one negative class")
    n_pos = positive.shape[0]
    per_class = math.ceil(n_pos / len(negatives))
    drawn = [neg[rng.permutation(neg.shape[0])[:per_class]] for neg in negatives]
    pool = np.concatenate(drawn)
    if pool.shape[0] < n_pos:
        raise ValueError(f"only {pool.shape[0]} negative rows for {n_pos} positive rows")
    neg = pool[rng.permutation(pool.shape[0])[:n_pos]]
    x = np.concatenate([positive, neg])
    y = np.concatenate([np.ones(n_pos, np.int64), np.zeros(n_pos, np.int64)])
    order = rng.permutation(x.shape[0])
    return x[order], y[order]


def train_probe(x: np.ndarray, y: np.ndarray) -> LinearProbe:
    """An L2 logistic-regression probe (C = 1, lbfgs, max_iter 1000) fitted on x [n, d], y [n].

    Raises:
        ValueError: y is not binary with both classes present.
    """
    y = np.asarray(y)
    if set(np.unique(y).tolist()) != {0, 1}:
        raise ValueError(f"probe labels must contain both 0 and 1, got {np.unique(y).tolist()}")
    with warnings.catch_warnings():
        # separable classes (the oracle's) stop on max_iter with a finite, correct probe
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(C=1.0, max_iter=1000).fit(np.asarray(x, np.float64), y)
    return LinearProbe(model.coef_[0].astype(np.float64), float(model.intercept_[0]))


def probe_accuracy(probe: LinearProbe, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of rows where (logit > 0) equals the label, in [0, 1]."""
    return float(np.mean((probe.logits(x) > 0).astype(np.int64) == np.asarray(y)))


def latent_effects(latents: np.ndarray, y: np.ndarray, probe: LinearProbe, W_dec: np.ndarray,
                   *, absolute: bool) -> np.ndarray:
    """Each latent's attribution to a probe, float64 [d_sae].

    effect_j = delta_j * (w . d_j), delta_j = mean_{y=1} f_j - mean_{y=0} f_j; for TPP
    (absolute=False) delta is clamped at 0 (only latents more active on the class count), for
    SCR (absolute=True) the effect is |effect_j|.

    Args:
        latents: SAE latents of the probe's training rows, [n, d_sae].
        y: their labels [n] (1 = the class).
        probe: the class's probe.
        W_dec: decoder [d_sae, d_in].
        absolute: SCR's |effect| instead of TPP's clamped difference.
    """
    latents = np.asarray(latents, dtype=np.float64)
    y = np.asarray(y)
    pos, neg = latents[y == 1], latents[y == 0]
    delta = (pos.mean(0) if pos.shape[0] else np.zeros(latents.shape[1])) - (
        neg.mean(0) if neg.shape[0] else np.zeros(latents.shape[1]))
    if not absolute:
        delta = np.maximum(delta, 0.0)
    effects = delta * (np.asarray(W_dec, np.float64) @ probe.weight)
    return np.abs(effects) if absolute else effects


def select_top_n(effects: np.ndarray, n: int) -> np.ndarray:
    """Indices of the top-k effects, k = min(n, number of nonzero effects), largest first.

    As SAEBench's `select_top_n_features` (torch.topk over all effects, k capped by the count
    of nonzero effects); ties go to the lower index.

    Raises:
        ValueError: n < 1 or n > d_sae (callers clip N to d_sae first).
    """
    effects = np.asarray(effects, dtype=np.float64)
    if not 1 <= n <= effects.shape[0]:
        raise ValueError(f"n must be in [1, d_sae={effects.shape[0]}], got {n}")
    k = min(n, int(np.count_nonzero(effects)))
    return np.argsort(-effects, kind="stable")[:k]


def ablate_latents(x: np.ndarray, latents: np.ndarray, W_dec: np.ndarray,
                   selected: np.ndarray) -> np.ndarray:
    """x with the selected latents' decoded contribution removed, the SAE error kept.

    x' = decode(f with f_S = 0) + (x - decode(f)) = x - f_S @ W_dec[S], float64 [n, d_in].

    Args:
        x: activations [n, d_in].
        latents: their SAE latents f [n, d_sae].
        W_dec: decoder [d_sae, d_in].
        selected: latent indices S.
    """
    selected = np.asarray(selected, dtype=np.int64)
    x = np.asarray(x, dtype=np.float64)
    if selected.size == 0:
        return x
    return x - np.asarray(latents, np.float64)[:, selected] @ np.asarray(W_dec, np.float64)[
        selected]
