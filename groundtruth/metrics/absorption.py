"""Hierarchy-conditioned absorption: does a parent's latent stop firing when a child fires?

For every parent -> child edge (P, c) of the world's hierarchy, j(P) is the latent whose
decoder has the largest |cos| with P's direction (as in `quality`), and over samples where P
fires:

    recall_without = P(j(P) fires | P fires, c silent)
    recall_with    = P(j(P) fires | P fires, c fires)
    gap            = recall_without - recall_with          in [-1, 1]

A gap of 1 is full absorption (j(P) always fires for P alone and never alongside c), 0 none; a
negative gap is valid (j(P) fires more reliably with the child). An edge is *eligible* when both
conditions occur in the sample; `absorption_hierarchy` is the unweighted mean gap over eligible
edges (lower is better). This is the proposal of SAELens issue #729
(https://github.com/decoderesearch/SAELens/issues/729), whose per-edge record (indices, matched
latent and cosine, both denominators and success counts) `edge_absorption` returns.

Relation to `gt_absorption` (`quality`): both are about parent-child events, but gt_absorption
is the "A is for Absorption" rate: the fraction of (P and c fire) events, pooled over edges,
where j(P) is silent *and* the child's latent fires with a decoder carrying P's direction
(cos >= 0.2). It names the absorber and counts a parent latent that is simply weak as
absorbed. The gap here needs no absorber and subtracts j(P)'s recall without the child, so a
generally unreliable parent latent scores 0, and a parent that vanishes with no latent taking
its direction still counts; both are kept because they disagree exactly where the absorber
or the baseline recall matters.

Metric `absorption_hierarchy` (seed: the evaluation samples).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from groundtruth.metrics.matching import abs_cosine_matrix
from groundtruth.metrics.quality import as_params
from groundtruth.metrics.registry import register_metric

__all__ = ["EdgeAbsorption", "edge_absorption", "mean_absorption_gap"]


@dataclass(frozen=True, eq=False)
class EdgeAbsorption:
    """Per-edge absorption counts, each array [n_edges].

    Attributes:
        parent, child: int64 feature indices.
        latent: int64, the parent's best-|cos| latent j(P).
        cosine: float64, |cos(d_j(P), g_P)|.
        n_without, n_with: int64, samples where P fires and c is silent / fires.
        fires_without, fires_with: int64, how many of those j(P) fires on.
        eligible: bool, both n_without and n_with are positive.
        recall_without, recall_with, gap: float64, NaN where undefined (a zero denominator;
            `eligible` says where they are defined).
    """

    parent: np.ndarray
    child: np.ndarray
    latent: np.ndarray
    cosine: np.ndarray
    n_without: np.ndarray
    n_with: np.ndarray
    fires_without: np.ndarray
    fires_with: np.ndarray

    @property
    def eligible(self) -> np.ndarray:
        return (self.n_without > 0) & (self.n_with > 0)

    @property
    def recall_without(self) -> np.ndarray:
        return _ratio(self.fires_without, self.n_without)

    @property
    def recall_with(self) -> np.ndarray:
        return _ratio(self.fires_with, self.n_with)

    @property
    def gap(self) -> np.ndarray:
        return self.recall_without - self.recall_with


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def edge_absorption(sae, world, features: np.ndarray, hidden: np.ndarray) -> EdgeAbsorption:
    """The per-edge absorption table of `sae` on samples of `world`.

    Args:
        sae: an SAEParams (or anything `as_params` reads).
        world: supplies the hierarchy and the true directions.
        features: true feature activations of the samples, [n, n_features].
        hidden: their activations, [n, d_in].

    Raises:
        ValueError: the world has no parent -> child edge, or mismatched shapes.
    """
    params = as_params(sae)
    world.check_d_in(params.d_in)
    edges = world.hierarchy.parent_child_pairs()
    if edges.shape[0] == 0:
        raise ValueError("absorption_hierarchy is not applicable: the world's hierarchy has "
                         "no parent -> child edge")
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[1] != world.num_features \
            or features.shape[0] != np.asarray(hidden).shape[0]:
        raise ValueError(f"features must be [n, {world.num_features}] with one row per hidden "
                         f"row, got {features.shape} and {np.asarray(hidden).shape}")
    parents, children = edges[:, 0], edges[:, 1]
    cos = abs_cosine_matrix(params.W_dec, world.feature_directions)  # [d_sae, n_features]
    latent = cos[:, parents].argmax(axis=0).astype(np.int64)
    fires = features > 0
    latent_fires = params.encode(hidden)[:, latent] != 0  # [n, n_edges]
    p_on, c_on = fires[:, parents], fires[:, children]
    without, with_ = p_on & ~c_on, p_on & c_on
    return EdgeAbsorption(
        parent=parents, child=children, latent=latent,
        cosine=cos[latent, parents].astype(np.float64),
        n_without=without.sum(0).astype(np.int64), n_with=with_.sum(0).astype(np.int64),
        fires_without=(without & latent_fires).sum(0).astype(np.int64),
        fires_with=(with_ & latent_fires).sum(0).astype(np.int64))


def mean_absorption_gap(table: EdgeAbsorption) -> float:
    """Unweighted mean gap over eligible edges, in [-1, 1].

    Raises:
        ValueError: no edge is eligible (no sample had a parent with and without its child).
    """
    eligible = table.eligible
    if not eligible.any():
        raise ValueError(f"absorption_hierarchy is undefined: none of the {eligible.size} "
                         "edges had samples with the parent firing both with and without its "
                         "child")
    return float(table.gap[eligible].mean())


@register_metric("absorption_hierarchy", seed_changes="the evaluation samples",
                 kind="ground_truth", higher_is_better=False,
                 description="mean over parent->child edges of the parent latent's recall "
                             "without the child minus with it (SAELens #729)")
def _absorption_hierarchy(sae, data, seed: int) -> float:
    def compute():
        sample = data.eval_sample(seed)
        return edge_absorption(sae, data.world, sample.features, sample.hidden)

    return mean_absorption_gap(data.memo(sae, "absorption-hierarchy", seed, compute))
