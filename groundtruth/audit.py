"""Run an audit study: build the population, measure every metric, apply the lenses, report.

What is measured (each value stored as soon as it is computed, see `groundtruth.store`):
    every SAE (constructed, controls, every trained checkpoint)  all metrics at seed 0
    the reseed set: the controls oracle and random_l0_matched, and the final checkpoint of
        the first training seed of every training run             seeds 0 .. reseed_seeds-1
    the decomposition runs: per architecture, the middle sparsity at the widest width,
        every checkpoint of every training seed                   seeds 0 .. decomposition_seeds-1
Deterministic metrics are measured at seed 0 only (their reseed noise is exactly 0).
Measurements are grouped by (metric, seed, width) into stacks of up to `STACK_SIZE` SAEs that
a metric's batch form measures at once (one encode of the shared sample per stack,
`groundtruth.metrics.batched`); each group's values are stored as soon as it is measured.

The correlation population: constructed SAEs, controls and trained final checkpoints.
On a language world (`[world] kind = "language"`) the model is trained into <out>/language_model
on first use, and the report adds the dictionary's quality and what the SAEs do through the
model's outputs (`groundtruth.model_outputs`: interventions, steering).
Resuming: an interrupted run (even kill -9) restarted with the same study and folder loads its
oracle, trained populations and stored values, computes only what is missing and ends with the
same report as an uninterrupted run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from groundtruth.convergence import convergence_summary
from groundtruth.design import AuditDesign, cluster_of, stratum_of
from groundtruth.lenses import (
    control_ranks, correlation_lens, decomposition_lens, precision_lens, reseed_lens,
    stratified_lens, training_trend_lens, trajectory_lens, variant_lens,
)
from groundtruth.metrics.data import AuditData
from groundtruth.metrics.registry import evaluate_metric, evaluate_metric_batch, get_metric
from groundtruth.population import PopulationMember, constructed_saes, run_key, trained_saes
from groundtruth.report import sanity_checks, verdict, write_report, yardstick_verdict
from groundtruth.store import ResultStore, write_json
from groundtruth.study import REPOSITORY, StudyConfig, repository_path
from groundtruth.study_world import build_study_world
from synthetic_saes.families import CONTROLS, untrained_sae
from synthetic_saes.rng import derive_seed
from synthetic_saes.semisynthetic.world import LanguageWorld

__all__ = ["run_audit", "plan_evaluations", "decomposition_runs", "metric_entry",
           "build_report", "measurement_groups", "MIN_CORRELATION_SAES", "STACK_SIZE"]

MIN_CORRELATION_SAES = 6
STACK_SIZE = 64
"""SAEs measured together by a metric's batch form (memoised shared passes: a few per SAE)."""


def _metrics_to_measure(study: StudyConfig) -> list[str]:
    """The study's metrics plus what the lenses need (ground truth, L0), in a stable order."""
    names = list(study.metrics)
    for extra in (*study.lenses.ground_truth, "l0"):
        if extra not in names:
            names.append(extra)
    return names


def decomposition_runs(study: StudyConfig) -> set[str]:
    """Run keys measured at several metric seeds: per architecture, the middle sparsity at the
    widest width."""
    plan = study.training
    runs = set()
    for arch in plan.architectures:
        levels = plan.sparsity[arch]
        value = levels[len(levels) // 2]
        runs.add(run_key(arch, plan.sparsity_knob[arch], value, max(plan.widths)))
    return runs


def plan_evaluations(study: StudyConfig,
                     members: list[PopulationMember]) -> dict[str, list[int]]:
    """SAE id -> the metric seeds it is measured at (see the module docstring)."""
    first_seed = study.training.seeds[0]
    decomposition = decomposition_runs(study)
    plan = {}
    for member in members:
        seeds = {0}
        reseed = member.control in ("oracle", "random_l0_matched") or (
            member.kind == "trained" and member.final and member.seed == first_seed)
        if reseed:
            seeds |= set(range(study.lenses.reseed_seeds))
        if member.kind == "trained" and member.run in decomposition:
            seeds |= set(range(study.lenses.decomposition_seeds))
        plan[member.id] = sorted(seeds)
    return plan


def measurement_groups(members: list[PopulationMember], wanted: dict[str, list[tuple[str, int]]],
                       store: ResultStore, *, stack_size: int = STACK_SIZE,
                       ) -> list[tuple[str, int, list[str]]]:
    """The pending measurements as (metric, seed, SAE ids) groups, one stack each.

    A measurement (SAE, metric, seed) is pending when `wanted` lists it and `store` lacks it.
    SAEs of one width (d_sae) and metric seed are cut into runs of at most `stack_size` in
    population order; within one run, every metric's group follows the other, so metrics
    sharing a pass (the CE scores, the ground-truth detection numbers) find it memoised.
    """
    by_key: dict[tuple[int, int], list[PopulationMember]] = {}
    for member in members:
        for seed in sorted({s for _, s in wanted[member.id]}):
            by_key.setdefault((seed, member.params.d_sae), []).append(member)
    names = list(dict.fromkeys(name for pairs in wanted.values() for name, _ in pairs))
    groups = []
    for (seed, _), stack in sorted(by_key.items(), key=lambda item: item[0]):
        for start in range(0, len(stack), stack_size):
            part = stack[start:start + stack_size]
            for name in names:
                ids = [m.id for m in part if (name, seed) in wanted[m.id]
                       and (m.id, name, seed) not in store]
                if ids:
                    groups.append((name, seed, ids))
    return groups


def _check_run_folder(out: Path, study: StudyConfig) -> str:
    """The study's study.json text; raises when `out` holds a run of another study."""
    saved = out / "study.json"
    current = json.dumps(study.to_dict(), sort_keys=True, default=list)
    if saved.exists() and saved.read_text() != current:
        raise ValueError(f"{out} holds a run of a different study configuration; use another "
                         "--out folder (or delete it) to start afresh")
    return current


def run_audit(study: StudyConfig, out: str | Path, *, progress: bool = True) -> Path:
    """Run (or resume) an audit study into `out`; returns the path of report.json.

    Raises:
        ValueError: a run folder of another study, or a population too small to correlate.
    """
    from tqdm.auto import tqdm

    if study.kind != "audit":
        raise ValueError(f"run_audit runs audit studies, not {study.kind!r}")
    out = Path(out)
    n_correlation = _expected_correlation_size(study)
    if n_correlation < MIN_CORRELATION_SAES:
        raise ValueError(f"the correlation population would hold {n_correlation} SAEs; at least "
                         f"{MIN_CORRELATION_SAES} are needed for a rank correlation with an interval")
    identity = _check_run_folder(out, study)
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    world = build_study_world(study.world, out, progress=progress)
    data = AuditData(world, study.data)
    metrics = _metrics_to_measure(study)
    _check_metrics_apply(world, data, metrics)  # seconds, before minutes of SAEs
    (out / "study.json").write_text(identity)  # only once the study can run on its world
    members = constructed_saes(world, study.families, out, progress=progress)
    members += trained_saes(world, study.training, out, progress=progress)
    for member in members:
        world.check_d_in(member.params.d_in, what=f"SAE {member.id}")
    specs = {name: get_metric(name) for name in metrics}
    plan = plan_evaluations(study, members)
    store = ResultStore(out / "results.jsonl")
    try:
        wanted = {m.id: [(name, seed) for seed in plan[m.id] for name in metrics
                         if not (specs[name].deterministic and seed != 0)] for m in members}
        groups = measurement_groups(members, wanted, store)
        n_values = sum(len(ids) for _, _, ids in groups)
        bar = tqdm(total=n_values, unit="value", disable=not progress,
                   desc=f"audit {study.name}: {n_values} values to measure")
        by_id = {m.id: m for m in members}
        first = True
        for name, seed, ids in groups:
            values = evaluate_metric_batch(name, [by_id[i].params for i in ids], data, seed)
            store.add_many([(i, name, seed, v) for i, v in zip(ids, values)])  # durable now
            if first:  # the first group compiles its metric: its time says nothing of the
                bar.reset()  # others' rate, so the clock (and the ETA) starts after it
                first = False
            bar.update(len(ids))
        bar.close()
        report = build_report(study, world, members, store, metrics, plan)
        if isinstance(world, LanguageWorld):  # ground truth through the model's outputs too
            from groundtruth.model_outputs import model_output_measurements

            ce = {name: {m.id: store.get(m.id, name, 0) for m in members}
                  for name in metrics if specs[name].kind == "ce"}
            report["model_outputs"] = model_output_measurements(
                world, members, out, ce_scores=ce, seed=study.seed, n_boot=study.lenses.n_boot)
    finally:
        store.close()
    json_path = write_report(report, out)
    write_json(out / "run_log.json", {"seconds": time.perf_counter() - started,
                                      "n_saes": len(members)})
    return json_path


def _check_metrics_apply(world, data: AuditData, metrics: list[str]) -> None:
    """Measure every metric once on a random SAE of the world's width, so that a metric that
    cannot be measured on this world (TPP on a world without sibling groups, say) stops the
    audit with its reason before any SAE is built or trained. The samples it draws are cached
    in `data` and reused by the audit.

    Raises:
        ValueError: "metric <name> cannot be measured on this world: <reason>".
    """
    probe = untrained_sae(world, np.random.default_rng(derive_seed(0, "metric-check")))
    for name in metrics:
        try:
            evaluate_metric(name, probe, data, 0)
        except ValueError as error:
            raise ValueError(f"metric {name} cannot be measured on this world: {error}") from None


def _expected_correlation_size(study: StudyConfig) -> int:
    from types import SimpleNamespace

    from synthetic_saes.families import FAMILIES
    from synthetic_saes.semisynthetic.siit_world import SIITWorldConfig, siit_feature_names
    from synthetic_saes.semisynthetic.tracr_world import TracrWorldConfig
    from synthetic_saes.semisynthetic.world import LanguageWorldConfig, feature_names_of
    from synthetic_saes.worlds import build_world as _build

    world = None
    if isinstance(study.world, LanguageWorldConfig):  # counting must not train the model
        from synthetic_saes.semisynthetic.language import Language

        world = SimpleNamespace(
            num_features=len(feature_names_of(Language(study.world.language))))
    elif isinstance(study.world, SIITWorldConfig):  # nor the SIIT model
        world = SimpleNamespace(num_features=len(siit_feature_names(study.world)))
    elif study.families.names:
        world = build_study_world(study.world, ".") if isinstance(
            study.world, TracrWorldConfig) else _build(study.world)
    constructed = sum(len(FAMILIES[n].default_values(world)) for n in study.families.names)
    controls = len(CONTROLS) if study.families.controls else 0
    if controls:  # each family's first member is the oracle, listed once as a control
        constructed -= len(study.families.names)
    plan = study.training
    trained = sum(len(plan.sparsity[a]) for a in plan.architectures) * len(plan.widths) * len(
        plan.seeds)
    return constructed + controls + trained


def _comparison(study: StudyConfig, metrics: dict) -> dict | None:
    """Each metric's Spearman with the primary ground truth beside the same number in the
    report named by `options.compare_with` (e.g. the synthetic audit's), or None."""
    path = study.options.get("compare_with")
    if not path:
        return None
    path = repository_path(path)
    if not path.exists():
        return {"reference": _shown(path), "found": False, "metrics": {}}
    other = json.loads(path.read_text())
    primary = study.lenses.ground_truth[0]
    rows = {}
    for name, entry in metrics.items():
        reference = other.get("metrics", {}).get(name, {})
        theirs = reference.get("gt_correlation", {}).get(primary) or {}
        theirs_within = reference.get("within_strata", {}).get(primary) or {}
        ours = entry["gt_correlation"][primary]
        ours_within = entry["within_strata"][primary]
        rows[name] = {
            "within_spearman": ours_within["mean_spearman"],
            "within_spearman_ci95": ours_within["mean_spearman_ci95"],
            "reference_within_spearman": theirs_within.get("mean_spearman"),
            "reference_within_spearman_ci95": theirs_within.get("mean_spearman_ci95"),
            "spearman": ours["spearman"], "spearman_ci95": ours["spearman_ci95"],
            "reference_spearman": theirs.get("spearman"),
            "reference_spearman_ci95": theirs.get("spearman_ci95"),
            "verdict": entry["verdict"]["overall"],
            "reference_verdict": reference.get("verdict", {}).get("overall")}
    return {"reference": _shown(path), "found": True,
            "reference_study": other.get("config", {}).get("name"),
            "reference_world": other.get("world", {}).get("summary"), "ground_truth": primary,
            "metrics": rows}


def _identical_metrics(metrics: list[str], members, plan: dict[str, list[int]], specs: dict,
                       store: ResultStore) -> dict[str, str]:
    """metric -> the first metric before it with the very same stored value for every SAE and
    seed (e.g. ce_contrastive_v1 and ce_contrastive: the contrastive score reads no marks)."""
    seen: dict[tuple, str] = {}
    out = {}
    for name in metrics:
        key = tuple(_value(store, m.id, specs[name], s) for m in members for s in plan[m.id])
        if key in seen:
            out[name] = seen[key]
        else:
            seen[key] = name
    return out


def _shown(path: Path) -> str:
    """A path as reports show it: relative to the repository when inside it (so a report does
    not depend on where the checkout lives)."""
    try:
        return str(path.resolve().relative_to(REPOSITORY))
    except ValueError:
        return str(path)


def _value(store: ResultStore, sae_id: str, metric, seed: int) -> float:
    return store.get(sae_id, metric.name, 0 if metric.deterministic else seed)


PLANTED = {
    "planted_truth": "the primary ground truth itself, without noise: must be judged to track "
                     "and to be precise",
    "planted_noise": "standard normal noise, fresh for every SAE and seed: must be judged "
                     "noisy and not to track",
}
"""Metrics the sanity checks plant: they go through the same lenses and verdict as every
metric, so a wiring error that flatters or condemns every metric shows up here."""


def metric_entry(about: dict, value, design: AuditDesign, study: StudyConfig,
                  gt_columns: dict[str, np.ndarray], gt_grids: dict[str, np.ndarray],
                  l0: np.ndarray) -> dict:
    """Every lens applied to one metric; value(sae_id, seed) -> the metric's value.

    `about` holds the metric's description, kind, seed_changes and higher_is_better. The
    audit runs it on stored values, the sanity checks and the calibration study
    (`groundtruth.studies.calibration`) on planted ones: one code path for all three.
    """
    lenses = study.lenses
    primary = lenses.ground_truth[0]
    sign = 1.0 if about["higher_is_better"] else -1.0
    ids = design.ids
    oriented = sign * np.array([value(i, 0) for i in ids])
    reseed = reseed_lens({i: [value(i, s) for s in range(lenses.reseed_seeds)]
                          for i in design.reseed_ids},
                         {i: design.width_of(i) for i in design.reseed_ids})
    boot = dict(n_boot=lenses.n_boot, seed=study.seed)
    correlation = correlation_lens(oriented, gt_columns, width=design.widths, l0=l0,
                                   clusters=design.clusters, **boot)
    within = {g: stratified_lens(oriented, gt_columns[g], strata=design.strata,
                                 clusters=design.clusters, **boot) for g in gt_columns}
    precision = precision_lens(oriented, strata=design.strata, widths=design.widths,
                               paired=reseed["paired"])

    def grid(run: str, seed: int = 0) -> np.ndarray:
        return sign * design.grid(lambda m, s: value(m.id, s), run, seed)

    trajectory = trajectory_lens({
        run: (grid(run), gt_grids[run], reseed["std"],
              reseed["paired"].get(str(members[0].width), {}).get("mdd"))
        for run, members in design.runs.items()})
    several_seeds = decomposition_runs(study)
    if len(design.training_seeds) < 2:
        decomposition = decomposition_lens({}) | {
            "note": "one training seed: the training-seed component cannot be estimated"}
    else:
        decomposition = decomposition_lens({  # [checkpoints, training seeds, metric seeds]
            run: np.stack([grid(run, s).T for s in range(lenses.decomposition_seeds)], axis=-1)
            for run in design.runs if run in several_seeds})
    trend = training_trend_lens({run: grid(run) for run in design.runs}, **boot)
    variants = variant_lens(
        {run: (f"{members[0].training_architecture} w{members[0].width}", grid(run)[:, -1],
               gt_grids[run][:, -1]) for run, members in design.runs.items()},
        {f"{members[0].training_architecture} w{members[0].width}":
         reseed["paired"].get(str(members[0].width), {}).get("mdd")
         for members in design.runs.values()}, **boot)
    entry = {
        **about,
        "reseed": {k: v for k, v in reseed.items() if k != "per_sae_std"},
        "gt_correlation": correlation,
        "within_strata": within,
        "precision": precision,
        "trajectory": {k: v for k, v in trajectory.items() if k != "per_run"},
        "trajectory_per_run": trajectory["per_run"],
        "variance_decomposition": decomposition,
        "training_trend": trend,
        "variants": variants,
        "control_ranks": control_ranks(dict(zip(ids, oriented)), design.controls),
    }
    entry["verdict"] = verdict(entry, study.verdict, primary)
    return entry


def build_report(study: StudyConfig, world, members: list[PopulationMember], store: ResultStore,
                 metrics: list[str], plan: dict[str, list[int]]) -> dict:
    """Apply the lenses to the stored values and assemble report.json's content."""
    specs = {name: get_metric(name) for name in metrics}
    gts = list(study.lenses.ground_truth)
    primary = gts[0]
    design = AuditDesign.of(members, plan, study.lenses.reseed_seeds)
    population, ids = design.population, design.ids

    def stored(name: str):
        return lambda sae_id, seed: _value(store, sae_id, specs[name], seed)

    def oriented_gt(g: str, sae_id: str) -> float:
        return (1.0 if specs[g].higher_is_better else -1.0) * stored(g)(sae_id, 0)

    gt_columns = {g: np.array([oriented_gt(g, i) for i in ids]) for g in gts}
    gt_grids = {run: design.grid(lambda m, s: oriented_gt(primary, m.id), run)
                for run in design.runs}
    l0 = np.array([stored("l0")(i, 0) for i in ids])
    about = {name: {"description": spec.description, "kind": spec.kind,
                    "seed_changes": spec.seed_changes, "higher_is_better": spec.higher_is_better}
             for name, spec in specs.items()}
    report_metrics = {name: metric_entry(about[name], stored(name), design, study, gt_columns,
                                          gt_grids, l0) for name in metrics}
    report_metrics[primary]["verdict"] = yardstick_verdict()
    for name, twin in _identical_metrics(metrics, members, plan, specs, store).items():
        report_metrics[name]["identical_to"] = twin
    trajectories = {
        name: {run: {"steps": [int(s.step) for s in sorted(run_members, key=lambda m: m.checkpoint)
                               if s.seed == design.training_seeds[0]],
                     "mean": design.grid(lambda m, s: stored(name)(m.id, s), run)
                     .mean(axis=0).tolist()}
               for run, run_members in design.runs.items()}
        for name in metrics}
    convergence = convergence_summary(
        {run: (trajectories[primary][run]["steps"], gt_grids[run]) for run in design.runs})

    truth = {i: oriented_gt(primary, i) for i in (m.id for m in members)}
    planted_values = {
        "planted_truth": lambda sae_id, seed: truth[sae_id],
        "planted_noise": lambda sae_id, seed: float(np.random.default_rng(
            derive_seed(study.seed, "planted-noise", sae_id, seed)).standard_normal()),
    }
    planted = {}
    for name, description in PLANTED.items():
        entry = metric_entry({"description": description, "kind": "planted",
                              "seed_changes": "fresh noise", "higher_is_better": True},
                             planted_values[name], design, study, gt_columns, gt_grids, l0)
        planted[name] = {"description": description, "verdict": entry.pop("verdict"),
                         "entry": entry}
    sanity_ranks = {g: control_ranks(dict(zip(ids, gt_columns[g])), design.controls)
                    for g in gts}
    checks = sanity_checks(planted, sanity_ranks, len(population), study.verdict, primary)

    per_sae = []
    correlation_ids = set(ids)
    for member in members:
        per_sae.append({
            **member.describe(), "l0": _value(store, member.id, specs["l0"], 0),
            "in_correlation": member.id in correlation_ids,
            "cluster": cluster_of(member), "stratum": stratum_of(member),
            "scores": {name: _value(store, member.id, specs[name], 0) for name in metrics},
        })
    by_kind: dict[str, int] = {}
    for member in population:
        by_kind[member.kind] = by_kind.get(member.kind, 0) + 1
    strata = sorted({s for s in design.strata if s is not None})
    return {
        "config": study.to_dict(),
        "world": {"summary": repr(world), "config": world.config.to_dict() if world.config
                  else None, "true_l0": float(np.mean([(world.sample(2048, seed=0).features > 0)
                                                       .sum(1).mean()])),
                  **({"ground_truth": world.summary()} if hasattr(world, "summary") else {})},
        "comparison": _comparison(study, report_metrics),
        "population": {"n_correlation": len(population), "by_kind": by_kind,
                       "n_units": len(set(design.clusters)), "units": sorted(set(design.clusters)),
                       "strata": strata, "n_trajectory_runs": len(design.runs),
                       "n_training_seeds": len(design.training_seeds),
                       "n_checkpoints": study.training.n_checkpoints,
                       "n_reseed": len(design.reseed_ids)},
        "controls": [c for c in CONTROLS if c in design.controls],
        "saes": per_sae,
        "metrics": report_metrics,
        "trajectories": trajectories,
        "convergence": convergence,
        "sanity": {"planted": planted, "control_ranks_on_ground_truth": sanity_ranks,
                   "checks": checks, "ok": bool(all(checks.values()))},
    }
