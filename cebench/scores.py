"""CE-Bench's scores as pure functions of per-story latent means.

Notation (one row p of the dataset = a pair of stories A, B about one subject; n = d_sae):

    V1_p = mean over A's tokens of the latents a_t          [n]
    V2_p = mean over B's tokens                             [n]
    I1_p = mean over the tokens of A and B together         [n]   (token-weighted)
    Ibar = mean over rows of I1_p                           [n]   (dataset-level baseline)
    z(v) = (v - mean(v)) / std(v), over the n latents; std unbiased, std == 0 treated as 1

Final ("v4") algorithm, per row:
    C_p = max_j z(|V1 - V2|)_j                     contrastive
    D_p = max_j z(|I1 - Ibar|)_j                   independent
    J_p = max_j z(|V1 - V2| + |I1 - Ibar|)_j       interpretability
Marked-token ("v1") variant: V1, V2 as above; M_p / U_p = mean over the marked / unmarked
tokens of A and B together, and
    D_p = max_j z(|M - U|)_j,   J_p = max_j z(|V1 - V2| + |M - U|)_j
SAE level: C, I, J = means over rows of C_p, D_p, J_p; the argmax latent of each row is its
"responsible" latent.

Beside max pooling the reference reports the mean of z (always ~0: meaningless) and outlier
counts: the number of latents whose z lies beyond k population standard deviations of z from
the mean of z (k = 1, 2, 3; "both" sides or "upper" only).

Beyond the reference:
    sparsity_aware      C + I - alpha * L0, L0 = mean number of active latents per token over
                        the scored tokens (the paper's alpha = 0.25).
    *_calibrated        a score divided by its ceiling (n - 1) / sqrt(n): the largest value a
                        max z-score over n values can take (reached when exactly one latent
                        differs). The raw scores grow like sqrt(d_sae) for that reason alone; the
                        calibrated score is in [0, 1] and says how concentrated on one latent the
                        row's difference is, comparable across widths.
    ibar_zero_defect    reproduce the reference's defect (Ibar accumulated as `I2 += I2`, so
                        Ibar == 0 and D_p = max z(I1)); off by default, for published numbers.

References:
    Peng et al., "CE-Bench: Towards a Reliable Contrastive Evaluation Benchmark of
    Interpretability of Sparse Autoencoders", arXiv:2509.00691
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

__all__ = [
    "CEScores",
    "PerPairScores",
    "POOLINGS",
    "PAPER_ALPHA",
    "zscore",
    "zscore_ceiling",
    "pool",
    "segment_distances",
    "row_scores",
    "summarize",
    "score_latents",
    "check_latent_pairs",
    "check_variant",
    "scores_from_segment_means",
]

PAPER_ALPHA = 0.25
"""The L0 weight of CE-Bench's sparsity-aware score C + I - alpha L0 (the paper's choice)."""

Variant = Literal["v4", "v1"]
VARIANTS: tuple[str, ...] = ("v4", "v1")
POOLINGS: tuple[str, ...] = (
    "max", "mean",
    "outlier_count_1_both", "outlier_count_1_upper",
    "outlier_count_2_both", "outlier_count_2_upper",
    "outlier_count_3_both", "outlier_count_3_upper",
)


def zscore(values, xp=np):
    """z-scores along the last axis: (v - mean) / std, std unbiased, std == 0 -> 1.

    Args:
        values: float [..., n] with n >= 1 (numpy, or jax.numpy with xp=jnp).
        xp: the array namespace (numpy or jax.numpy).
    Returns:
        [..., n], in values' dtype.

    Examples:
        >>> zscore(np.array([1.0, 2.0, 3.0])).tolist()
        [-1.0, 0.0, 1.0]
        >>> zscore(np.array([5.0, 5.0])).tolist()
        [0.0, 0.0]
    """
    n = values.shape[-1]
    centred = values - values.mean(axis=-1, keepdims=True)
    # One latent: the unbiased std is undefined; treat it like a zero std (z = 0).
    std = xp.sqrt((centred**2).sum(axis=-1, keepdims=True) / max(n - 1, 1))
    return centred / xp.where((std == 0) | (n < 2), 1.0, std)


def zscore_ceiling(n):
    """The largest possible max_j z_j over n values, z with the unbiased std: (n - 1) / sqrt(n).

    The maximum is reached when one value stands out and the other n - 1 are equal. CE-Bench's
    scores are means over rows of such a max over the d_sae latents, so they are bounded by
    this ceiling with n = d_sae, which grows like sqrt(d_sae). With one value the z-score is 0
    by convention (`zscore`), and the ceiling is taken as 1 so a calibrated score is 0, not 0/0.

    Args:
        n: number of values (int or array), >= 1.

    Returns:
        (n - 1) / sqrt(n) where n >= 2, 1.0 where n == 1; a float, or a float array for an
        array `n`.

    Raises:
        ValueError: some n < 1 or not finite.

    Examples:
        >>> zscore_ceiling(4)
        1.5
        >>> v = np.array([1.0, 0.0, 0.0, 0.0])
        >>> float(((v - v.mean()) / v.std(ddof=1)).max())
        1.5
        >>> zscore_ceiling(np.array([1, 4])).tolist()
        [1.0, 1.5]
    """
    n = np.asarray(n, dtype=np.float64)
    if np.any(n < 1) or not np.all(np.isfinite(n)):
        raise ValueError(f"the z-score ceiling needs n >= 1 values, got {n}")
    out = np.where(n < 2, 1.0, (n - 1.0) / np.sqrt(n))
    return float(out) if out.ndim == 0 else out


def pool(z, xp=np) -> dict:
    """Every pooling of z-scores [..., n] over the last axis (see module docstring)."""
    out = {"max": z.max(axis=-1), "mean": z.mean(axis=-1)}
    mean = z.mean(axis=-1, keepdims=True)
    spread = z.std(axis=-1, keepdims=True)  # population std, as the reference's counts use
    for k in (1, 2, 3):
        upper = z > mean + k * spread
        lower = z < mean - k * spread
        out[f"outlier_count_{k}_both"] = (upper | lower).sum(axis=-1).astype(z.dtype)
        out[f"outlier_count_{k}_upper"] = upper.sum(axis=-1).astype(z.dtype)
    return out


def segment_distances(sums, counts, *, variant: str, ibar_zero_defect: bool, xp=np):
    """The two distance vectors of every row from per-segment latent sums.

    Segments per pair: v4 -> (A, B); v1 -> (A unmarked, A marked, B unmarked, B marked).

    Args:
        sums: float [n_pairs * segments_per_pair, d_sae].  counts: [same], tokens per segment.
    Returns:
        (contrast |V1 - V2|, independence |I1 - Ibar| or |M - U|), each [n_pairs, d_sae].
    """
    d_sae = sums.shape[-1]
    counts = counts.astype(sums.dtype)
    if variant == "v4":
        s = sums.reshape(-1, 2, d_sae)
        c = counts.reshape(-1, 2)
        mean_a, mean_b = s[:, 0] / c[:, :1], s[:, 1] / c[:, 1:]
        both = (s[:, 0] + s[:, 1]) / (c[:, 0] + c[:, 1])[:, None]
        baseline = xp.zeros(d_sae, sums.dtype) if ibar_zero_defect else both.mean(axis=0)
        independence = xp.abs(both - baseline)
    else:
        s = sums.reshape(-1, 4, d_sae)
        c = counts.reshape(-1, 4)
        mean_a = (s[:, 0] + s[:, 1]) / (c[:, 0] + c[:, 1])[:, None]
        mean_b = (s[:, 2] + s[:, 3]) / (c[:, 2] + c[:, 3])[:, None]
        marked = (s[:, 1] + s[:, 3]) / (c[:, 1] + c[:, 3])[:, None]
        unmarked = (s[:, 0] + s[:, 2]) / (c[:, 0] + c[:, 2])[:, None]
        independence = xp.abs(marked - unmarked)
    return xp.abs(mean_a - mean_b), independence


def row_scores(contrast, independence, xp=np) -> tuple[dict, dict]:
    """Every pooling and the argmax latent of the three scores of every row.

    Returns:
        (pooled[score][pooling] [n_pairs], argmax[score] [n_pairs]).
    """
    z = {"contrastive": zscore(contrast, xp), "independent": zscore(independence, xp),
         "interpretability": zscore(contrast + independence, xp)}
    return ({name: pool(v, xp) for name, v in z.items()},
            {name: v.argmax(axis=-1) for name, v in z.items()})


@dataclass(frozen=True, eq=False)
class PerPairScores:
    """Per-row scores (float64 [n_pairs]) and responsible latents (int64 [n_pairs]).

    `pooled[score][pooling]` holds every pooling of each score, float64 [n_pairs].
    """

    contrastive: np.ndarray
    independent: np.ndarray
    interpretability: np.ndarray
    contrastive_latent: np.ndarray
    independent_latent: np.ndarray
    interpretability_latent: np.ndarray
    pooled: dict[str, dict[str, np.ndarray]]

    @classmethod
    def from_rows(cls, pooled: dict, argmax: dict) -> PerPairScores:
        """From `row_scores`' output (numpy or device arrays)."""
        pooled = {score: {k: np.asarray(v, np.float64) for k, v in p.items()}
                  for score, p in pooled.items()}
        latents = {score: np.asarray(v, np.int64) for score, v in argmax.items()}
        return cls(
            contrastive=pooled["contrastive"]["max"],
            independent=pooled["independent"]["max"],
            interpretability=pooled["interpretability"]["max"],
            contrastive_latent=latents["contrastive"],
            independent_latent=latents["independent"],
            interpretability_latent=latents["interpretability"],
            pooled=pooled,
        )


@dataclass(frozen=True, eq=False)
class CEScores:
    """CE-Bench scores of one SAE on one dataset (see the module docstring).

    Attributes:
        contrastive, independent, interpretability: C, I, J (means over rows of max z).
        sparsity_aware: C + I - alpha * l0.
        contrastive_calibrated, independent_calibrated, interpretability_calibrated: C, I, J
            over the ceiling (d_sae - 1) / sqrt(d_sae), in [0, 1].
        l0: mean number of active latents per scored token.
        alpha: the sparsity weight used.
        variant: "v4" or "v1".
        ibar_zero_defect: whether the reference's Ibar == 0 defect was reproduced.
        n_pairs, d_sae, n_tokens: sizes.
        pooled: mean over rows of every pooling of each score, pooled[score][pooling].
        per_pair: the per-row scores and responsible latents.
    """

    contrastive: float
    independent: float
    interpretability: float
    sparsity_aware: float
    contrastive_calibrated: float
    independent_calibrated: float
    interpretability_calibrated: float
    l0: float
    alpha: float
    variant: str
    ibar_zero_defect: bool
    n_pairs: int
    d_sae: int
    n_tokens: int
    pooled: dict[str, dict[str, float]] = field(repr=False)
    per_pair: PerPairScores = field(repr=False)

    def metrics(self) -> dict[str, float]:
        """Flat scalar metrics (for result files): the scores and every pooled variant."""
        out = {
            "contrastive_score": self.contrastive,
            "independent_score": self.independent,
            "interpretability_score": self.interpretability,
            "sparsity_aware_score": self.sparsity_aware,
            "contrastive_score_calibrated": self.contrastive_calibrated,
            "independent_score_calibrated": self.independent_calibrated,
            "interpretability_score_calibrated": self.interpretability_calibrated,
            "l0": self.l0,
        }
        for score, poolings in self.pooled.items():
            for pooling, value in poolings.items():
                if pooling != "max":
                    out[f"{score}_score_{pooling}"] = value
        return out


def summarize(
    per_pair: PerPairScores,
    *,
    l0: float,
    alpha: float,
    variant: str,
    ibar_zero_defect: bool,
    d_sae: int,
    n_tokens: int,
) -> CEScores:
    """SAE-level scores from per-row scores."""
    if not np.isfinite(alpha):
        raise ValueError(f"alpha must be finite, got {alpha}")
    c = float(per_pair.contrastive.mean())
    i = float(per_pair.independent.mean())
    j = float(per_pair.interpretability.mean())
    ceiling = zscore_ceiling(d_sae)
    pooled = {score: {name: float(v.mean()) for name, v in poolings.items()}
              for score, poolings in per_pair.pooled.items()}
    result = CEScores(
        contrastive=c,
        independent=i,
        interpretability=j,
        sparsity_aware=c + i - alpha * float(l0),
        contrastive_calibrated=c / ceiling,
        independent_calibrated=i / ceiling,
        interpretability_calibrated=j / ceiling,
        l0=float(l0),
        alpha=float(alpha),
        variant=variant,
        ibar_zero_defect=bool(ibar_zero_defect),
        n_pairs=int(per_pair.contrastive.shape[0]),
        d_sae=int(d_sae),
        n_tokens=int(n_tokens),
        pooled=pooled,
        per_pair=per_pair,
    )
    bad = [k for k, v in result.metrics().items() if not np.isfinite(v)]
    if bad:  # never let a NaN reach a result file
        raise FloatingPointError(f"non-finite CE-Bench scores: {bad}")
    return result


def check_variant(variant: str, ibar_zero_defect: bool = False) -> None:
    """Raise ValueError for an unknown variant or the Ibar defect outside v4."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown CE-Bench variant {variant!r}; known: {list(VARIANTS)}")
    if ibar_zero_defect and variant != "v4":
        raise ValueError("ibar_zero_defect applies to the v4 variant only")


def scores_from_segment_means(
    sums: np.ndarray,
    counts: np.ndarray,
    *,
    variant: Variant,
    l0: float,
    alpha: float,
    ibar_zero_defect: bool,
) -> CEScores:
    """Scores from per-segment latent sums.

    Segments per pair: v4 -> (A, B); v1 -> (A unmarked, A marked, B unmarked, B marked).

    Args:
        sums: float [n_pairs * segments_per_pair, d_sae], summed latents of each segment.
        counts: [n_pairs * segments_per_pair], tokens in each segment.
    """
    check_variant(variant, ibar_zero_defect)
    sums = np.asarray(sums, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    d_sae = sums.shape[-1]
    n_tokens = int(counts.sum())
    contrast, independence = segment_distances(sums, counts, variant=variant,
                                               ibar_zero_defect=ibar_zero_defect)
    per_pair = PerPairScores.from_rows(*row_scores(contrast, independence))
    return summarize(per_pair, l0=l0, alpha=alpha, variant=variant,
                     ibar_zero_defect=ibar_zero_defect, d_sae=d_sae, n_tokens=n_tokens)


def check_latent_pairs(pairs, marked=None, *, variant: str = "v4", what: str = "latents"):
    """Validate pairs of [T, width] arrays (and v1 masks); return them as float arrays.

    Raises:
        ValueError: on an unknown variant, no pairs, a story that is not 2-D, an empty story,
            widths that differ, NaN or Inf values, or (v1) missing / mismatched masks, a row
            without marked tokens or without unmarked tokens.
    """
    check_variant(variant)
    pairs = list(pairs)
    if not pairs:
        raise ValueError("no story pairs to score")
    width = None
    checked = []
    for p, pair in enumerate(pairs):
        if len(pair) != 2:
            raise ValueError(f"pair {p} must be (story_a, story_b), got {len(pair)} items")
        stories = []
        for side, story in zip("ab", pair):
            story = np.asarray(story)
            if story.ndim != 2:
                raise ValueError(f"pair {p} story {side}: {what} must be [tokens, width], "
                                 f"got shape {story.shape}")
            if story.shape[0] == 0:
                raise ValueError(f"pair {p} story {side} is empty (no tokens)")
            if width is None:
                width = story.shape[1]
            elif story.shape[1] != width:
                raise ValueError(f"pair {p} story {side} has width {story.shape[1]}, "
                                 f"expected {width} like the first story")
            if not np.isfinite(story).all():
                raise ValueError(f"pair {p} story {side}: {what} contain NaN or Inf")
            stories.append(story)
        checked.append(tuple(stories))
    masks = None
    if variant == "v1":
        if marked is None:
            raise ValueError("the v1 variant needs `marked`: a (mask_a, mask_b) per pair")
        marked = list(marked)
        if len(marked) != len(checked):
            raise ValueError(f"got {len(marked)} mark pairs for {len(checked)} story pairs")
        masks = []
        for p, ((a, b), pair_masks) in enumerate(zip(checked, marked)):
            ma, mb = (np.asarray(m, dtype=bool) for m in pair_masks)
            if ma.shape != (a.shape[0],) or mb.shape != (b.shape[0],):
                raise ValueError(f"pair {p}: marks {ma.shape}, {mb.shape} do not match the "
                                 f"stories' token counts {a.shape[0]}, {b.shape[0]}")
            if not (ma.any() or mb.any()):
                raise ValueError(f"pair {p} has no marked tokens (v1 needs some)")
            if ma.all() and mb.all():
                raise ValueError(f"pair {p} has no unmarked tokens (v1 needs some)")
            masks.append((ma, mb))
    elif marked is not None:
        raise ValueError("`marked` is only used by the v1 variant")
    return checked, masks


def score_latents(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    variant: Variant = "v4",
    marked: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    alpha: float = PAPER_ALPHA,
    ibar_zero_defect: bool = False,
) -> CEScores:
    """CE-Bench scores of latent activations.

    Args:
        pairs: per row, (latents_a [T_a, d_sae], latents_b [T_b, d_sae]).
        variant: "v4" (final algorithm) or "v1" (marked-token independence).
        marked: v1 only, per row (mask_a bool [T_a], mask_b bool [T_b]).
        alpha: weight of L0 in the sparsity-aware score.
        ibar_zero_defect: reproduce the reference's Ibar == 0 defect (v4).

    Returns:
        CEScores; L0 counts latents != 0 per token over all scored tokens.

    Raises:
        ValueError: on bad input (see `check_latent_pairs`).
    """
    checked, masks = check_latent_pairs(pairs, marked, variant=variant)
    d_sae = checked[0][0].shape[1]
    sums, counts = [], []
    active = 0
    for p, (a, b) in enumerate(checked):
        active += int((a != 0).sum() + (b != 0).sum())
        if variant == "v4":
            parts = [a, b]
        else:
            ma, mb = masks[p]
            parts = [a[~ma], a[ma], b[~mb], b[mb]]
        for part in parts:
            sums.append(part.astype(np.float64).sum(axis=0) if len(part) else np.zeros(d_sae))
            counts.append(len(part))
    n_tokens = sum(a.shape[0] + b.shape[0] for a, b in checked)
    return scores_from_segment_means(
        np.stack(sums), np.asarray(counts), variant=variant, l0=active / n_tokens,
        alpha=alpha, ibar_zero_defect=ibar_zero_defect,
    )
