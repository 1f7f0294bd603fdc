"""The three lenses of a metric-reliability audit, from stored metric values.

1. Reseed noise: the metric rerun on fixed SAEs with only its own seed changed. Per SAE the
   sample std over seeds; the metric's noise is the pooled std (root mean square of the per-SAE
   stds), its MDD = z_0.975 sqrt(2) pooled std, its CV the median per-SAE CV.
2. Ground-truth correlation over the population (seed 0 values): Spearman and Kendall with
   bootstrap 95% intervals, and the partial Spearman controlling for width and L0 (is the metric
   only measuring width or sparsity?). Metrics where lower is better are negated first, so a
   metric that tracks quality always correlates positively.
3. Trajectory discriminability over each training run's checkpoints (seed 0 values):
   signal-to-noise, fraction of checkpoint pairs separated beyond the MDD in the direction
   ground truth moves, slope over noise (see `groundtruth.stats.trajectory_discriminability`),
   pooled over runs; and the variance decomposition (checkpoint / training seed / metric seed)
   on the runs measured with several metric seeds.
"""

from __future__ import annotations

import numpy as np

from groundtruth import stats

__all__ = ["reseed_lens", "correlation_lens", "trajectory_lens", "decomposition_lens",
           "control_ranks"]


def reseed_lens(values_by_sae: dict[str, list[float]], level: float = 0.95) -> dict:
    """values_by_sae: SAE id -> the metric over seeds 0 .. n-1."""
    per_sae = {sae: stats.reseed_noise(v, level) for sae, v in values_by_sae.items()}
    stds = np.array([r.std for r in per_sae.values()])
    pooled = float(np.sqrt(np.mean(stds**2)))
    cvs = [r.cv for r in per_sae.values() if np.isfinite(r.cv)]
    return {
        "std": pooled,
        "cv": float(np.median(cvs)) if cvs else 0.0,
        "mdd": float(stats.minimum_detectable_difference(pooled, level)),
        "n_seeds": int(min(len(v) for v in values_by_sae.values())),
        "n_saes": len(per_sae),
        "per_sae_std": {sae: float(r.std) for sae, r in per_sae.items()},
    }


def correlation_lens(metric: np.ndarray, ground_truth: dict[str, np.ndarray], *,
                     width: np.ndarray, l0: np.ndarray, n_boot: int, seed: int) -> dict:
    """Rank correlations of an oriented metric [n] with each ground truth [n]."""
    out = {}
    covariates = np.column_stack([width, l0])
    for name, gt in ground_truth.items():
        if np.ptp(metric) == 0 or np.ptp(gt) == 0:
            out[name] = {"spearman": 0.0, "spearman_ci95": [0.0, 0.0], "kendall": 0.0,
                         "kendall_ci95": [0.0, 0.0], "n_saes": len(metric),
                         "partial_spearman_width_l0": 0.0,
                         "partial_spearman_width_l0_ci95": [0.0, 0.0],
                         "note": "constant over the population: no correlation"}
            continue
        rc = stats.rank_correlation(metric, gt, n_boot=n_boot, seed=seed)
        out[name] = {"spearman": rc.spearman, "spearman_ci95": list(rc.spearman_ci95),
                     "kendall": rc.kendall, "kendall_ci95": list(rc.kendall_ci95),
                     "n_saes": rc.n}
        try:
            partial, partial_ci = stats.partial_rank_correlation(metric, gt, covariates,
                                                                 n_boot=n_boot, seed=seed)
            out[name].update(partial_spearman_width_l0=partial,
                             partial_spearman_width_l0_ci95=list(partial_ci))
        except ValueError as error:  # e.g. the metric is L0 itself: nothing left to correlate
            out[name].update(partial_spearman_width_l0=None, partial_spearman_width_l0_ci95=None,
                             note=f"partial correlation undefined: {error}")
    return out


def trajectory_lens(runs: dict[str, tuple[np.ndarray, np.ndarray]], noise_std: float,
                    level: float = 0.95) -> dict:
    """runs: run -> (metric [seeds, checkpoints], ground truth [seeds, checkpoints]).

    Pools over runs: mean SNR, discriminability over all pairs, mean slope over noise.
    """
    results = {run: stats.trajectory_discriminability(m, g, noise_std=noise_std, level=level)
               for run, (m, g) in runs.items()}
    pairs = sum(r.n_pairs for r in results.values())
    separated = sum(r.discriminability * r.n_pairs for r in results.values())
    return {
        "snr": _finite_mean([r.snr for r in results.values()]),
        "discriminability": float(separated / pairs) if pairs else 0.0,
        "n_pairs": int(pairs),
        "slope_over_noise": _finite_mean([r.slope_over_noise for r in results.values()]),
        "n_runs": len(results),
        "per_run": {run: {"snr": _json_float(r.snr), "discriminability": r.discriminability,
                          "slope_over_noise": _json_float(r.slope_over_noise)}
                    for run, r in results.items()},
    }


def decomposition_lens(runs: dict[str, np.ndarray]) -> dict:
    """runs: run -> values [checkpoints, training seeds, metric seeds].

    Each run's variance components (`stats.variance_decomposition`, random-effects estimates)
    are averaged over the runs, and each source's fraction is its mean component over the sum.
    No runs, or components that are all 0, give null fractions with the reason.
    """
    keys = stats.VARIANCE_SOURCES
    if not runs:
        return {**{k: None for k in keys}, "components": None, "truncated": {}, "n_runs": 0,
                "note": "no trajectory was measured with several metric seeds"}
    parts = {run: stats.variance_decomposition(v) for run, v in runs.items()}
    components = {k: float(np.mean([p["components"][k] for p in parts.values()])) for k in keys}
    total = sum(components.values())
    out = {k: (components[k] / total if total > 0 else None) for k in keys}
    if total == 0:
        out["note"] = "the metric is constant along every trajectory: nothing to apportion"
    return {**out, "components": components, "n_runs": len(parts),
            "truncated": {run: p["truncated"] for run, p in parts.items() if p["truncated"]}}


def control_ranks(values: dict[str, float], controls: dict[str, str]) -> dict[str, int]:
    """Rank (1 = best, oriented values) of each control among all SAEs; controls: name -> id.

    Ties share the best rank of their group (competition ranking: 1, 1, 3, ...).
    """
    scores = np.array(list(values.values()))
    rank = {sae: int((scores > v).sum()) + 1 for sae, v in values.items()}
    return {name: rank[sae] for name, sae in controls.items() if sae in rank}


def _finite_mean(values: list[float]) -> float:
    """Mean, with infinities (zero noise) clipped to +/- 1e9, the JSON sentinel of infinity
    (report.json holds no Infinity; report.md prints it as inf)."""
    clipped = [float(np.clip(v, -1e9, 1e9)) for v in values]
    return float(np.mean(clipped)) if clipped else 0.0


def _json_float(value: float) -> float:
    return float(np.clip(value, -1e9, 1e9))
