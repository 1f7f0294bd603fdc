"""Study `sage`: the semi-synthetic tier audited where its features are computed.

Four questions on small transformers whose features we know (SAGE, Venhoff et al. 2024;
InterpBench, Gupta et al. 2024):

1. Where is the task computed? Activation patching of the language model's pole recall at
   every hook point x position class (`synthetic_saes.semisynthetic.localise`), with bootstrap
   intervals over counterfactual pairs; the map is a heatmap. The located points are the
   top-ranked residual point and the top-ranked sublayer point (attn_out / mlp_out) at the
   later mention, where the model must carry the story's pole (ties go to the earlier point).
2. Do CE-Bench's scores track ground truth there? The audit (the study's [data], [metrics],
   [families], [training], [lenses], [verdict]) runs on the language model's activations at
   each located point, with the supervised dictionary fitted at that point as ground truth;
   the dictionary's quality is reported beside it.
3. Can residual-stream SAEs stand in for an SAE at the sublayer? At the located sublayer,
   SAEs trained on the residual stream before and after it rebuild the sublayer
   (`synthetic_saes.semisynthetic.sublayer`: h_hat = SAE_after(r_after) - SAE_before(r_before)),
   scored against the sublayer's supervised dictionary side by side with SAEs trained at the
   sublayer directly, of the same width and of the stacked decoder's width (2x): the
   ground-truth scores of `groundtruth.metrics.codes_quality` on the same tokens, and the
   sufficiency / necessity interventions through the model (`interventions`).
4. Does superposition change what the metrics say? For each Tracr program, the audit on the
   compiled model's residual stream (exact, axis-aligned features) and on a SIIT-trained
   model's (`synthetic_saes.semisynthetic.siit`: trained weights implementing the same causal
   graph, features from a supervised dictionary of the program's variables).

Options (`[options]`, every key checked before any work):
    localisation_pairs, localisation_resamples   the patching map's pairs and bootstrap
    selection_threshold   a point is selected when its transferred fraction's interval at the
                     later mention lies above this; a supervised dictionary is fitted and
                     its quality reported at every selected point
    sublayer        {architecture, sparsity, width, seeds, training_samples, batch_size, lr,
                     eval_stories, intervention_stories}
    programs        Tracr programs audited as a compiled and a SIIT-trained world
    program_data, program_families, program_training, program_lenses   the program audits'
                     [data], [families], [training], [lenses] (the study's by default)
    program_metrics  the metrics measured on program worlds (the study's by default)
    siit            SIITConfig fields shared by every program (e.g. train_steps)
    siit_world      SIITWorldConfig fields (fit_sequences, quality_sequences, hook, ...)

Everything is written as it finishes and a rerun resumes: each audit in its own folder
(points/, programs/), the sublayer comparison's SAEs (sublayer/) and scores
(sublayer.json), the language model and SIIT models trained once. The localisation (seconds)
is recomputed on every run, identically.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from groundtruth.report import _fmt, _interval, write_study_report
from groundtruth.study import FamiliesConfig, LensConfig, StudyConfig, TrainingPlan, _section
from groundtruth.store import write_json
from synthetic_saes.rng import derive_seed
from synthetic_saes.validation import reject_unknown_keys, require_positive_int

__all__ = ["run", "SageOptions", "SublayerPlan", "located_points"]

CE_SCORES = ("ce_contrastive", "ce_independent", "ce_interpretability")
_LATER = "later mention"
_RESIDUAL = ("resid_pre", "resid_mid", "resid_post")
_SUBLAYER = ("attn_out", "mlp_out")


@dataclass(frozen=True, kw_only=True)
class SublayerPlan:
    """The SAEs of the sublayer comparison: one architecture and sparsity, all seeds."""

    architecture: str = "topk"
    sparsity: float = 8
    width: int = 256
    seeds: tuple[int, ...] = (0, 1, 2)
    training_samples: int = 65_536
    batch_size: int = 512
    lr: float = 3e-3
    eval_stories: int = 256
    intervention_stories: int = 64

    def __post_init__(self) -> None:
        for name in ("width", "training_samples", "batch_size", "eval_stories",
                     "intervention_stories"):
            require_positive_int(f"sublayer.{name}", getattr(self, name))
        if len(self.seeds) < 2:
            raise ValueError(f"sublayer.seeds needs at least two seeds, got {list(self.seeds)}")
        self.training_plan(self.width)  # an unknown architecture or bad level fails now

    def training_plan(self, width: int) -> TrainingPlan:
        return TrainingPlan(architectures=(self.architecture,),
                            sparsity={self.architecture: (self.sparsity,)}, widths=(width,),
                            seeds=tuple(self.seeds), n_checkpoints=2,
                            training_samples=self.training_samples,
                            batch_size=self.batch_size, lr=self.lr)


@dataclass(frozen=True, kw_only=True)
class SageOptions:
    """The study's `[options]` (see the module docstring)."""

    localisation_pairs: int = 64
    localisation_resamples: int = 1000
    selection_threshold: float = 0.5
    sublayer: SublayerPlan = field(default_factory=SublayerPlan)
    programs: tuple[str, ...] = ("reverse", "hist")
    program_data: dict[str, Any] = field(default_factory=dict)
    program_families: dict[str, Any] = field(default_factory=dict)
    program_training: dict[str, Any] = field(default_factory=dict)
    program_lenses: dict[str, Any] = field(default_factory=dict)
    program_metrics: tuple[str, ...] = ()
    siit: dict[str, Any] = field(default_factory=dict)
    siit_world: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SageOptions:
        reject_unknown_keys(cls, data)
        data = dict(data)
        if "sublayer" in data:
            sub = dict(data["sublayer"])
            reject_unknown_keys(SublayerPlan, sub)
            if "seeds" in sub:
                sub["seeds"] = tuple(sub["seeds"])
            data["sublayer"] = SublayerPlan(**sub)
        for key in ("programs", "program_metrics"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)

    def __post_init__(self) -> None:
        require_positive_int("localisation_pairs", self.localisation_pairs)
        require_positive_int("localisation_resamples", self.localisation_resamples)
        if not 0 <= self.selection_threshold < 1:
            raise ValueError(f"selection_threshold must be in [0, 1), got "
                             f"{self.selection_threshold!r}")


def _study_parts(study: StudyConfig) -> tuple[SageOptions, dict[str, StudyConfig]]:
    """The options and the program audits' configs, all validated (one-line errors)."""
    from groundtruth.metrics.data import DataConfig
    from groundtruth.metrics.registry import get_metric
    from synthetic_saes.semisynthetic.siit import SIIT_PROGRAMS, SIITConfig
    from synthetic_saes.semisynthetic.siit_world import SIITWorldConfig
    from synthetic_saes.semisynthetic.tracr_world import TracrWorldConfig
    from synthetic_saes.semisynthetic.world import LanguageWorldConfig

    if not isinstance(study.world, LanguageWorldConfig):
        raise ValueError("a sage study's [world] is the language model (kind = \"language\")")
    try:
        options = SageOptions.from_dict(study.options)
    except (TypeError, ValueError) as error:
        raise ValueError(f"[options] {error}") from None
    unknown = [p for p in options.programs if p not in SIIT_PROGRAMS]
    if unknown:
        raise ValueError(f"[options] programs {unknown} have no SIIT training; known: "
                         f"{list(SIIT_PROGRAMS)}")
    metrics = options.program_metrics or study.metrics
    for name in metrics:
        get_metric(name)

    def section(cls, raw: dict, where: str, default):
        if not raw:
            return default
        try:
            return _section(cls, raw, f"options.{where}")
        except (TypeError, ValueError) as error:
            message = str(error)
            raise ValueError(message if message.startswith("[options.") else
                             f"[options.{where}] {message}") from None

    try:
        data = DataConfig.from_dict({**study.data.to_dict(), **options.program_data,
                                     "seed": study.seed}) if options.program_data else study.data
    except (TypeError, ValueError) as error:
        raise ValueError(f"[options.program_data] {error}") from None
    training = dict(options.program_training)
    if isinstance(training.get("sparsity"), dict):
        training["sparsity"] = {k: tuple(v) for k, v in training["sparsity"].items()}
    plan = section(TrainingPlan, training, "program_training", study.training)
    families = section(FamiliesConfig, options.program_families, "program_families",
                       study.families)
    lenses = section(LensConfig, options.program_lenses, "program_lenses", study.lenses)
    audits = {}
    for program in options.programs:
        try:
            siit = SIITConfig.from_dict({**options.siit, "program": program})
            siit_world = SIITWorldConfig.from_dict({**options.siit_world, "program": program,
                                                    "siit": siit})
        except (TypeError, ValueError) as error:
            raise ValueError(f"[options.siit] {program}: {error}") from None
        for kind, world in (("tracr", TracrWorldConfig(program=program)),
                            ("siit", siit_world)):
            truth = ("the compiler's exact basis" if kind == "tracr"
                     else "a supervised dictionary of the program's variables")
            audits[f"{kind}_{program}"] = replace(
                study, kind="audit", name=f"{study.name}.{kind}_{program}", world=world,
                description=f"Part of {study.name}: do the metrics track ground truth "
                            f"({truth}) on the {kind} model of {program}?",
                data=data, metrics=tuple(metrics), families=families, training=plan,
                lenses=lenses, options={})
    return options, audits


def located_points(result) -> dict[str, Any]:
    """The top-ranked residual and sublayer points at the later mention (ties: the earlier
    point), as {"residual": PatchPoint, "sublayer": PatchPoint}."""
    return {"residual": result.ranked(components=_RESIDUAL, position_classes=(_LATER,))[0],
            "sublayer": result.ranked(components=_SUBLAYER, position_classes=(_LATER,))[0]}


def _slug(hook: str) -> str:
    return hook.replace(".", "_")


def _link_model(point_dir: Path, model_dir: Path) -> None:
    """Every point's audit reads the one trained language model."""
    point_dir.mkdir(parents=True, exist_ok=True)
    link = point_dir / "language_model"
    if not link.exists():
        os.symlink(os.path.relpath(model_dir, point_dir), link)


def _localise(world, options: SageOptions, seed: int, out: Path):
    from synthetic_saes.semisynthetic.localise import localise_pole_recall, plot_patching_map

    result = localise_pole_recall(world, n_pairs=options.localisation_pairs, seed=seed,
                                  n_resamples=options.localisation_resamples)
    write_json(out / "localisation.json", result.to_dict())
    plot_patching_map(result, out / "localisation.png",
                      title=f"pole recall: fraction transferred by patching "
                            f"({len(result.kept)} pairs)")
    return result


def _verdict_rows(report: dict, metrics: tuple[str, ...]) -> dict[str, Any]:
    primary = report["config"]["lenses"]["ground_truth"][0]
    rows = {}
    for name in metrics:
        entry = report["metrics"].get(name)
        if entry is None or entry.get("kind") != "ce":
            continue
        within = entry["within_strata"][primary]
        rows[name] = {"within_spearman": within["mean_spearman"],
                      "within_spearman_ci95": within["mean_spearman_ci95"],
                      "n_units": within["n_units"],
                      "pooled_spearman": entry["gt_correlation"][primary]["spearman"],
                      "verdict": entry["verdict"]["overall"]}
    return {"primary": primary, "sanity_ok": report["sanity"]["ok"], "scores": rows}


def _sublayer_comparison(base_world, hook: str, plan: SublayerPlan, seed: int, out: Path,
                         progress: bool, worlds_for) -> dict[str, Any]:
    from groundtruth.metrics.codes_quality import codes_quality
    from groundtruth.population import trained_saes
    from synthetic_saes.semisynthetic.interventions import (
        dictionary_interventions, sae_interventions, sublayer_interventions,
    )
    from synthetic_saes.semisynthetic.sublayer import (
        SublayerSAE, language_sublayer_activations, residual_hooks_around,
    )
    from synthetic_saes.semisynthetic.world import story_indicators

    before, after = residual_hooks_around(hook)
    worlds = worlds_for([hook, before, after])  # `hook`'s dictionary is shared with the selection
    target = worlds[hook]

    def final(world, width: int, folder: str) -> list:
        members = trained_saes(world, plan.training_plan(width), out / "sublayer" / folder,
                               progress=progress)
        return [m.params for m in sorted((m for m in members if m.final),
                                         key=lambda m: m.seed)]

    saes = {"before": final(worlds[before], plan.width, _slug(before)),
            "after": final(worlds[after], plan.width, _slug(after)),
            "direct": final(target, plan.width, _slug(hook)),
            "direct_2x": final(target, 2 * plan.width, _slug(hook) + "_2x")}
    stories = base_world.language.stories(plan.eval_stories,
                                          seed=derive_seed(seed, "sublayer-eval"))
    acts = language_sublayer_activations(base_world, stories, hook)
    features = story_indicators(stories, target.feature_names) * target.mean_magnitudes
    G = target.feature_directions

    def scores(codes, recon, decoder) -> dict:
        return codes_quality(codes, recon, acts.sublayer, features, decoder, G)

    rows: dict[str, list[dict]] = {"reconstructed": [], "direct": [], "direct_2x": []}
    n = plan.intervention_stories
    for i, training_seed in enumerate(plan.seeds):
        rebuilt = SublayerSAE(before=saes["before"][i], after=saes["after"][i])
        codes = rebuilt.encode(acts.resid_before, acts.resid_after)
        row = scores(codes, rebuilt.decode(codes), rebuilt.W_dec)
        row.update(asdict(sublayer_interventions(target, rebuilt, n_stories=n, n_pairs=n,
                                                 seed=seed)))
        rows["reconstructed"].append({"seed": int(training_seed), **row})
        for name in ("direct", "direct_2x"):
            sae = saes[name][i]
            codes = sae.encode(acts.sublayer)
            row = scores(codes, sae.decode(codes), sae.W_dec)
            row.update(asdict(sae_interventions(target, sae, n_stories=n, n_pairs=n,
                                                seed=seed)))
            rows[name].append({"seed": int(training_seed), **row})
    reference = asdict(dictionary_interventions(target, n_stories=n, n_pairs=n, seed=seed))
    summary = {name: _mean_sd(values) for name, values in rows.items()}
    return {"hook": hook, "residual_hooks": [before, after], "plan": asdict(plan),
            "latents": {"reconstructed": 2 * plan.width, "direct": plan.width,
                        "direct_2x": 2 * plan.width},
            "per_seed": rows, "summary": summary, "dictionary_interventions": reference,
            "dictionary_quality": target.quality.to_dict(),
            "resampled": f"training seeds ({len(plan.seeds)}): mean and standard deviation"}


def _mean_sd(rows: list[dict]) -> dict[str, list[float]]:
    keys = [k for k, v in rows[0].items() if isinstance(v, (int, float)) and k != "seed"]
    return {k: [float(np.mean([r[k] for r in rows])),
                float(np.std([r[k] for r in rows], ddof=1))] for k in keys}


def run(study: StudyConfig, out: str | Path, *, progress: bool = True) -> Path:
    """Run (or resume) the study into `out`; returns report.json."""
    from groundtruth.audit import run_audit
    from synthetic_saes.semisynthetic.localise import select_points, worlds_at
    from synthetic_saes.semisynthetic.world import LanguageWorld

    options, program_audits = _study_parts(study)  # every error before any work
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = out / "language_model"
    base = LanguageWorld.build(study.world, model_dir, progress=progress)

    result = _localise(base, options, study.seed, out)  # seconds: redone on every run
    top = located_points(result)
    localisation = result.to_dict()

    quality_path = out / "dictionary_quality.json"
    selected = select_points(result, threshold=options.selection_threshold,
                             position_classes=(_LATER,))
    worlds: dict = {}  # hook -> LanguageWorld, each dictionary fitted once per run

    def worlds_for(hooks) -> dict:
        missing = [h for h in hooks if h not in worlds]
        if missing:
            worlds.update(worlds_at(study.world, model_dir, missing))
        return {h: worlds[h] for h in hooks}

    saved = json.loads(quality_path.read_text()) if quality_path.exists() else {}
    if set(saved) != set(selected):
        saved = {hook: {"n_features": world.num_features, **world.quality.to_dict()}
                 for hook, world in worlds_for(selected).items()}
        write_json(quality_path, saved)

    point_reports = {}
    for role, point in top.items():
        folder = out / "points" / _slug(point.hook)
        _link_model(folder, model_dir)
        sub = replace(study, kind="audit", name=f"{study.name}.{_slug(point.hook)}",
                      world=replace(study.world, hook=point.hook), options={},
                      description=f"Part of {study.name}: do the metrics track the supervised "
                                  f"dictionary's ground truth at the located {role} point "
                                  f"{point.hook}?")
        report = json.loads(run_audit(sub, folder, progress=progress).read_text())
        point_reports[role] = {"point": point._asdict(), "folder": str(folder.relative_to(out)),
                               "world": report["world"], **_verdict_rows(report, study.metrics)}

    sublayer_path = out / "sublayer.json"
    if sublayer_path.exists():
        sublayer = json.loads(sublayer_path.read_text())
    else:
        sublayer = _sublayer_comparison(base, top["sublayer"].hook, options.sublayer,
                                        study.seed, out, progress, worlds_for)
        write_json(sublayer_path, sublayer)

    programs: dict[str, dict] = {}
    for key, sub in program_audits.items():
        folder = out / "programs" / key
        report = json.loads(run_audit(sub, folder, progress=progress).read_text())
        programs[key] = {"folder": str(folder.relative_to(out)), "world": report["world"],
                         **_verdict_rows(report, sub.metrics)}

    report = {"config": study.to_dict(), "localisation": {
        "top": {k: v._asdict() for k, v in top.items()},
        "ranked_later_mention": [p for p in localisation["points"]
                                 if p["position_class"] == _LATER],
        "n_pairs_kept": len(localisation["kept"]), "excluded": localisation["excluded"],
        "direction": localisation["direction"], "confidence": localisation["confidence"],
        "selection_threshold": options.selection_threshold, "selected": saved},
        "points": point_reports, "sublayer": sublayer, "programs": programs}
    return write_study_report(out, report, _markdown, lambda o: _plot(report, o))


def _score_phrase(row: dict | None) -> str:
    if row is None:
        return "not measured"
    return (f"{_fmt(row['within_spearman'])} {_interval(row['within_spearman_ci95'])} "
            f"({row['verdict']})")


def _overlap(a: dict | None, b: dict | None) -> str:
    if not a or not b or None in (a["within_spearman_ci95"] or [None]) or None in (
            b["within_spearman_ci95"] or [None]):
        return "cannot be compared (an interval is undefined)"
    (lo_a, hi_a), (lo_b, hi_b) = a["within_spearman_ci95"], b["within_spearman_ci95"]
    if hi_a < lo_b or hi_b < lo_a:
        return "the intervals do not overlap: superposition changes what it says"
    return "the intervals overlap: no evidence here that superposition changes it"


def _markdown(report: dict, plots: list[str]) -> str:
    loc, points, sub, programs = (report["localisation"], report["points"], report["sublayer"],
                                  report["programs"])
    first = CE_SCORES[0]
    top_r, top_s = loc["top"]["residual"], loc["top"]["sublayer"]
    s = sub["summary"]

    def ms(name: str, key: str) -> str:
        mean, sd = s[name][key]
        return f"{mean:.2f} ± {sd:.2f}"

    primary = next(iter(points.values()))["primary"]
    lines = [f"# SAGE and SIIT: {report['config']['name']}", "",
             "**The answer.** "
             f"Pole recall reaches the later mention through `{top_s['hook']}` (patching it "
             f"transfers {top_s['mean']:.2f} [{top_s['low']:.2f}, {top_s['high']:.2f}] of the "
             f"behaviour) and is fully present at `{top_r['hook']}` ({top_r['mean']:.2f} "
             f"[{top_r['low']:.2f}, {top_r['high']:.2f}]). At these located points "
             f"{first}'s mean within-strata Spearman with {primary} is "
             + "; ".join(f"{_score_phrase(p['scores'].get(first))} at `{p['point']['hook']}`"
                         for p in points.values())
             + f". Residual-stream SAEs rebuilding `{sub['hook']}` reach F1 "
             f"{ms('reconstructed', 'f1')} and sufficiency {ms('reconstructed', 'sufficiency')}"
             f", against F1 {ms('direct', 'f1')} / {ms('direct_2x', 'f1')} and sufficiency "
             f"{ms('direct', 'sufficiency')} / {ms('direct_2x', 'sufficiency')} for SAEs "
             "trained at the sublayer (same width / the rebuilt code's width). "]
    for program in sorted({k.split("_", 1)[1] for k in programs}):
        tracr, siit = programs.get(f"tracr_{program}"), programs.get(f"siit_{program}")
        a, b = tracr["scores"].get(first), siit["scores"].get(first)
        lines[-1] += (f"On `{program}`, {first} tracks {tracr['primary']} at "
                      f"{_score_phrase(a)} on the compiled model and {_score_phrase(b)} on the "
                      f"SIIT-trained one: {_overlap(a, b)}. ")
    lines += ["", "Intervals: audits, cluster bootstraps over independent units (see each "
              "audit's report); localisation, percentile bootstrap over counterfactual pairs; "
              f"sublayer comparison, {sub['resampled']}.", "",
              "## 1. Where pole recall is computed", "",
              f"Activation patching ({loc['direction']}: clean activations into the "
              f"counterfactual run), {loc['n_pairs_kept']} pairs kept"
              + (f", {len(loc['excluded'])} left out (no behaviour difference)"
                 if loc["excluded"] else "") + f", {int(100 * loc['confidence'])}% intervals.",
              "", "![localisation](localisation.png)", "",
              "| rank | hook (later mention) | fraction transferred [CI] |", "|---|---|---|"]
    for i, p in enumerate(loc["ranked_later_mention"][:8], 1):
        lines.append(f"| {i} | `{p['hook']}` | {p['mean']:.3f} [{p['low']:.3f}, "
                     f"{p['high']:.3f}] |")
    selected = loc["selected"]
    lines += ["", f"**Ground truth at every selected point** (interval above "
              f"{loc['selection_threshold']:g} at the later mention): the supervised "
              "dictionary fitted there, its held-out explained variance and probe accuracy.", "",
              "| hook | features | explained variance | mean probe accuracy | story_sense probe |",
              "|---|---|---|---|---|"]
    for hook, q in selected.items():
        lines.append(f"| `{hook}` | {q['n_features']} | {q['explained_variance']:.3f} | "
                     f"{q['mean_probe_accuracy']:.3f} | "
                     f"{_fmt(q['probe_accuracy'].get('story_sense'), 3)} |")
    if not selected:
        lines.append("| (none) | | | | |")
    lines += ["", "## 2. CE-Bench at the located points", "",
              "| point | dictionary EV | probe acc. | features | "
              + " | ".join(f"{m} within-strata [CI] (verdict)" for m in CE_SCORES)
              + " | sanity |", "|---|---|---|---|" + "---|" * len(CE_SCORES) + "---|"]
    for p in points.values():
        truth = p["world"].get("ground_truth", {})
        quality = truth.get("dictionary_quality", {})
        lines.append(
            f"| `{p['point']['hook']}` | {_fmt(quality.get('explained_variance'))} | "
            f"{_fmt(quality.get('mean_probe_accuracy'))} | {truth.get('n_features', '-')} | "
            + " | ".join(_score_phrase(p["scores"].get(m)) for m in CE_SCORES)
            + f" | {'ok' if p['sanity_ok'] else 'FAILED'} |")
    lines += ["", "Each point's full audit: " + ", ".join(
        f"[{p['point']['hook']}]({p['folder']}/report.md)" for p in points.values()), "",
        f"## 3. Sublayer `{sub['hook']}` rebuilt from residual SAEs", "",
        f"Residual SAEs at `{sub['residual_hooks'][0]}` and `{sub['residual_hooks'][1]}`, "
        f"h_hat = SAE_after(r_after) - SAE_before(r_before), scored on "
        f"{sub['plan']['eval_stories']} held-out stories against the sublayer's supervised "
        f"dictionary (EV {sub['dictionary_quality']['explained_variance']:.2f}); "
        f"{sub['plan']['architecture']} SAEs, sparsity {sub['plan']['sparsity']:g}, "
        f"{sub['plan']['training_samples']:,} samples; mean ± sd over "
        f"{len(sub['plan']['seeds'])} training seeds.", "",
        "| SAE | latents | F1 | precision | recall | MCC | explained variance | L0 | "
        "sufficiency | necessity |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, label in (("reconstructed", "rebuilt from residual SAEs"),
                        ("direct", "trained at the sublayer"),
                        ("direct_2x", "trained at the sublayer, 2x width")):
        lines.append(f"| {label} | {sub['latents'][name]} | " + " | ".join(
            ms(name, k) for k in ("f1", "precision", "recall", "mcc", "explained_variance",
                                  "l0", "sufficiency", "necessity")) + " |")
    ref = sub["dictionary_interventions"]
    lines += ["", f"The supervised dictionary itself: sufficiency {ref['sufficiency']:.2f}, "
              f"necessity {ref['necessity']:.2f}. A rebuilt code carries a feature that passes "
              "through the sublayer unchanged in both halves (with opposite signs), which "
              "counts against its precision and L0.", "",
              "## 4. Compiled (Tracr) vs SIIT-trained worlds", "",
              "| world | d_in | features | " + " | ".join(
                  f"{m} within-strata [CI] (verdict)" for m in CE_SCORES) + " | sanity |",
              "|---|---|---|" + "---|" * len(CE_SCORES) + "---|"]
    for key, p in programs.items():
        truth = p["world"].get("ground_truth", {})
        lines.append(f"| [{key}]({p['folder']}/report.md) | {truth.get('d_in', '-')} | "
                     f"{truth.get('n_features', '-')} | "
                     + " | ".join(_score_phrase(p["scores"].get(m)) for m in CE_SCORES)
                     + f" | {'ok' if p['sanity_ok'] else 'FAILED'} |")
    lines += [""] + [f"![{name}]({name})" for name in plots] + [""]
    return "\n".join(lines)


def _plot(report: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    worlds = {f"point {p['point']['hook']}": p for p in report["points"].values()}
    worlds.update(report["programs"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
    names = list(worlds)
    width = 0.8 / len(CE_SCORES)
    for j, metric in enumerate(CE_SCORES):
        xs, ys, errs = [], [], []
        for i, name in enumerate(names):
            row = worlds[name]["scores"].get(metric)
            if row is None or row["within_spearman"] is None:
                continue
            lo, hi = row["within_spearman_ci95"]
            y = row["within_spearman"]
            xs.append(i + (j - (len(CE_SCORES) - 1) / 2) * width)
            ys.append(y)
            errs.append([y - lo, hi - y])
        left.errorbar(xs, ys, yerr=np.array(errs).T if errs else None, fmt="o", capsize=3,
                      label=metric)
    left.axhline(0, color="k", lw=0.8)
    left.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    left.set_ylabel("within-strata Spearman vs ground truth\n(mean, 95% CI)")
    left.set_title("Do CE scores track ground truth on each world?")
    left.legend(fontsize=8)
    summary = report["sublayer"]["summary"]
    keys = ("f1", "mcc", "explained_variance", "sufficiency", "necessity")
    labels = {"reconstructed": "rebuilt from residual SAEs", "direct": "direct (same width)",
              "direct_2x": "direct (2x width)"}
    bar = 0.8 / len(labels)
    for j, (name, label) in enumerate(labels.items()):
        right.bar(np.arange(len(keys)) + (j - 1) * bar, [summary[name][k][0] for k in keys],
                  bar, yerr=[summary[name][k][1] for k in keys], capsize=3, label=label)
    right.set_xticks(range(len(keys)), ["F1", "MCC", "explained\nvariance", "sufficiency",
                                        "necessity"])
    right.set_ylabel("score (mean ± sd over training seeds)")
    right.set_title(f"sublayer {report['sublayer']['hook']}")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "sage_summary.png", dpi=100)
    plt.close(fig)
    return ["sage_summary.png"]
