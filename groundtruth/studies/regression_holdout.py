"""Study `regression_holdout`: does the sparsity-aware CE score generalise to held-out SAEs?

CE-Bench fitted alpha in C + I - alpha L0 (and a regression onto SAEBench scores) on the same
SAEs it then scored. Here the target is ground truth: on the population of an audit run
(constructed families, controls and trained final checkpoints), alpha and a linear predictor
of the primary ground-truth metric from [C, I, L0] are fitted with one SAE group held out at a
time (each trained architecture, and the constructed SAEs as one group) and scored on the
held-out group by ranking agreement, beside C + I, the paper's alpha = 0.25, -L0 alone and
ranking by width then -L0 (`groundtruth.studies.predictors.holdout_analysis`, the same analysis
as on the published table).

Options: source_study (default experiments/ce_vs_groundtruth.toml) and source_run (default
runs/<its name>): the audit run whose values are used; it is run, or resumed, first.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cebench.scores import PAPER_ALPHA
from groundtruth.audit import run_audit
from groundtruth.report import write_study_report
from groundtruth.studies.predictors import holdout_analysis
from groundtruth.study import StudyConfig, load_study, repository_path

__all__ = ["run", "holdout_table"]


def holdout_table(report: dict, target: str) -> dict:
    """The audit's correlation population as the table `holdout_analysis` reads."""
    saes = [s for s in report["saes"] if s["in_correlation"]]
    return {
        "contrastive_score": np.array([s["scores"]["ce_contrastive"] for s in saes]),
        "independent_score": np.array([s["scores"]["ce_independent"] for s in saes]),
        "l0": np.array([s["scores"]["l0"] for s in saes]),
        "saebench_target": np.array([s["scores"][target] for s in saes]),
        "d_sae": np.array([float(s["width"]) for s in saes]),
        "architecture": [s["family"] if s["kind"] == "trained" else "constructed" for s in saes],
    }


def run(study: StudyConfig, out: str | Path, *, progress: bool = True) -> Path:
    """Run the study into `out` (report.json, report.md, holdout.png); returns report.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    options = study.options
    source = load_study(repository_path(options.get("source_study",
                                                    "experiments/ce_vs_groundtruth.toml")))
    for needed in ("ce_contrastive", "ce_independent", "l0"):
        if needed not in source.metrics and needed != "l0":
            raise ValueError(f"the source study must measure {needed}")
    source_run = Path(options.get("source_run", Path("runs") / source.name))
    report_path = run_audit(source, source_run, progress=progress)
    report = json.loads(report_path.read_text())
    target = options.get("target", source.lenses.ground_truth[0])
    table = holdout_table(report, target)
    grid = np.linspace(0.0, float(options.get("alpha_max", 1.0)), 101)
    analysis = holdout_analysis(table, grid)
    result = {"config": study.to_dict(), "source_run": str(source_run), "target": target,
              "n_saes": len(table["l0"]), "groups": sorted(set(table["architecture"])),
              "holdout": analysis}
    return write_study_report(out, result, lambda r, _: _markdown(r),
                              lambda o: _plot(analysis, o / "holdout.png"))


def _markdown(result: dict) -> str:
    h = result["holdout"]
    names = list(h["pair_weighted_mean"])
    lines = [
        "# Regression holdout: does C + I - alpha L0 generalise to held-out SAEs?", "",
        f"Target: `{result['target']}` on {result['n_saes']} SAEs of `{result['source_run']}`; "
        f"groups held out in turn: {', '.join(result['groups'])}. Agreement = fraction of "
        "concordant pairs (within the held-out group).", "",
        f"In sample: alpha* = {h['in_sample']['alpha_star']:.2f} (agreement "
        f"{h['in_sample']['alpha_star_agreement']:.3f}); alpha = {PAPER_ALPHA:g} gives "
        f"{h['in_sample']['paper_alpha_agreement']:.3f}. Fitted alpha over folds: "
        f"{h['alpha_range_over_folds'][0]:.2f} .. {h['alpha_range_over_folds'][1]:.2f}.", "",
        "| held-out group | pairs | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for fold in h["folds"]:
        lines.append(f"| {fold['architecture']} | {fold['n_pairs']} | "
                     + " | ".join(f"{fold['agreement'][n]:.3f}" for n in names) + " |")
    lines.append(f"| pair-weighted mean | {h['n_pairs_within_architectures']} | "
                 + " | ".join(f"{h['pair_weighted_mean'][n]:.3f}" for n in names) + " |")
    lin = h["linear"]
    lines += ["", f"Linear predictor of the target from [C, I, L0]: in sample agreement "
              f"{lin['in_sample_agreement']:.3f} (Spearman {lin['in_sample_spearman']:.3f}); "
              f"out of fold {lin['out_of_fold_agreement']:.3f} (Spearman "
              f"{lin['out_of_fold_spearman']:.3f}). -L0 alone: agreement "
              f"{h['minus_l0']['agreement']:.3f} (Spearman {h['minus_l0']['spearman']:.3f}).",
              "", "![holdout](holdout.png)", ""]
    return "\n".join(lines)


def _plot(h: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.asarray(h["alpha_grid"])
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(grid, h["in_sample"]["curve"], "k", lw=2, label="in sample (all SAEs)")
    for fold in h["folds"]:
        ax.plot(grid, fold["curve"], lw=1, label=f"held out: {fold['architecture']}")
    ax.axvline(PAPER_ALPHA, color="tab:red", ls="--", lw=1, label=f"paper alpha {PAPER_ALPHA:g}")
    ax.set_xlabel("alpha in C + I - alpha L0")
    ax.set_ylabel("ranking agreement with ground truth")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
