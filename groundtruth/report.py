"""Reports people read: report.json (machine), report.md and PNG plots (people)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from groundtruth.convergence import convergence_summary
from groundtruth.published_audit import SAEBENCH_METRIC, judge_claims
from groundtruth.store import write_json

__all__ = ["verdict", "write_report", "write_study_report", "render_markdown", "plot_report",
           "reliability_card", "sanity_checks", "rejudge"]


def verdict(entry: dict, rules, primary_gt: str) -> dict:
    """The per-metric verdict and the rules that produced it (see `VerdictRules`).

    tracks      the mean within-stratum Spearman with the primary ground truth: its 95% CI
                lies above track_low ("tracks"), below track_high ("does not track"),
                between ("inconclusive"), or it is undefined ("undefined", with the reason:
                no stratum qualifies, or fewer than min_units independent units, where an
                interval says nothing beyond the units it has)
    precise     the median over strata of paired MDD / within-stratum IQR is at most
                precision_fraction (undefined counts as not precise, with the reason)
    separates   trajectory discriminability at least `discriminability`
    confounded  the pooled partial Spearman controlling width and L0 falls below the pooled
                Spearman by more than confound_drop, or width and L0 explain the metric's
                ranks entirely
    """
    reasons = []
    within = entry["within_strata"].get(primary_gt, {})
    interval = within.get("mean_spearman_ci95")
    if within.get("mean_spearman") is None or interval is None:
        tracks = "undefined"
        reasons.append(f"tracking within strata is undefined ({within.get('note', 'no strata')})")
    elif within["n_units"] < rules.min_units:
        tracks = "undefined"
        reasons.append(f"tracking within strata rests on {within['n_units']} independent "
                       f"unit(s), fewer than {rules.min_units} (mean within-stratum Spearman "
                       f"{within['mean_spearman']:.2f})")
    else:
        low, high = interval
        if low > rules.track_low:
            tracks = "tracks"
        elif high < rules.track_high:
            tracks = "does not track"
        else:
            tracks = "inconclusive"
        if tracks != "tracks":
            reasons.append(
                f"{tracks} ground truth within strata ({primary_gt} mean within-stratum "
                f"Spearman {within['mean_spearman']:.2f}, 95% CI [{low:.2f}, {high:.2f}] over "
                f"{within['n_units']} independent units; tracks needs the lower bound above "
                f"{rules.track_low})")
    precision = entry["precision"]
    ratio = precision.get("median_ratio")
    precise = ratio is not None and ratio <= rules.precision_fraction
    if ratio is None:
        reasons.append(f"precision is undefined ({precision.get('note')})")
    elif not precise:
        reasons.append(f"noisy (median paired MDD / within-stratum IQR "
                       f"{precision['median_ratio']:.3g} > {rules.precision_fraction:g})")
    discriminability = entry["trajectory"].get("discriminability")
    separates = discriminability is not None and discriminability >= rules.discriminability
    if discriminability is None:
        reasons.append("no training trajectories to separate")
    elif not separates:
        reasons.append(f"does not separate checkpoints (discriminability "
                       f"{discriminability:.2f} < {rules.discriminability})")
    corr = entry["gt_correlation"].get(primary_gt, {})
    partial = corr.get("partial_spearman_width_l0")
    if corr.get("explained_by_width_l0"):
        confounded = True
        reasons.append("confounded: width and L0 explain its ranks entirely")
    else:
        confounded = (partial is not None and corr.get("spearman") is not None
                      and partial < corr["spearman"] - rules.confound_drop)
        if confounded:
            reasons.append(f"confounded by width / L0 (pooled partial Spearman {partial:.2f} vs "
                           f"{corr['spearman']:.2f})")
    return {"overall": "trustworthy" if not reasons else "not trustworthy",
            "tracks": tracks, "precise": precise, "separates": bool(separates),
            "confounded": bool(confounded), "reasons": reasons}


def yardstick_verdict() -> dict:
    """The verdict of the primary ground truth: it is the yardstick, not judged against itself."""
    return {"overall": "ground truth", "tracks": None, "precise": None, "separates": None,
            "confounded": None,
            "reasons": ["the primary ground truth: every other metric is judged against it"]}


def sanity_checks(planted: dict, control_ranks: dict[str, dict[str, int]], n_saes: int, rules,
                  primary_gt: str) -> dict[str, bool]:
    """The audit's sanity checks, each one that can fail.

    planted: name -> {"verdict", "entry"} of the planted metrics (`groundtruth.audit.PLANTED`);
    control_ranks: ground truth -> control -> rank among `n_saes`. The planted truth must be
    judged to track and be precise (or, on a design with fewer than min_units independent
    units, precise with tracking undefined), the planted noise noisy and not tracking, the
    oracle first and the random controls among the last four on every ground truth.
    """
    truth = planted["planted_truth"]["verdict"]
    units = planted["planted_truth"]["entry"]["within_strata"][primary_gt]["n_units"]
    if units >= rules.min_units:
        checks = {"planted_truth tracks and is precise":
                  truth["tracks"] == "tracks" and truth["precise"] is True}
    else:  # the design has too few independent units for any metric to be judged to track
        checks = {f"planted_truth is precise, and its tracking undefined on fewer than "
                  f"{rules.min_units} independent units":
                  truth["tracks"] == "undefined" and truth["precise"] is True}
    noise = planted["planted_noise"]["verdict"]
    checks["planted_noise is noisy and does not track"] = (
        noise["precise"] is False and noise["tracks"] != "tracks")
    for gt, ranks in control_ranks.items():
        if "oracle" in ranks:
            checks[f"the oracle ranks first on {gt}"] = ranks["oracle"] == 1
        for control in ("random_init", "random_l0_matched"):
            if control in ranks:
                checks[f"{control} ranks among the last 4 on {gt}"] = ranks[control] >= n_saes - 4
    return checks


def rejudge(report: dict, rules) -> dict:
    """The audit `report` with every verdict, sanity check and comparison verdict redone under
    `rules` (a `VerdictRules`); the lenses' numbers are kept as they are."""
    primary = report["config"]["lenses"]["ground_truth"][0]
    report = {**report, "config": {**report["config"], "verdict": dataclasses.asdict(rules)}}
    for name, entry in report["metrics"].items():
        entry["verdict"] = (yardstick_verdict() if name == primary
                            else verdict(entry, rules, primary))
    sanity = report["sanity"]
    for planted in sanity["planted"].values():
        planted["verdict"] = verdict(planted["entry"], rules, primary)
    sanity["checks"] = sanity_checks(sanity["planted"], sanity["control_ranks_on_ground_truth"],
                                     report["population"]["n_correlation"], rules, primary)
    sanity["ok"] = bool(all(sanity["checks"].values()))
    for name, row in ((report.get("comparison") or {}).get("metrics") or {}).items():
        row["verdict"] = report["metrics"][name]["verdict"]["overall"]
    return report


def write_study_report(out: Path, report: dict, render, plot=None) -> Path:
    """Write a study's report.json (`write_json`: sorted keys, no NaN), its plots
    (`plot(out)`, returning the file names it wrote, if given) and report.md
    (`render(report, plot_names)`); returns report.json."""
    json_path = write_json(out / "report.json", report)
    names = plot(out) if plot is not None else []
    (out / "report.md").write_text(render(report, names))
    return json_path


def write_report(report: dict, out: Path) -> Path:
    """Write the audit's report.json, card.json (a reliability card per metric), PNG plots
    and report.md into `out`."""
    primary = report["config"]["lenses"]["ground_truth"][0]
    report.pop("published_audit", None)
    if any(SAEBENCH_METRIC.match(name) for name in report["metrics"]):
        report["published_audit"] = judge_claims(report)  # redone on every (re)judgement
    write_json(out / "card.json", {name: reliability_card(name, entry, primary)
                                   for name, entry in report["metrics"].items()})
    return write_study_report(out, report, render_markdown, lambda o: plot_report(report, o))


def _fmt(x, digits=2) -> str:
    if x is None:
        return "-"
    if abs(x) >= 1e9:  # the JSON sentinel of an infinite ratio (zero reseed noise)
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}f}"


def _interval(values) -> str:
    return "-" if values is None else f"[{_fmt(values[0])}, {_fmt(values[1])}]"


def reliability_card(name: str, entry: dict, primary_gt: str) -> dict:
    """What a reviewer cites about one metric, from its report entry: noise, tracking within
    strata and pooled, discriminability, confounds, control ranks and the verdict."""
    components = entry["variance_decomposition"].get("components") or {}
    within = entry["within_strata"][primary_gt]
    pooled = entry["gt_correlation"][primary_gt]
    return {
        "metric": name, "description": entry["description"],
        "verdict": entry["verdict"]["overall"], "reasons": entry["verdict"]["reasons"],
        "noise": {
            "cv": entry["reseed"]["cv"], "std": entry["reseed"]["std"],
            "mdd_unpaired": entry["reseed"]["mdd_unpaired"],
            "paired_mdd_by_width": {w: p["mdd"] for w, p in entry["reseed"]["paired"].items()},
            "metric_seed_std": (components["metric_seed"] ** 0.5) if components else None,
            "training_seed_std": (components["training_seed"] ** 0.5) if components else None,
            "n_seeds": entry["reseed"]["n_seeds"],
        },
        "tracking": {
            "ground_truth": primary_gt,
            "within_strata": {"mean_spearman": within["mean_spearman"],
                              "ci95": within["mean_spearman_ci95"],
                              "n_strata": within["n_strata"], "n_units": within["n_units"],
                              "resampled": within["resampled"]},
            "pooled": {"spearman": pooled["spearman"], "ci95": pooled["spearman_ci95"],
                       "n_saes": pooled["n_saes"], "n_units": pooled["n_units"]},
        },
        "precision": {"median_ratio": entry["precision"]["median_ratio"],
                      "precise": entry["verdict"]["precise"]},
        "discriminability": entry["trajectory"]["discriminability"],
        "snr": entry["trajectory"]["snr"],
        "confounds": {"partial_spearman_width_l0": pooled["partial_spearman_width_l0"],
                      "ci95": pooled["partial_spearman_width_l0_ci95"],
                      "explained_by_width_l0": pooled["explained_by_width_l0"]},
        "control_ranks": entry["control_ranks"],
    }


def _answer_lines(report: dict) -> list[str]:
    primary = report["config"]["lenses"]["ground_truth"][0]
    metrics = {n: m for n, m in report["metrics"].items() if n != primary}
    kinds = {name: m["kind"] for name, m in metrics.items()}
    trusted = [n for n, m in metrics.items() if m["verdict"]["overall"] == "trustworthy"]
    ce = [n for n in metrics if kinds[n] == "ce"]
    lines = [f"**The answer.** Judged against {primary}, {len(trusted)} of {len(metrics)} metrics "
             "pass every rule" + (f": {', '.join(trusted)}." if trusted else ".")]
    if ce:
        tracks = {v: [n for n in ce if metrics[n]["verdict"]["tracks"] == v]
                  for v in ("tracks", "inconclusive", "does not track", "undefined")}
        lines[0] += (f" Tracking of {primary} within the strata users compare, for CE-Bench's "
                     f"{len(ce)} scores: "
                     + ", ".join(f"{k} for {len(v)}" for k, v in tracks.items() if v) + ".")
    if not report["sanity"]["ok"]:
        failed = [k for k, v in report["sanity"]["checks"].items() if not v]
        lines += ["", f"**Sanity checks failed** ({'; '.join(failed)}): do not cite these "
                  "verdicts."]
    return lines + [""]


def _convergence_lines(report: dict, primary: str) -> list[str]:
    """How far the trained SAEs are from convergence (`groundtruth.convergence`): the relative
    gain of the primary ground truth over the last doubling of training samples, per run."""
    summary = report.get("convergence")
    if summary is None:  # a report written before convergence was stored: judge the means
        curves = (report.get("trajectories") or {}).get(primary) or {}
        summary = convergence_summary({run: (c["steps"], c["mean"]) for run, c in curves.items()})
    if not summary["n_runs"]:
        return []
    threshold = summary["threshold"]
    head = (f"**Convergence.** A run counts as converged when {primary} gained less than "
            f"{threshold:.0%} of its final value over the last doubling of training samples "
            "(median over seeds). ")
    if not summary["n_measurable"]:
        return [head + "No run can be judged: the first checkpoint comes after half of "
                "training.", ""]
    worst = max((r for r in summary["per_run"].items() if r[1]["gain"] is not None),
                key=lambda r: r[1]["gain"])
    if summary["converged"]:
        verdict_text = "every trained run is converged"
    else:
        verdict_text = (f"the trained SAEs miss it: {summary['n_converged']} of "
                        f"{summary['n_runs']} runs are converged")
    return [head + f"By this definition {verdict_text}; the median gain over the last doubling "
            f"is {summary['median_gain']:.1%} (largest {worst[1]['gain']:.1%}, {worst[0]}). "
            + "".join(f"{run} ends with {primary} = 0 (its relative gain is infinite). "
                      for run, r in summary["per_run"].items() if r.get("note"))
            + "Verdicts on trajectories describe SAEs at these stages of training.", ""]


def _published_audit_lines(report: dict) -> list[str]:
    published = report.get("published_audit")
    if not published:
        return []
    counts = ", ".join(f"{k} {v}" for k, v in sorted(published["counts"].items()))
    lines = ["", "## Against the published audit", "",
             f"The conclusions of {published['source']}, judged on this audit's numbers "
             f"({counts}). A claim is agreed with when the interval it rests on lies on its "
             "side, contradicted when it lies on the other side, inconclusive when it "
             "straddles the line. A disagreement is a finding about this world and these "
             "settings (a small synthetic world, short training, our task construction), not "
             "an error of either audit.", "",
             "| published claim | here | what we measured [95% CI] |", "|---|---|---|"]
    for finding in published["claims"].values():
        detail = f" ({finding['detail']})" if finding.get("detail") else ""
        lines.append(f"| {finding['claim']} | **{finding['status']}** | "
                     f"{finding['measured']}{detail} |")
    return lines


def render_markdown(report: dict, plots: list[str] | None = None) -> str:
    cfg = report["config"]
    gts = cfg["lenses"]["ground_truth"]
    primary = gts[0]
    lines = [f"# Audit: {cfg['name']}", ""]
    if cfg.get("description"):
        lines += [cfg["description"], ""]
    lines += _answer_lines(report) + _convergence_lines(report, primary)
    pop = report["population"]
    lines += [
        f"World: `{report['world']['summary']}`. Population: {pop['n_correlation']} SAEs for "
        f"the correlation lens ({pop['by_kind']}) from {pop['n_units']} independent units "
        f"(one oracle's constructed SAEs and controls; each training configuration's seeds), "
        f"in {len(pop['strata'])} strata; {pop['n_trajectory_runs']} training runs x "
        f"{pop['n_training_seeds']} seeds x {pop['n_checkpoints']} checkpoints for "
        f"trajectories. Reseed noise over {cfg['lenses']['reseed_seeds']} metric seeds on "
        f"{pop['n_reseed']} SAEs. Intervals are 95% percentile bootstraps with "
        f"{cfg['lenses']['n_boot']} resamples of the independent units (clusters, then SAEs "
        "within them; within each stratum for the within-strata numbers).", "",
        "## Verdicts", "",
        f"| metric | verdict | within strata: mean Spearman vs {primary} [95% CI] (units) | "
        f"pooled Spearman vs {primary} [95% CI] | partial (width, L0) | "
        + "".join(f"pooled vs {g} | " for g in gts[1:])
        + "reseed CV | paired MDD / IQR | discriminability | SNR |",
        "|---|---|---|---|---|" + "---|" * (len(gts) - 1) + "---|---|---|---|",
    ]
    for name, m in report["metrics"].items():
        c = m["gt_correlation"][primary]
        w = m["within_strata"][primary]
        partial = ("explained" if c.get("explained_by_width_l0")
                   else _fmt(c["partial_spearman_width_l0"]))
        lines.append(
            f"| {name} | {m['verdict']['overall']} | {_fmt(w['mean_spearman'])} "
            f"{_interval(w['mean_spearman_ci95'])} ({w['n_units']}) | {_fmt(c['spearman'])} "
            f"{_interval(c['spearman_ci95'])} | {partial} | "
            + "".join(f"{_fmt(m['gt_correlation'][g]['spearman'])} | " for g in gts[1:])
            + f"{_fmt(m['reseed']['cv'], 3)} | {_fmt(m['precision']['median_ratio'])} | "
            f"{_fmt(m['trajectory']['discriminability'])} | {_fmt(m['trajectory']['snr'], 1)} |")
    lines += (_published_audit_lines(report) + _comparison_lines(report)
              + _ground_truth_lines(report)
              + _model_output_lines(report))
    lines += ["", "### Why", ""]
    for name, m in report["metrics"].items():
        reasons = m["verdict"]["reasons"]
        twin = (f" (its values equal {m['identical_to']}'s on every SAE and seed)"
                if m.get("identical_to") else "")
        lines.append(f"- **{name}**{twin}: "
                     + ("; ".join(reasons) if reasons else "passes every rule"))
    rules = cfg["verdict"]
    lines += [
        "", "### Rules", "",
        f"- tracks ground truth: the mean within-stratum Spearman with {primary} has its 95% CI "
        f"above {rules['track_low']} (does not track: below {rules['track_high']}), over at "
        f"least {rules['min_units']} independent units. Strata are "
        "where users compare: trained SAEs of one architecture and width, constructed SAEs of "
        "one family; controls are in the pooled numbers only.",
        f"- precise: the paired MDD (z_0.975 x the std of the difference of two SAEs scored with "
        f"the same metric seeds, at the stratum's width) is at most "
        f"{rules['precision_fraction']} x the metric's interquartile range within the stratum, "
        "at the median over strata.",
        f"- separates checkpoints: discriminability (checkpoint pairs differing by more than the "
        f"paired MDD, in the direction ground truth moves) >= {rules['discriminability']}.",
        f"- confounded: the pooled partial Spearman controlling width and L0 is below the pooled "
        f"Spearman by more than {rules['confound_drop']}, or width and L0 explain the metric's "
        "ranks entirely.",
        "- trustworthy: tracks, precise, separates and not confounded.",
        "- a number that is undefined (a constant metric, no noise to divide by) is shown as `-` "
        "and its reason is in report.json.",
    ]
    lines += _strata_lines(report, primary) + _paired_noise_lines(report)
    lines += ["", "## Sanity checks", "",
              "Two planted metrics go through the same lenses and rules: "
              + "; ".join(f"`{k}`, {v['description']}"
                          for k, v in report["sanity"]["planted"].items()) + ".", ""]
    sanity = report["sanity"]
    for check, passed in sanity["checks"].items():
        lines.append(f"- {check}: {'yes' if passed else 'NO'}")
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
    lines += _card_lines(report, primary)
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    lines.append("")
    return "\n".join(lines)


def _strata_lines(report: dict, primary: str) -> list[str]:
    strata = report["population"]["strata"]
    if not strata:
        return []
    lines = ["", f"## Within each stratum: Spearman with {primary}", "",
             "| metric | " + " | ".join(strata) + " |", "|---|" + "---|" * len(strata)]
    for name, m in report["metrics"].items():
        per = m["within_strata"][primary]["strata"]
        lines.append(f"| {name} | " + " | ".join(_fmt(per.get(s, {}).get("spearman"))
                                                 for s in strata) + " |")
    return lines


def _paired_noise_lines(report: dict) -> list[str]:
    widths = sorted({w for m in report["metrics"].values() for w in m["reseed"]["paired"]},
                    key=int)
    if not widths:
        return []
    lines = ["", "## Paired MDD by width", "",
             "z_0.975 x the std over metric seeds of the difference of two SAEs of one width "
             "scored with the same seeds (pairs of reseeded SAEs), beside the unpaired "
             "z_0.975 sqrt(2) x pooled std.", "",
             "| metric | unpaired MDD | " + " | ".join(f"paired, width {w}" for w in widths)
             + " |", "|---|---|" + "---|" * len(widths)]
    for name, m in report["metrics"].items():
        paired = m["reseed"]["paired"]
        lines.append(f"| {name} | {_fmt(m['reseed']['mdd_unpaired'], 3)} | " + " | ".join(
            _fmt(paired.get(w, {}).get("mdd"), 3) for w in widths) + " |")
    return lines


def _card_lines(report: dict, primary: str) -> list[str]:
    lines = ["", "## Reliability cards", "",
             "One card per metric (also in card.json): what to cite, with its uncertainty.", ""]
    for name, m in report["metrics"].items():
        card = reliability_card(name, m, primary)
        noise, tracking = card["noise"], card["tracking"]
        within, pooled = tracking["within_strata"], tracking["pooled"]
        paired = ", ".join(f"{_fmt(v, 3)} at width {w}"
                           for w, v in noise["paired_mdd_by_width"].items())
        confounds = card["confounds"]
        lines += [
            f"**{name}**: {card['verdict']}. {card['description']}",
            f"- noise: CV {_fmt(noise['cv'], 3)}; paired MDD {paired or '-'}; "
            f"training-seed std {_fmt(noise['training_seed_std'], 3)}, metric-seed std "
            f"{_fmt(noise['metric_seed_std'], 3)} (variance components)",
            f"- tracks {primary}: within strata {_fmt(within['mean_spearman'])} "
            f"{_interval(within['ci95'])} over {within['n_strata']} strata and "
            f"{within['n_units']} units; pooled {_fmt(pooled['spearman'])} "
            f"{_interval(pooled['ci95'])} over {pooled['n_saes']} SAEs, {pooled['n_units']} "
            "units",
            f"- discriminability {_fmt(card['discriminability'])}, SNR {_fmt(card['snr'], 1)}; "
            "partial Spearman (width, L0) "
            + ("undefined: width and L0 explain it" if confounds["explained_by_width_l0"]
               else f"{_fmt(confounds['partial_spearman_width_l0'])} "
                    f"{_interval(confounds['ci95'])}"),
            f"- controls (rank of {report['population']['n_correlation']}): "
            + (", ".join(f"{k} {v}" for k, v in card["control_ranks"].items()) or "-"),
            "",
        ]
    return lines


def _robust_range(values) -> tuple[float, float]:
    """A y-range that one outlier cannot squash: the 2nd to 98th percentile, widened by the
    interquartile range on each side. Points beyond it are drawn on its edge, ringed."""
    q2, q25, q75, q98 = np.percentile(np.asarray(values, dtype=float), [2, 25, 75, 98])
    pad = max(q75 - q25, 1e-12)
    return float(q2 - pad), float(q98 + pad)


def _ci(value, interval) -> str:
    if value is None:
        return "-"
    return f"{_fmt(value)} {_interval(interval)}"


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
    lines += [f"Spearman with {gt} [95% CI], mean within strata and pooled, on this world and "
              f"on `{comparison['reference_world']}`.", "",
              "| metric | within strata, this world | pooled, this world | verdict | "
              "within strata, reference | pooled, reference | verdict |",
              "|---|---|---|---|---|---|---|"]
    for name, row in comparison["metrics"].items():
        lines.append(
            f"| {name} | {_ci(row['within_spearman'], row['within_spearman_ci95'])} | "
            f"{_ci(row['spearman'], row['spearman_ci95'])} | {row['verdict']} | "
            f"{_ci(row['reference_within_spearman'], row['reference_within_spearman_ci95'])} | "
            f"{_ci(row['reference_spearman'], row['reference_spearman_ci95'])} | "
            f"{row['reference_verdict'] or '-'} |")
    return lines


def _ground_truth_lines(report: dict) -> list[str]:
    truth = report["world"].get("ground_truth")
    if not truth:
        return []
    if "dictionary_quality" not in truth:  # an exact basis (a Tracr-compiled model)
        return ["", "## The ground truth on this world", "",
                f"{truth['ground_truth']}: {truth['n_features']} features in {truth['d_in']} "
                f"dimensions at `{truth['hook']}`."]
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
    siit = truth.get("siit_evaluation")
    if siit:
        lines += ["", f"The SIIT-trained model of `{truth['program']}`: task accuracy "
                  f"{siit['task_accuracy']:.3f}, interchange intervention accuracy per node "
                  + ", ".join(f"{node} {value:.3f}" for node, value in siit["iia"].items())
                  + f" ({siit['n_pairs']} held-out pairs); its dictionary's features are the "
                  f"values of {', '.join(truth['variables'])}."]
        idle = [node for node, rate in (siit.get("changed") or {}).items() if rate == 0]
        if idle:
            lines[-1] += (f" For {', '.join(idle)} an interchange never changed the program's "
                          "output on these pairs, so their IIA only shows that nothing else "
                          "there moves the output, not that the model computes them there.")
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
    groups = sorted({(s["kind"], s["family"]) for s in saes})
    # tab20's dark shades first, then its light ones: neighbours get different hues
    colors = {g: plt.cm.tab20((2 * i) % 20 + (2 * i // 20) % 2) for i, g in enumerate(groups)}
    markers = {"control": "X", "constructed": "s", "trained": "o"}
    written = []

    cols = 4
    rows = max(1, -(-len(metrics) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, metrics):
        low, high = _robust_range([s["scores"][name] for s in saes])
        for kind, family in groups:
            members = [s for s in saes if (s["kind"], s["family"]) == (kind, family)]
            xs = np.array([s["scores"][primary] for s in members])
            ys = np.clip([s["scores"][name] for s in members], low, high)
            ax.scatter(xs, ys, s=14, color=colors[(kind, family)], marker=markers[kind],
                       label=f"{family} ({kind})")
            outside = np.array([not low <= s["scores"][name] <= high for s in members])
            if outside.any():  # outliers sit on the edge of the panel, hollow
                ax.scatter(xs[outside], ys[outside], s=40, facecolors="none",
                           edgecolors="black", linewidths=0.8)
        rho = report["metrics"][name]["gt_correlation"][primary]["spearman"]
        ax.set_title(f"{name} (pooled rho {_fmt(rho)})", fontsize=9)
        ax.set_xlabel(primary, fontsize=8)
        ax.set_ylabel(name, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(metrics):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=7,
               title="marker: kind; colour: family or training architecture; hollow ring: "
                     "an outlier drawn at the panel's edge", title_fontsize=7)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(out / "scatter_vs_ground_truth.png", dpi=90)
    plt.close(fig)
    written.append("scatter_vs_ground_truth.png")

    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(report["metrics"])), 4))
    names = list(report["metrics"])
    ratios = [report["metrics"][n]["precision"]["median_ratio"] for n in names]
    ax.bar(range(len(names)), [np.nan if r is None else r for r in ratios], color="tab:blue",
           label="median over strata")
    ax.axhline(report["config"]["verdict"]["precision_fraction"], color="tab:red", ls="--",
               label="precision rule")
    ax.set_xticks(range(len(names)), names, rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("paired MDD / within-stratum IQR")
    ax.set_title("Reseed noise: paired minimum detectable difference relative to the spread "
                 "users compare")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "reseed_spread.png", dpi=90)
    plt.close(fig)
    written.append("reseed_spread.png")

    trajectories = report.get("trajectories", {})
    shown = [n for n in ([primary] + metrics) if n in trajectories][:8]
    if shown:
        fig, axes = plt.subplots(2, 4, figsize=(16, 6.8), squeeze=False)
        architectures = sorted({run.split("/")[0] for run in trajectories[shown[0]]})
        widths = sorted({run.rsplit("/w", 1)[-1] for run in trajectories[shown[0]]}, key=int)
        arch_colour = {a: plt.cm.tab10(i % 10) for i, a in enumerate(architectures)}
        width_style = dict(zip(widths, ("-", "--", ":", "-.")))
        for ax, name in zip(axes.flat, shown):
            reseed = report["metrics"][name]["reseed"]
            for run, curve in trajectories[name].items():
                steps = np.asarray(curve["steps"])
                mean = np.asarray(curve["mean"])
                colour = arch_colour[run.split("/")[0]]
                paired = reseed["paired"].get(run.rsplit("/w", 1)[-1], {}).get("mdd")
                band = (reseed["mdd_unpaired"] if paired is None else paired) / 2
                ax.plot(steps, mean, marker="o", ms=2, lw=1, color=colour,
                        ls=width_style.get(run.rsplit("/w", 1)[-1], "-"))
                ax.fill_between(steps, mean - band, mean + band, color=colour, alpha=0.08)
            ax.set_xscale("log")
            ax.set_title(f"{name} (band: +/- paired MDD/2)", fontsize=9)
            ax.set_xlabel("training step", fontsize=8)
            ax.set_ylabel(f"{name}, mean over training seeds", fontsize=8)
            ax.tick_params(labelsize=7)
        for ax in axes.flat[len(shown):]:
            ax.axis("off")
        handles = ([plt.Line2D([], [], color=arch_colour[a], label=a) for a in architectures]
                   + [plt.Line2D([], [], color="grey", ls=width_style[w], label=f"width {w}")
                      for w in widths])
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8,
                   title="one line per training run (architecture x sparsity x width)",
                   title_fontsize=8)
        fig.tight_layout(rect=(0, 0.08, 1, 1))
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
