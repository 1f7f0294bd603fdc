"""Ground truth read through the model's own outputs, for studies on a language world.

On a language world the audit also asks what each SAE does to the model (see
`synthetic_saes.semisynthetic.interventions` and `.steering`):

    interventions   sufficiency, necessity and control@k of the controls and of every trained
                    run's final SAE (first training seed), beside the supervised dictionary's;
                    and the rank correlation [95% bootstrap CI] of every CE score with
                    control@k and necessity over the trained SAEs.
    steering        the dictionary's story_sense directions against the best-matching latent
                    of each architecture's middle-sparsity SAE, through lm-eval steering CSVs
                    written into <out>/steering/.

Results are written to <out>/model_outputs.json as they are computed and reused by a resumed
run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from groundtruth import stats
from groundtruth.store import write_json
from synthetic_saes.semisynthetic.interventions import (
    dictionary_interventions, sae_interventions,
)
from synthetic_saes.semisynthetic.steering import compare_steering

__all__ = ["model_output_measurements", "CONTROL_K"]

CONTROL_K = 4
"""The k of control@k the CE scores are correlated with."""
_FILENAME = "model_outputs.json"


def _load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def model_output_measurements(world, members, out: str | Path, *, ce_scores: dict[str, dict],
                              seed: int = 0, n_boot: int = 1000) -> dict:
    """Interventions and steering on a language world (module docstring).

    Args:
        world: a `LanguageWorld`.
        members: the audit's population (`PopulationMember`s).
        out: the run folder.
        ce_scores: metric name -> {sae id: value at seed 0} for the CE scores to correlate.
    """
    out = Path(out)
    path = out / _FILENAME
    done = _load(path)
    measured = [s for s in members if s.control in ("oracle", "random_init", "random_l0_matched")]
    trained = [s for s in members if s.kind == "trained" and s.final]
    first_seed = min((s.seed for s in trained), default=0)
    trained = [s for s in trained if s.seed == first_seed]
    measured += trained
    interventions = done.setdefault("interventions", {})
    if "dictionary" not in interventions:
        interventions["dictionary"] = dictionary_interventions(world, seed=seed).to_dict()
        write_json(path, done, sort_keys=False)
    for member in measured:
        if member.id not in interventions:
            interventions[member.id] = sae_interventions(world, member.params,
                                                         seed=seed).to_dict()
            write_json(path, done, sort_keys=False)
    if "correlations" not in done:
        done["correlations"] = _correlations(interventions, trained, ce_scores, seed, n_boot)
        write_json(path, done, sort_keys=False)
    if "steering" not in done:
        done["steering"] = _steering(world, members, trained, out, seed)
        write_json(path, done, sort_keys=False)
    return done


def _correlations(interventions: dict, trained, ce_scores: dict[str, dict], seed: int,
                  n_boot: int) -> dict:
    ids = [s.id for s in trained]
    targets = {f"control@{CONTROL_K}": [interventions[i]["control_success"][str(CONTROL_K)]
                                        for i in ids],
               "necessity": [interventions[i]["necessity"] for i in ids],
               "sufficiency": [interventions[i]["sufficiency"] for i in ids]}
    out = {}
    for metric, values in ce_scores.items():
        row = {}
        x = np.array([values[i] for i in ids], dtype=float)
        for target, y in targets.items():
            y = np.asarray(y, dtype=float)
            if len(ids) < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
                row[target] = {"spearman": None, "spearman_ci95": None, "n_saes": len(ids)}
                continue
            rc = stats.rank_correlation(x, y, n_boot=n_boot, seed=seed)
            row[target] = {"spearman": rc.spearman, "spearman_ci95": list(rc.spearman_ci95),
                           "n_saes": rc.n}
        out[metric] = row
    return out


def _steering(world, members, trained, out: Path, seed: int) -> dict:
    oracle = next((s for s in members if s.control == "oracle"), None)
    if oracle is None:
        return {"skipped": "the study has no controls, so no oracle SAE to steer with"}
    hook = world.config.hook_name
    folder = out / "steering"
    steerers = {"dictionary": (oracle.params, oracle.params.save(folder / "sae_dictionary",
                                                                 hook_name=hook))}
    by_run: dict[str, list] = {}
    for member in trained:
        by_run.setdefault(member.training_architecture, []).append(member)
    for architecture, members in sorted(by_run.items()):
        members = sorted(members, key=lambda s: s.run)
        middle = members[len(members) // 2]
        steerers[middle.id] = (middle.params, middle.params.save(
            folder / f"sae_{architecture}", hook_name=hook))
    return compare_steering(world, steerers, folder / "csv", seed=seed)
