"""CE-Bench's published claims, tested on CE-Bench's own published numbers (no model needed).

The study `cebench_published` reads the two tables of `experiments/data/cebench-published/`
(see its README) and answers four questions:

    a. headline      Do the published ranking agreements (0.7012 for C + I, 0.7730 for
                     C + I - 0.25 L0, 0.709 for -L0) reproduce from the shipped 48-SAE table?
    b. uncertainty   How wide are they? Percentile bootstrap over SAEs.
    c. holdout       The paper chose alpha on the same 48 SAEs it scored. Does a sparsity-aware
                     predictor fitted on some SAE architectures rank the SAEs of an
                     architecture it never saw, and does it beat -L0 alone?
                     A baseline that reads no CE-Bench score, `width_then_minus_l0` (rank
                     by d_sae, then by lower L0), is scored beside them.
    d. width         Does the raw score grow with the SAE width because the max of a z-score
                     over n latents is bounded by (n - 1) / sqrt(n)?

Notation: for SAE k, C_k = contrastive_score, I_k = independent_score, J_k = joint_score
(CE-Bench's "interpretability" score), L0_k = SAEBench core L0 and T_k = saebench_target (the
SAEBench score the paper regresses onto). Higher is better for every predictor and for T.

All statistics come from `groundtruth.stats` (`ranking_agreement` and its intervals,
`spearman`, `kendall`) and the predictors from `groundtruth.studies.predictors` (shared with
`regression_holdout`); this module reads the tables, assembles the four parts and writes the
report. Randomness: the one integer `seed` is passed to every bootstrap, so all intervals use
the same resampled SAEs (paired across predictors) and the same seed gives the same report.

References:
    Gulko, Peng, Kumar (2025), "CE-Bench", https://arxiv.org/abs/2509.00691
    Karvonen et al. (2025), "SAEBench", https://arxiv.org/abs/2503.09532
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cebench.scores import PAPER_ALPHA, zscore_ceiling
from groundtruth import stats
from groundtruth.store import write_json
from groundtruth.studies.predictors import (
    holdout_analysis, sparsity_aware_score, width_then_minus_l0,
)
from groundtruth.study import StudyConfig, repository_path
from synthetic_saes.validation import require_seed

__all__ = [
    # reading the published tables
    "SAEBENCH_TABLE",
    "GEMMA_SCOPE_TABLE",
    "load_saebench_table",
    "load_gemma_scope_results",
    # the study
    "run_cebench_published",
    "run",
]

SAEBENCH_TABLE = "saebench_gemma2_2b_layer12.csv"
GEMMA_SCOPE_TABLE = "gemma_scope_results.csv"


_SAEBENCH_STRINGS = ("sae_release", "sae_id", "architecture")
_SAEBENCH_NUMBERS = (
    "d_sae", "contrastive_score", "independent_score", "joint_score", "l0", "saebench_target",
)
_GEMMA_SCOPE_STRINGS = ("sae_release", "sae_id", "hook_name", "contrastive_dataset", "date")
_GEMMA_SCOPE_NUMBERS = (
    "d_sae", "contrastive_score", "independent_score", "interpretability_score", "total_rows",
)

# The width study: Gemma Scope 2B residual SAEs of one layer.
_WIDTH_RELEASE = "gemma-scope-2b-pt-res"
_WIDTH_LAYER = 12
_WIDTH_SCORES = ("contrastive_score", "independent_score")

# Published values: (value, number of printed decimals, where it was published).
_PUBLISHED_AGREEMENT = {
    "C + I": (0.7012, 4, "CE-Bench paper"),
    "C + I - 0.25 L0": (0.7730, 4, "CE-Bench paper"),
    "-L0": (0.709, 3, "data README (recomputed from the same table)"),
}

PLOT_ALPHA = "alpha_agreement.png"
PLOT_WIDTH = "width_confound.png"


# --------------------------------------------------------------------------------------------
# Reading the published tables
# --------------------------------------------------------------------------------------------


def _read_table(
    path: Path, strings: Sequence[str], numbers: Sequence[str]
) -> dict[str, np.ndarray | list]:
    """Columns `strings` as lists of str and `numbers` as float64 arrays, validated."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in (*strings, *numbers) if c not in header]
        if missing:
            raise ValueError(
                f"{path.name}: missing column(s) {', '.join(missing)}; "
                f"the file has {', '.join(header) or 'no header'}"
            )
        table: dict[str, list] = {c: [] for c in (*strings, *numbers)}
        for line, row in enumerate(reader, start=2):  # line 1 is the header
            for column in strings:
                table[column].append(row[column] or "")
            for column in numbers:
                text = (row[column] or "").strip()
                try:
                    value = float(text)
                except ValueError:
                    value = math.nan
                if not math.isfinite(value):
                    raise ValueError(
                        f"{path.name}, line {line} (sae_id {row.get('sae_id', '?')!r}): column "
                        f"{column} must be a finite number, got {text!r}"
                    )
                table[column].append(value)
    if not table[numbers[0]]:
        raise ValueError(f"{path.name}: the table has a header but no rows")
    return {c: (np.asarray(v, dtype=np.float64) if c in numbers else v) for c, v in table.items()}


def load_saebench_table(path) -> dict[str, np.ndarray | list]:
    """The 48-SAE table of CE-Bench's headline analysis (SAEBench gemma-2-2b, layer 12).

    Args:
        path: `saebench_gemma2_2b_layer12.csv`.

    Returns:
        {"sae_release", "sae_id", "architecture": list[str] of length n_saes;
        "d_sae", "contrastive_score", "independent_score", "joint_score", "l0",
        "saebench_target": float64 arrays of shape (n_saes,)}, rows in file order.

    Raises:
        ValueError: a missing file, missing columns (named), no rows, or a value that is not
            a finite number (the line, sae_id and column are named).
    """
    return _read_table(Path(path), _SAEBENCH_STRINGS, _SAEBENCH_NUMBERS)


def load_gemma_scope_results(path) -> dict[str, np.ndarray | list]:
    """CE-Bench's shipped per-SAE results (Gemma Scope 2B, Pythia-70M sweeps).

    Args:
        path: `gemma_scope_results.csv`.

    Returns:
        {"sae_release", "sae_id", "hook_name", "contrastive_dataset", "date": list[str];
        "d_sae", "contrastive_score", "independent_score", "interpretability_score",
        "total_rows": float64 arrays of shape (n_rows,)}, rows in file order.

    Raises:
        ValueError: as `load_saebench_table`.
    """
    return _read_table(Path(path), _GEMMA_SCOPE_STRINGS, _GEMMA_SCOPE_NUMBERS)


# --------------------------------------------------------------------------------------------
# Pieces of the study
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# The four parts of the study
# --------------------------------------------------------------------------------------------


def _predictors(t: dict) -> dict[str, tuple[str, np.ndarray]]:
    """name -> (formula, values) of the predictors of part a."""
    c, i, j, l0 = t["contrastive_score"], t["independent_score"], t["joint_score"], t["l0"]
    return {
        "C + I": ("contrastive + independent", c + i),
        "C + I - 0.25 L0": ("contrastive + independent - 0.25 * l0",
                            sparsity_aware_score(c, i, l0, PAPER_ALPHA)),
        "-L0": ("-l0", -l0),
        "C": ("contrastive", c),
        "I": ("independent", i),
        "J": ("joint (interpretability, max pooling)", j),
        "width, then -L0": ("rank by d_sae, ties broken by -l0 (no CE-Bench score)",
                            width_then_minus_l0(t["d_sae"], l0)),
    }


def _headline(t: dict, *, n_boot: int, seed: int) -> dict:
    """Parts a and b: agreement, Spearman (both with 95% CIs) and Kendall tau-b with T."""
    target = t["saebench_target"]
    boot = dict(n_boot=n_boot, seed=seed)
    out = {}
    for name, (formula, values) in _predictors(t).items():
        entry = {
            "formula": formula,
            "agreement": stats.ranking_agreement(values, target),
            "agreement_ci95": list(stats.ranking_agreement_ci(values, target, **boot)),
            "spearman": stats.spearman(values, target),
            "spearman_ci95": list(stats.spearman_ci(values, target, **boot)),
            "kendall": stats.kendall(values, target),
        }
        agreement = entry["agreement"]
        if name in _PUBLISHED_AGREEMENT:
            value, digits, source = _PUBLISHED_AGREEMENT[name]
            entry["published_agreement"] = value
            entry["published_digits"] = digits
            entry["published_source"] = source
            entry["matches_published"] = bool(round(agreement, digits) == round(value, digits))
        out[name] = entry
    return out


_PAIRED_DIFFERENCES = (
    ("C + I - 0.25 L0", "-L0"),
    ("C + I - 0.25 L0", "C + I"),
    ("width, then -L0", "C + I - 0.25 L0"),
)


def _paired_differences(t: dict, *, n_boot: int, seed: int) -> dict:
    """Differences of ranking agreement between two predictors, with paired bootstrap CIs.

    For each (first, second) of `_PAIRED_DIFFERENCES`: agreement(first) - agreement(second)
    on the data and its percentile interval, both agreements computed on the same resample
    (same SAEs), so the interval is that of the difference, not a comparison of two marginal
    intervals. An interval that excludes 0 says the first ranks the SAEs better than the
    second beyond resampling noise.
    """
    predictors = _predictors(t)
    target = t["saebench_target"]
    out = {}
    for first, second in _PAIRED_DIFFERENCES:
        a, b = predictors[first][1], predictors[second][1]
        out[f"{first} minus {second}"] = {
            "difference": stats.ranking_agreement_difference(a, b, target),
            "difference_ci95": list(stats.ranking_agreement_difference_ci(
                a, b, target, n_boot=n_boot, seed=seed)),
        }
    return out


def _log_slope(log_width: np.ndarray, log_score: np.ndarray) -> float:
    """Least-squares slope b of log(score) = a + b log(d_sae); NaN if the width is constant."""
    if log_width.min() == log_width.max():
        return math.nan
    return float(np.polyfit(log_width, log_score, 1)[0])


def _width_confound(g: dict, *, n_boot: int, seed: int) -> dict:
    """Part d: score against width for the Gemma Scope residual SAEs of layer 12.

    For each score s (contrastive, independent) over the selected SAEs:

        spearman_with_width          Spearman of s with d_sae (bootstrap CI over SAEs)
        ratio = s / ceiling(d_sae)   ceiling(n) = (n - 1) / sqrt(n) (`max_zscore_ceiling`)
        ratio_spearman_with_width    Spearman of the ratio with d_sae (bootstrap CI)
        log_slope                    b of the least-squares fit log s = a + b log d_sae
                                     (bootstrap CI); b = 0.5 is pure ceiling (sqrt) growth,
                                     b = 0 no growth.
    """
    release = np.asarray(g["sae_release"])
    layers = np.array([int(m.group(1)) if (m := re.match(r"layer_(\d+)/", s)) else -1
                       for s in g["sae_id"]])
    rows = np.asarray(g["total_rows"])
    selected = (release == _WIDTH_RELEASE) & (layers == _WIDTH_LAYER)
    if selected.sum() < 4:
        raise ValueError(
            f"the width study needs at least 4 {_WIDTH_RELEASE} SAEs of layer {_WIDTH_LAYER}, "
            f"found {int(selected.sum())}"
        )
    selected_rows = sorted({float(r) for r in rows[selected]})
    if len(selected_rows) != 1:
        raise ValueError(
            f"the {_WIDTH_RELEASE} layer-{_WIDTH_LAYER} SAEs mix runs of different dataset "
            f"sizes (total_rows {selected_rows}); they must not be pooled"
        )
    width = g["d_sae"][selected]
    log_width = np.log(width)
    ceiling = zscore_ceiling(width)
    boot = dict(n_boot=n_boot, seed=seed)
    widths = sorted({float(w) for w in width})

    scores = {}
    for name in _WIDTH_SCORES:
        s = g[name][selected]
        if np.any(s <= 0):
            raise ValueError(f"{name} must be positive for the log fit")
        ratio = s / ceiling
        scores[name] = {
            "spearman_with_width": stats.spearman(s, width),
            "spearman_with_width_ci95": list(stats.spearman_ci(s, width, **boot)),
            "ratio_spearman_with_width": stats.spearman(ratio, width),
            "ratio_spearman_with_width_ci95": list(stats.spearman_ci(ratio, width, **boot)),
            "log_slope": _log_slope(log_width, np.log(s)),
            "log_slope_ci95": list(stats.bootstrap_ci(_log_slope, log_width, np.log(s), **boot)),
            "log_intercept": float(np.polyfit(log_width, np.log(s), 1)[1]),
            "by_width": [
                {"d_sae": w, "n_saes": int(np.sum(width == w)),
                 "ceiling": zscore_ceiling(w),
                 "mean_score": float(s[width == w].mean()),
                 "mean_ratio": float(ratio[width == w].mean()),
                 "min_ratio": float(ratio[width == w].min()),
                 "max_ratio": float(ratio[width == w].max())}
                for w in widths
            ],
        }
    other = ~selected
    return {
        "selection": {
            "sae_release": _WIDTH_RELEASE,
            "layer": _WIDTH_LAYER,
            "n_saes": int(selected.sum()),
            "total_rows": selected_rows[0],
            "widths": widths,
            "note": (
                f"Rows with total_rows == {selected_rows[0]:g}: runs of the code with the "
                "Ibar == 0 defect (the 'independent' score is max z(I1), no baseline "
                "subtracted). The 500-row runs (most likely the earlier marked-token code) are "
                "a separate group and are not used here."
            ),
        },
        "rows_by_total_rows": {
            f"{r:g}": int(np.sum(rows == r)) for r in sorted({float(r) for r in rows})
        },
        "other_groups_not_used": {
            "n_rows_500": int(np.sum(other & (rows == 500))),
            "releases_500": sorted({str(x) for x in release[other & (rows == 500)]}),
            "n_rows_other": int(np.sum(other & (rows != 500))),
        },
        "scores": scores,
        "points": {"d_sae": width.tolist(),
                    **{name: g[name][selected].tolist() for name in _WIDTH_SCORES}},
    }


# --------------------------------------------------------------------------------------------
# Plots and the report
# --------------------------------------------------------------------------------------------


def _plot_alpha(holdout: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.array(holdout["alpha_grid"])
    ins = holdout["in_sample"]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for k, fold in enumerate(holdout["folds"]):
        ax.plot(grid, fold["curve"], lw=1, alpha=0.7, color=f"C{k + 1}",
                label=f"held out: {fold['architecture']} ({fold['n_pairs']} pairs)")
        ax.plot([fold["alpha"]], [np.interp(fold["alpha"], grid, fold["curve"])], "o",
                color=f"C{k + 1}", ms=4)
    ax.plot(grid, ins["curve"], color="black", lw=2.5, label="in sample, all 48 SAEs")
    ax.axvline(PAPER_ALPHA, color="grey", ls="--", lw=1, label=f"paper alpha = {PAPER_ALPHA}")
    ax.axvline(ins["alpha_star"], color="black", ls=":", lw=1,
               label=f"alpha* = {ins['alpha_star']:.2f} (in sample)")
    ax.axhline(0.5, color="grey", lw=0.5)
    ax.set_xlabel("alpha in C + I - alpha L0")
    ax.set_ylabel("ranking agreement with SAEBench target")
    ax.set_title("In-sample curve vs within-architecture curves (dots: fold's fitted alpha)",
                 fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_width(width: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    points = width["points"]
    d = np.array(points["d_sae"])
    grid = np.geomspace(d.min(), d.max(), 100)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    labels = {"contrastive_score": "contrastive C", "independent_score": "independent I"}
    for k, name in enumerate(_WIDTH_SCORES):
        s = np.array(points[name])
        b = width["scores"][name]["log_slope"]
        left.scatter(d, s, s=14, color=f"C{k}", label=f"{labels[name]} (b = {b:.2f})")
        right.scatter(d, s / zscore_ceiling(d), s=14, color=f"C{k}", label=labels[name])
    left.plot(grid, zscore_ceiling(grid), "k--", lw=1,
              label="ceiling (n - 1) / sqrt(n)")
    widths = sorted(set(points["d_sae"]))
    for axis in (left, right):
        axis.set_xscale("log")
        axis.set_xticks(widths, [f"{w / 1024:g}k" for w in widths])
        axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    left.set_yscale("log")
    left.set_xlabel("d_sae")
    left.set_ylabel("score")
    left.set_title("Raw scores and the z-score ceiling", fontsize=10)
    left.legend(fontsize=7)
    right.set_xlabel("d_sae")
    right.set_ylabel("score / ceiling")
    right.set_title("Scores as a fraction of their ceiling", fontsize=10)
    right.legend(fontsize=7)
    sel = width["selection"]
    fig.suptitle(f"{sel['sae_release']} layer {sel['layer']}, {sel['n_saes']} SAEs "
                 f"({sel['total_rows']:g}-row runs)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _ci(pair) -> str:
    return f"[{pair[0]:.3f}, {pair[1]:.3f}]"


def _render_markdown(report: dict) -> str:
    head = report["headline"]
    ho = report["holdout"]
    ins = ho["in_sample"]
    lin = ho["linear"]
    wd = report["width_confound"]
    sel = wd["selection"]
    n = report["data"]["n_saes"]
    lines = [
        "# CE-Bench's published claims, on CE-Bench's published numbers",
        "",
        f"Data: `{SAEBENCH_TABLE}` ({n} SAEs of SAEBench's gemma-2-2b layer-12 sweeps, "
        f"{len(ho['folds'])} architectures) and `{GEMMA_SCOPE_TABLE}` "
        f"({report['data']['n_gemma_scope_rows']} results files). Ranking agreement = fraction "
        "of concordant pairs (ties count half); intervals are 95% percentile bootstraps over "
        f"SAEs ({report['config']['n_boot']} resamples, seed {report['config']['seed']}).",
        "",
        "## a-b. Headline reproduction",
        "",
        "| predictor | published agreement | reproduced | matches | agreement 95% CI "
        "| Spearman [95% CI] | Kendall tau-b |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, e in head.items():
        if "published_agreement" in e:
            pub = f"{e['published_agreement']:.{e['published_digits']}f}"
            match = "yes" if e["matches_published"] else "**no**"
        else:
            pub, match = "-", "-"
        lines.append(
            f"| {name} | {pub} | {e['agreement']:.4f} | {match} | {_ci(e['agreement_ci95'])} "
            f"| {e['spearman']:.3f} {_ci(e['spearman_ci95'])} "
            f"| {e['kendall']:.3f} |"
        )
    lines += ["", "Paired bootstrap differences of agreement (same resampled SAEs):", ""]
    for name, e in report["paired_differences"].items():
        lines.append(f"- {name}: {e['difference']:+.4f}, 95% CI {_ci(e['difference_ci95'])}")
    paper, minus_l0 = head["C + I - 0.25 L0"], head["-L0"]
    vs_l0 = report["paired_differences"]["C + I - 0.25 L0 minus -L0"]["difference_ci95"]
    lines += [
        "",
        ("All published numbers reproduce to the printed digits. "
         if all(e.get("matches_published", True) for e in head.values())
         else "**Not every published number reproduces** (see the table). ")
        + f"In sample, the sparsity-aware score's edge over -L0 "
        f"alone ({paper['agreement'] - minus_l0['agreement']:+.3f}) is "
        + ("within" if vs_l0[0] <= 0 <= vs_l0[1] else "outside")
        + " resampling noise, and the plain baseline `width, then -L0` (rank by d_sae, then "
        f"by lower L0; no CE-Bench score) reaches {head['width, then -L0']['agreement']:.4f}.",
    ]
    means = ho["pair_weighted_mean"]
    vs = ho["versus_minus_l0_per_fold"]
    lines += [
        "",
        "## c. Is alpha = 0.25 fitted to the test set? Leave one architecture out",
        "",
        f"In sample, the agreement of C + I - alpha L0 peaks at alpha* = {ins['alpha_star']:.2f} "
        f"(agreement {ins['alpha_star_agreement']:.4f}; maximisers span "
        f"[{ins['alpha_star_range'][0]:.2f}, {ins['alpha_star_range'][1]:.2f}]); the paper's "
        f"alpha = 0.25 gives {ins['paper_alpha_agreement']:.4f}. Both were chosen on the 48 SAEs "
        "they are scored on.",
        "",
        "Each fold fits alpha (and a least-squares predictor of the target on C, I, L0 and a "
        "constant) on the other architectures, then ranks the held-out architecture's SAEs "
        "among themselves (agreement over pairs within the held-out architecture):",
        "",
        "| held-out architecture | SAEs | pairs | fitted alpha | C+I-alpha L0 | C+I-0.25 L0 "
        "| C+I | -L0 | linear | width, then -L0 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in ho["folds"]:
        a = f["agreement"]
        lines.append(
            f"| {f['architecture']} | {f['n_saes']} | {f['n_pairs']} | {f['alpha']:.2f} "
            f"| {a['fitted_alpha']:.3f} | {a['paper_alpha']:.3f} | {a['c_plus_i']:.3f} "
            f"| {a['minus_l0']:.3f} | {a['linear']:.3f} | {a['width_then_minus_l0']:.3f} |"
        )
    lines.append(
        f"| **pair-weighted mean** | {n} | {ho['n_pairs_within_architectures']} | "
        f"| {means['fitted_alpha']:.3f} | {means['paper_alpha']:.3f} | {means['c_plus_i']:.3f} "
        f"| {means['minus_l0']:.3f} | {means['linear']:.3f} "
        f"| {means['width_then_minus_l0']:.3f} |"
    )
    def record(k):
        return f"{vs[k]['wins']}/{vs[k]['ties']}/{vs[k]['losses']}"

    lo, hi = ho["alpha_range_over_folds"]
    lines += [
        "",
        f"In plain words: on an architecture it was not fitted on, C + I - alpha L0 with the "
        f"fold's alpha reaches a pair-weighted agreement of {means['fitted_alpha']:.3f}, the "
        f"paper's alpha {means['paper_alpha']:.3f}, C + I {means['c_plus_i']:.3f} and the "
        f"linear predictor {means['linear']:.3f}, against {means['minus_l0']:.3f} for -L0 "
        f"alone (folds won/tied/lost against -L0: fitted alpha {record('fitted_alpha')}, "
        f"paper alpha {record('paper_alpha')}, C + I {record('c_plus_i')}, linear "
        f"{record('linear')}, width then -L0 {record('width_then_minus_l0')}). The fitted "
        f"alpha is unstable, {lo:.2f} to {hi:.2f} across folds. The held-out pairs split into "
        "pairs of SAEs of the same width and pairs of different widths (only jump_relu has "
        "several widths):",
        "",
        "| pairs | n | C+I-alpha L0 | C+I-0.25 L0 | C+I | -L0 | linear | width, then -L0 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind, label in (("same_width", "same architecture, same width"),
                        ("cross_width", "same architecture, different widths")):
        e = ho["same_vs_cross_width"][kind]
        if not e["architectures"]:
            continue
        m = e["pair_weighted_mean"]
        lines.append(
            f"| {label} ({', '.join(e['architectures'])}) | {e['n_pairs']} "
            f"| {m['fitted_alpha']:.3f} | {m['paper_alpha']:.3f} | {m['c_plus_i']:.3f} "
            f"| {m['minus_l0']:.3f} | {m['linear']:.3f} | {m['width_then_minus_l0']:.3f} |"
        )
    lines.append("")
    split = ho["same_vs_cross_width"]
    if split["same_width"]["architectures"] and split["cross_width"]["architectures"]:
        same = split["same_width"]["pair_weighted_mean"]
        cross = split["cross_width"]["pair_weighted_mean"]
        helps = same["paper_alpha"] > same["minus_l0"]
        width_wins = means["width_then_minus_l0"] >= means["paper_alpha"]
        lines += [
            f"Among SAEs of one architecture and one width, -L0 alone ranks them at "
            f"{same['minus_l0']:.3f}, the paper's predictor at {same['paper_alpha']:.3f}: the "
            f"CE-Bench terms {'help' if helps else 'add nothing'} there. On pairs of different "
            f"widths C + I gets {cross['c_plus_i']:.3f} and ranking by width alone "
            f"{cross['width_then_minus_l0']:.3f}, while C + I grows with width (part d) and, "
            "on this table, so does the target ("
            + "; ".join(f"{f['architecture']}: Spearman with d_sae "
                        f"{f['target_spearman_with_width']:.2f} for the target, "
                        f"{f['c_plus_i_spearman_with_width']:.2f} for C + I"
                        for f in ho["folds"] if "target_spearman_with_width" in f)
            + "). The baseline that reads no CE-Bench score at all, width then -L0, reaches "
            f"{means['width_then_minus_l0']:.3f} over all held-out pairs against "
            f"{means['paper_alpha']:.3f} for the paper's predictor"
            + (": on held-out architectures, what the CE-Bench terms add over -L0 is the SAE's "
               "width, which is known without them." if width_wins else "."),
            "",
        ]
    lines += [
        "Linear predictor T ~ C + I + L0 + 1: in sample agreement "
        f"{lin['in_sample_agreement']:.4f} "
        f"(Spearman {lin['in_sample_spearman']:.3f}); out of fold, pooled over all {n} SAEs, "
        f"agreement {lin['out_of_fold_agreement']:.4f} (Spearman "
        f"{lin['out_of_fold_spearman']:.3f}). C + I - alpha_fold L0 out of fold, pooled: "
        f"agreement {ho['fitted_alpha_out_of_fold']['agreement']:.4f} (Spearman "
        f"{ho['fitted_alpha_out_of_fold']['spearman']:.3f}). -L0 alone: agreement "
        f"{ho['minus_l0']['agreement']:.4f} (Spearman {ho['minus_l0']['spearman']:.3f}).",
        "",
        f"![agreement as a function of alpha]({PLOT_ALPHA})",
        "",
        "## d. The width confound",
        "",
        f"{sel['n_saes']} Gemma Scope 2B residual SAEs of layer {sel['layer']}, widths "
        + ", ".join(f"{w / 1024:g}k" for w in sel["widths"])
        + f", all from {sel['total_rows']:g}-row runs. {sel['note']} "
        f"The file holds {wd['other_groups_not_used']['n_rows_500']} such 500-row runs "
        f"({', '.join(wd['other_groups_not_used']['releases_500'])}). The ceiling of a max "
        "z-score over n latents is (n - 1) / sqrt(n).",
        "",
        "| score | Spearman with d_sae [95% CI] | score/ceiling Spearman with d_sae [95% CI] "
        "| log-log slope b [95% CI] |",
        "|---|---|---|---|",
    ]
    for name, e in wd["scores"].items():
        lines.append(
            f"| {name} | {e['spearman_with_width']:.3f} {_ci(e['spearman_with_width_ci95'])} "
            f"| {e['ratio_spearman_with_width']:.3f} "
            f"{_ci(e['ratio_spearman_with_width_ci95'])} "
            f"| {e['log_slope']:.3f} {_ci(e['log_slope_ci95'])} |"
        )
    lines += ["", "| d_sae | SAEs | ceiling | mean C | mean C/ceiling | mean I | mean I/ceiling |",
              "|---|---|---|---|---|---|---|"]
    cs, is_ = wd["scores"]["contrastive_score"], wd["scores"]["independent_score"]
    for bc, bi in zip(cs["by_width"], is_["by_width"]):
        lines.append(
            f"| {bc['d_sae']:.0f} | {bc['n_saes']} | {bc['ceiling']:.1f} | {bc['mean_score']:.1f} "
            f"| {bc['mean_ratio']:.3f} | {bi['mean_score']:.1f} | {bi['mean_ratio']:.3f} |"
        )
    bcon = cs["log_slope"]
    lines += [
        "",
        f"In plain words: the raw contrastive score rises with width (Spearman "
        f"{cs['spearman_with_width']:.2f}), growing like d_sae^{bcon:.2f}; pure ceiling growth "
        f"would be d_sae^0.5. Divided by its ceiling, its Spearman with width is "
        f"{cs['ratio_spearman_with_width']:.2f} (95% CI "
        f"{_ci(cs['ratio_spearman_with_width_ci95'])}): the contrastive score is a near-constant "
        f"fraction ({min(b['mean_ratio'] for b in cs['by_width']):.2f} to "
        f"{max(b['mean_ratio'] for b in cs['by_width']):.2f} on average per width) of its "
        f"ceiling. The independent score grows like d_sae^{is_['log_slope']:.2f}, a little "
        f"slower than its ceiling (score/ceiling Spearman with width "
        f"{is_['ratio_spearman_with_width']:.2f}). A comparison of SAEs of different widths by "
        "raw score mostly compares their widths.",
        "",
        f"![width confound]({PLOT_WIDTH})",
        "",
        "## Caveats",
        "",
        "- Bootstrap intervals resample SAEs as if independent; SAEs of one architecture sweep "
        "are not, so the intervals are, if anything, too narrow.",
        "- Within-architecture folds are small (15 pairs for a 6-SAE architecture), so per-fold "
        "agreements move in steps of 1/15; read the pair-weighted mean.",
        "- `width, then -L0` is a baseline added after looking at these numbers (nothing in it "
        "is fitted, but its choice is post hoc).",
        "- The target is the SAEBench score the paper regressed onto (most likely autointerp, an "
        "LLM-judge score with its own noise); which exactly is not recorded.",
    ]
    return "\n".join(lines) + "\n"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_finite(value, where: str = "report") -> None:
    """Raise if any number in a nested report is NaN or infinite (json allow_nan=False)."""
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for k, v in enumerate(value):
            _check_finite(v, f"{where}[{k}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} is not finite ({value})")


def run_cebench_published(
    data_dir: Path,
    out: Path,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    alpha_grid=np.linspace(0, 1, 101),
) -> dict:
    """Test CE-Bench's published claims on its published numbers; write the report.

    Reads `data_dir / "saebench_gemma2_2b_layer12.csv"` and
    `data_dir / "gemma_scope_results.csv"` and computes (see the module docstring and the
    helpers for every definition):

        headline            per predictor (C + I, C + I - 0.25 L0, -L0, C, I, J, and the
                            baseline `width_then_minus_l0`): ranking agreement with T, its
                            published value and whether it matches to the printed digits,
                            Spearman (both with a 95% percentile bootstrap interval over SAEs;
                            the agreement's over pairs of distinct resampled SAEs, see
                            `stats.ranking_agreement_ci`) and Kendall tau-b.
        paired_differences  agreement differences with paired bootstrap intervals:
                            C + I - 0.25 L0 minus -L0, minus C + I; width-then-L0 minus
                            C + I - 0.25 L0.
        holdout             alpha* in sample; leave-one-architecture-out agreements of the
                            fitted-alpha, paper-alpha, C + I, -L0 and linear predictors (see
                            `_holdout`).
        width_confound      Spearman of raw and ceiling-normalised scores with d_sae, and the
                            log-log growth exponent (see `_width_confound`).

    Writes `out/report.json` (`groundtruth.store.write_json`, sorted keys, no NaN),
    `out/report.md` and the plots `out/alpha_agreement.png`, `out/width_confound.png`.

    Args:
        data_dir: folder holding the two CSVs (resolved by the caller).
        out: output folder, created if needed.
        n_boot: bootstrap resamples per interval (>= 1).
        seed: integer seed of every bootstrap (the same seed gives the same report.json).
        alpha_grid: 1-D grid of L0 weights to fit alpha over (finite, at least 2 values).

    Returns:
        The report (the content of report.json) as a dict of Python floats, ints, str, lists.

    Raises:
        ValueError: bad tables (see the loaders), bad n_boot / seed / alpha_grid, or a
            non-finite number in the report.
    """
    data_dir, out = Path(data_dir), Path(out)
    grid = np.asarray(alpha_grid, dtype=np.float64)
    if grid.ndim != 1 or grid.size < 2 or not np.all(np.isfinite(grid)):
        raise ValueError(f"alpha_grid must be a 1-D finite grid of >= 2 values, got {alpha_grid}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    seed = require_seed(seed)

    saebench_path = data_dir / SAEBENCH_TABLE
    gemma_path = data_dir / GEMMA_SCOPE_TABLE
    t = load_saebench_table(saebench_path)
    g = load_gemma_scope_results(gemma_path)

    width = _width_confound(g, n_boot=n_boot, seed=seed)
    report = {
        "study": "cebench_published",
        "config": {"n_boot": int(n_boot), "seed": int(seed),
                   "alpha_grid": {"min": float(grid.min()), "max": float(grid.max()),
                                  "n": int(grid.size)}},
        "data": {
            "saebench_table": SAEBENCH_TABLE,
            "saebench_sha256": _sha256(saebench_path),
            "gemma_scope_table": GEMMA_SCOPE_TABLE,
            "gemma_scope_sha256": _sha256(gemma_path),
            "n_saes": len(t["saebench_target"]),
            "architectures": {a: int(t["architecture"].count(a))
                              for a in sorted(set(t["architecture"]))},
            "n_gemma_scope_rows": len(g["d_sae"]),
        },
        "headline": _headline(t, n_boot=n_boot, seed=seed),
        "paired_differences": _paired_differences(t, n_boot=n_boot, seed=seed),
        "holdout": holdout_analysis(t, grid),
        "width_confound": width,
        "plots": [PLOT_ALPHA, PLOT_WIDTH],
    }
    _check_finite(report)

    write_json(out / "report.json", report, trailing_newline=True)
    _plot_alpha(report["holdout"], out / PLOT_ALPHA)
    _plot_width(width, out / PLOT_WIDTH)
    (out / "report.md").write_text(_render_markdown(report))
    return report


def run(study: StudyConfig, out: str | Path, *, progress: bool = True) -> Path:
    """The study runner (`groundtruth.studies.STUDIES`): `[options]` data_dir (default
    experiments/data/cebench-published, relative to the repository root) and n_boot (2000);
    the seed is the study's. Returns report.json. It runs in seconds, so shows no progress."""
    data_dir = repository_path(study.options.get("data_dir", "experiments/data/cebench-published"))
    out = Path(out)
    run_cebench_published(data_dir, out, n_boot=int(study.options.get("n_boot", 2000)),
                          seed=study.seed)
    return out / "report.json"
