"""Ground-truth quality of an SAE on a world: matching, detection, reconstruction, absorption.

`evaluate_quality(sae, world, n_samples=..., seed=...)` draws samples from the world (the
same samples for the same seed) and returns a `GroundTruthQuality`:

    decoder matching   MCC, MMCS, recovery@tau, uniqueness (see `matching`).
    detection          each latent j as a detector of its best-|cos| true feature k(j):
                       precision, recall, F1 of "latent fires" (f_j != 0) vs "feature fires"
                       (a_k > 0), averaged over all latents (dead latents count 0), plus
                       accuracy, as sae_lens's ClassificationMetricsCalculator computes them
                       (its best matches and formulas; the counts as exact integers).
    reconstruction     explained variance 1 - E||x - x_hat||^2 / E||x - mean x||^2, L0 (mean
                       active latents), dead latents (never active in n_samples), shrinkage
                       (mean ||x_hat|| / ||x||), all via sae_lens's calculators; true L0.
    absorption         for every parent -> child edge (P, c) of the hierarchy, an *event* is
                       a sample where both P and c fire. The event is *absorbed* when the
                       parent's latent j(P) is silent, the child's latent j(c) fires, and j(c)'s
                       decoder carries the parent direction: cos(d_j(c), g_P) >= absorption_cos.
                       j(f) is the latent whose decoder has the largest |cos| with g_f. The
                       absorption rate is absorbed events / events, pooled over edges (None when
                       the world has no hierarchy or no events occurred).

References:
    Chanin et al., "A is for Absorption" (2024), https://arxiv.org/abs/2409.14507
    sae_lens.synthetic.eval_sae_on_synthetic_data (the metrics shared with it are tested equal)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from sae_lens.evals import ExplainedVarianceCalculator
from sae_lens.synthetic import ClassificationMetricsCalculator, ShrinkageCalculator

from groundtruth.metrics.matching import MatchingScores, decoder_matching
from synthetic_saes.sae_params import SAEParams
from synthetic_saes.worlds import World, WorldSample

__all__ = ["GroundTruthQuality", "PerLatentDetection", "evaluate_quality", "as_params"]


@dataclass(frozen=True, eq=False)
class PerLatentDetection:
    """Per-latent detection scores, each float64 [d_sae]; `best_feature` int64 [d_sae]."""

    best_feature: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    firing_rate: np.ndarray


@dataclass(frozen=True, eq=False)
class GroundTruthQuality:
    """Ground-truth quality of one SAE on one world (see the module docstring).

    All scores are floats; higher is better except l0, dead_latents (lower better),
    absorption_rate (lower better) and shrinkage (best at 1).
    """

    mcc: float
    mmcs: float
    recovery: float
    recovery_tau: float
    uniqueness: float
    precision: float
    recall: float
    f1: float
    accuracy: float
    explained_variance: float
    l0: float
    true_l0: float
    dead_latents: int
    shrinkage: float
    absorption_rate: float | None
    absorption_events: int
    n_samples: int
    per_latent: PerLatentDetection

    def scalars(self) -> dict[str, float | int | None]:
        """The scalar fields as a flat dict (for reports)."""
        out = asdict(self)
        out.pop("per_latent")
        return out


def as_params(sae) -> SAEParams:
    """Accept `SAEParams`, anything with a `.params` SAEParams, or a sae_lens SAE."""
    if isinstance(sae, SAEParams):
        return sae
    params = getattr(sae, "params", None)
    if isinstance(params, SAEParams):
        return params
    if hasattr(sae, "cfg") and hasattr(sae, "W_dec"):
        return SAEParams.from_sae_lens(sae)
    raise TypeError(f"cannot read SAE weights from a {type(sae).__name__}")


def evaluate_quality(
    sae,
    world: World,
    *,
    n_samples: int = 16_384,
    seed: int = 0,
    batch_size: int = 4096,
    recovery_tau: float = 0.9,
    absorption_cos: float = 0.2,
    sample: WorldSample | None = None,
    matching: MatchingScores | None = None,
    latents: np.ndarray | None = None,
) -> GroundTruthQuality:
    """Ground-truth quality of `sae` on `world` over `n_samples` samples drawn with `seed`.

    `sample` (samples already drawn from `world`) replaces the draw, so many SAEs can share
    one sample; `matching` (this SAE's `decoder_matching`) skips recomputing it; `latents`
    (float32 [n, d_sae], this SAE's encoding of `sample.hidden`, e.g. from
    `groundtruth.metrics.batched.encoded_stack`) skips encoding.

    Raises:
        ValueError: if the SAE's d_in differs from the world's, n_samples <= 0, or latents
            given without a sample or not of shape [n, d_sae].
    """
    params = as_params(sae)
    world.check_d_in(params.d_in)
    if latents is not None:
        if sample is None:
            raise ValueError("latents are the encoding of a given sample: pass sample too")
        expected = (int(sample.hidden.shape[0]), params.d_sae)
        if np.shape(latents) != expected:
            raise ValueError(f"latents must have shape {expected}, got {np.shape(latents)}")
    if sample is not None:
        n_samples = int(sample.hidden.shape[0])
    if n_samples <= 0:
        raise ValueError(f"n_samples must be positive, got {n_samples}")
    G = world.feature_directions
    if matching is None:
        matching = decoder_matching(params.W_dec, G, recovery_tau=recovery_tau)

    shrinkage = ShrinkageCalculator()
    explained = ExplainedVarianceCalculator()
    detection = ClassificationMetricsCalculator(
        torch.from_numpy(params.W_dec.copy()), torch.from_numpy(G.copy())
    )
    best = detection.best_matches.numpy()
    # Counts as exact integers (sae_lens's L0, dead-latent and detection calculators sum the
    # same 0/1 values as float32, also exactly below 2**24): the same numbers, far faster.
    fires = np.zeros(params.d_sae, dtype=np.int64)
    true_active = 0
    true_positive = np.zeros(params.d_sae, dtype=np.int64)
    feature_fires = np.zeros(params.d_sae, dtype=np.int64)
    absorption = _AbsorptionCounter(world, params, matching.best_latent, absorption_cos)

    if sample is not None:
        batches = (WorldSample(sample.hidden[i:i + batch_size], sample.features[i:i + batch_size])
                   for i in range(0, n_samples, batch_size))
    else:
        batches = world.stream(min(batch_size, n_samples), seed=seed)
    done = 0
    for batch in batches:
        take = min(batch.hidden.shape[0], n_samples - done)
        x, a = batch.hidden[:take], batch.features[:take]
        z = (params.encode(x) if latents is None
             else np.asarray(latents[done:done + take], dtype=np.float32))
        x_hat = params.decode(z)
        xt, at = torch.from_numpy(x), torch.from_numpy(a)
        lt, xht = torch.from_numpy(z), torch.from_numpy(x_hat)
        shrinkage.add_batch(xht, xt)
        explained.add_batch(xht, xt)
        latent_fires, best_fires = z != 0, a[:, best] > 0
        fires += latent_fires.sum(axis=0)
        true_active += int(np.count_nonzero(a))
        true_positive += (latent_fires & best_fires).sum(axis=0)
        feature_fires += best_fires.sum(axis=0)
        absorption.add(a, z)
        done += take
        if done >= n_samples:
            break

    _set_counts(detection, true_positive, fires, feature_fires, done)
    summary = detection.compute()
    per_latent = _per_latent(detection, fires / n_samples)
    rate, events = absorption.result()
    return GroundTruthQuality(
        mcc=matching.mcc,
        mmcs=matching.mmcs,
        recovery=matching.recovery,
        recovery_tau=matching.recovery_tau,
        uniqueness=matching.uniqueness,
        precision=float(summary.precision),
        recall=float(summary.recall),
        f1=float(summary.f1_score),
        accuracy=float(summary.accuracy),
        explained_variance=float(explained.compute()),
        l0=float(fires.sum()) / done,
        true_l0=float(true_active) / done,
        dead_latents=int((fires == 0).sum()),
        shrinkage=float(shrinkage.compute()),
        absorption_rate=rate,
        absorption_events=events,
        n_samples=int(n_samples),
        per_latent=per_latent,
    )


def _set_counts(calc: ClassificationMetricsCalculator, true_positive: np.ndarray,
                latent_fires: np.ndarray, feature_fires: np.ndarray, n: int) -> None:
    """Give `calc` the per-latent counts its add_batch would have summed (float32, exact)."""
    false_positive = latent_fires - true_positive
    false_negative = feature_fires - true_positive
    true_negative = n - true_positive - false_positive - false_negative
    calc.tp, calc.fp, calc.fn, calc.tn = (
        torch.from_numpy(c.astype(np.float32))
        for c in (true_positive, false_positive, false_negative, true_negative))


def _per_latent(calc: ClassificationMetricsCalculator, firing_rate: np.ndarray):
    tp, fp, fn = (t.double().numpy() for t in (calc.tp, calc.fp, calc.fn))
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
    recall = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=(tp + fn) > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return PerLatentDetection(
        best_feature=calc.best_matches.numpy().astype(np.int64),
        precision=precision,
        recall=recall,
        f1=f1,
        firing_rate=np.asarray(firing_rate, dtype=np.float64),
    )


class _AbsorptionCounter:
    """Streams absorption events and absorbed events over parent -> child edges."""

    def __init__(self, world: World, params: SAEParams, best_latent: np.ndarray, min_cos: float):
        edges = world.hierarchy.parent_child_pairs()
        self.parents = edges[:, 0]
        self.children = edges[:, 1]
        self.parent_latent = best_latent[self.parents]
        self.child_latent = best_latent[self.children]
        decoder = params.W_dec / np.clip(
            np.linalg.norm(params.W_dec, axis=1, keepdims=True), 1e-8, None
        )
        # Signed: the child latent must write the parent direction, not its opposite.
        carries_parent = (
            np.einsum("ed,ed->e", decoder[self.child_latent], world.feature_directions[self.parents])
            >= min_cos
        )
        self.eligible = carries_parent & (self.child_latent != self.parent_latent)
        self.events = 0
        self.absorbed = 0

    def add(self, features: np.ndarray, latents: np.ndarray) -> None:
        if self.parents.size == 0:
            return
        fires = features > 0
        both = fires[:, self.parents] & fires[:, self.children]
        self.events += int(both.sum())
        if not self.eligible.any():
            return
        edges = np.flatnonzero(self.eligible)  # only edges whose child latent writes the parent
        parent_silent = latents[:, self.parent_latent[edges]] == 0
        child_fires = latents[:, self.child_latent[edges]] != 0
        self.absorbed += int((both[:, edges] & parent_silent & child_fires).sum())

    def result(self) -> tuple[float | None, int]:
        if self.events == 0:
            return None, 0
        return self.absorbed / self.events, self.events
