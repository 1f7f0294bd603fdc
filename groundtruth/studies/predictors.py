"""Predictors of SAE quality from CE-Bench's scores, fitted and tested: shared by the studies
`cebench_published` (on CE-Bench's published table) and `regression_holdout` (on an audit's
population against ground truth).

Notation: for SAE k, C_k = contrastive score, I_k = independent score, L0_k its L0 and T_k the
quality to predict. Higher is better for every predictor and for T.

    sparsity_aware_score   C + I - alpha L0 (CE-Bench's headline predictor, alpha = 0.25)
    fit_alpha              the alpha of a grid that ranks SAEs most like T
    width_then_minus_l0    a baseline that reads no CE-Bench score
    holdout_analysis       alpha* in sample, then leave-one-architecture-out, beside C + I,
                           alpha = 0.25, -L0, a least-squares predictor and width-then-L0
"""

from __future__ import annotations

import numpy as np
import scipy.stats

from cebench.scores import PAPER_ALPHA
from groundtruth import stats

__all__ = [
    "sparsity_aware_score",
    "fit_alpha",
    "width_then_minus_l0",
    "holdout_analysis",
]


def sparsity_aware_score(contrastive, independent, l0, alpha: float) -> np.ndarray:
    """CE-Bench's headline predictor C + I - alpha * L0, shape (n_saes,)."""
    return np.asarray(contrastive) + np.asarray(independent) - alpha * np.asarray(l0)


def _agreement_curve(c, i, l0, target, alpha_grid: np.ndarray) -> np.ndarray:
    """ranking_agreement(C + I - alpha L0, T) for each alpha of the grid."""
    return np.array(
        [stats.ranking_agreement(sparsity_aware_score(c, i, l0, a), target) for a in alpha_grid]
    )


def _best_alpha(curve: np.ndarray, alpha_grid: np.ndarray) -> tuple[float, float, float, float]:
    """(alpha*, best agreement, smallest maximiser, largest maximiser) of an agreement curve.

    Several alphas often tie at the maximum (the agreement is a count of pairs); alpha* is the
    middle one of the maximisers in grid order (so it is itself a maximiser).
    """
    best = float(curve.max())
    maximisers = alpha_grid[np.flatnonzero(curve == best)]
    return float(maximisers[len(maximisers) // 2]), best, float(maximisers[0]), float(
        maximisers[-1]
    )


def fit_alpha(contrastive, independent, l0, target, alpha_grid) -> float:
    """The alpha of the grid that maximises ranking_agreement(C + I - alpha L0, T).

    Ties at the maximum are broken by taking the middle maximiser in grid order.

    Examples:
        >>> fit_alpha([3.0, 2.0, 1.0], [0.0, 0.0, 0.0], [3.0, 2.0, 1.0], [1.0, 2.0, 3.0],
        ...           [0.0, 1.0, 2.0, 3.0])
        3.0
    """
    grid = np.asarray(alpha_grid, dtype=np.float64)
    curve = _agreement_curve(contrastive, independent, l0, target, grid)
    return _best_alpha(curve, grid)[0]


def width_then_minus_l0(d_sae, l0) -> np.ndarray:
    """A baseline that reads no CE-Bench score: rank by width, break ties by lower L0.

    value_k = dense_rank(d_sae)_k * (n + 1) + rank(-L0)_k (scipy.stats.rankdata, ties
    averaged), so any wider SAE ranks above any narrower one and SAEs of one width are ordered
    by -L0. Shape (n_saes,).

    Examples:
        >>> width_then_minus_l0([16, 16, 4], [10.0, 20.0, 1.0]).tolist()
        [10.0, 9.0, 7.0]
    """
    d_sae, l0 = np.asarray(d_sae, dtype=np.float64), np.asarray(l0, dtype=np.float64)
    n = len(d_sae)
    return (scipy.stats.rankdata(d_sae, method="dense") * (n + 1)
            + scipy.stats.rankdata(-l0)).astype(np.float64)


def _linear_fit(features: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares coefficients of target on [features, 1]."""
    design = np.column_stack([features, np.ones(len(features))])
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    return coef


def _linear_predict(coef: np.ndarray, features: np.ndarray) -> np.ndarray:
    return np.column_stack([features, np.ones(len(features))]) @ coef


def _pair_count(n: int) -> int:
    return n * (n - 1) // 2


def _split_by_width(prediction, target, width) -> dict:
    """Ranking agreement over same-width pairs and over cross-width pairs, separately.

    With groups w of equal width, A_w = ranking_agreement within group w and P_w its pair
    count, A and P those of all pairs:

        same_width  = sum_w A_w P_w / sum_w P_w              (over P_same = sum_w P_w pairs)
        cross_width = (A P - sum_w A_w P_w) / (P - P_same)   (over the P - P_same other pairs)

    Returns {"n_same_width_pairs", "n_cross_width_pairs"} and "same_width" / "cross_width"
    only where there are such pairs.
    """
    prediction, target, width = map(np.asarray, (prediction, target, width))
    total_pairs = _pair_count(len(target))
    concordant_same, same_pairs = 0.0, 0
    for w in np.unique(width):
        group = width == w
        pairs = _pair_count(int(group.sum()))
        if pairs:
            concordant_same += stats.ranking_agreement(prediction[group], target[group]) * pairs
            same_pairs += pairs
    out: dict = {"n_same_width_pairs": same_pairs,
                 "n_cross_width_pairs": total_pairs - same_pairs}
    if same_pairs:
        out["same_width"] = concordant_same / same_pairs
    if total_pairs > same_pairs:
        concordant_all = stats.ranking_agreement(prediction, target) * total_pairs
        out["cross_width"] = (concordant_all - concordant_same) / (total_pairs - same_pairs)
    return out


def holdout_analysis(t: dict, alpha_grid: np.ndarray) -> dict:
    """Part c: alpha* in sample, then leave-one-architecture-out.

    `t` holds arrays "contrastive_score", "independent_score", "l0", "saebench_target" (the
    quality to predict), "d_sae" and a list "architecture" (the groups held out in turn).

    In sample: the agreement curve of C + I - alpha L0 over the grid on all SAEs and its
    maximiser alpha*.

    Fold g holds out every SAE of architecture g. On the other SAEs (all their pairs, across
    architectures, as the paper fitted) it fits alpha_g = `fit_alpha` and the least-squares
    predictor T ~ b_C C + b_I I + b_L0 L0 + b_0. On the held-out SAEs it reports the
    ranking agreement with T over pairs *within* architecture g of

        fitted_alpha   C + I - alpha_g L0
        paper_alpha    C + I - 0.25 L0
        c_plus_i       C + I
        minus_l0       -L0
        linear         the fold's least-squares prediction
        width_then_minus_l0   `width_then_minus_l0` (no CE-Bench score, nothing fitted)

    The pair-weighted mean over folds is sum_g agreement_g P_g / sum_g P_g with
    P_g = n_g (n_g - 1) / 2, i.e. the agreement over all within-architecture pairs. The same
    agreements are also split (`_split_by_width`) into pairs of equal width (same architecture
    and width: only the ordering by trainer / sparsity) and pairs of different widths (only
    jump_relu has several widths), pooled pair-weighted over folds; `versus_minus_l0_per_fold`
    counts folds where a predictor's agreement is above, equal to, below that of -L0. Folds
    with several widths also report the Spearman of T and of C + I with d_sae.

    Pooled out-of-fold: each SAE gets the prediction of the fold that held it out; the
    agreement and Spearman of these predictions with T over all SAEs (pairs across
    architectures compare predictions of different fits: the linear ones are all on T's
    scale, the fitted-alpha ones on the score's).
    """
    c, i, l0, target = (t[k] for k in ("contrastive_score", "independent_score", "l0",
                                       "saebench_target"))
    architecture = np.asarray(t["architecture"])
    features = np.column_stack([c, i, l0])
    curve = _agreement_curve(c, i, l0, target, alpha_grid)
    alpha_star, best, low, high = _best_alpha(curve, alpha_grid)

    coef_all = _linear_fit(features, target)
    in_sample_linear = _linear_predict(coef_all, features)

    names = ("fitted_alpha", "paper_alpha", "c_plus_i", "minus_l0", "linear",
             "width_then_minus_l0")
    folds = []
    oof_linear = np.empty_like(target)
    oof_alpha = np.empty_like(target)
    for group in sorted(set(t["architecture"])):
        test = architecture == group
        train = ~test
        alpha_g = fit_alpha(c[train], i[train], l0[train], target[train], alpha_grid)
        coef = _linear_fit(features[train], target[train])
        linear = _linear_predict(coef, features[test])
        oof_linear[test] = linear
        oof_alpha[test] = sparsity_aware_score(c[test], i[test], l0[test], alpha_g)
        predictions = {
            "fitted_alpha": oof_alpha[test],
            "paper_alpha": sparsity_aware_score(c[test], i[test], l0[test], PAPER_ALPHA),
            "c_plus_i": c[test] + i[test],
            "minus_l0": -l0[test],
            "linear": linear,
            "width_then_minus_l0": width_then_minus_l0(t["d_sae"][test], l0[test]),
        }
        n_test = int(test.sum())
        split = {k: _split_by_width(v, target[test], t["d_sae"][test])
                 for k, v in predictions.items()}
        folds.append({
            "architecture": group,
            "n_saes": n_test,
            "n_pairs": _pair_count(n_test),
            "alpha": alpha_g,
            "linear_coef": dict(zip(("contrastive", "independent", "l0", "intercept"),
                                    map(float, coef))),
            "agreement": {k: stats.ranking_agreement(v, target[test])
                          for k, v in predictions.items()},
            "widths": sorted({float(w) for w in t["d_sae"][test]}),
            **({"target_spearman_with_width": stats.spearman(target[test], t["d_sae"][test]),
                "c_plus_i_spearman_with_width": stats.spearman(c[test] + i[test],
                                                               t["d_sae"][test])}
               if len(set(t["d_sae"][test])) > 1 else {}),
            "n_same_width_pairs": split["linear"]["n_same_width_pairs"],
            "n_cross_width_pairs": split["linear"]["n_cross_width_pairs"],
            "agreement_same_width": {k: v["same_width"] for k, v in split.items()
                                     if "same_width" in v},
            "agreement_cross_width": {k: v["cross_width"] for k, v in split.items()
                                      if "cross_width" in v},
            "curve": _agreement_curve(c[test], i[test], l0[test], target[test],
                                      alpha_grid).tolist(),
        })
    weights = np.array([f["n_pairs"] for f in folds], dtype=np.float64)
    mean = {k: float(np.dot(weights, [f["agreement"][k] for f in folds]) / weights.sum())
            for k in names}
    versus_l0 = {
        k: {"wins": int(sum(f["agreement"][k] > f["agreement"]["minus_l0"] for f in folds)),
            "ties": int(sum(f["agreement"][k] == f["agreement"]["minus_l0"] for f in folds)),
            "losses": int(sum(f["agreement"][k] < f["agreement"]["minus_l0"] for f in folds))}
        for k in names if k != "minus_l0"
    }
    by_width = {}
    for kind in ("same_width", "cross_width"):
        used = [f for f in folds if f[f"agreement_{kind}"]]
        pairs = np.array([f[f"n_{kind}_pairs"] for f in used], dtype=np.float64)
        by_width[kind] = {
            "n_pairs": int(pairs.sum()),
            "architectures": [f["architecture"] for f in used],
            "pair_weighted_mean": {  # empty when no fold has such pairs
                k: float(np.dot(pairs, [f[f"agreement_{kind}"][k] for f in used]) / pairs.sum())
                for k in names if used
            },
        }
    return {
        "alpha_grid": [float(a) for a in alpha_grid],
        "in_sample": {
            "curve": curve.tolist(),
            "alpha_star": alpha_star,
            "alpha_star_agreement": best,
            "alpha_star_range": [low, high],
            "paper_alpha": PAPER_ALPHA,
            "paper_alpha_agreement": stats.ranking_agreement(
                sparsity_aware_score(c, i, l0, PAPER_ALPHA), target),
        },
        "folds": folds,
        "pair_weighted_mean": mean,
        "n_pairs_within_architectures": int(weights.sum()),
        "versus_minus_l0_per_fold": versus_l0,
        "alpha_range_over_folds": [min(f["alpha"] for f in folds),
                                   max(f["alpha"] for f in folds)],
        "same_vs_cross_width": by_width,
        "linear": {
            "in_sample_coef": dict(zip(("contrastive", "independent", "l0", "intercept"),
                                       map(float, coef_all))),
            "in_sample_agreement": stats.ranking_agreement(in_sample_linear, target),
            "in_sample_spearman": stats.spearman(in_sample_linear, target),
            "out_of_fold_agreement": stats.ranking_agreement(oof_linear, target),
            "out_of_fold_spearman": stats.spearman(oof_linear, target),
        },
        "fitted_alpha_out_of_fold": {
            "agreement": stats.ranking_agreement(oof_alpha, target),
            "spearman": stats.spearman(oof_alpha, target),
        },
        "minus_l0": {
            "agreement": stats.ranking_agreement(-l0, target),
            "spearman": stats.spearman(-l0, target),
        },
    }
