"""Study `width_confound`: do CE scores grow with SAE width when quality does not?

The max of a z-score over n latents is bounded by (n - 1) / sqrt(n), so a score that is a max
z-score can grow like sqrt(d_sae) for that reason alone. Two series of SAEs on one world:
    oracle_subsets   the oracle restricted to its w most frequent features: every latent is a
                     true feature with the oracle's encoder (equal per-latent quality);
    random           random unit directions, tied encoder, ReLU, no bias (no quality at all);
scored at growing widths over several corpus seeds. For each series and score the report gives
the mean score per width, the exponent b of log(score) = a + b log(width) (b = 0.5 is pure
ceiling growth) with a bootstrap 95% interval over corpus seeds, and the width-calibrated score
(C + I over its ceiling), which should not grow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from groundtruth import stats
from groundtruth.metrics.data import AuditData
from groundtruth.metrics.registry import evaluate_metric
from groundtruth.report import write_study_report
from groundtruth.study import StudyConfig
from synthetic_saes.families import OracleBase, OracleConfig, width as width_member
from synthetic_saes.rng import derive_seed
from synthetic_saes.sae_params import SAEParams
from synthetic_saes.worlds import build_world

__all__ = ["run"]

SCORES = ("ce_contrastive", "ce_independent", "ce_interpretability", "ce_width_calibrated")


def _random_sae(world, width: int, seed: int) -> SAEParams:
    rng = np.random.default_rng(derive_seed(seed, "width-confound-random", width))
    W = rng.standard_normal((width, world.d_in)).astype(np.float32)
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    return SAEParams(W_enc=W.T, b_enc=np.zeros(width), W_dec=W, b_dec=np.zeros(world.d_in),
                     architecture="relu")


def _exponent(widths: np.ndarray, values: np.ndarray) -> float:
    """Least-squares slope of log(value) on log(width) (values must be > 0)."""
    return float(np.polyfit(np.log(widths), np.log(np.maximum(values, 1e-12)), 1)[0])


def run(study: StudyConfig, out: str | Path, *, progress: bool = True) -> Path:
    """Run the study into `out` (report.json, report.md, width_confound.png); returns
    report.json."""
    from tqdm.auto import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    options = study.options
    n_seeds = int(options.get("corpus_seeds", 5))
    world = build_world(study.world)
    oracle_widths = [int(w) for w in options.get("oracle_widths", [128, 256, 512, 1024, 2048])]
    random_widths = [int(w) for w in options.get("random_widths",
                                                 [128, 256, 512, 1024, 2048, 4096])]
    if n_seeds < 2 or not oracle_widths or not random_widths:
        raise ValueError("width_confound needs corpus_seeds >= 2 and some widths")
    for w in oracle_widths:
        if not 1 <= w <= world.num_features:
            raise ValueError(f"oracle_widths must lie in [1, {world.num_features}], got {w}")
    base = OracleBase(world, seed=study.families.seed, config=OracleConfig(
        training_samples=study.families.oracle_training_samples))
    series = {
        "oracle_subsets": {w: width_member(base, w).params for w in oracle_widths},
        "random": {w: _random_sae(world, w, study.seed) for w in random_widths},
    }
    data = AuditData(world, study.data)
    total = sum(len(s) for s in series.values()) * n_seeds
    bar = tqdm(total=total, unit="score", desc="width confound", disable=not progress)
    values: dict[str, dict[str, dict[int, list[float]]]] = {}
    quality: dict[str, dict[int, dict[str, float]]] = {}
    for name, saes in series.items():
        values[name] = {m: {} for m in SCORES}
        quality[name] = {}
        for w, sae in saes.items():
            for m in SCORES:
                values[name][m][w] = []
            for seed in range(n_seeds):
                for m in SCORES:
                    values[name][m][w].append(evaluate_metric(m, sae, data, seed))
                bar.update(1)
            quality[name][w] = {m: evaluate_metric(m, sae, data, 0)
                                for m in ("gt_f1", "gt_mcc", "l0")}
    bar.close()

    summary: dict = {}
    for name, by_metric in values.items():
        summary[name] = {}
        for m, by_width in by_metric.items():
            widths = np.array(sorted(by_width), dtype=float)
            matrix = np.array([by_width[int(w)] for w in widths])  # [widths, seeds]
            exponent = _exponent(widths, matrix.mean(axis=1))
            ci = stats.bootstrap_ci(lambda cols: _exponent(widths, cols.mean(axis=0)),
                                    matrix.T, n_boot=1000, seed=study.seed)
            summary[name][m] = {
                "widths": widths.astype(int).tolist(),
                "mean": matrix.mean(axis=1).tolist(),
                "std": matrix.std(axis=1, ddof=1).tolist(),
                "log_log_exponent": exponent,
                "log_log_exponent_ci95": list(ci),
                "spearman_with_width": float(stats.spearman(
                    np.repeat(widths, matrix.shape[1]), matrix.reshape(-1))),
            }
    report = {"config": study.to_dict(), "n_corpus_seeds": n_seeds, "scores": summary,
              "ground_truth": {n: {str(w): q for w, q in d.items()} for n, d in quality.items()}}
    return write_study_report(out, report, lambda r, _: _markdown(r),
                              lambda o: _plot(summary, o / "width_confound.png"))


def _markdown(report: dict) -> str:
    lines = ["# Width confound: do CE scores grow with width at equal quality?", "",
             f"Scores averaged over {report['n_corpus_seeds']} corpus seeds. Exponent b of "
             "log(score) = a + b log(width) with a bootstrap 95% interval over seeds; b = 0.5 is "
             "the growth of the max z-score ceiling (n - 1) / sqrt(n).", ""]
    for name, by_metric in report["scores"].items():
        lines += [f"## {name.replace('_', ' ')}", "",
                  "| score | " + " | ".join(f"w={w}" for w in by_metric[SCORES[0]]["widths"])
                  + " | exponent b [95% CI] | Spearman with width |",
                  "|---|" + "---|" * (len(by_metric[SCORES[0]]["widths"]) + 2)]
        for m, e in by_metric.items():
            lo, hi = e["log_log_exponent_ci95"]
            lines.append(f"| {m} | " + " | ".join(f"{v:.2f}" for v in e["mean"])
                         + f" | {e['log_log_exponent']:.2f} [{lo:.2f}, {hi:.2f}] | "
                         f"{e['spearman_with_width']:.2f} |")
        gt = report["ground_truth"][name]
        lines += ["", "Ground truth: " + ", ".join(
            f"w={w}: F1 {q['gt_f1']:.2f}, MCC {q['gt_mcc']:.2f}, L0 {q['l0']:.1f}"
            for w, q in gt.items()), ""]
    lines += ["![width confound](width_confound.png)", ""]
    return "\n".join(lines)


def _plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(summary), figsize=(6 * len(summary), 4), squeeze=False)
    for ax, (name, by_metric) in zip(axes.flat, summary.items()):
        for m, e in by_metric.items():
            ax.errorbar(e["widths"], e["mean"], yerr=e["std"], marker="o", ms=3, label=m)
        widths = np.array(by_metric[SCORES[0]]["widths"], dtype=float)
        ax.plot(widths, (widths - 1) / np.sqrt(widths), "k--", lw=1, label="ceiling (n-1)/sqrt(n)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("SAE width")
        ax.set_title(name.replace("_", " "))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
