"""Study `calibration`: the auditor, audited on metrics whose reliability we plant.

Many populations are simulated with the shape of an audit study (`[options] source_study`,
by default experiments/ce_vs_groundtruth.toml): its controls, constructed families, and
trained runs (architecture x sparsity x width) with seeds and checkpoints. They have the same
clusters, strata, reseed set and decomposition runs, and the lenses use that study's
bootstrap size and verdict rules. On each population, planted metrics go through
`groundtruth.audit.metric_entry`, the code path of the real audit, lenses and verdict
included.

The simulated ground truth q (it plays the study's primary ground truth):
- controls: oracle 0.9, best_k 0.3, permuted decoder 0.05, random 0.01 and 0.015;
- family f, member k = 1..K: 0.9 - kappa_f k (kappa_f ~ U(0.08, 0.15));
- trained run r (architecture a, sparsity level s, width w):
  - final level mu_r = alpha_a + 0.04 s + 0.03 w_index + delta_r, with alpha_a ~ N(0.5, 0.1)
    and delta_r ~ N(0, 0.03);
  - seed t at checkpoint c: q = mu_r h(c) + eps_t + zeta_tc, with
    h(c) = 0.1 + 0.9 (c / (C - 1))^0.7, eps_t ~ N(0, 0.02) and zeta_tc ~ N(0, 0.01).
- L0 falls with quality within a run and grows with the sparsity level; width is the run's.

The planted metrics and what a correct auditor must say of them (`PLANTED`):
    faithful          q + N(0, 0.0005) per SAE and seed              trustworthy
    shared_seed       q + N(0, 0.02) shared by every SAE at a seed +  trustworthy: pairing
                      N(0, 0.0005) of its own                         removes the shared part
    noisy             q + N(0, 0.3)                                    noisy, not judged to track
    width             the SAE's width                                  confounded, undefined
    l0                -L0                                              confounded
    constant          1                                                undefined
    within_only       q - 3 x (mean final q of its stratum), + noise   tracks within strata
    null_clustered    N(0, 1) per cluster + N(0, 0.3) per SAE + noise  not judged to track
                      (independent of q)
    slope             0.1 c / (C - 1) + N(0, 0.01) per SAE and seed    slope over noise 10

What the report checks, against the planted truth:
- coverage of every 95% interval whose true value is known: the correlations of the two
  null metrics (truth 0), pooled and within strata; target 0.93-0.97;
- the paired MDD against the planted z sqrt(2) sigma of the noise metrics (within 10%);
- the variance components of `faithful` against the planted ones (within 10%, averaged
  over populations);
- the slope over noise of `slope` against its planted 10;
- the confusion of planted labels with verdicts.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import scipy.stats

from groundtruth import stats
from groundtruth.audit import decomposition_runs, metric_entry, plan_evaluations
from groundtruth.design import AuditDesign, cluster_of, stratum_of
from groundtruth.population import PopulationMember, run_key
from groundtruth.report import write_study_report
from groundtruth.study import StudyConfig, load_study, repository_path
from synthetic_saes.families import CONTROLS, FAMILIES
from synthetic_saes.rng import derive_seed
from synthetic_saes.validation import require_positive_int

__all__ = ["run", "simulate_population", "PLANTED", "calibrate"]

CONTROL_QUALITY = {"oracle": 0.9, "best_k": 0.3, "permuted_decoder": 0.05, "random_init": 0.01,
                   "random_l0_matched": 0.015}
CONTROL_WIDTH = 2048
SEED_SD, WANDER_SD = 0.02, 0.01  # training-seed offset and its wander along checkpoints
COVERAGE_TARGET = (0.93, 0.97)
TOLERANCE = 0.10  # relative, for MDD, variance components and slope

PLANTED = {
    "faithful": {"label": "trustworthy", "noise_sd": 0.0005},
    "shared_seed": {"label": "trustworthy", "noise_sd": 0.0005, "shared_sd": 0.02},
    "noisy": {"label": "noisy, not judged to track", "noise_sd": 0.3},
    "width": {"label": "confounded, tracking undefined"},
    "l0": {"label": "confounded"},
    "constant": {"label": "tracking undefined"},
    "within_only": {"label": "tracks within strata", "noise_sd": 0.0005},
    "null_clustered": {"label": "not judged to track", "noise_sd": 0.0005},
    "slope": {"label": "slope over noise 10", "noise_sd": 0.01, "slope": 0.1},
}
"""Planted metric -> what a correct auditor says, and the noise it carries (module doc)."""


def _trained(study: StudyConfig, rng: np.random.Generator) -> tuple[list, dict]:
    plan = study.training
    members, truth = [], {}
    last = plan.n_checkpoints - 1
    h = 0.1 + 0.9 * (np.arange(plan.n_checkpoints) / max(last, 1)) ** 0.7
    for a_index, arch in enumerate(plan.architectures):
        alpha = rng.normal(0.5, 0.1)
        knob = plan.sparsity_knob[arch]
        for s_index, value in enumerate(plan.sparsity[arch]):
            for w_index, width in enumerate(plan.widths):
                key = run_key(arch, knob, value, width)
                mu = alpha + 0.04 * s_index + 0.03 * w_index + rng.normal(0.0, 0.03)
                truth[key] = {"mu": mu, "h": h}
                for seed in plan.seeds:
                    eps = rng.normal(0.0, SEED_SD)
                    for c in range(plan.n_checkpoints):
                        q = mu * h[c] + eps + rng.normal(0.0, WANDER_SD)
                        sae_id = f"trained/{key}/seed{seed}/step{c}"
                        members.append(PopulationMember(
                            id=sae_id, kind="trained", origin=arch, architecture=arch,
                            width=int(width), knobs={knob: float(value)}, seed=int(seed),
                            params=None, run=key, checkpoint=c, step=c, final=c == last))
                        truth[sae_id] = {"q": q, "l0": 8.0 * 2**s_index * (1.5 - q)}
    return members, truth


def simulate_population(study: StudyConfig, seed: int) -> tuple[list[PopulationMember], dict]:
    """One simulated population shaped like `study`'s audit (module docstring).

    Returns:
        (members, truth): truth[sae_id] = {"q", "l0"} and truth[run] = {"mu", "h"}.
    """
    rng = np.random.default_rng(derive_seed(seed, "calibration-population"))
    members, truth = [], {}
    oracle_seed = study.families.seed
    if study.families.controls:
        for name in CONTROLS:
            sae_id = f"{name}/seed{oracle_seed}"
            members.append(PopulationMember(
                id=sae_id, kind="control", origin=name, architecture="jumprelu",
                width=CONTROL_WIDTH, knobs={}, seed=oracle_seed, params=None))
            truth[sae_id] = {"q": CONTROL_QUALITY[name] + rng.normal(0.0, 0.002),
                             "l0": rng.uniform(15.0, 25.0)}
    world = SimpleNamespace(num_features=CONTROL_WIDTH)
    for family in study.families.names:
        spec = FAMILIES[family]
        kappa = rng.uniform(0.08, 0.15)
        for k, value in enumerate(spec.default_values(world)[1:], start=1):
            sae_id = f"{family}/{spec.knob}={value:g}/seed{oracle_seed}"
            members.append(PopulationMember(
                id=sae_id, kind="constructed", origin=family, architecture="jumprelu",
                width=CONTROL_WIDTH, knobs={spec.knob: value}, seed=oracle_seed, params=None))
            truth[sae_id] = {"q": 0.9 - kappa * k + rng.normal(0.0, 0.005),
                             "l0": rng.uniform(15.0, 25.0)}
    trained, trained_truth = _trained(study, rng)
    return members + trained, truth | trained_truth


def _planted_values(name: str, members: list[PopulationMember], truth: dict, design: AuditDesign,
                    population_seed: int):
    """value(sae_id, seed) of planted metric `name` on one simulated population."""
    spec = PLANTED[name]
    by_id = {m.id: m for m in members}

    def noise(sae_id: str, seed: int, sd: float, tag: str = "") -> float:
        rng = np.random.default_rng(derive_seed(population_seed, name + tag, sae_id, seed))
        return sd * float(rng.standard_normal())

    sd = spec.get("noise_sd", 0.0)
    q = {i: t["q"] for i, t in truth.items() if "q" in t}
    if name in ("faithful", "noisy"):
        return lambda i, s: q[i] + noise(i, s, sd)
    if name == "shared_seed":
        return lambda i, s: q[i] + noise("every SAE", s, spec["shared_sd"]) + noise(i, s, sd)
    if name == "width":
        return lambda i, s: float(by_id[i].width)
    if name == "l0":
        return lambda i, s: -truth[i]["l0"]
    if name == "constant":
        return lambda i, s: 1.0
    if name == "within_only":
        strata = dict(zip(design.ids, design.strata))
        finals: dict[str, list[float]] = {}
        for sae_id, stratum in strata.items():
            finals.setdefault(stratum, []).append(q[sae_id])
        offset = {s: 3.0 * float(np.mean(v)) for s, v in finals.items()}
        return lambda i, s: q[i] - offset[stratum_of(by_id[i])] + noise(i, s, sd)
    if name == "null_clustered":
        return lambda i, s: (noise(cluster_of(by_id[i]), 0, 1.0, "/cluster")
                             + noise(i, 0, 0.3, "/sae")
                             + noise(i, s, sd))
    if name == "slope":
        last = max(m.checkpoint or 0 for m in members)
        return lambda i, s: (spec["slope"] * (by_id[i].checkpoint if by_id[i].checkpoint
                                              is not None else last) / max(last, 1)
                             + noise(i, s, sd))
    raise ValueError(f"no planted metric {name!r}")


def _contains(interval, value: float) -> bool | None:
    return None if interval is None else bool(interval[0] <= value <= interval[1])


def _true_components(design: AuditDesign, truth: dict, study: StudyConfig) -> dict:
    """The planted variance components of `faithful` on the decomposition runs, averaged."""
    runs = [r for r in design.runs if r in decomposition_runs(study)]
    checkpoint = float(np.mean([np.var(truth[r]["mu"] * truth[r]["h"], ddof=1) for r in runs]))
    return {"checkpoint": checkpoint, "training_seed": SEED_SD**2 + WANDER_SD**2,
            "metric_seed": PLANTED["faithful"]["noise_sd"] ** 2}


def calibrate_population(study: StudyConfig, population_seed: int) -> dict:
    """Every planted metric through `metric_entry` on one simulated population; returns
    what the summary needs (intervals, MDDs, components, slopes, verdicts)."""
    members, truth = simulate_population(study, population_seed)
    plan = plan_evaluations(study, members)
    design = AuditDesign.of(members, plan, study.lenses.reseed_seeds)
    primary = study.lenses.ground_truth[0]
    gt_columns = {primary: np.array([truth[i]["q"] for i in design.ids])}
    gt_grids = {run: design.grid(lambda m, s: truth[m.id]["q"], run) for run in design.runs}
    l0 = np.array([truth[i]["l0"] for i in design.ids])
    out = {"metrics": {}, "true_components": _true_components(design, truth, study)}
    for name in PLANTED:
        value = _planted_values(name, members, truth, design, population_seed)
        entry = metric_entry({"description": name, "kind": "planted", "seed_changes": "noise",
                              "higher_is_better": True}, value, design, study, gt_columns,
                             gt_grids, l0)
        out["metrics"][name] = {
            "pooled": entry["gt_correlation"][primary],
            "within": {k: entry["within_strata"][primary][k]
                       for k in ("mean_spearman", "mean_spearman_ci95", "n_units")},
            "paired": entry["reseed"]["paired"],
            "mdd_unpaired": entry["reseed"]["mdd_unpaired"],
            "components": entry["variance_decomposition"].get("components"),
            "estimates": entry["variance_decomposition"].get("estimates"),
            "slope_over_noise": entry["trajectory"]["slope_over_noise"],
            "verdict": entry["verdict"],
        }
    return out


def _coverage(hits: list[bool | None]) -> dict:
    valid = [h for h in hits if h is not None]
    n, k = len(valid), int(sum(valid))
    if not n:
        return {"coverage": None, "n": 0, "note": "no interval was defined"}
    interval = scipy.stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = float(interval.low), float(interval.high)
    return {"coverage": k / n, "n": n, "wilson95": [low, high],
            "within_target": COVERAGE_TARGET[0] <= k / n <= COVERAGE_TARGET[1]}


def _relative(estimate: float, truth: float) -> dict:
    error = estimate / truth - 1.0
    return {"estimate": estimate, "truth": truth, "relative_error": error,
            "within_tolerance": abs(error) <= TOLERANCE}


def summarize(runs: list[dict], study: StudyConfig) -> dict:
    """Coverage, MDD, components, slope and the verdict confusion over simulated populations."""
    z = stats.two_sided_z(0.95)
    coverage = {}
    for name in ("null_clustered",):
        pooled = [r["metrics"][name]["pooled"] for r in runs]
        coverage[f"{name}: pooled Spearman"] = _coverage(
            [_contains(p["spearman_ci95"], 0.0) for p in pooled])
        coverage[f"{name}: pooled Kendall"] = _coverage(
            [_contains(p["kendall_ci95"], 0.0) for p in pooled])
        coverage[f"{name}: pooled partial Spearman (width, L0)"] = _coverage(
            [_contains(p["partial_spearman_width_l0_ci95"], 0.0) for p in pooled])
        coverage[f"{name}: mean within-stratum Spearman"] = _coverage(
            [_contains(r["metrics"][name]["within"]["mean_spearman_ci95"], 0.0) for r in runs])
    mdd = {}
    for name in ("faithful", "shared_seed", "noisy", "slope"):
        truth = z * math.sqrt(2.0) * PLANTED[name]["noise_sd"]
        estimates = [p["mdd"] for r in runs for p in r["metrics"][name]["paired"].values()
                     if p["mdd"] is not None]
        mdd[name] = _relative(float(np.mean(estimates)), truth)
    shared = PLANTED["shared_seed"]
    mdd["shared_seed"]["unpaired_estimate"] = float(np.mean(
        [r["metrics"]["shared_seed"]["mdd_unpaired"] for r in runs]))
    mdd["shared_seed"]["unpaired_truth"] = z * math.sqrt(2.0) * math.hypot(
        shared["shared_sd"], shared["noise_sd"])
    components = {}
    estimated = [r["metrics"]["faithful"]["estimates"] for r in runs]
    if all(e is not None for e in estimated):
        unbiased = {"checkpoint": lambda e: e["checkpoint"],
                    "metric_seed": lambda e: e["metric_seed"],
                    "training_seed": lambda e: e["seed"] + e["seed_by_checkpoint"]}
        for source in stats.VARIANCE_SOURCES:
            components[source] = _relative(
                float(np.mean([unbiased[source](e) for e in estimated])),
                float(np.mean([r["true_components"][source] for r in runs])))
            components[source]["truncated_estimate"] = float(np.mean(
                [r["metrics"]["faithful"]["components"][source] for r in runs]))
    slopes = [r["metrics"]["slope"]["slope_over_noise"] for r in runs]
    slope_truth = PLANTED["slope"]["slope"] / PLANTED["slope"]["noise_sd"]
    slope = (_relative(float(np.mean(slopes)), slope_truth)
             if all(s is not None for s in slopes) else {"estimate": None, "truth": slope_truth})
    confusion = {name: {"label": PLANTED[name]["label"], **_verdict_counts(
        [r["metrics"][name]["verdict"] for r in runs])} for name in PLANTED}
    expected = _expected_verdicts(confusion)
    passed = (all(c.get("within_target") for c in coverage.values())
              and all(m["within_tolerance"] for m in mdd.values())
              and all(c["within_tolerance"] for c in components.values())
              and slope.get("within_tolerance", False) and all(expected.values()))
    return {"n_populations": len(runs), "coverage_target": list(COVERAGE_TARGET),
            "tolerance": TOLERANCE, "coverage": coverage, "mdd": mdd,
            "variance_components": components, "slope_over_noise": slope,
            "confusion": confusion, "expected_verdicts": expected, "passed": bool(passed)}


def _verdict_counts(verdicts: list[dict]) -> dict:
    n = len(verdicts)

    def share(key, value):
        return sum(v[key] == value for v in verdicts) / n

    return {"n": n, "trustworthy": share("overall", "trustworthy"),
            "tracks": share("tracks", "tracks"),
            "does_not_track": share("tracks", "does not track"),
            "inconclusive": share("tracks", "inconclusive"),
            "undefined": share("tracks", "undefined"),
            "precise": share("precise", True), "separates": share("separates", True),
            "confounded": share("confounded", True)}


def _expected_verdicts(confusion: dict) -> dict[str, bool]:
    """The planted labels as checks on the verdict shares (at least 90% of populations)."""
    c = confusion
    return {
        "faithful is trustworthy": c["faithful"]["trustworthy"] >= 0.9,
        "shared_seed is precise (pairing removes the shared noise)":
            c["shared_seed"]["precise"] >= 0.9,
        "noisy is not precise": c["noisy"]["precise"] <= 0.1,
        "noisy is not judged to track": c["noisy"]["tracks"] <= 0.1,
        "width is confounded": c["width"]["confounded"] >= 0.9,
        "l0 is confounded": c["l0"]["confounded"] >= 0.9,
        "constant cannot be judged": c["constant"]["undefined"] >= 0.9,
        "within_only tracks within strata": c["within_only"]["tracks"] >= 0.9,
        "null_clustered is not judged to track": c["null_clustered"]["tracks"] <= 0.1,
    }


def calibrate(study: StudyConfig, *, populations: int, progress: bool = False) -> dict:
    """Simulate `populations` populations, run every planted metric, summarize."""
    from tqdm.auto import tqdm

    runs = [calibrate_population(study, derive_seed(study.seed, "population", k))
            for k in tqdm(range(populations), desc="calibration", unit="population",
                          disable=not progress)]
    return summarize(runs, study)


def shaped_like(study: StudyConfig) -> StudyConfig:
    """The audit study whose shape, bootstrap size and rules are calibrated (`[options]
    source_study`), with the calibration study's seed (which draws the populations)."""
    source = load_study(repository_path(study.options.get(
        "source_study", "experiments/ce_vs_groundtruth.toml")))
    if source.kind != "audit":
        raise ValueError(f"options.source_study must be an audit study, got {source.kind!r}")
    if len(source.training.seeds) < 2 or source.lenses.decomposition_seeds < 2:
        raise ValueError("calibration needs an audit with at least 2 training seeds and 2 "
                         "decomposition seeds (the variance components are calibrated too)")
    return dataclasses.replace(source, seed=study.seed)


def run(study: StudyConfig, out: str | Path, *, progress: bool = True) -> Path:
    """The study runner: `[options]` populations (default 300) and source_study. Writes
    report.json and report.md into `out`; returns report.json."""
    populations = study.options.get("populations", 300)
    require_positive_int("options.populations", populations)
    shape = shaped_like(study)
    summary = calibrate(shape, populations=populations, progress=progress)
    report = {"config": study.to_dict(), "shape": shape.to_dict(), **summary}
    return write_study_report(Path(out), report, lambda r, _: _markdown(r))


def _fmt(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _answer(report: dict) -> str:
    """The report's first paragraph: what was observed, against each target."""
    verdict = "passes" if report["passed"] else "does NOT pass"
    low_target, high_target = report["coverage_target"]
    observed = [c["coverage"] for c in report["coverage"].values() if c["coverage"] is not None]
    if observed:
        low, high = min(observed), max(observed)
        coverage = f"{low:.3f}-{high:.3f} of the time (target {low_target}-{high_target}"
        if low < low_target:
            coverage += "; too rarely: some intervals are too narrow"
        elif high > high_target:
            coverage += "; too often: some intervals are wider than they need to be"
        coverage += ")"
    else:
        coverage = f"never measurably (no interval was defined; target {low_target}-{high_target})"
    errors = [abs(m["relative_error"]) for m in report["mdd"].values()]
    errors += [abs(c["relative_error"]) for c in report["variance_components"].values()]
    if report["slope_over_noise"].get("relative_error") is not None:
        errors.append(abs(report["slope_over_noise"]["relative_error"]))
    checks = report["expected_verdicts"]
    return (f"**The answer.** On {report['n_populations']} simulated populations shaped like the "
            f"audit `{report['shape']['name']}` (its clusters, strata, trajectories, bootstrap "
            f"size and verdict rules), the auditor {verdict} its own targets. Its 95% intervals "
            f"cover their known value {coverage}. MDD, variance components and slope over noise "
            f"land within {max(errors):.1%} of the planted values (tolerance "
            f"{report['tolerance']:.0%}). {sum(checks.values())} of {len(checks)} checks on the "
            "verdicts hold (each planted metric must get its verdict in at least 90% of "
            "populations).")


def _markdown(report: dict) -> str:
    lines = [
        "# Calibration: the auditor, audited on planted metrics", "",
        _answer(report), "",
        "Every number below comes from `groundtruth.audit.metric_entry`, the audit's own code "
        "path, run on metrics whose truth we planted (see the module docstring of "
        "`groundtruth.studies.calibration`). Intervals are resampled as in the audit: "
        "clusters, then SAEs within them.", "",
        "## Coverage of 95% intervals (true value 0: the metric is independent of ground truth, "
        "with strong shared effects per cluster)", "",
        "| interval | coverage | Wilson 95% | populations | in target |", "|---|---|---|---|---|",
    ]
    for name, c in report["coverage"].items():
        wilson = c.get("wilson95")
        lines.append(f"| {name} | {_fmt(c['coverage'])} | "
                     + (f"[{_fmt(wilson[0])}, {_fmt(wilson[1])}]" if wilson else "-")
                     + f" | {c['n']} | {'yes' if c.get('within_target') else 'NO'} |")
    lines += ["", "## Paired MDD against the planted noise", "",
              "| planted metric | mean paired MDD | planted z sqrt(2) sigma | relative error | "
              "within tolerance |", "|---|---|---|---|---|"]
    for name, m in report["mdd"].items():
        lines.append(f"| {name} | {_fmt(m['estimate'], 4)} | {_fmt(m['truth'], 4)} | "
                     f"{m['relative_error']:+.1%} | {'yes' if m['within_tolerance'] else 'NO'} |")
    shared = report["mdd"]["shared_seed"]
    lines += ["", f"For `shared_seed` the unpaired MDD (z sqrt(2) x the per-SAE std) is "
              f"{_fmt(shared['unpaired_estimate'], 4)} (planted "
              f"{_fmt(shared['unpaired_truth'], 4)}): pairing removes the noise every SAE "
              "shares at a seed.", "",
              "## Variance components of `faithful` (averaged over populations)", "",
              "The untruncated estimates (unbiased) against the planted components; the "
              "report's components are truncated at 0 run by run, which leans upward where a "
              "source is small (last column).", "",
              "| source | estimate | planted | relative error | within tolerance | "
              "truncated |", "|---|---|---|---|---|---|"]
    for source, c in report["variance_components"].items():
        lines.append(f"| {source} | {c['estimate']:.3g} | {c['truth']:.3g} | "
                     f"{c['relative_error']:+.1%} | {'yes' if c['within_tolerance'] else 'NO'} | "
                     f"{c['truncated_estimate']:.3g} |")
    slope = report["slope_over_noise"]
    lines += ["", f"Slope over noise of `slope`: {_fmt(slope['estimate'], 2)} against the planted "
              f"{_fmt(slope['truth'], 2)}.", "",
              "## Planted label against verdict (share of populations)", "",
              "| planted metric | label | trustworthy | tracks | inconclusive | does not track | "
              "undefined | precise | separates | confounded |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for name, c in report["confusion"].items():
        lines.append(f"| {name} | {c['label']} | " + " | ".join(
            _fmt(c[k], 2) for k in ("trustworthy", "tracks", "inconclusive", "does_not_track",
                                    "undefined", "precise", "separates", "confounded")) + " |")
    lines += ["", "Checks on the verdicts:", ""]
    lines += [f"- {check}: {'yes' if ok else 'NO'}"
              for check, ok in report["expected_verdicts"].items()]
    lines.append("")
    return "\n".join(lines)

