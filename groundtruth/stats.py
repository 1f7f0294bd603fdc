"""Statistics of a metric-reliability audit: rank correlation, bootstrap, noise, discrimination.

Every statistic here is a plain function of numpy arrays (numpy and scipy only). The three
lenses of an audit (after Chanin 2026, "Are Sparse Autoencoder Benchmarks Reliable?") map to:

    reseed noise               `reseed_noise`, `minimum_detectable_difference`
    ground-truth correlation   `spearman`, `kendall`, `rank_correlation` (bootstrap CIs over
                               items), `partial_spearman` / `partial_rank_correlation`
                               (correlation that survives controlling for e.g. L0),
                               `ranking_agreement` (CE-Bench's headline statistic)
    discriminability           `trajectory_discriminability`, `variance_decomposition`

`bootstrap_ci` is the one percentile-bootstrap loop the others use.

Conventions:
    * Inputs are array-likes of real numbers; NaN or infinite values raise `ValueError`, as do
      mismatched lengths, too few items (the message says how many are needed and how many
      were given) and confidence levels outside (0, 1).
    * Randomness comes only from an explicit integer `seed`, turned into
      `np.random.default_rng(seed)` once; the same seed gives the same answer.
    * Results are frozen dataclasses of Python floats and ints.

References:
    Chanin (2026), "Are Sparse Autoencoder Benchmarks Reliable?" (the audit's three lenses;
        its exact statistic definitions were not public, so the ones here are our own).
    Gulko, Peng, Kumar (2025), "CE-Bench", https://arxiv.org/abs/2509.00691 (ranking agreement).
    Efron & Tibshirani (1993), "An Introduction to the Bootstrap", ch. 13 (percentile interval).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.stats

from synthetic_saes.validation import require_seed

__all__ = [
    # correlation with ground truth
    "spearman",
    "kendall",
    "RankCorrelation",
    "rank_correlation",
    "partial_spearman",
    "partial_rank_correlation",
    "explained_by_covariates",
    "ranking_agreement",
    "ranking_agreement_ci",
    "ranking_agreement_difference",
    "ranking_agreement_difference_ci",
    "spearman_ci",
    # reseed noise
    "ReseedNoise",
    "reseed_noise",
    "minimum_detectable_difference",
    "two_sided_z",
    # discriminability across training
    "Discriminability",
    "trajectory_discriminability",
    "variance_decomposition",
    "VARIANCE_SOURCES",
    # shared machinery
    "bootstrap_ci",
    "percentile_interval",
    "cluster_bootstrap_weights",
    "weighted_spearman",
    "weighted_kendall",
    "weighted_partial_spearman",
    "n_clusters",
]


# --------------------------------------------------------------------------------------------
# Validation (plain Python checks before any work; never `assert` on user input)
# --------------------------------------------------------------------------------------------


def _as_array(name: str, values, *, ndim: int | None = None) -> np.ndarray:
    """`values` as a float64 array, checked for rank and for NaN / infinite entries."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be an array of real numbers ({error})") from None
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {array.shape}")
    if np.isnan(array).any():
        raise ValueError(f"{name} contains NaN values ({int(np.isnan(array).sum())} of them)")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains infinite values")
    return array


def _as_vector(name: str, values) -> np.ndarray:
    return _as_array(name, values, ndim=1)


def _same_length(**vectors: np.ndarray) -> int:
    lengths = {name: len(v) for name, v in vectors.items()}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        raise ValueError(f"inputs must have the same number of items: {described}")
    return next(iter(lengths.values()))


def _need_items(what: str, needed: int, given: int) -> None:
    if given < needed:
        raise ValueError(f"{what} needs at least {needed} items, got {given}")


def _check_level(level: float) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float, np.floating)):
        raise ValueError(f"level must be a number in (0, 1), got {level!r}")
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be in (0, 1) (e.g. 0.95), got {level!r}")
    return float(level)


def _check_n_boot(n_boot: int) -> int:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    return int(n_boot)


def _check_std(name: str, std: float) -> float:
    if isinstance(std, bool):
        raise ValueError(f"{name} must be a non-negative real number, got {std!r}")
    try:
        value = float(std)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a non-negative real number, got {std!r}") from None
    if math.isnan(value):
        raise ValueError(f"{name} is NaN")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite non-negative number, got {std!r}")
    return value


def _is_constant(v: np.ndarray) -> bool:
    return bool(v.size == 0 or v.min() == v.max())


def _check_not_constant(name: str, v: np.ndarray) -> None:
    if _is_constant(v):
        raise ValueError(
            f"{name} is constant (all {len(v)} values equal), so its rank correlation is "
            "undefined"
        )


# --------------------------------------------------------------------------------------------
# The bootstrap
# --------------------------------------------------------------------------------------------


def bootstrap_ci(
    statistic: Callable[..., float],
    *arrays,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    batched: Callable[..., np.ndarray] | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of `statistic(*arrays)`, resampling rows.

    The arrays are the items of one sample, aligned on their first axis (all of length n):
    row i of every array belongs to item i. Each of the `n_boot` resamples draws n row indices
    uniformly with replacement, `idx = rng.integers(0, n, size=n)` with
    `rng = np.random.default_rng(seed)`, and evaluates
    `theta_b = statistic(*(a[idx] for a in arrays))`. The interval is

        (q_{(1 - level) / 2}(theta), q_{1 - (1 - level) / 2}(theta))

    with q the empirical quantiles of the valid theta_b (numpy's default linear interpolation).

    A statistic that is undefined on a resample (say, a rank correlation when the resample
    repeats one item n times) must return NaN: such resamples are *skipped*, so the interval
    is conditional on a well-defined resample. This matters only for tiny n.

    Args:
        statistic: function of the resampled arrays returning a float (NaN: undefined).
        *arrays: one or more arrays of real numbers, each of shape [n, ...].
        n_boot: number of bootstrap resamples (>= 1).
        level: confidence level in (0, 1); 0.95 gives a 95% interval.
        seed: integer seed; the same seed resamples the same rows.
        batched: optional vectorised form of `statistic`: given the resampled arrays stacked
            as [n_boot, n, ...] it returns the n_boot values (NaN where undefined). It sees
            the very same resamples (numpy draws the [n_boot, n] indices in the same order as
            n_boot draws of n), so the interval is identical, only faster.

    Returns:
        (low, high), Python floats, low <= high.

    Raises:
        ValueError: no arrays, arrays of different lengths, fewer than 2 items, NaN or
            infinite values, a bad level / n_boot / seed, or every resample undefined.

    Examples:
        >>> low, high = bootstrap_ci(np.mean, np.arange(10.0), n_boot=200, seed=0)
        >>> bool(low < 4.5 < high)
        True
    """
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array to resample")
    level = _check_level(level)
    n_boot = _check_n_boot(n_boot)
    seed = require_seed(seed)
    checked = []
    for k, a in enumerate(arrays):
        array = _as_array(f"array {k}", a)
        if array.ndim == 0:
            raise ValueError(f"array {k} must have at least one axis of items, got a scalar")
        checked.append(array)
    n = _same_length(**{f"array {k}": a for k, a in enumerate(checked)})
    _need_items("bootstrap_ci", 2, n)

    rng = np.random.default_rng(seed)
    if batched is not None:
        idx = rng.integers(0, n, size=(n_boot, n))
        thetas = np.asarray(batched(*(a[idx] for a in checked)), dtype=np.float64)
    else:
        thetas = np.empty(n_boot)
        for b in range(n_boot):
            idx = rng.integers(0, n, size=n)
            thetas[b] = float(statistic(*(a[idx] for a in checked)))
    return percentile_interval(thetas, level)


def percentile_interval(thetas, level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of bootstrap values: their (1 - level) / 2 and
    1 - (1 - level) / 2 quantiles (numpy's linear interpolation), NaNs (resamples where the
    statistic is undefined) skipped.

    Raises:
        ValueError: every value is NaN, or a bad level.
    """
    level = _check_level(level)
    thetas = np.asarray(thetas, dtype=np.float64)
    valid = thetas[~np.isnan(thetas)]
    if valid.size == 0:
        raise ValueError(
            f"the statistic was undefined (NaN) on all {thetas.size} bootstrap resamples")
    alpha = 1.0 - level
    low, high = np.quantile(valid, [alpha / 2, 1.0 - alpha / 2])
    return float(low), float(high)


# --------------------------------------------------------------------------------------------
# Cluster bootstrap: resampling dependent items by their independent units
# --------------------------------------------------------------------------------------------


def cluster_bootstrap_weights(clusters, *, n_boot: int = 2000, seed: int = 0,
                              strata=None) -> np.ndarray:
    """How many times each item appears in each resample of a two-stage cluster bootstrap.

    Items that share a cluster label are dependent (SAEs derived from one oracle, or trained
    from one configuration); clusters are independent. Each resample draws, within each
    stratum (the whole sample when `strata` is None), as many clusters as the stratum has,
    uniformly with replacement, and then, for every cluster drawn, as many of its items as it
    has, uniformly with replacement (Davison & Hinkley 1997, sec. 3.8, "resample clusters,
    then units within them"). A resample's statistic is the statistic of the sample in which
    item i appears W[b, i] times; `_weighted_*` compute it without building that sample.

    With every item its own cluster this is the ordinary bootstrap of items (as a count, not
    as an index array, so its random draws differ from `bootstrap_ci`'s).

    Args:
        clusters: [n] labels (any hashable values); items of one cluster must share a stratum.
        n_boot: resamples; seed: integer seed.
        strata: optional [n] labels: resample clusters within each stratum separately.

    Returns:
        int64 [n_boot, n] counts; each row sums, per stratum, to about the stratum's size
        (exactly when its clusters have equal sizes).

    Raises:
        ValueError: bad n_boot / seed, mismatched lengths, fewer than 2 items, or a cluster
            split across strata.

    Examples:
        >>> w = cluster_bootstrap_weights(["a", "a", "b", "c"], n_boot=3, seed=0)
        >>> w.shape, bool((w >= 0).all())
        ((3, 4), True)
    """
    n_boot = _check_n_boot(n_boot)
    seed = require_seed(seed)
    labels = np.asarray(clusters, dtype=object)
    if labels.ndim != 1:
        raise ValueError(f"clusters must be a 1-D array of labels, got shape {labels.shape}")
    n = len(labels)
    _need_items("cluster_bootstrap_weights", 2, n)
    layers = np.zeros(n, dtype=object) if strata is None else np.asarray(strata, dtype=object)
    if layers.shape != (n,):
        raise ValueError(f"strata must have one label per item ({n}), got shape {layers.shape}")
    keys = [(layer, label) for layer, label in zip(layers, labels)]
    stratum_of: dict = {}
    for layer, label in keys:
        if stratum_of.setdefault(label, layer) != layer:
            raise ValueError(f"cluster {label!r} lies in two strata ({stratum_of[label]!r} and "
                             f"{layer!r}); a cluster must sit inside one stratum")
    rng = np.random.default_rng(seed)
    weights = np.zeros((n_boot, n), dtype=np.int64)
    for layer in sorted(set(layers), key=repr):
        in_layer = [label for label in dict.fromkeys(labels[layers == layer])]
        k = len(in_layer)
        picks = rng.multinomial(k, np.full(k, 1.0 / k), size=n_boot)  # [B, clusters]
        for c, label in enumerate(in_layer):
            members = np.flatnonzero((labels == label) & (layers == layer))
            m = len(members)
            weights[:, members] += rng.multinomial(picks[:, c] * m, np.full(m, 1.0 / m))
    return weights


def n_clusters(clusters) -> int:
    """Number of distinct cluster labels: the independent units a clustered interval rests on."""
    return len(set(np.asarray(clusters, dtype=object).tolist()))


def _tie_groups(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(order, group of each sorted item, number of groups) for equal values of a vector."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    new = np.concatenate([[True], sorted_values[1:] != sorted_values[:-1]])
    group = np.cumsum(new) - 1
    return order, group, int(group[-1]) + 1


def _group_weights(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Total weight of each group of equal values: [B, n_groups]."""
    order, group, n_groups = _tie_groups(values)
    onehot = np.zeros((len(values), n_groups))
    onehot[np.arange(len(values)), group] = 1.0
    return weights[:, order].astype(np.float64) @ onehot


def _weighted_ranks(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average-tie ranks of every item in the sample where item i appears weights[b, i]
    times: [B, n] (items of weight 0 get the rank they would have, which has no effect)."""
    order, group, n_groups = _tie_groups(values)
    onehot = np.zeros((len(values), n_groups))
    onehot[np.arange(len(values)), group] = 1.0
    totals = weights[:, order].astype(np.float64) @ onehot  # [B, groups]
    midrank = np.cumsum(totals, axis=1) - totals + (totals + 1.0) / 2.0
    ranks = np.empty(weights.shape, dtype=np.float64)
    ranks[:, order] = midrank[:, group]
    return ranks


def _weighted_pearson(a: np.ndarray, b: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of a, b [B, n] with items weighted; NaN where a row
    has no spread."""
    w = weights.astype(np.float64)
    total = w.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):  # empty rows: NaN, as documented
        da = a - (w * a).sum(axis=1, keepdims=True) / total
        db = b - (w * b).sum(axis=1, keepdims=True) / total
        va, vb = (w * da * da).sum(axis=1), (w * db * db).sum(axis=1)
        r = (w * da * db).sum(axis=1) / np.sqrt(va * vb)
    r[~((va > 0) & (vb > 0))] = math.nan
    return np.clip(r, -1.0, 1.0)


def weighted_spearman(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Spearman's rho of every resample given as counts [B, n] (equal to `spearman` on the
    sample with item i repeated weights[b, i] times); NaN where x or y is constant."""
    return _weighted_pearson(_weighted_ranks(x, weights), _weighted_ranks(y, weights), weights)


def weighted_kendall(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of every resample given as counts [B, n] (equal to `kendall` on the
    expanded sample). Copies of one item are tied in both x and y:

        S  = sum_{i<j} w_i w_j sign(x_i - x_j) sign(y_i - y_j)
        n0 = N (N - 1) / 2,  N = sum_i w_i;  n_x = sum over groups of equal x of
        G (G - 1) / 2, G the group's total weight (copies included), n_y likewise
        tau_b = S / sqrt((n0 - n_x) (n0 - n_y))
    """
    w = weights.astype(np.float64)
    concordance = np.sign(x[:, None] - x[None, :]) * np.sign(y[:, None] - y[None, :])
    s = 0.5 * np.einsum("bi,ij,bj->b", w, concordance, w)
    total = w.sum(axis=1)
    n0 = total * (total - 1.0) / 2.0
    gx, gy = _group_weights(x, weights), _group_weights(y, weights)
    nx = (gx * (gx - 1.0) / 2.0).sum(axis=1)
    ny = (gy * (gy - 1.0) / 2.0).sum(axis=1)
    denom = (n0 - nx) * (n0 - ny)
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = s / np.sqrt(denom)
    tau[denom <= 0] = math.nan
    return np.clip(tau, -1.0, 1.0)


def weighted_partial_spearman(x: np.ndarray, y: np.ndarray, z: np.ndarray,
                               weights: np.ndarray) -> np.ndarray:
    """`partial_spearman` of every resample given as counts [B, n] (weighted least squares
    of the ranks on [1, ranks of z], then the weighted correlation of the residuals); NaN
    where x or y is constant or fully explained by the covariates."""
    w = weights.astype(np.float64)[:, :, None]  # [B, n, 1]
    rx, ry = _weighted_ranks(x, weights), _weighted_ranks(y, weights)
    rz = np.stack([_weighted_ranks(z[:, k], weights) for k in range(z.shape[1])], axis=2)
    design = np.concatenate([np.ones(rz.shape[:2] + (1,)), rz], axis=2)  # [B, n, k + 1]
    targets = np.stack([rx, ry], axis=2)  # [B, n, 2]
    coef = np.linalg.pinv(np.sqrt(w) * design) @ (np.sqrt(w) * targets)  # weighted LSQ
    total = w.sum(axis=1, keepdims=True)  # [B, 1, 1]
    residual = targets - design @ coef
    with np.errstate(invalid="ignore", divide="ignore"):  # empty rows: NaN, as documented
        residual -= (w * residual).sum(axis=1, keepdims=True) / total
        centred = targets - (w * targets).sum(axis=1, keepdims=True) / total
        norms = np.sqrt((w * residual**2).sum(axis=1))  # [B, 2]
        scale = np.sqrt((w * centred**2).sum(axis=1))
        r = (w[:, :, 0] * residual[:, :, 0] * residual[:, :, 1]).sum(axis=1) / (
            norms[:, 0] * norms[:, 1])
    undefined = ~np.all(norms > 1e-10 * np.maximum(scale, 1.0), axis=1)
    r[undefined] = math.nan
    return np.clip(r, -1.0, 1.0)


# --------------------------------------------------------------------------------------------
# Rank correlations
# --------------------------------------------------------------------------------------------


def _spearman_or_nan(x: np.ndarray, y: np.ndarray) -> float:
    if _is_constant(x) or _is_constant(y):
        return math.nan
    return float(scipy.stats.spearmanr(x, y).statistic)


def _kendall_or_nan(x: np.ndarray, y: np.ndarray) -> float:
    if _is_constant(x) or _is_constant(y):
        return math.nan
    return float(scipy.stats.kendalltau(x, y, variant="b").statistic)


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row pair of a, b [B, n]; NaN for a constant row."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denom = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=1) / denom
    r[denom <= 0] = math.nan
    return np.clip(r, -1.0, 1.0)


def _spearman_batch(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman rho of every resample (rows of x, y [B, n])."""
    return _pearson_rows(scipy.stats.rankdata(x, axis=1), scipy.stats.rankdata(y, axis=1))


def _kendall_batch(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall tau-b of every resample: sum sign(dx) sign(dy) / sqrt(sum sign(dx)^2 sum
    sign(dy)^2) over pairs i < j (equal to scipy's tau-b)."""
    i, j = np.triu_indices(x.shape[1], k=1)
    out = np.empty(x.shape[0])
    for start in range(0, x.shape[0], 256):  # bounds memory to 256 x n(n-1)/2
        sx = np.sign(x[start:start + 256, i] - x[start:start + 256, j])
        sy = np.sign(y[start:start + 256, i] - y[start:start + 256, j])
        denom = np.sqrt((sx * sx).sum(axis=1) * (sy * sy).sum(axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            tau = (sx * sy).sum(axis=1) / denom
        tau[denom <= 0] = math.nan
        out[start:start + 256] = tau
    return np.clip(out, -1.0, 1.0)


def _checked_pair(what: str, x, y, needed: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_vector("x", x), _as_vector("y", y)
    n = _same_length(x=x, y=y)
    _need_items(what, needed, n)
    return x, y


def spearman(x, y) -> float:
    """Spearman's rank correlation rho of x and y (scipy.stats.spearmanr).

    rho = Pearson correlation of rank(x) and rank(y), with tied values given their average
    rank. Range [-1, 1]: 1 when y is a strictly increasing function of x, -1 when strictly
    decreasing, about 0 when unrelated.

    Args:
        x, y: 1-D arrays of the same length n >= 2.

    Raises:
        ValueError: mismatched lengths, n < 2, NaN values, or a constant x or y (the
            correlation is undefined; no silent 0 or NaN is returned).

    Examples:
        >>> round(spearman([1, 2, 3, 4], [1, 3, 2, 4]), 6)
        0.8
    """
    x, y = _checked_pair("spearman", x, y, 2)
    _check_not_constant("x", x)
    _check_not_constant("y", y)
    return _spearman_or_nan(x, y)


def kendall(x, y) -> float:
    """Kendall's tau-b of x and y (scipy.stats.kendalltau, variant "b").

    tau_b = (P - Q) / sqrt((P + Q + T_x) (P + Q + T_y)) over all pairs i < j, where P counts
    concordant pairs (x and y ordered the same way), Q discordant pairs, T_x pairs tied only
    in x and T_y pairs tied only in y. Range [-1, 1], 1 for identical orderings.

    Args:
        x, y: 1-D arrays of the same length n >= 2.

    Raises:
        ValueError: mismatched lengths, n < 2, NaN values, or a constant x or y.

    Examples:
        >>> round(kendall([1, 2, 3, 4], [1, 3, 2, 4]), 4)
        0.6667
    """
    x, y = _checked_pair("kendall", x, y, 2)
    _check_not_constant("x", x)
    _check_not_constant("y", y)
    return _kendall_or_nan(x, y)


def spearman_ci(x, y, *, n_boot: int = 2000, level: float = 0.95,
                seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of Spearman's rho over items (rows of x, y resampled
    together; resamples where rho is undefined are skipped, see `bootstrap_ci`)."""
    return bootstrap_ci(_spearman_or_nan, x, y, n_boot=n_boot, level=level, seed=seed,
                        batched=_spearman_batch)


@dataclass(frozen=True)
class RankCorrelation:
    """Rank correlation of a metric with ground truth across n items, with bootstrap CIs.

    Attributes:
        spearman: Spearman's rho on the data (see `spearman`).
        spearman_ci95: percentile bootstrap interval of rho over items, at the `level` asked
            for (0.95 by default, hence the name).
        kendall: Kendall's tau-b on the data (see `kendall`).
        kendall_ci95: percentile bootstrap interval of tau-b, same resamples as rho's.
        n: number of items (e.g. SAEs).
        n_units: independent units the intervals resample: the number of clusters, or n.
        resampled: what a resample draws ("items", or "clusters, then items within them").
    """

    spearman: float
    spearman_ci95: tuple[float, float]
    kendall: float
    kendall_ci95: tuple[float, float]
    n: int
    n_units: int = 0
    resampled: str = "items"


CLUSTERED = "clusters, then items within them"


def _checked_clusters(clusters, n: int) -> np.ndarray:
    labels = np.asarray(clusters, dtype=object)
    if labels.shape != (n,):
        raise ValueError(f"clusters must have one label per item ({n}), got shape {labels.shape}")
    return labels


def rank_correlation(
    x, y, *, clusters=None, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> RankCorrelation:
    """Spearman and Kendall correlations of x and y with percentile bootstrap CIs.

    The point estimates are computed on the data. Without `clusters` the intervals come from
    `bootstrap_ci`, resampling items (the pairs (x_i, y_i)) with replacement. With
    `clusters` (one label per item; items of a cluster are dependent, clusters independent)
    they come from the two-stage cluster bootstrap (`cluster_bootstrap_weights`): clusters
    with replacement, then items within each cluster drawn. Both intervals use the same
    resamples. Resamples in which x or y is constant leave the correlation undefined and are
    skipped.

    Args:
        x, y: 1-D arrays of the same length n >= 4 (e.g. metric and ground truth per SAE).
        clusters: optional [n] labels of the independent units.
        n_boot: bootstrap resamples; level: confidence level in (0, 1); seed: integer seed.

    Raises:
        ValueError: mismatched lengths, n < 4, NaN values, constant x or y, bad level.
    """
    x, y = _checked_pair("rank_correlation", x, y, 4)
    _check_not_constant("x", x)
    _check_not_constant("y", y)
    boot = dict(n_boot=n_boot, level=level, seed=seed)
    if clusters is None:
        return RankCorrelation(
            spearman=_spearman_or_nan(x, y),
            spearman_ci95=spearman_ci(x, y, **boot),
            kendall=_kendall_or_nan(x, y),
            kendall_ci95=bootstrap_ci(_kendall_or_nan, x, y, batched=_kendall_batch, **boot),
            n=len(x), n_units=len(x),
        )
    labels = _checked_clusters(clusters, len(x))
    weights = cluster_bootstrap_weights(labels, n_boot=n_boot, seed=seed)
    return RankCorrelation(
        spearman=_spearman_or_nan(x, y),
        spearman_ci95=percentile_interval(weighted_spearman(x, y, weights), level),
        kendall=_kendall_or_nan(x, y),
        kendall_ci95=percentile_interval(weighted_kendall(x, y, weights), level),
        n=len(x), n_units=n_clusters(labels), resampled=CLUSTERED,
    )


# --------------------------------------------------------------------------------------------
# Partial rank correlation
# --------------------------------------------------------------------------------------------


def _covariate_matrix(covariates, n: int) -> np.ndarray:
    z = _as_array("covariates", covariates)
    if z.ndim == 1:
        z = z[:, None]
    if z.ndim != 2:
        raise ValueError(f"covariates must have shape [n] or [n, n_covariates], got {z.shape}")
    if z.shape[0] != n:
        raise ValueError(
            f"inputs must have the same number of items: x and y have {n}, "
            f"covariates has {z.shape[0]}"
        )
    if z.shape[1] < 1:
        raise ValueError("covariates must have at least one column")
    return z


def _partial_spearman_or_nan(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    rx = scipy.stats.rankdata(x)
    ry = scipy.stats.rankdata(y)
    rz = scipy.stats.rankdata(z, axis=0)
    design = np.column_stack([np.ones(len(x)), rz])
    coef, *_ = np.linalg.lstsq(design, np.column_stack([rx, ry]), rcond=None)
    residual = np.column_stack([rx, ry]) - design @ coef
    residual -= residual.mean(axis=0)
    norms = np.linalg.norm(residual, axis=0)
    scale = np.linalg.norm(np.column_stack([rx, ry]) - np.column_stack([rx, ry]).mean(0), axis=0)
    # A residual that is zero up to rounding: x (or y) is fully explained by the covariates.
    if np.any(norms <= 1e-10 * np.maximum(scale, 1.0)):
        return math.nan
    r = float(residual[:, 0] @ residual[:, 1] / (norms[0] * norms[1]))
    return min(1.0, max(-1.0, r))


def _partial_spearman_batch(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """`_partial_spearman_or_nan` of every resample: x, y [B, n], z [B, n, k]."""
    rx = scipy.stats.rankdata(x, axis=1)
    ry = scipy.stats.rankdata(y, axis=1)
    rz = scipy.stats.rankdata(z, axis=1)
    design = np.concatenate([np.ones(rz.shape[:2] + (1,)), rz], axis=2)
    targets = np.stack([rx, ry], axis=2)
    coef = np.linalg.pinv(design) @ targets  # least squares per resample
    residual = targets - design @ coef
    residual -= residual.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(residual, axis=1)
    scale = np.linalg.norm(targets - targets.mean(axis=1, keepdims=True), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (residual[:, :, 0] * residual[:, :, 1]).sum(axis=1) / (norms[:, 0] * norms[:, 1])
    undefined = np.any(norms <= 1e-10 * np.maximum(scale, 1.0), axis=1)
    r[undefined] = math.nan
    return np.clip(r, -1.0, 1.0)


def partial_spearman(x, y, covariates) -> float:
    """Partial Spearman correlation of x and y controlling for the covariates.

    With R(.) the average-tie rank transform applied to x, y and each covariate column:
    regress R(x) and R(y) by least squares on [1, R(z_1), ..., R(z_k)] (an intercept plus the
    covariate ranks) and return the Pearson correlation of the two residual vectors.
    Range [-1, 1]; it is the rank association of x and y that the covariates (e.g. L0) do not
    explain. With one covariate z it equals, with r the Spearman correlations,

        (r_xy - r_xz r_yz) / sqrt((1 - r_xz^2) (1 - r_yz^2)).

    Args:
        x, y: 1-D arrays of length n.
        covariates: shape [n] (one covariate) or [n, k]; n >= k + 4.

    Raises:
        ValueError: mismatched lengths, n < k + 4, NaN values, constant x or y, or x or y
            fully explained by the covariates (zero residual: the correlation is undefined).

    Examples:
        >>> z = [1, 2, 3, 4, 5]
        >>> round(partial_spearman([1, 3, 2, 5, 4], [2, 1, 4, 3, 5], z), 6)  # -17/18
        -0.944444
    """
    x, y = _checked_pair("partial_spearman", x, y, 1)
    z = _covariate_matrix(covariates, len(x))
    _need_items(f"partial_spearman with {z.shape[1]} covariate(s)", z.shape[1] + 4, len(x))
    _check_not_constant("x", x)
    _check_not_constant("y", y)
    r = _partial_spearman_or_nan(x, y, z)
    if math.isnan(r):
        raise ValueError(
            "x or y is fully explained by the covariates (zero residual after regressing "
            "ranks on covariate ranks), so the partial correlation is undefined"
        )
    return r


def explained_by_covariates(values, covariates) -> bool:
    """Whether the ranks of `values` are, up to rounding, a linear function of an intercept
    and the covariates' ranks (so a partial correlation controlling them is undefined: e.g. a
    metric that only measures width and L0). A constant vector counts as explained.

    Examples:
        >>> explained_by_covariates([3, 1, 2, 5], [30, 10, 20, 50])
        True
        >>> explained_by_covariates([3, 1, 2, 5], [10, 30, 20, 50])
        False
    """
    v = _as_vector("values", values)
    z = _covariate_matrix(covariates, len(v))
    rv = scipy.stats.rankdata(v)
    design = np.column_stack([np.ones(len(v)), scipy.stats.rankdata(z, axis=0)])
    coef, *_ = np.linalg.lstsq(design, rv, rcond=None)
    residual = rv - design @ coef
    return bool(np.linalg.norm(residual - residual.mean())
                <= 1e-10 * max(float(np.linalg.norm(rv - rv.mean())), 1.0))


def partial_rank_correlation(
    x, y, covariates, *, clusters=None, n_boot: int = 2000, level: float = 0.95,
    seed: int = 0,
) -> tuple[float, tuple[float, float]]:
    """`partial_spearman(x, y, covariates)` and its percentile bootstrap interval.

    Items (rows of x, y and covariates together) are resampled with replacement by
    `bootstrap_ci`, or, with `clusters`, by the two-stage cluster bootstrap (as in
    `rank_correlation`); resamples where the partial correlation is undefined (constant x or
    y, or a zero residual) are skipped.

    Returns:
        (estimate, (low, high)).

    Raises:
        ValueError: as `partial_spearman`, plus a bad level / n_boot / seed.
    """
    estimate = partial_spearman(x, y, covariates)
    x, y = _as_vector("x", x), _as_vector("y", y)
    z = _covariate_matrix(covariates, len(x))
    if clusters is not None:
        weights = cluster_bootstrap_weights(_checked_clusters(clusters, len(x)), n_boot=n_boot,
                                            seed=seed)
        return estimate, percentile_interval(weighted_partial_spearman(x, y, z, weights), level)
    interval = bootstrap_ci(_partial_spearman_or_nan, x, y, z, n_boot=n_boot, level=level,
                            seed=seed, batched=_partial_spearman_batch)
    return estimate, interval


# --------------------------------------------------------------------------------------------
# CE-Bench's ranking agreement
# --------------------------------------------------------------------------------------------


def ranking_agreement(
    prediction, target, *, ties: Literal["half", "input_order"] = "half"
) -> float:
    """Fraction of concordant pairs among all pairs of items (CE-Bench's "ranking agreement").

    Over all N = n (n - 1) / 2 pairs i < j, with s_p = sign(p_i - p_j) and
    s_t = sign(t_i - t_j), a pair is concordant when s_p s_t > 0, discordant when s_p s_t < 0,
    and tied when s_p s_t = 0 (tied in the prediction, the target or both). Then

        ties="half" (default):   agreement = (concordant + tied / 2) / N = (1 + tau_a) / 2,

    with tau_a Kendall's tau-a. Range [0, 1]: 1 when the two orderings agree on every pair,
    0 when they are reversed, 0.5 for a constant prediction and, in expectation, for a random
    one. It does not depend on the order in which items are listed.

        ties="input_order":      CE-Bench's reference code (`compare_rankings` in
                                 ce_bench/post_analysis.py): each vector is ranked by a stable
                                 descending sort, so a tie is broken in favour of the item
                                 listed first. A pair is concordant when s'_p = s'_t, where s'
                                 is s with 0 replaced by +1 (i < j). Pairs tied in both vectors
                                 count as concordant; the result depends on item order.

    With no ties the two rules agree, and both reproduce the published numbers on the 48
    Gemma-2-2B SAEs of the paper's table (0.7012 for C + I, 0.7730 for C + I - 0.25 L0, 0.709
    for -L0); that table has no ties, so it cannot tell tie rules apart.

    Args:
        prediction, target: 1-D arrays of the same length n >= 2; higher means better in both.
        ties: "half" or "input_order" (see above).

    Raises:
        ValueError: mismatched lengths, n < 2, NaN values, or an unknown tie rule.

    Examples:
        >>> ranking_agreement([1, 2, 3], [1, 3, 2])
        0.6666666666666666
        >>> ranking_agreement([1, 1, 2], [1, 2, 3])  # one pair tied in the prediction
        0.8333333333333334

    References:
        Gulko, Peng, Kumar (2025), "CE-Bench", https://arxiv.org/abs/2509.00691
    """
    if ties not in ("half", "input_order"):
        raise ValueError(f"ties must be 'half' or 'input_order', got {ties!r}")
    p, t = _as_vector("prediction", prediction), _as_vector("target", target)
    n = _same_length(prediction=p, target=t)
    _need_items("ranking_agreement", 2, n)
    score = 0.0
    for i in range(n - 1):  # O(n) memory: pairs (i, j > i) one row at a time
        sp = np.sign(p[i] - p[i + 1 :])
        st = np.sign(t[i] - t[i + 1 :])
        if ties == "half":
            product = sp * st
            score += np.count_nonzero(product > 0) + 0.5 * np.count_nonzero(product == 0)
        else:
            sp[sp == 0] = 1.0
            st[st == 0] = 1.0
            score += np.count_nonzero(sp == st)
    return float(score / (n * (n - 1) / 2))


def _distinct_pair_agreement(prediction, target, ids) -> float:
    """ranking_agreement over pairs of *distinct* SAEs of a bootstrap resample.

    A resample repeats SAEs; a pair of two copies of one SAE is tied in both vectors and
    carries no ordering information, yet `ranking_agreement` (ties="half") counts it as half
    concordant, which would pull a resample's agreement towards 0.5 (about 2% of the pairs
    for 48 SAEs). With A the agreement over all N = n (n - 1) / 2 pairs and D the number of
    pairs of copies, the agreement over the other pairs is (A N - D / 2) / (N - D). On the
    original sample (no copies) this is `ranking_agreement` itself.
    """
    n = len(ids)
    n_pairs = n * (n - 1) / 2
    _, counts = np.unique(ids, return_counts=True)
    copies = float(np.sum(counts * (counts - 1) / 2))
    if n_pairs - copies <= 0:
        return math.nan
    agreement = ranking_agreement(prediction, target)
    return (agreement * n_pairs - 0.5 * copies) / (n_pairs - copies)


def _distinct_pair_agreement_batch(prediction, target, ids) -> np.ndarray:
    """`_distinct_pair_agreement` of every resample (rows of [n_boot, n] arrays), vectorised:
    with s = sign(d prediction) sign(d target) over pairs i < j, ranking agreement with ties
    counted half is (1 + mean s) / 2; pairs of copies (equal ids) have s = 0."""
    i, j = np.triu_indices(prediction.shape[1], k=1)
    n_pairs = len(i)
    out = np.empty(prediction.shape[0])
    for start in range(0, prediction.shape[0], 256):
        rows = slice(start, start + 256)
        s = (np.sign(prediction[rows, i] - prediction[rows, j])
             * np.sign(target[rows, i] - target[rows, j]))
        copies = (ids[rows, i] == ids[rows, j]).sum(axis=1)
        agreement = (1.0 + s.mean(axis=1)) / 2.0
        with np.errstate(invalid="ignore", divide="ignore"):
            value = (agreement * n_pairs - 0.5 * copies) / (n_pairs - copies)
        value[n_pairs - copies <= 0] = math.nan
        out[rows] = value
    return out


def _difference_of_agreements(first, second, target, ids) -> float:
    """agreement(first, T) - agreement(second, T), both over distinct pairs of a resample."""
    return (_distinct_pair_agreement(first, target, ids)
            - _distinct_pair_agreement(second, target, ids))


def _difference_of_agreements_batch(first, second, target, ids) -> np.ndarray:
    return (_distinct_pair_agreement_batch(first, target, ids)
            - _distinct_pair_agreement_batch(second, target, ids))


def ranking_agreement_ci(prediction, target, *, n_boot: int = 2000, level: float = 0.95,
                         seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of `ranking_agreement(prediction, target)` over items.

    Each resample's agreement is taken over its pairs of *distinct* items
    (`_distinct_pair_agreement`): a pair of two copies of one item carries no ordering.

    Raises:
        ValueError: as `bootstrap_ci` and `ranking_agreement`.
    """
    p, t = _as_vector("prediction", prediction), _as_vector("target", target)
    ids = np.arange(_same_length(prediction=p, target=t), dtype=np.float64)
    return bootstrap_ci(_distinct_pair_agreement, p, t, ids, n_boot=n_boot, level=level,
                        seed=seed, batched=_distinct_pair_agreement_batch)


def ranking_agreement_difference(first, second, target) -> float:
    """ranking_agreement(first, target) - ranking_agreement(second, target): which of two
    predictors ranks the items more like the target."""
    f, s_, t = (_as_vector(n, v) for n, v in (("first", first), ("second", second),
                                               ("target", target)))
    ids = np.arange(_same_length(first=f, second=s_, target=t), dtype=np.float64)
    return _difference_of_agreements(f, s_, t, ids)


def ranking_agreement_difference_ci(first, second, target, *, n_boot: int = 2000,
                                    level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Paired percentile bootstrap interval of `ranking_agreement_difference`: both
    agreements are computed on the same resample (same items, distinct pairs only), so the
    interval is that of the difference, not a comparison of two marginal intervals. One that
    excludes 0 says the first predictor ranks better than the second beyond resampling noise.
    """
    f, s_, t = (_as_vector(n, v) for n, v in (("first", first), ("second", second),
                                               ("target", target)))
    ids = np.arange(_same_length(first=f, second=s_, target=t), dtype=np.float64)
    return bootstrap_ci(_difference_of_agreements, f, s_, t, ids, n_boot=n_boot, level=level,
                        seed=seed, batched=_difference_of_agreements_batch)


# --------------------------------------------------------------------------------------------
# Reseed noise
# --------------------------------------------------------------------------------------------


def two_sided_z(level: float = 0.95) -> float:
    """z_{1 - (1 - level) / 2}: the normal quantile of a two-sided test at `level`.

    Examples:
        >>> round(two_sided_z(0.95), 5)
        1.95996
    """
    level = _check_level(level)
    return float(scipy.stats.norm.ppf(1.0 - (1.0 - level) / 2.0))


def minimum_detectable_difference(std: float, level: float = 0.95) -> float:
    """MDD = z_{1 - (1 - level) / 2} * sqrt(2) * std.

    Two single-seed runs of a metric whose reseed noise has standard deviation `std` differ
    by N(0, 2 std^2) when the SAEs are equally good; they must differ by more than the MDD
    before the difference means anything at this two-sided level. At level 0.95,
    z = 1.95996 and MDD = 2.77181 std. Range [0, inf); linear in std.

    Raises:
        ValueError: std negative, NaN or infinite; level outside (0, 1).

    Examples:
        >>> round(minimum_detectable_difference(1.0), 5)
        2.77181
    """
    std = _check_std("std", std)
    return two_sided_z(level) * math.sqrt(2.0) * std


@dataclass(frozen=True)
class ReseedNoise:
    """Noise of a metric on one fixed SAE across reruns that change only the metric's seed.

    Attributes:
        mean: mean of the values.
        std: sample standard deviation (ddof=1).
        cv: coefficient of variation std / |mean|; inf when mean == 0 and std > 0, and 0
            when std == 0 (no noise at all, whatever the mean).
        mdd: `minimum_detectable_difference(std, level)`.
        n_seeds: number of values.
    """

    mean: float
    std: float
    cv: float
    mdd: float
    n_seeds: int


def reseed_noise(values, level: float = 0.95) -> ReseedNoise:
    """Mean, std, coefficient of variation and MDD of one metric over its own seeds.

    Args:
        values: 1-D array of the metric on one SAE, one value per metric seed (n >= 2).
        level: confidence level of the MDD.

    Raises:
        ValueError: fewer than 2 values, NaN values, bad level.

    Examples:
        >>> noise = reseed_noise([1.0, 2.0, 3.0])
        >>> noise.mean, noise.std, noise.cv
        (2.0, 1.0, 0.5)
    """
    v = _as_vector("values", values)
    _need_items("reseed_noise (one value per metric seed)", 2, len(v))
    level = _check_level(level)
    mean = float(v.mean())
    std = float(v.std(ddof=1))
    if std == 0.0:
        cv = 0.0
    elif mean == 0.0:
        cv = math.inf
    else:
        cv = std / abs(mean)
    return ReseedNoise(
        mean=mean, std=std, cv=cv, mdd=minimum_detectable_difference(std, level), n_seeds=len(v)
    )


# --------------------------------------------------------------------------------------------
# Variance decomposition and discriminability across training trajectories
# --------------------------------------------------------------------------------------------


VARIANCE_SOURCES = ("checkpoint", "training_seed", "metric_seed")


def variance_decomposition(values) -> dict:
    """Variance components of a metric along training: checkpoint, training seed, metric seed.

    `values` has shape [n_checkpoints C, n_training_seeds T, n_metric_seeds M]: the metric at
    checkpoint c of training seed t, measured with metric seed m. A training seed is one
    trajectory through every checkpoint, so seeds and checkpoints are crossed, and metric
    seeds are nested in their cells. The random-effects model

        v_ctm = mu + a_c + s_t + (as)_ct + e_ctm,
        Var a = s_c^2, Var s = s_t^2, Var (as) = s_ct^2, Var e = s_m^2,

    is fitted by expected mean squares (ANOVA estimates). With m the grand mean and m_c, m_t,
    m_ct the means over the other axes,

        MS_c  = T M sum_c (m_c - m)^2 / (C - 1)
        MS_t  = C M sum_t (m_t - m)^2 / (T - 1)
        MS_ct = M sum_{c,t} (m_ct - m_c - m_t + m)^2 / ((C - 1) (T - 1))
        MS_m  = sum_{c,t,m} (v_ctm - m_ct)^2 / (C T (M - 1))

    and, from E[MS_m] = s_m^2, E[MS_ct] = s_m^2 + M s_ct^2, E[MS_t] = E[MS_ct] + C M s_t^2,
    E[MS_c] = E[MS_ct] + T M s_c^2,

        s_m^2 = MS_m,  s_ct^2 = (MS_ct - MS_m) / M,
        s_t^2 = (MS_t - MS_ct) / (C M),  s_c^2 = (MS_c - MS_ct) / (T M).

    A fixed trend a_c counts as its variance over checkpoints (ddof 1). The estimates are
    unbiased but can be negative; a negative one is set to 0 and named in "truncated". The
    training seed's component is s_t^2 + s_ct^2 (a seed's lasting offset plus how its
    trajectory wanders); the fraction of a source is its component over the sum of the
    three (its share of the variance of one value v_ctm). Pure metric noise gives about
    0 / 0 / 1; a metric that moves along training, checkpoint near 1.

    Returns:
        {"checkpoint", "training_seed", "metric_seed": fractions (None when all components
        are 0: nothing to apportion), "components": {source: variance after truncation},
        "estimates": {"checkpoint", "seed", "seed_by_checkpoint", "metric_seed": the
        untruncated estimates}, "truncated": [estimates set to 0], "total_variance": sum of
        the components}.

    Raises:
        ValueError: not 3-D, fewer than 2 checkpoints, training seeds or metric seeds (a
            component without degrees of freedom cannot be estimated), NaN values.

    Examples:
        >>> d = variance_decomposition(np.arange(1.0, 16.0, 2.0).reshape(2, 2, 2))
        >>> d["components"]
        {'checkpoint': 32.0, 'training_seed': 8.0, 'metric_seed': 2.0}
    """
    v = _as_array("values", values, ndim=3)
    for axis, name in enumerate(("n_checkpoints", "n_training_seeds", "n_metric_seeds")):
        if v.shape[axis] < 2:
            raise ValueError(
                f"values must have shape [n_checkpoints, n_training_seeds, n_metric_seeds] "
                f"with each at least 2 to estimate every component; {name} is "
                f"{v.shape[axis]} (shape {v.shape})"
            )
    n_c, n_t, n_m = v.shape
    grand = v.mean()
    cell = v.mean(axis=2)  # [C, T]
    by_c, by_t = cell.mean(axis=1), cell.mean(axis=0)
    ms_c = n_t * n_m * float(np.sum((by_c - grand) ** 2)) / (n_c - 1)
    ms_t = n_c * n_m * float(np.sum((by_t - grand) ** 2)) / (n_t - 1)
    interaction = cell - by_c[:, None] - by_t[None, :] + grand
    ms_ct = n_m * float(np.sum(interaction**2)) / ((n_c - 1) * (n_t - 1))
    ms_m = float(np.sum((v - cell[:, :, None]) ** 2)) / (n_c * n_t * (n_m - 1))
    estimates = {"checkpoint": (ms_c - ms_ct) / (n_t * n_m),
                 "seed": (ms_t - ms_ct) / (n_c * n_m),
                 "seed_by_checkpoint": (ms_ct - ms_m) / n_m,
                 "metric_seed": ms_m}
    kept = {k: max(0.0, e) for k, e in estimates.items()}
    components = {"checkpoint": kept["checkpoint"],
                  "training_seed": kept["seed"] + kept["seed_by_checkpoint"],
                  "metric_seed": kept["metric_seed"]}
    total = sum(components.values())
    out = {k: (components[k] / total if total > 0 else None) for k in VARIANCE_SOURCES}
    return {**out, "components": components, "estimates": estimates,
            "truncated": [k for k, e in estimates.items() if e < 0],
            "total_variance": total}


@dataclass(frozen=True)
class Discriminability:
    """How well a metric separates checkpoints of training trajectories beyond its noise.

    Attributes:
        snr: std (ddof=1) over checkpoints of the seed-averaged metric trajectory, divided
            by the metric's reseed std. Range [0, inf); > 1 means checkpoints spread the
            metric more than reseeding does.
        discriminability: fraction, over training seeds and checkpoint pairs i < j, of pairs
            whose metric difference exceeds the MDD in the ground-truth direction. Range
            [0, 1], best 1.
        n_pairs: number of pairs: n_training_seeds * n_checkpoints (n_checkpoints - 1) / 2.
        slope_over_noise: fitted metric change from first to last checkpoint, signed so that
            positive means "moves the way ground truth moves", over the reseed std.
    """

    snr: float
    discriminability: float
    n_pairs: int
    slope_over_noise: float


def _ratio(numerator: float, noise_std: float) -> float:
    """numerator / noise_std, with x / 0 = +-inf for x != 0 and 0 / 0 = 0."""
    if noise_std > 0:
        return numerator / noise_std
    if numerator == 0:
        return 0.0
    return math.copysign(math.inf, numerator)


def _pooled_slope(values: np.ndarray) -> float:
    """Least-squares slope of values [S, C] against checkpoint index 0..C-1, pooled over S."""
    index = np.broadcast_to(np.arange(values.shape[1], dtype=np.float64), values.shape)
    centered_index = index - index.mean()
    return float(np.sum(centered_index * (values - values.mean())) / np.sum(centered_index**2))


def trajectory_discriminability(
    metric, ground_truth, *, noise_std: float, level: float = 0.95, mdd: float | None = None
) -> Discriminability:
    """Signal-to-noise, pairwise discriminability and slope-over-noise along training.

    `metric` and `ground_truth` have shape [n_training_seeds S, n_checkpoints C], checkpoints
    in training order, the metric already averaged over its own seeds; `noise_std` is the
    metric's reseed std (e.g. `reseed_noise(...).std`). With MDD =
    `minimum_detectable_difference(noise_std, level)`, or the `mdd` given (e.g. z_0.975 times
    the std of paired differences, when two checkpoints are scored with the same metric
    seeds and their noise is not independent):

        snr              = std_{ddof=1}(mean_s metric[s, :]) / noise_std
        discriminability = (1 / n_pairs) * #{(s, i < j) : |d| > MDD and sign(d) == sign(g)},
                           d = metric[s, j] - metric[s, i], g = ground_truth[s, j] -
                           ground_truth[s, i]; pairs where ground truth is tied (g == 0) have
                           no right direction and count as failures.
        n_pairs          = S C (C - 1) / 2
        slope_over_noise = b_metric (C - 1) sign(b_gt) / noise_std, where b is the least-
                           squares slope against checkpoint index 0..C-1 pooled over seeds
                           (one slope for all S C points); b_metric (C - 1) is the fitted
                           change over the trajectory; it is 0 when b_gt == 0.

    noise_std == 0 (a noiseless metric) gives MDD = 0 and infinite snr / |slope_over_noise|
    (signed for the slope), except that a zero numerator gives 0.

    Raises:
        ValueError: shapes differ or are not 2-D, no training seed, fewer than 2 checkpoints,
            NaN values, negative noise_std, bad level.
    """
    m = _as_array("metric", metric, ndim=2)
    g = _as_array("ground_truth", ground_truth, ndim=2)
    if m.shape != g.shape:
        raise ValueError(
            "metric and ground_truth must have the same shape [n_training_seeds, "
            f"n_checkpoints], got {m.shape} and {g.shape}"
        )
    n_seeds, n_checkpoints = m.shape
    if n_seeds < 1:
        raise ValueError("trajectory_discriminability needs at least 1 training seed, got 0")
    _need_items("trajectory_discriminability (checkpoints per trajectory)", 2, n_checkpoints)
    noise_std = _check_std("noise_std", noise_std)
    mdd = minimum_detectable_difference(noise_std, level) if mdd is None else _check_std(
        "mdd", mdd)

    signal = float(m.mean(axis=0).std(ddof=1))
    i, j = np.triu_indices(n_checkpoints, k=1)
    d_metric = m[:, j] - m[:, i]
    d_truth = g[:, j] - g[:, i]
    separated = (np.abs(d_metric) > mdd) & (np.sign(d_metric) == np.sign(d_truth))
    separated &= d_truth != 0
    n_pairs = int(d_metric.size)

    change = _pooled_slope(m) * (n_checkpoints - 1) * float(np.sign(_pooled_slope(g)))
    return Discriminability(
        snr=_ratio(signal, noise_std),
        discriminability=float(np.count_nonzero(separated) / n_pairs),
        n_pairs=n_pairs,
        slope_over_noise=_ratio(change, noise_std),
    )
