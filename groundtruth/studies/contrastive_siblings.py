"""Study `contrastive_siblings`: do CE scores reward or punish representing a shared parent?

CE-Bench contrasts two stories about one subject ("victory" vs "defeat"); the critique: the two
poles share features ("outcome"). In a world whose subjects are parent features with mutually
exclusive children, we know exactly what is shared. Three SAEs that differ only in how they
treat the subjects' parents:
    parent_represented   the oracle: a latent for every parent, firing with it;
    parent_absorbed      the merged family at fraction 1: every child latent writes its parent's
                         direction and the parent latent is silent when a child fires;
    parent_missing       the oracle with every parent latent silenced (threshold +inf).
Each is scored on corpora whose marked tokens carry the shared parent and, as a control, on
corpora without it, over several corpus seeds; the report gives the mean scores, their
differences from parent_represented with bootstrap 95% intervals over seeds, and each SAE's
ground-truth quality.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from groundtruth import stats
from groundtruth.metrics.data import AuditData
from groundtruth.metrics.registry import evaluate_metric
from groundtruth.report import write_study_report
from groundtruth.study import StudyConfig
from synthetic_saes.families import OracleBase, OracleConfig, merged
from synthetic_saes.worlds import build_world

__all__ = ["run"]

SCORES = ("ce_contrastive", "ce_independent", "ce_interpretability",
          "ce_contrastive_v1", "ce_independent_v1", "ce_interpretability_v1")
QUALITY = ("gt_f1", "gt_mcc", "explained_variance")


def _variants(base: OracleBase) -> dict:
    world, oracle = base.world, base.oracle
    parents = world.hierarchy.exclusive_parents()
    threshold = np.array(oracle.threshold)
    threshold[parents] = np.inf
    return {
        "parent_represented": oracle,
        "parent_absorbed": merged(base, 1.0).params,
        "parent_missing": oracle.replace(threshold=threshold),
    }


class _SharedParentData(AuditData):
    """AuditData whose corpora plant (or, as the control, do not plant) the shared parent."""

    def __init__(self, world, config, share_parent: bool):
        super().__init__(world, config)
        self.share_parent = share_parent

    def corpus(self, seed: int, *, share_parent: bool | None = None):
        return super().corpus(seed, share_parent=self.share_parent)


def run(study: StudyConfig, out: str | Path, *, progress: bool = True) -> Path:
    """Run the study into `out` (report.json, report.md, siblings.png); returns report.json."""
    from tqdm.auto import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n_seeds = int(study.options.get("corpus_seeds", 8))
    if n_seeds < 2:
        raise ValueError(f"options.corpus_seeds must be >= 2, got {n_seeds}")
    world = build_world(study.world)
    base = OracleBase(world, seed=study.families.seed, config=OracleConfig(
        training_samples=study.families.oracle_training_samples))
    saes = _variants(base)
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    bar = tqdm(total=2 * len(saes) * n_seeds, unit="score", desc="siblings",
               disable=not progress)
    for label, share in (("shared_parent", True), ("no_parent_control", False)):
        data = _SharedParentData(world, study.data, share)
        results[label] = {}
        for name, sae in saes.items():
            results[label][name] = {m: [] for m in SCORES}
            for seed in range(n_seeds):
                for metric in SCORES:
                    results[label][name][metric].append(evaluate_metric(metric, sae, data, seed))
                bar.update(1)
    bar.close()
    quality_data = AuditData(world, study.data)
    quality = {name: {m: evaluate_metric(m, sae, quality_data, 0) for m in QUALITY}
               for name, sae in saes.items()}

    def summary(values: list[float], reference: list[float] | None) -> dict:
        v = np.asarray(values)
        entry = {"mean": float(v.mean()), "std": float(v.std(ddof=1))}
        if reference is not None:
            diff = v - np.asarray(reference)  # paired by corpus seed
            entry["difference_from_parent_represented"] = float(diff.mean())
            entry["difference_ci95"] = list(stats.bootstrap_ci(
                lambda d: float(np.mean(d)), diff, n_boot=2000, seed=study.seed))
        return entry

    table = {}
    for label, by_sae in results.items():
        table[label] = {}
        for name, metrics in by_sae.items():
            reference = by_sae["parent_represented"] if name != "parent_represented" else None
            table[label][name] = {m: summary(v, reference[m] if reference else None)
                                  for m, v in metrics.items()}
    report = {"config": study.to_dict(), "n_corpus_seeds": n_seeds, "scores": table,
              "ground_truth": quality, "raw": results}
    return write_study_report(out, report, lambda r, _: _markdown(r),
                              lambda o: _plot(table, o / "siblings.png"))


def _verdict(entry: dict) -> str:
    low, high = entry["difference_ci95"]
    if high < 0:
        return "rewards representing the parent"
    if low > 0:
        return "punishes representing the parent"
    return "no detectable difference"


def _markdown(report: dict) -> str:
    lines = ["# Contrastive siblings: do CE scores reward representing a shared parent?", "",
             f"Three SAEs on the `{report['config']['world']['num_features']}`-feature world, "
             f"scored on {report['n_corpus_seeds']} corpus seeds (mean +/- std over seeds); "
             "differences are paired by seed, with bootstrap 95% intervals.", "",
             "Ground truth of each SAE:", "", "| SAE | gt_f1 | gt_mcc | explained variance |",
             "|---|---|---|---|"]
    for name, q in report["ground_truth"].items():
        lines.append(f"| {name} | {q['gt_f1']:.3f} | {q['gt_mcc']:.3f} | "
                     f"{q['explained_variance']:.3f} |")
    for label, by_sae in report["scores"].items():
        lines += ["", f"## Corpus: {label.replace('_', ' ')}", "",
                  "| score | " + " | ".join(by_sae) + " | absorbed - represented | "
                  "missing - represented |", "|---|" + "---|" * (len(by_sae) + 2)]
        for metric in SCORES:
            cells = [f"{by_sae[n][metric]['mean']:.2f} +/- {by_sae[n][metric]['std']:.2f}"
                     for n in by_sae]
            diffs = []
            for other in ("parent_absorbed", "parent_missing"):
                e = by_sae[other][metric]
                diffs.append(f"{e['difference_from_parent_represented']:+.2f} "
                             f"[{e['difference_ci95'][0]:+.2f}, {e['difference_ci95'][1]:+.2f}] "
                             f"({_verdict(e)})")
            lines.append(f"| {metric} | " + " | ".join(cells) + " | " + " | ".join(diffs) + " |")
    lines += ["", "A score 'rewards representing the parent' when the SAEs without a parent latent "
              "score lower than the oracle (the interval of the difference lies below 0).", "",
              "![siblings](siblings.png)", ""]
    return "\n".join(lines)


def _plot(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(table), figsize=(7 * len(table), 4), squeeze=False)
    for ax, (label, by_sae) in zip(axes.flat, table.items()):
        names = list(by_sae)
        width = 0.8 / len(names)
        for i, name in enumerate(names):
            means = [by_sae[name][m]["mean"] for m in SCORES]
            errs = [by_sae[name][m]["std"] for m in SCORES]
            ax.bar(np.arange(len(SCORES)) + i * width, means, width, yerr=errs, label=name)
        ax.set_xticks(np.arange(len(SCORES)) + width, SCORES, rotation=30, ha="right", fontsize=8)
        ax.set_title(label.replace("_", " "))
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
