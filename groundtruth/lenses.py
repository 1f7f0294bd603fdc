"""The three lenses of a metric-reliability audit, from stored metric values.

1. Reseed noise: the metric rerun on fixed SAEs with only its own seed changed.
   - Per SAE, the sample std over seeds. The metric's noise is the pooled std (root mean
     square of the per-SAE stds), and its CV is the median per-SAE CV.
   - Two SAEs scored with the same metric seeds share part of their noise. So the noise of a
     *difference* is measured directly: for every pair of reseeded SAEs of one width, the std
     over seeds of their paired difference, pooled per width. The paired MDD of a width is
     z_0.975 x that std. It is the MDD used to compare SAEs and checkpoints of that width.
   - Precision: the paired MDD over the metric's spread (IQR) within each stratum users
     compare (`precision_lens`).
2. Ground-truth correlation (seed-0 values).
   - Pooled over the population (`correlation_lens`): Spearman and Kendall, and the partial
     Spearman controlling for width and L0.
   - Within strata (`stratified_lens`): the same architecture and width for trained SAEs, the
     same family for constructed ones. The strata's mean Spearman is the answer a user
     comparing SAEs of one kind gets.
   - Every interval comes from a cluster bootstrap over the independent units the SAEs
     derive from (`stats.cluster_bootstrap_weights`).
   - Metrics where lower is better are negated first, so a metric that tracks quality always
     correlates positively.
3. Trajectory discriminability over each training run's checkpoints (seed-0 values).
   - Signal-to-noise, and the fraction of checkpoint pairs separated beyond the paired MDD
     in the direction ground truth moves.
   - Slope over noise (see `groundtruth.stats.trajectory_discriminability`), pooled over
     runs.
   - Random-effects variance components (checkpoint / training seed / metric seed) on the
     runs measured with several metric seeds.
   - The training trend (`training_trend_lens`): does the metric rise along training, as
     ground truth does, or fall (a metric that scores SAEs worse the longer they train)?
   - Variants (`variant_lens`): at the final checkpoint, does the metric separate two runs of
     one architecture and width (other sparsity) in ground truth's order, beyond its MDD?

Nothing is invented where a number is undefined (a constant metric has no rank correlation;
a noiseless metric has an infinite SNR): the value is None and a "note" says why.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from groundtruth import stats

__all__ = ["reseed_lens", "correlation_lens", "stratified_lens", "precision_lens",
           "trajectory_lens", "decomposition_lens", "training_trend_lens", "variant_lens",
           "control_ranks", "STRATIFIED_RESAMPLING"]

STRATIFIED_RESAMPLING = "within each stratum: its clusters, then items within them"


def reseed_lens(values_by_sae: dict[str, Sequence[float]], widths: dict[str, int],
                level: float = 0.95) -> dict:
    """Reseed noise of one metric.

    Args:
        values_by_sae: SAE id -> the metric over seeds 0 .. n-1 (the same seeds for all).
        widths: SAE id -> d_sae.

    Returns:
        std, cv, mdd_unpaired (z sqrt(2) std: two independent single-seed scores), n_seeds,
        n_saes, per_sae_std, and "paired": width -> {"std", "mdd", "n_pairs"} (None and a
        note where a width has fewer than two reseeded SAEs).
    """
    per_sae = {sae: stats.reseed_noise(v, level) for sae, v in values_by_sae.items()}
    stds = np.array([r.std for r in per_sae.values()])
    pooled = float(np.sqrt(np.mean(stds**2)))
    cvs = [r.cv for r in per_sae.values() if np.isfinite(r.cv)]
    paired = {}
    z = stats.two_sided_z(level)
    for width in sorted({widths[s] for s in values_by_sae}):
        ids = sorted(s for s in values_by_sae if widths[s] == width)
        if len(ids) < 2:
            paired[str(width)] = {"std": None, "mdd": None, "n_pairs": 0,
                                  "note": "fewer than two reseeded SAEs of this width"}
            continue
        values = np.array([values_by_sae[s] for s in ids], dtype=np.float64)  # [saes, seeds]
        i, j = np.triu_indices(len(ids), k=1)
        variances = (values[i] - values[j]).var(axis=1, ddof=1)
        std = float(np.sqrt(variances.mean()))
        paired[str(width)] = {"std": std, "mdd": z * std, "n_pairs": int(len(i))}
    return {
        "std": pooled,
        "cv": float(np.median(cvs)) if cvs else None,
        "mdd_unpaired": float(stats.minimum_detectable_difference(pooled, level)),
        "n_seeds": int(min(len(v) for v in values_by_sae.values())),
        "n_saes": len(per_sae),
        "per_sae_std": {sae: float(r.std) for sae, r in per_sae.items()},
        "paired": paired,
    }


def _undefined_correlation(n: int, note: str) -> dict:
    return {"spearman": None, "spearman_ci95": None, "kendall": None, "kendall_ci95": None,
            "n_saes": n, "n_units": None, "partial_spearman_width_l0": None,
            "partial_spearman_width_l0_ci95": None, "explained_by_width_l0": None, "note": note}


def correlation_lens(metric: np.ndarray, ground_truth: dict[str, np.ndarray], *,
                     width: np.ndarray, l0: np.ndarray, clusters: Sequence, n_boot: int,
                     seed: int) -> dict:
    """Pooled rank correlations of an oriented metric [n] with each ground truth [n], with
    cluster-bootstrap intervals, and the partial Spearman controlling width and L0.

    `explained_by_width_l0` is True when the metric's ranks are a linear function of width's
    and L0's: the partial correlation is then undefined, and the metric is fully confounded.
    """
    out = {}
    covariates = np.column_stack([width, l0])
    clusters = list(clusters)
    boot = dict(clusters=clusters, n_boot=n_boot, seed=seed)
    explained = stats.explained_by_covariates(metric, covariates)
    for name, gt in ground_truth.items():
        if np.ptp(metric) == 0 or np.ptp(gt) == 0:
            which = "the metric" if np.ptp(metric) == 0 else name
            out[name] = _undefined_correlation(
                len(metric), f"{which} is constant over the population: no rank correlation")
            continue
        rc = stats.rank_correlation(metric, gt, **boot)
        entry = {"spearman": rc.spearman, "spearman_ci95": list(rc.spearman_ci95),
                 "kendall": rc.kendall, "kendall_ci95": list(rc.kendall_ci95),
                 "n_saes": rc.n, "n_units": rc.n_units, "resampled": rc.resampled,
                 "explained_by_width_l0": explained}
        if explained:
            entry.update(partial_spearman_width_l0=None, partial_spearman_width_l0_ci95=None,
                         note="width and L0 explain the metric's ranks entirely: no partial "
                              "correlation is left (fully confounded)")
        elif stats.explained_by_covariates(gt, covariates):
            entry.update(partial_spearman_width_l0=None, partial_spearman_width_l0_ci95=None,
                         note=f"width and L0 explain {name}'s ranks entirely: no partial "
                              "correlation is left")
        else:
            partial, partial_ci = stats.partial_rank_correlation(metric, gt, covariates, **boot)
            entry.update(partial_spearman_width_l0=partial,
                         partial_spearman_width_l0_ci95=list(partial_ci))
        out[name] = entry
    return out


def stratified_lens(metric: np.ndarray, ground_truth: np.ndarray, *, strata: Sequence,
                    clusters: Sequence, n_boot: int, seed: int, level: float = 0.95,
                    min_size: int = 3) -> dict:
    """Rank correlation within strata, and across them the mean within-stratum Spearman.

    Args:
        metric, ground_truth: oriented values [n].
        strata: [n] labels of the groups users compare within (None: the item is in none).
        clusters: [n] labels of the independent units; a cluster lies inside one stratum.
        min_size: strata with fewer items are left out (said in their note).

    Each resample keeps every stratum and draws, within it, its clusters and then items
    within them (`stats.cluster_bootstrap_weights` with strata). A cluster that spans several
    strata (one oracle under several constructed families) is drawn separately in each, so
    the interval treats those strata as independent given it; "n_units" counts it once, as
    the number of independent units the estimate rests on. A stratum whose metric or
    ground truth is constant on the data is left out, with the reason; on a resample where
    it is constant, the mean is taken over the other strata. The combined estimate is the
    mean of the per-stratum Spearman values (each stratum counts once).

    Returns:
        {"strata": {label: {"n_saes", "n_units", "spearman", "spearman_ci95"} or a note},
        "mean_spearman", "mean_spearman_ci95", "n_strata", "n_units", "resampled"}; the
        combined values are None, with a note, when no stratum qualifies.
    """
    metric, ground_truth = np.asarray(metric, float), np.asarray(ground_truth, float)
    labels = [None if s is None else str(s) for s in strata]
    clusters = [str(c) for c in clusters]
    per_stratum: dict[str, dict] = {}
    used: list[str] = []
    for stratum in sorted({s for s in labels if s is not None}):
        members = [i for i, s in enumerate(labels) if s == stratum]
        units = len({clusters[i] for i in members})
        entry = {"n_saes": len(members), "n_units": units}
        if len(members) < min_size:
            entry.update(spearman=None, spearman_ci95=None,
                         note=f"fewer than {min_size} SAEs")
        elif np.ptp(metric[members]) == 0 or np.ptp(ground_truth[members]) == 0:
            which = "the metric" if np.ptp(metric[members]) == 0 else "the ground truth"
            entry.update(spearman=None, spearman_ci95=None,
                         note=f"{which} is constant in this stratum")
        else:
            entry["spearman"] = stats.spearman(metric[members], ground_truth[members])
            used.append(stratum)
        per_stratum[stratum] = entry
    result = {"strata": per_stratum, "n_strata": len(used), "resampled": STRATIFIED_RESAMPLING,
              "n_units": len({clusters[i] for i, s in enumerate(labels) if s in used})}
    if not used:
        return {**result, "mean_spearman": None, "mean_spearman_ci95": None,
                "note": "no stratum has enough SAEs with a varying metric and ground truth"}
    index = [i for i, s in enumerate(labels) if s in used]
    weights = stats.cluster_bootstrap_weights([f"{labels[i]}|{clusters[i]}" for i in index],
                                              strata=[labels[i] for i in index],
                                              n_boot=n_boot, seed=seed)
    columns = []
    offset = {i: k for k, i in enumerate(index)}
    for stratum in used:
        members = [i for i in index if labels[i] == stratum]
        cols = [offset[i] for i in members]
        rho = stats.weighted_spearman(metric[members], ground_truth[members],
                                       weights[:, cols])
        columns.append(rho)
        per_stratum[stratum]["spearman_ci95"] = _interval_or_none(rho, level)
    boot = np.column_stack(columns)  # [B, used strata]
    defined = ~np.isnan(boot)
    with np.errstate(invalid="ignore"):
        mean_boot = np.where(defined.any(axis=1),
                             np.nansum(boot, axis=1) / np.maximum(defined.sum(axis=1), 1),
                             np.nan)
    return {**result,
            "mean_spearman": float(np.mean([per_stratum[s]["spearman"] for s in used])),
            "mean_spearman_ci95": _interval_or_none(mean_boot, level)}


def _interval_or_none(thetas: np.ndarray, level: float) -> list[float] | None:
    if np.all(np.isnan(thetas)):
        return None
    return list(stats.percentile_interval(thetas, level))


def precision_lens(metric: np.ndarray, *, strata: Sequence, widths: Sequence[int],
                   paired: dict[str, dict]) -> dict:
    """The paired MDD against the metric's spread within the strata users compare.

    For each stratum: ratio = paired MDD at the stratum's width / IQR of the metric over the
    stratum's SAEs; "median_ratio" is their median over strata (the verdict compares it with
    its precision rule). A stratum whose IQR is 0 or whose width has no paired MDD has no
    ratio (its note says why); with no ratio at all, the median is None, with a note.
    """
    metric = np.asarray(metric, float)
    labels = [None if s is None else str(s) for s in strata]
    per_stratum = {}
    for stratum in sorted({s for s in labels if s is not None}):
        members = [i for i, s in enumerate(labels) if s == stratum]
        stratum_widths = {int(widths[i]) for i in members}
        q1, q3 = np.percentile(metric[members], [25, 75])
        iqr = float(q3 - q1)
        mdds = [paired.get(str(w), {}).get("mdd") for w in stratum_widths]
        entry = {"iqr": iqr, "mdd": max(mdds) if None not in mdds else None}
        if entry["mdd"] is None:
            entry.update(ratio=None, note="no paired MDD at this width")
        elif iqr <= 0:
            entry.update(ratio=None, note="the metric does not vary in this stratum")
        else:
            entry["ratio"] = entry["mdd"] / iqr
        per_stratum[stratum] = entry
    ratios = [e["ratio"] for e in per_stratum.values() if e["ratio"] is not None]
    out = {"strata": per_stratum, "n_strata": len(ratios)}
    if not ratios:
        return {**out, "median_ratio": None,
                "note": "no stratum has both a paired MDD and a spread"}
    return {**out, "median_ratio": float(np.median(ratios))}


def trajectory_lens(runs: dict[str, tuple[np.ndarray, np.ndarray, float, float | None]],
                    level: float = 0.95) -> dict:
    """runs: run -> (metric [seeds, checkpoints], ground truth [seeds, checkpoints], the
    metric's reseed std, the paired MDD at the run's width or None).

    Pools over runs: discriminability over all pairs, mean SNR and mean slope over noise. A
    metric without reseed noise has no SNR or slope over noise (infinite, or 0 / 0): those are
    None with a note (no number stands in for them).
    """
    results = {run: stats.trajectory_discriminability(m, g, noise_std=std, level=level, mdd=mdd)
               for run, (m, g, std, mdd) in runs.items()}
    noiseless = any(std == 0 for _, _, std, _ in runs.values())
    pairs = sum(r.n_pairs for r in results.values())
    separated = sum(r.discriminability * r.n_pairs for r in results.values())
    out = {
        "discriminability": float(separated / pairs) if pairs else None,
        "n_pairs": int(pairs),
        "n_runs": len(results),
        "per_run": {run: {"snr": None if noiseless else r.snr,
                          "discriminability": r.discriminability,
                          "slope_over_noise": None if noiseless else r.slope_over_noise}
                    for run, r in results.items()},
    }
    for key in ("snr", "slope_over_noise"):
        if results and not noiseless:
            out[key] = float(np.mean([getattr(r, key) for r in results.values()]))
        else:
            out[key] = None
            out[f"{key}_note"] = ("undefined: the metric has no reseed noise to divide by"
                                  if results else "no training runs")
    if not pairs:
        out["note"] = "no training runs"
    return out


def decomposition_lens(runs: dict[str, np.ndarray]) -> dict:
    """runs: run -> values [checkpoints, training seeds, metric seeds].

    Each run's variance components (`stats.variance_decomposition`, random-effects estimates)
    are averaged over the runs, and each source's fraction is its mean component over the sum.
    "estimates" averages the untruncated estimates (unbiased; "components" are truncated at 0
    run by run, so they lean upward where a source is near 0).
    No runs, or components that are all 0, give null fractions with the reason.
    """
    keys = stats.VARIANCE_SOURCES
    if not runs:
        return {**{k: None for k in keys}, "components": None, "estimates": None,
                "truncated": {}, "n_runs": 0,
                "note": "no trajectory was measured with several metric seeds"}
    parts = {run: stats.variance_decomposition(v) for run, v in runs.items()}
    components = {k: float(np.mean([p["components"][k] for p in parts.values()])) for k in keys}
    estimates = {k: float(np.mean([p["estimates"][k] for p in parts.values()]))
                 for k in next(iter(parts.values()))["estimates"]}
    total = sum(components.values())
    out = {k: (components[k] / total if total > 0 else None) for k in keys}
    if total == 0:
        out["note"] = "the metric is constant along every trajectory: nothing to apportion"
    return {**out, "components": components, "estimates": estimates, "n_runs": len(parts),
            "truncated": {run: p["truncated"] for run, p in parts.items() if p["truncated"]}}


def control_ranks(values: dict[str, float], controls: dict[str, str]) -> dict[str, int]:
    """Rank (1 = best, oriented values) of each control among all SAEs; controls: name -> id.

    Ties share the best rank of their group (competition ranking: 1, 1, 3, ...).
    """
    scores = np.array(list(values.values()))
    rank = {sae: int((scores > v).sum()) + 1 for sae, v in values.items()}
    return {name: rank[sae] for name, sae in controls.items() if sae in rank}


def training_trend_lens(runs: dict[str, np.ndarray], *, n_boot: int = 2000, seed: int = 0,
                        level: float = 0.95) -> dict:
    """Does the metric rise or fall as training goes on? runs: run -> values [seeds,
    checkpoints] (oriented: higher is better).

    Per run, the mean over training seeds of Spearman(checkpoint index, value); a seed whose
    values are constant along training contributes 0 (it neither rises nor falls) and is
    counted in `n_flat`. The answer is the mean over runs, with a percentile bootstrap
    interval over runs (the independent training units) when there are at least two.
    A negative mean says the metric scores SAEs worse the longer they train.
    """
    if not runs:
        return {"mean_spearman": None, "mean_spearman_ci95": None, "n_runs": 0,
                "per_run": {}, "n_flat": 0, "note": "no training runs"}
    per_run, flat = {}, 0
    for run, grid in runs.items():
        grid = np.atleast_2d(np.asarray(grid, dtype=np.float64))
        if grid.shape[1] < 2:
            raise ValueError(f"run {run!r} has {grid.shape[1]} checkpoint(s); a training "
                             "trend needs at least two")
        steps = np.arange(grid.shape[1], dtype=np.float64)
        rhos = []
        for row in grid:
            if _constant(row):
                flat += 1
                rhos.append(0.0)
            else:
                rhos.append(stats.spearman(steps, row))
        per_run[run] = float(np.mean(rhos))
    values = np.array(list(per_run.values()))
    ci = (stats.bootstrap_ci(np.mean, values, n_boot=n_boot, level=level, seed=seed,
                             batched=lambda v: v.mean(axis=1))
          if len(values) >= 2 else None)
    return {"mean_spearman": float(values.mean()), "mean_spearman_ci95": ci,
            "n_runs": len(values), "n_falling": int((values < 0).sum()),
            "n_flat": flat, "per_run": per_run}


def variant_lens(finals: dict[str, tuple[str, np.ndarray, np.ndarray]],
                 mdd: dict[str, float | None], *, n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95) -> dict:
    """Can the metric tell apart two variants of one kind of SAE (same architecture and width,
    other sparsity) as ground truth does? finals: run -> (group, metric [training seeds],
    ground truth [training seeds]) at the final checkpoint, both oriented higher-is-better;
    mdd: group -> the metric's paired MDD there (0 for a noiseless metric). A group whose MDD
    is None or missing (fewer than two reseeded SAEs at its width) is left out and named in
    `unmeasured`: no pair is judged without its noise.

    A pair of runs of one group whose seed-mean ground truths differ is *separated* when the
    seed-mean metric difference has ground truth's sign and exceeds the MDD. The answer is the
    separated fraction of such pairs; its interval resamples runs within each group (a pair
    drawn twice counts twice; a run paired with its own copy is no pair), since pairs that
    share a run are not independent.
    """
    unmeasured = sorted({str(g) for g, _, _ in finals.values() if mdd.get(str(g)) is None})
    names = [r for r in finals if str(finals[r][0]) not in unmeasured]
    groups = [str(finals[r][0]) for r in names]
    m = np.array([float(np.mean(finals[r][1])) for r in names])
    g = np.array([float(np.mean(finals[r][2])) for r in names])
    same = np.equal.outer(np.array(groups, dtype=object), np.array(groups, dtype=object))
    np.fill_diagonal(same, False)
    dg = np.subtract.outer(g, g)
    dm = np.subtract.outer(m, m)
    bar = np.array([[mdd[a] for a in groups]] * len(names)).T  # row i: i's MDD
    valid = same & (dg != 0)
    separated = valid & (np.sign(dm) == np.sign(dg)) & (np.abs(dm) > bar)
    n_pairs = int(valid.sum() // 2)
    if n_pairs == 0:
        return {"separated": None, "separated_ci95": None, "n_pairs": 0, "unmeasured": unmeasured,
                "note": "no two runs of one architecture and width with different ground truth"
                        + (" and a paired MDD" if unmeasured else "")}
    fraction = float(separated.sum() / valid.sum())
    ci = None
    if len(names) >= 2:
        w = stats.cluster_bootstrap_weights(names, n_boot=n_boot, seed=seed,
                                            strata=groups).astype(np.float64)
        num = np.einsum("bi,ij,bj->b", w, separated.astype(np.float64), w)
        den = np.einsum("bi,ij,bj->b", w, valid.astype(np.float64), w)
        with np.errstate(invalid="ignore", divide="ignore"):
            ci = stats.percentile_interval(np.where(den > 0, num / den, np.nan), level)
    return {"separated": fraction, "separated_ci95": ci, "n_pairs": n_pairs,
            "groups": sorted(set(groups)), "unmeasured": unmeasured}


def _constant(values: np.ndarray) -> bool:
    return bool(np.all(values == values[0]))
