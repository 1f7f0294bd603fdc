"""Reports people read: report.json (machine), report.md and PNG plots (people)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from groundtruth.store import write_json

__all__ = ["verdict", "write_report", "write_study_report", "render_markdown", "plot_report"]


def verdict(entry: dict, rules, primary_gt: str) -> dict:
    """The per-metric verdict and the rule that produced it (see `VerdictRules`)."""
    corr = entry["gt_correlation"].get(primary_gt, {})
    low, high = corr.get("spearman_ci95", [0.0, 0.0])
    if low > rules.track_low:
        tracks = "tracks"
    elif high < rules.track_high:
        tracks = "does not track"
    else:
        tracks = "inconclusive"
    iqr = entry.get("population_iqr", 0.0)
    mdd = entry["reseed"]["mdd"]
    precise = mdd <= rules.precision_fraction * iqr if iqr > 0 else mdd == 0
    separates = entry["trajectory"]["discriminability"] >= rules.discriminability
    partial = corr.get("partial_spearman_width_l0")
    confounded = partial is not None and partial < corr.get("spearman", 0.0) - rules.confound_drop
    reasons = []
    if tracks != "tracks":
        reasons.append(f"{tracks} ground truth ({primary_gt} Spearman 95% CI "
                       f"[{low:.2f}, {high:.2f}], needs lower bound > {rules.track_low})")
    if not precise:
        reasons.append(f"noisy (MDD {mdd:.3g} > {rules.precision_fraction:g} x population IQR "
                       f"{iqr:.3g})")
    if not separates:
        reasons.append(f"does not separate checkpoints (discriminability "
                       f"{entry['trajectory']['discriminability']:.2f} < {rules.discriminability})")
    if confounded:
        reasons.append(f"confounded by width / L0 (partial Spearman {partial:.2f} vs "
                       f"{corr.get('spearman', 0.0):.2f})")
    return {"overall": "trustworthy" if not reasons else "not trustworthy",
            "tracks": tracks, "precise": bool(precise), "separates": bool(separates),
            "confounded": bool(confounded), "reasons": reasons}


def write_study_report(out: Path, report: dict, render, plot=None) -> Path:
    """Write a study's report.json (`write_json`: sorted keys, no NaN), its plots
    (`plot(out)`, returning the file names it wrote, if given) and report.md
    (`render(report, plot_names)`); returns report.json."""
    json_path = write_json(out / "report.json", report)
    names = plot(out) if plot is not None else []
    (out / "report.md").write_text(render(report, names))
    return json_path


def write_report(report: dict, out: Path) -> Path:
    """Write the audit's report.json, PNG plots and report.md into `out`."""
    return write_study_report(out, report, render_markdown, lambda o: plot_report(report, o))


def _fmt(x, digits=2) -> str:
    if x is None:
        return "-"
    if abs(x) >= 1e9:  # the JSON sentinel of an infinite ratio (zero reseed noise)
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}f}"


def render_markdown(report: dict, plots: list[str] | None = None) -> str:
    cfg = report["config"]
    gts = cfg["lenses"]["ground_truth"]
    primary = gts[0]
    lines = [f"# Audit: {cfg['name']}", ""]
    if cfg.get("description"):
        lines += [cfg["description"], ""]
    pop = report["population"]
    lines += [
        f"World: `{report['world']['summary']}`. Population: {pop['n_correlation']} SAEs for "
        f"the correlation lens ({pop['by_kind']}), {pop['n_trajectory_runs']} training runs x "
        f"{pop['n_training_seeds']} seeds x {pop['n_checkpoints']} checkpoints for trajectories. "
        f"Reseed noise over {cfg['lenses']['reseed_seeds']} metric seeds on "
        f"{pop['n_reseed']} SAEs.", "",
        "## Verdicts", "",
        f"| metric | verdict | Spearman vs {primary} [95% CI] | partial (width, L0) | "
        + " | ".join(f"Spearman vs {g}" for g in gts[1:])
        + (" | " if len(gts) > 1 else "")
        + "reseed CV | MDD / IQR | discriminability | SNR |",
        "|---|---|---|---|" + "---|" * (len(gts) - 1) + "---|---|---|---|",
    ]
    for name, m in report["metrics"].items():
        c = m["gt_correlation"][primary]
        others = " | ".join(_fmt(m["gt_correlation"][g]["spearman"]) for g in gts[1:])
        iqr = m["population_iqr"]
        ratio = m["reseed"]["mdd"] / iqr if iqr > 0 else 0.0
        lines.append(
            f"| {name} | {m['verdict']['overall']} | {_fmt(c['spearman'])} "
            f"[{_fmt(c['spearman_ci95'][0])}, {_fmt(c['spearman_ci95'][1])}] | "
            f"{_fmt(c['partial_spearman_width_l0'])} | " + (others + " | " if others else "")
            + f"{_fmt(m['reseed']['cv'], 3)} | {_fmt(ratio)} | "
            f"{_fmt(m['trajectory']['discriminability'])} | {_fmt(m['trajectory']['snr'], 1)} |")
    lines += (_comparison_lines(report) + _ground_truth_lines(report)
              + _model_output_lines(report))
    lines += ["", "### Why", ""]
    for name, m in report["metrics"].items():
        reasons = m["verdict"]["reasons"]
        lines.append(f"- **{name}**: " + ("; ".join(reasons) if reasons else "passes every rule"))
    rules = cfg["verdict"]
    lines += [
        "", "### Rules", "",
        f"- tracks ground truth: the Spearman 95% CI with {primary} lies above "
        f"{rules['track_low']} (does not track: below {rules['track_high']}).",
        f"- precise: MDD (z_0.975 sqrt(2) x pooled reseed std) at most "
        f"{rules['precision_fraction']} x the metric's interquartile range over the population.",
        f"- separates checkpoints: discriminability >= {rules['discriminability']}.",
        f"- confounded: partial Spearman controlling width and L0 below the Spearman by more than "
        f"{rules['confound_drop']}.",
        "- trustworthy: tracks, precise, separates and not confounded.",
        "", "## Sanity checks", "",
    ]
    sanity = report["sanity"]
    for gt, value in sanity["gt_self_correlation"].items():
        lines.append(f"- {gt} against itself: Spearman {value:.3f}")
    for gt, ranks in sanity["control_ranks_on_ground_truth"].items():
        lines.append(f"- control ranks on {gt} (1 = best of {pop['n_correlation']}): "
                     + ", ".join(f"{k} {v}" for k, v in ranks.items()))
    lines.append(f"- all sanity checks pass: {sanity['ok']}")
    lines += ["", "## Where each metric puts the controls", "",
              "| metric | " + " | ".join(report["controls"]) + " |",
              "|---|" + "---|" * len(report["controls"])]
    for name, m in report["metrics"].items():
        ranks = m["control_ranks"]
        lines.append(f"| {name} | " + " | ".join(str(ranks.get(c, "-")) for c in report["controls"])
                     + " |")
    lines += ["", "## Variance components along trajectories", "",
              "Random-effects estimates (expected mean squares) of checkpoint, training-seed and "
              "metric-seed variance, averaged over the trajectories measured with several metric "
              "seeds; each column is its share of one value's variance. A negative estimate is "
              "set to 0 (the last column counts the runs where that happened).", "",
              "| metric | checkpoint | training seed | metric seed | runs truncated |",
              "|---|---|---|---|---|"]
    for name, m in report["metrics"].items():
        d = m["variance_decomposition"]
        lines.append(f"| {name} | {_fmt(d['checkpoint'])} | {_fmt(d['training_seed'])} | "
                     f"{_fmt(d['metric_seed'])} | {len(d['truncated'])} of {d['n_runs']} |")
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    lines.append("")
    return "\n".join(lines)


def _ci(value, interval) -> str:
    if value is None:
        return "-"
    return f"{_fmt(value)} [{_fmt(interval[0])}, {_fmt(interval[1])}]"


def _comparison_lines(report: dict) -> list[str]:
    comparison = report.get("comparison")
    if not comparison:
        return []
    lines = ["", f"## Beside {comparison.get('reference_study') or comparison['reference']}", ""]
    if not comparison["found"]:
        return lines + [f"No reference report at `{comparison['reference']}`: run its study "
                        "(`make audit` for the synthetic one) and rerun this study to put "
                        "the numbers side by side."]
    gt = comparison["ground_truth"]
    lines += [f"Spearman with {gt} [95% CI] on this world and on "
              f"`{comparison['reference_world']}`.", "",
              "| metric | this world | verdict | reference world | verdict |",
              "|---|---|---|---|---|"]
    for name, row in comparison["metrics"].items():
        lines.append(f"| {name} | {_ci(row['spearman'], row['spearman_ci95'])} | "
                     f"{row['verdict']} | "
                     f"{_ci(row['reference_spearman'], row['reference_spearman_ci95'])} | "
                     f"{row['reference_verdict'] or '-'} |")
    return lines


def _ground_truth_lines(report: dict) -> list[str]:
    truth = report["world"].get("ground_truth")
    if not truth:
        return []
    quality = truth["dictionary_quality"]
    lines = ["", "## The ground truth on this world", "",
             f"Supervised dictionary at `{truth['hook']}`: {truth['n_features']} features in "
             f"{truth['d_in']} dimensions; it explains "
             f"{quality['explained_variance']:.3f} of the activations' variance on "
             f"{quality['n_tokens']} held-out tokens.", "",
             "| attribute | dictionary nearest-mean probe | logistic probe on the activations |",
             "|---|---|---|"]
    logistic = (truth.get("model_evaluation") or {}).get("probe_accuracy", {})
    for name, value in quality["probe_accuracy"].items():
        lines.append(f"| {name} | {value:.3f} | {_fmt(logistic.get(name), 3)} |")
    evaluation = truth.get("model_evaluation") or {}
    if evaluation:
        lines += ["", f"The model: final training loss {_fmt(truth['model_final_training_loss'], 3)}, "
                  f"held-out loss {_fmt(evaluation['loss'], 3)}, pole recall accuracy "
                  f"{_fmt(evaluation['pole_accuracy'], 3)}, axis recall accuracy "
                  f"{_fmt(evaluation['axis_accuracy'], 3)} (logistic probes read the model's "
                  "evaluation hook)."]
    return lines


def _model_output_lines(report: dict) -> list[str]:
    outputs = report.get("model_outputs")
    if not outputs:
        return []
    inter = outputs["interventions"]
    ks = sorted({int(k) for v in inter.values() for k in v["control_success"] if int(k) > 0})
    lines = ["", "## Through the model's outputs", "",
             "Interventions at the hook on the pole tokens, judged by the model's recall of the "
             "story's pole (`synthetic_saes.semisynthetic.interventions`). The dictionary's "
             "control is its own label swap.", "",
             "| SAE | sufficiency | necessity | " + " | ".join(f"control@{k}" for k in ks)
             + " | full patch |", "|---|---|---|" + "---|" * len(ks) + "---|"]
    for name, row in inter.items():
        control = row["control_success"]
        cells = ([_fmt(control.get("0"))] * len(ks) if name == "dictionary"
                 else [_fmt(control.get(str(k))) for k in ks])
        lines.append(f"| {name} | {_fmt(row['sufficiency'])} | {_fmt(row['necessity'])} | "
                     + " | ".join(cells) + f" | {_fmt(row['full_patch_success'])} |")
    correlations = outputs.get("correlations") or {}
    if correlations:
        targets = list(next(iter(correlations.values())))
        lines += ["", "Spearman [95% CI] over the trained SAEs of each CE score with what they do "
                  "to the model:", "", "| metric | " + " | ".join(targets) + " |",
                  "|---|" + "---|" * len(targets)]
        for name, row in correlations.items():
            lines.append(f"| {name} | " + " | ".join(
                _ci(row[t]["spearman"], row[t]["spearman_ci95"]) for t in targets) + " |")
    steering = outputs.get("steering") or {}
    if "steerers" in steering:
        unsteered = steering["unsteered"]
        lines += ["", f"Steering toward the other pole's story_sense at `{steering['hook']}` "
                  f"({len(steering['targets'])} targets x {steering['n_stories']} stories, "
                  "lm-eval CSV rows, coefficient = multiple of the feature's mean magnitude); "
                  f"unsteered: success {_fmt(unsteered['success_rate'])}, axis accuracy "
                  f"{_fmt(unsteered['axis_accuracy'])}.", "",
                  "| steerer | mean cos with the direction | multiple | success | "
                  "axis accuracy | KL elsewhere (nats) |", "|---|---|---|---|---|---|"]
        for name, entry in steering["steerers"].items():
            cos = np.mean([c for _, c in entry["latents"].values()])
            for m, e in entry["by_multiplier"].items():
                lines.append(f"| {name} | {_fmt(cos)} | {m} | {_fmt(e['success_rate'])} | "
                             f"{_fmt(e['axis_accuracy'])} | {_fmt(e['other_kl'])} |")
    return lines


def plot_report(report: dict, out: Path) -> list[str]:
    """Scatter of every metric against the primary ground truth, reseed spreads, and
    trajectories with noise bands; returns the PNG names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    primary = report["config"]["lenses"]["ground_truth"][0]
    metrics = [m for m in report["metrics"] if m != primary]
    saes = [s for s in report["saes"] if s["in_correlation"]]
    kinds = sorted({s["family"] for s in saes})
    colors = {k: plt.cm.tab20(i % 20) for i, k in enumerate(kinds)}
    written = []

    cols = 4
    rows = max(1, -(-len(metrics) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, metrics):
        for kind in kinds:
            xs = [s["scores"][primary] for s in saes if s["family"] == kind]
            ys = [s["scores"][name] for s in saes if s["family"] == kind]
            ax.scatter(xs, ys, s=12, color=colors[kind], label=kind)
        rho = report["metrics"][name]["gt_correlation"][primary]["spearman"]
        ax.set_title(f"{name} (rho {rho:.2f})", fontsize=9)
        ax.set_xlabel(primary, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(metrics):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=7)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(out / "scatter_vs_ground_truth.png", dpi=90)
    plt.close(fig)
    written.append("scatter_vs_ground_truth.png")

    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(report["metrics"])), 4))
    names = list(report["metrics"])
    ratios = [report["metrics"][n]["reseed"]["mdd"] / report["metrics"][n]["population_iqr"]
              if report["metrics"][n]["population_iqr"] > 0 else 0.0 for n in names]
    ax.bar(range(len(names)), ratios, color="tab:blue")
    ax.axhline(report["config"]["verdict"]["precision_fraction"], color="tab:red", ls="--",
               label="precision rule")
    ax.set_xticks(range(len(names)), names, rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("MDD / population IQR")
    ax.set_title("Reseed noise: minimum detectable difference relative to the population spread")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "reseed_spread.png", dpi=90)
    plt.close(fig)
    written.append("reseed_spread.png")

    trajectories = report.get("trajectories", {})
    shown = [n for n in ([primary] + metrics) if n in trajectories][:8]
    if shown:
        fig, axes = plt.subplots(2, 4, figsize=(16, 6.4), squeeze=False)
        for ax, name in zip(axes.flat, shown):
            band = report["metrics"][name]["reseed"]["mdd"] / 2
            for run, curve in trajectories[name].items():
                steps = np.asarray(curve["steps"])
                mean = np.asarray(curve["mean"])
                line, = ax.plot(steps, mean, marker="o", ms=2, lw=1, label=run)
                ax.fill_between(steps, mean - band, mean + band, color=line.get_color(),
                                alpha=0.15)
            ax.set_xscale("log")
            ax.set_title(f"{name} (band: +/- MDD/2)", fontsize=9)
            ax.set_xlabel("training step", fontsize=8)
            ax.tick_params(labelsize=7)
        for ax in axes.flat[len(shown):]:
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(out / "trajectories.png", dpi=90)
        plt.close(fig)
        written.append("trajectories.png")
    steering = (report.get("model_outputs") or {}).get("steering") or {}
    if "steerers" in steering:
        fig, axes = plt.subplots(1, 3, figsize=(15, 4))
        for name, entry in steering["steerers"].items():
            ms = [float(m) for m in entry["by_multiplier"]]
            for ax, key in zip(axes, ("success_rate", "axis_accuracy", "other_kl")):
                ax.plot(ms, [e[key] for e in entry["by_multiplier"].values()], marker="o",
                        label=name if len(name) < 40 else name[:37] + "...")
        for ax, title in zip(axes, ("success (pole flipped)", "axis accuracy (kept)",
                                    "KL elsewhere (nats)")):
            ax.set_xscale("log", base=2)
            ax.set_xlabel("coefficient / feature magnitude")
            ax.set_title(title, fontsize=9)
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "steering.png", dpi=90)
        plt.close(fig)
        written.append("steering.png")
    return written
