"""Run an audit study: build the population, measure every metric, apply the lenses, report.

What is measured (each value stored as soon as it is computed, see `groundtruth.store`):
    every SAE (constructed, controls, every trained checkpoint)  all metrics at seed 0
    the reseed set: the controls oracle and random_l0_matched, and the final checkpoint of
        the first training seed of every training run             seeds 0 .. reseed_seeds-1
    the decomposition runs: per architecture, the middle sparsity at the widest width,
        every checkpoint of every training seed                   seeds 0 .. decomposition_seeds-1
Deterministic metrics are measured at seed 0 only (their reseed noise is exactly 0).

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

from groundtruth.lenses import (
    control_ranks, correlation_lens, decomposition_lens, reseed_lens, trajectory_lens,
)
from groundtruth.metrics.data import AuditData
from groundtruth.metrics.registry import evaluate_metric, get_metric
from groundtruth.population import PopulationMember, constructed_saes, run_key, trained_saes
from groundtruth.report import verdict, write_report
from groundtruth.store import ResultStore, write_json
from groundtruth.study import StudyConfig, repository_path
from groundtruth.study_world import build_study_world
from synthetic_saes.families import CONTROLS
from synthetic_saes.semisynthetic.world import LanguageWorld

__all__ = ["run_audit", "plan_evaluations", "MIN_CORRELATION_SAES"]

MIN_CORRELATION_SAES = 6


def _metrics_to_measure(study: StudyConfig) -> list[str]:
    """The study's metrics plus what the lenses need (ground truth, L0), in a stable order."""
    names = list(study.metrics)
    for extra in (*study.lenses.ground_truth, "l0"):
        if extra not in names:
            names.append(extra)
    return names


def _decomposition_runs(study: StudyConfig) -> set[str]:
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
    decomposition = _decomposition_runs(study)
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


def _check_run_folder(out: Path, study: StudyConfig) -> None:
    saved = out / "study.json"
    current = json.dumps(study.to_dict(), sort_keys=True, default=list)
    if saved.exists() and saved.read_text() != current:
        raise ValueError(f"{out} holds a run of a different study configuration; use another "
                         "--out folder (or delete it) to start afresh")
    out.mkdir(parents=True, exist_ok=True)
    saved.write_text(current)


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
    _check_run_folder(out, study)
    started = time.perf_counter()
    world = build_study_world(study.world, out, progress=progress)
    data = AuditData(world, study.data)
    members = constructed_saes(world, study.families, out, progress=progress)
    members += trained_saes(world, study.training, out, progress=progress)
    for member in members:
        world.check_d_in(member.params.d_in, what=f"SAE {member.id}")
    metrics = _metrics_to_measure(study)
    specs = {name: get_metric(name) for name in metrics}
    plan = plan_evaluations(study, members)
    store = ResultStore(out / "results.jsonl")
    try:
        bar = tqdm(total=len(members), unit="sae", desc=f"audit {study.name}",
                   disable=not progress)
        for member in members:
            records = []
            for seed in plan[member.id]:
                for name in metrics:
                    if specs[name].deterministic and seed != 0:
                        continue
                    if (member.id, name, seed) in store:
                        continue
                    records.append((member.id, name, seed,
                                    evaluate_metric(name, member.params, data, seed)))
            store.add_many(records)  # durable before moving on
            bar.update(1)
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


def _expected_correlation_size(study: StudyConfig) -> int:
    from types import SimpleNamespace

    from synthetic_saes.families import FAMILIES
    from synthetic_saes.semisynthetic.world import LanguageWorldConfig, feature_names_of
    from synthetic_saes.worlds import build_world as _build

    world = None
    if isinstance(study.world, LanguageWorldConfig):  # counting must not train the model
        from synthetic_saes.semisynthetic.language import Language

        world = SimpleNamespace(
            num_features=len(feature_names_of(Language(study.world.language))))
    elif study.families.names:
        world = _build(study.world)
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
        return {"reference": str(path), "found": False, "metrics": {}}
    other = json.loads(path.read_text())
    primary = study.lenses.ground_truth[0]
    rows = {}
    for name, entry in metrics.items():
        theirs = other.get("metrics", {}).get(name, {}).get("gt_correlation", {}).get(primary)
        ours = entry["gt_correlation"][primary]
        rows[name] = {
            "spearman": ours["spearman"], "spearman_ci95": ours["spearman_ci95"],
            "reference_spearman": None if theirs is None else theirs["spearman"],
            "reference_spearman_ci95": None if theirs is None else theirs["spearman_ci95"],
            "verdict": entry["verdict"]["overall"],
            "reference_verdict": (other["metrics"][name].get("verdict", {}).get("overall")
                                  if theirs is not None else None)}
    return {"reference": str(path), "found": True,
            "reference_study": other.get("config", {}).get("name"),
            "reference_world": other.get("world", {}).get("summary"), "ground_truth": primary,
            "metrics": rows}


def _value(store: ResultStore, sae_id: str, metric, seed: int) -> float:
    return store.get(sae_id, metric.name, 0 if metric.deterministic else seed)


def build_report(study: StudyConfig, world, members: list[PopulationMember], store: ResultStore,
                 metrics: list[str], plan: dict[str, list[int]]) -> dict:
    """Apply the three lenses to the stored values and assemble report.json's content."""
    specs = {name: get_metric(name) for name in metrics}
    gts = list(study.lenses.ground_truth)
    primary = gts[0]
    population = [s for s in members if s.kind != "trained" or s.final]
    ids = [s.id for s in population]
    sign = {n: 1.0 if specs[n].higher_is_better else -1.0 for n in metrics}

    def column(name: str, members=population, seed: int = 0) -> np.ndarray:
        return np.array([_value(store, s.id, specs[name], seed) for s in members])

    gt_columns = {g: sign[g] * column(g) for g in gts}
    widths = np.array([s.width for s in population], dtype=float)
    l0 = column("l0")
    controls = {s.control: s.id for s in population if s.control}
    reseed_ids = [i for i, seeds in plan.items() if len(seeds) >= study.lenses.reseed_seeds]
    reseed_ids = [i for i in reseed_ids if any(s.id == i and (s.kind == "control" or s.final)
                                               for s in members)]
    runs: dict[str, list[PopulationMember]] = {}
    for member in members:
        if member.kind == "trained":
            runs.setdefault(member.run, []).append(member)
    training_seeds = sorted({s.seed for s in members if s.kind == "trained"})
    decomposition = _decomposition_runs(study)

    def grid(name: str, members: list[PopulationMember], seed: int = 0) -> np.ndarray:
        by = {(s.seed, s.checkpoint): _value(store, s.id, specs[name], seed) for s in members}
        checkpoints = sorted({s.checkpoint for s in members})
        return np.array([[by[(t, c)] for c in checkpoints] for t in training_seeds])

    def gt_columns_grid(gt: str, members: list[PopulationMember]) -> np.ndarray:
        return sign[gt] * grid(gt, members)

    report_metrics = {}
    trajectories = {}
    for name in metrics:
        spec = specs[name]
        oriented = sign[name] * column(name)
        reseed = reseed_lens({i: [_value(store, i, spec, s)
                                  for s in range(study.lenses.reseed_seeds)] for i in reseed_ids})
        correlation = correlation_lens(oriented, gt_columns, width=widths, l0=l0,
                                       n_boot=study.lenses.n_boot, seed=study.seed)
        trajectory = trajectory_lens(
            {run: (sign[name] * grid(name, members), gt_columns_grid(primary, members))
             for run, members in runs.items()}, noise_std=reseed["std"])
        decomposition_values = {  # [checkpoints, training seeds, metric seeds]
            run: np.stack([grid(name, members, seed).T
                           for seed in range(study.lenses.decomposition_seeds)], axis=-1)
            for run, members in runs.items() if run in decomposition}
        q1, q3 = np.percentile(column(name), [25, 75])
        entry = {
            "description": spec.description, "kind": spec.kind,
            "seed_changes": spec.seed_changes, "higher_is_better": spec.higher_is_better,
            "reseed": {k: v for k, v in reseed.items() if k != "per_sae_std"},
            "gt_correlation": correlation,
            "trajectory": {k: v for k, v in trajectory.items() if k != "per_run"},
            "trajectory_per_run": trajectory["per_run"],
            "variance_decomposition": decomposition_lens(decomposition_values),
            "population_iqr": float(q3 - q1),
            "control_ranks": control_ranks(dict(zip(ids, oriented)), controls),
        }
        entry["verdict"] = verdict(entry, study.verdict, primary)
        report_metrics[name] = entry
        trajectories[name] = {
            run: {"steps": [int(s.step) for s in sorted(members, key=lambda m: m.checkpoint)
                            if s.seed == training_seeds[0]],
                  "mean": grid(name, members).mean(axis=0).tolist()}
            for run, members in runs.items()}

    sanity_self = {g: correlation_lens(gt_columns[g], {g: gt_columns[g]}, width=widths, l0=l0,
                                       n_boot=50, seed=0)[g]["spearman"] for g in gts}
    sanity_ranks = {g: control_ranks(dict(zip(ids, gt_columns[g])), controls) for g in gts}
    ok = all(abs(v - 1.0) < 1e-9 for v in sanity_self.values())
    n = len(population)
    for ranks in sanity_ranks.values():
        if "oracle" in ranks and ranks["oracle"] != 1:
            ok = False
        for control in ("random_init", "random_l0_matched"):
            if control in ranks and ranks[control] < n - 4:
                ok = False

    per_sae = []
    correlation_ids = set(ids)
    for member in members:
        per_sae.append({
            **member.describe(), "l0": _value(store, member.id, specs["l0"], 0),
            "in_correlation": member.id in correlation_ids,
            "scores": {name: _value(store, member.id, specs[name], 0) for name in metrics},
        })
    by_kind: dict[str, int] = {}
    for member in population:
        by_kind[member.kind] = by_kind.get(member.kind, 0) + 1
    return {
        "config": study.to_dict(),
        "world": {"summary": repr(world), "config": world.config.to_dict() if world.config
                  else None, "true_l0": float(np.mean([(world.sample(2048, seed=0).features > 0)
                                                       .sum(1).mean()])),
                  **({"ground_truth": world.summary()} if hasattr(world, "summary") else {})},
        "comparison": _comparison(study, report_metrics),
        "population": {"n_correlation": n, "by_kind": by_kind, "n_trajectory_runs": len(runs),
                       "n_training_seeds": len(training_seeds),
                       "n_checkpoints": study.training.n_checkpoints,
                       "n_reseed": len(reseed_ids)},
        "controls": [c for c in CONTROLS if c in controls],
        "saes": per_sae,
        "metrics": report_metrics,
        "trajectories": trajectories,
        "sanity": {"gt_self_correlation": sanity_self, "control_ranks_on_ground_truth":
                   sanity_ranks, "ok": bool(ok)},
    }
