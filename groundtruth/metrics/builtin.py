"""The metrics the audit ships with, registered on import (see `groundtruth.metrics.registry`).

CE-Bench (seed: the contrastive corpus drawn from the world), for the final algorithm and, with
the suffix `_v1`, the marked-token variant:
    ce_contrastive, ce_independent, ce_interpretability   C, I, J
    ce_sparsity_aware                                    C + I - 0.25 L0 (the paper's predictor,
                                                         alpha = cebench.scores.PAPER_ALPHA)
    ce_width_calibrated                                  (C + I) / ((d_sae - 1) / sqrt(d_sae))
Ground truth (see `groundtruth.metrics.quality`):
    gt_mcc, gt_mmcs, gt_recovery, gt_uniqueness          decoder vs true features (deterministic)
    gt_f1, gt_precision, gt_recall                       latents as detectors (seed: samples)
    gt_absorption                                        absorption rate, lower is better
Reconstruction (seed: evaluation samples): explained_variance, l0.
k-sparse probing (seed: the probe samples and split): probe_k1, probe_k5, the mean test AUC of
    logistic probes on the k most class-separating latents over the ground-truth feature tasks.

Batch forms (`groundtruth.metrics.registry`): every metric that encodes a shared input (the
corpus, the evaluation sample, the probe sets) encodes it once for a stack of SAEs
(`groundtruth.metrics.batched.encoded_stack`, the same float32 operations as one SAE's encode)
and scores each SAE with the code of its single form; the decoder-only metrics (gt_mcc, ...)
have none (they encode nothing).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cebench.scores import PAPER_ALPHA, CEScores, score_latents, zscore_ceiling
from groundtruth.metrics.batched import encoded_stack
from groundtruth.metrics.matching import decoder_matching
from groundtruth.metrics.probing import k_sparse_probe
from groundtruth.metrics.quality import evaluate_quality
from groundtruth.metrics.registry import register_metric

__all__ = ["CE_METRICS"]


def _ce_scores(sae, data, seed: int, variant: str):
    corpus = data.corpus(seed)

    def latents():
        return [(sae.encode(p.hidden_a), sae.encode(p.hidden_b)) for p in corpus]

    def scores():
        pairs = data.memo(sae, "ce-latents", seed, latents)
        marked = corpus.marked_masks() if variant == "v1" else None
        return score_latents(pairs, variant=variant, marked=marked, alpha=PAPER_ALPHA)

    return data.memo(sae, f"ce-{variant}", seed, scores)


def _ce_scores_many(saes, data, seed: int, variant: str) -> list[CEScores]:
    """`_ce_scores` of each SAE of a stack: the corpus's stories, concatenated, encoded once
    for the stack, split back into stories and scored as the single form scores them."""
    def compute(missing):
        corpus = data.corpus(seed)
        stories = [h for p in corpus for h in (p.hidden_a, p.hidden_b)]
        ends = np.cumsum([len(h) for h in stories])[:-1]
        marked = corpus.marked_masks() if variant == "v1" else None
        out = []
        for _, latents in encoded_stack(missing, np.concatenate(stories)):
            parts = np.split(latents, ends)
            out.append(score_latents(list(zip(parts[0::2], parts[1::2])), variant=variant,
                                     marked=marked, alpha=PAPER_ALPHA))
        return out

    return data.memo_many(saes, f"ce-{variant}", seed, compute)


_CE_SCORES: dict[str, tuple[str, Callable[[CEScores], float]]] = {
    "ce_contrastive": ("CE-Bench contrastive score C", lambda s: s.contrastive),
    "ce_independent": ("CE-Bench independent score I", lambda s: s.independent),
    "ce_interpretability": ("CE-Bench interpretability score J", lambda s: s.interpretability),
    "ce_sparsity_aware": (f"C + I - {PAPER_ALPHA} L0", lambda s: s.sparsity_aware),
    "ce_width_calibrated": ("(C + I) over the max-z ceiling (d_sae - 1) / sqrt(d_sae)",
                            lambda s: (s.contrastive + s.independent) / zscore_ceiling(s.d_sae)),
}
_CE_VARIANTS = {"v4": ("", "final algorithm"), "v1": ("_v1", "marked-token variant")}

CE_METRICS: dict[str, tuple[str, Callable[[CEScores], float]]] = {
    f"{name}{suffix}": (variant, read)
    for variant, (suffix, _) in _CE_VARIANTS.items() for name, (_, read) in _CE_SCORES.items()}
"""Every CE metric: name -> (CE-Bench variant, its value read from a `CEScores`). Whatever
computes CE-Bench scores (here on a world's corpus, `noise_floor` on a real model's
activations) reads the metrics through this table."""


def _register_ce(variant: str) -> None:
    suffix, label = _CE_VARIANTS[variant]
    for name, (description, read) in _CE_SCORES.items():
        register_metric(
            f"{name}{suffix}", kind="ce", description=f"{description} ({label})",
            seed_changes="the contrastive corpus drawn from the world",
            batch=lambda saes, data, seed, read=read: [
                read(s) for s in _ce_scores_many(saes, data, seed, variant)])(
            lambda sae, data, seed, read=read: read(_ce_scores(sae, data, seed, variant)))


for _variant in _CE_VARIANTS:
    _register_ce(_variant)


def _matching(sae, data):
    return data.memo(sae, "matching", -1, lambda: decoder_matching(
        sae.W_dec, data.world.feature_directions))


def _quality(sae, data, seed: int):
    return data.memo(sae, "quality", seed, lambda: evaluate_quality(
        sae, data.world, sample=data.eval_sample(seed), matching=_matching(sae, data)))


def _quality_many(saes, data, seed: int):
    """`_quality` of each SAE of a stack: the evaluation sample encoded once for the stack."""
    def compute(missing):
        sample = data.eval_sample(seed)
        return [evaluate_quality(sae, data.world, sample=sample, matching=_matching(sae, data),
                                 latents=latents)
                for sae, latents in encoded_stack(missing, sample.hidden)]

    return data.memo_many(saes, "quality", seed, compute)


def _quality_value(name: str, quality, field: str) -> float:
    value = getattr(quality, field)
    if value is None:
        raise ValueError(f"{name} is undefined here (the world gave no events)")
    return value


def _register_quality(name: str, field: str, *, deterministic: bool, kind: str = "ground_truth",
                      higher_is_better: bool = True, description: str) -> None:
    seed_changes = "nothing" if deterministic else "the evaluation samples"

    def batch(saes, data, seed):
        return [_quality_value(name, q, field) for q in _quality_many(saes, data, seed)]

    @register_metric(name, seed_changes=seed_changes, kind=kind,
                     higher_is_better=higher_is_better, description=description,
                     batch=None if deterministic else batch)
    def metric(sae, data, seed):
        if deterministic:
            return getattr(_matching(sae, data), field)
        return _quality_value(name, _quality(sae, data, seed), field)


_register_quality("gt_mcc", "mcc", deterministic=True,
                  description="mean matched |cos| of latents and true features (Hungarian)")
_register_quality("gt_mmcs", "mmcs", deterministic=True,
                  description="mean over true features of the best |cos| with a latent")
_register_quality("gt_recovery", "recovery", deterministic=True,
                  description="fraction of true features recovered with |cos| > 0.9")
_register_quality("gt_uniqueness", "uniqueness", deterministic=True,
                  description="distinct best-matched features per latent")
_register_quality("gt_f1", "f1", deterministic=False,
                  description="per-latent F1 as a detector of its best-matched true feature")
_register_quality("gt_precision", "precision", deterministic=False,
                  description="per-latent precision as a detector")
_register_quality("gt_recall", "recall", deterministic=False,
                  description="per-latent recall as a detector")
_register_quality("gt_absorption", "absorption_rate", deterministic=False, higher_is_better=False,
                  description="fraction of parent+child events absorbed by the child latent")
_register_quality("explained_variance", "explained_variance", deterministic=False,
                  kind="reconstruction", description="1 - E|x - x_hat|^2 / E|x - mean x|^2")
_register_quality("l0", "l0", deterministic=False, kind="reconstruction",
                  higher_is_better=False, description="mean active latents per sample")


def _probe(sae, data, seed: int, k: int) -> float:
    def encoded():  # the probe sets' latents, shared by every k
        return [(sae.encode(t.train_x), t.train_y, sae.encode(t.test_x), t.test_y)
                for t in data.probe_sets(seed)]

    def run():
        tasks = data.memo(sae, "probe-latents", seed, encoded)
        aucs = [k_sparse_probe(tr, ytr, te, yte, k=min(k, sae.d_sae)).auc
                for tr, ytr, te, yte in tasks]
        return float(sum(aucs) / len(aucs))

    return data.memo(sae, f"probe-k{k}", seed, run)


def _probe_many(saes, data, seed: int, k: int) -> list[float]:
    """`_probe` of each SAE of a stack: every probe set's train and test examples,
    concatenated, encoded once for the stack."""
    def compute(missing):
        tasks = data.probe_sets(seed)
        inputs = [x for t in tasks for x in (t.train_x, t.test_x)]
        ends = np.cumsum([len(x) for x in inputs])[:-1]
        out = []
        for sae, latents in encoded_stack(missing, np.concatenate(inputs)):
            parts = np.split(latents, ends)
            aucs = [k_sparse_probe(tr, t.train_y, te, t.test_y, k=min(k, sae.d_sae)).auc
                    for t, tr, te in zip(tasks, parts[0::2], parts[1::2])]
            out.append(float(sum(aucs) / len(aucs)))
        return out

    return data.memo_many(saes, f"probe-k{k}", seed, compute)


for _k in (1, 5):
    register_metric(f"probe_k{_k}", seed_changes="the probe samples and the train/test split",
                    kind="probing",
                    description=f"mean test AUC of {_k}-sparse logistic probes on true features",
                    batch=lambda saes, data, seed, _k=_k: _probe_many(saes, data, seed, _k))(
        lambda sae, data, seed, _k=_k: _probe(sae, data, seed, _k))
