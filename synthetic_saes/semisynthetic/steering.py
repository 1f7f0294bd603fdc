"""Steering as ground truth: does adding a direction change the model's output the known way?

A story on axis A at pole p makes the model predict p's phrases at every later mention of its
entity. Adding the supervised dictionary's direction of story_sense = "A:q" (q the other pole)
at the hook should make it predict q's phrases instead; steering with the SAE latent whose
decoder row best matches that direction should too. For each steering target (every axis,
both ways) and coefficient we measure, on stories of the source pole:

    success_rate     recall positions where the model now prefers the target pole
                     (pole margin < 0 for the story's own pole).
    axis_accuracy    recall positions where the model still predicts the story's axis (the
                     attribute steering must leave alone; ~1 unsteered).
    other_kl         mean KL(clean || steered) of the next-token distribution on every other
                     story token (what else steering disturbs), in nats.

Steering goes through lm-evaluation-harness's `steered` CSV rows (`steering_rows`): the
supervised dictionary is saved as an SAE whose decoder rows are its unit directions (the
oracle's decoder), each row adds coefficient x W_dec[feature_index] at every position, as
lm-eval does. Coefficients are multiples of the target feature's mean magnitude; SAE decoder
rows are unit norm, so both steerers add vectors of the same norm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from synthetic_saes.rng import derive_seed
from synthetic_saes.sae_params import SAEParams
from synthetic_saes.semisynthetic.language import AXES, ENTITIES, Story
from synthetic_saes.semisynthetic.model import recall_margins, recall_positions, story_tokens
from synthetic_saes.semisynthetic.steering_rows import (
    SteeringRow, read_steering_csv, steered, steering_vectors, write_steering_csv,
)
from synthetic_saes.semisynthetic.world import LanguageWorld
from synthetic_saes.threads import single_threaded_torch

__all__ = ["SteeringEffect", "steering_effect", "best_matching_latent", "steering_targets",
           "compare_steering", "DEFAULT_MULTIPLIERS"]

DEFAULT_MULTIPLIERS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)


@dataclass(frozen=True)
class SteeringEffect:
    """What one set of steering rows does to stories of one source pole (module docstring)."""

    success_rate: float
    axis_accuracy: float
    other_kl: float
    n_positions: int

    def to_dict(self) -> dict:
        return asdict(self)


def steering_targets() -> list[tuple[str, str, str]]:
    """(axis, source pole, target pole) for every axis, both ways."""
    return [(axis, p, q) for axis in AXES for p, q in (("high", "low"), ("low", "high"))]


def _stories(world: LanguageWorld, axis: str, pole: str, n: int, seed: int) -> list[Story]:
    rng = np.random.default_rng(derive_seed(seed, "steering", axis, pole))
    return [world.language.story(str(rng.choice(sorted(ENTITIES))), axis, pole, rng)
            for _ in range(n)]


def _logits(world: LanguageWorld, stories: list[Story], rows: Sequence[SteeringRow] | None):
    tokens, mask = story_tokens(world.language, stories, world.tokenizer, world.model.cfg.n_ctx)
    inputs = dict(input=torch.from_numpy(tokens), attention_mask=torch.from_numpy(mask).long())
    with torch.no_grad(), single_threaded_torch():
        if not rows:
            return world.model(**inputs), mask
        with steered(world.model, steering_vectors(rows)):
            return world.model(**inputs), mask


def steering_effect(world: LanguageWorld, rows: Sequence[SteeringRow], stories: list[Story],
                    *, clean: torch.Tensor | None = None) -> SteeringEffect:
    """The effect of `rows` (lm-eval steering rows) on `stories`, which share one pole.

    `clean`: the unsteered logits of `stories`, when already computed (they are shared by
    every steerer and coefficient of a target)."""
    if len({s.pole for s in stories}) != 1:
        raise ValueError("steering is measured on stories of one pole")
    if clean is None:
        clean, mask = _logits(world, stories, None)
    else:
        mask = story_tokens(world.language, stories, world.tokenizer, world.model.cfg.n_ctx)[1]
    steered_logits = _logits(world, stories, rows)[0] if rows else clean
    margins = recall_margins(steered_logits, stories, world.tokenizer)
    other = torch.from_numpy(mask.copy())
    other[:, -1] = False
    other[:, :-1] &= torch.from_numpy(mask[:, 1:])  # positions that predict a story token
    for row, position in recall_positions(stories):
        other[row, position] = False
    log_p = torch.log_softmax(clean.double(), -1)[other]
    log_q = torch.log_softmax(steered_logits.double(), -1)[other]
    kl = (log_p.exp() * (log_p - log_q)).sum(-1)
    return SteeringEffect(success_rate=float((margins.pole < 0).mean()),
                          axis_accuracy=float((margins.axis > 0).mean()),
                          other_kl=float(kl.mean()), n_positions=int(len(margins.pole)))


def best_matching_latent(sae: SAEParams, direction: np.ndarray) -> tuple[int, float]:
    """(latent, cosine) of the SAE decoder row closest in angle to `direction` [d_in]."""
    rows = sae.W_dec / np.maximum(np.linalg.norm(sae.W_dec, axis=1, keepdims=True), 1e-12)
    cos = rows @ (direction / np.linalg.norm(direction))
    best = int(np.argmax(cos))
    return best, float(cos[best])


def compare_steering(world: LanguageWorld, saes: dict[str, tuple[SAEParams, Path]],
                     out: str | Path, *, multipliers: Sequence[float] = DEFAULT_MULTIPLIERS,
                     n_stories: int = 16, seed: int = 0) -> dict:
    """Steer with the supervised dictionary and with each SAE's best-matching latent.

    Args:
        world: the language world.
        saes: name -> (SAE params, its sae-lens directory); the name "dictionary" must be the
            oracle SAE, whose latent k is the dictionary's feature k.
        out: folder for the steering CSVs (one per steerer and multiplier, lm-eval format);
            they are written, read back and applied.
        multipliers: coefficients in units of each target feature's mean magnitude.
        n_stories: stories per steering target.

    Returns:
        {"multipliers", "targets", "steerers": {name: {"latents": {target: [latent, cos]},
        "by_multiplier": {m: mean success, axis accuracy, other KL over targets}}}} plus the
        unsteered baseline.
    """
    if "dictionary" not in saes:
        raise ValueError("compare_steering needs the oracle SAE under the name 'dictionary'")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = world.feature_names
    hook = world.config.hook_name
    targets = steering_targets()
    stories = {(a, p): _stories(world, a, p, n_stories, seed) for a, p, _ in targets}
    clean = {key: _logits(world, group, None)[0] for key, group in stories.items()}
    baseline = [steering_effect(world, [], stories[a, p], clean=clean[a, p])
                for a, p, _ in targets]
    report = {"multipliers": list(multipliers), "hook": hook, "n_stories": n_stories,
              "targets": [f"{a}:{p}->{q}" for a, p, q in targets],
              "unsteered": _mean([e.to_dict() for e in baseline]), "steerers": {}}
    for name, (params, directory) in saes.items():
        latents = {}
        for a, p, q in targets:
            k = names.index(f"story_sense={a}:{q}")
            latents[f"{a}:{p}->{q}"] = ([k, 1.0] if name == "dictionary" else
                                       list(best_matching_latent(
                                           params, world.feature_directions[k])))
        by_multiplier = {}
        for m in multipliers:
            rows_of_target = {}
            for a, p, q in targets:
                latent = int(latents[f"{a}:{p}->{q}"][0])
                magnitude = float(world.mean_magnitudes[names.index(f"story_sense={a}:{q}")])
                norm = float(np.linalg.norm(params.W_dec[latent]))
                rows_of_target[a, p, q] = SteeringRow(
                    loader="sae_lens", action="add", sparse_model=str(directory),
                    hookpoint=hook, feature_index=latent,
                    steering_coefficient=m * magnitude / norm,
                    description=f"{name}: story_sense {a}:{p} -> {a}:{q}, x{m:g}")
            path = write_steering_csv(list(rows_of_target.values()),
                                      out / f"steering_{_slug(name)}_x{m:g}.csv")
            rows = read_steering_csv(path)  # the CSV is what is applied
            effects = [steering_effect(world, [row], stories[a, p], clean=clean[a, p])
                       for row, (a, p, _) in zip(rows, rows_of_target)]
            by_multiplier[f"{m:g}"] = _mean([e.to_dict() for e in effects])
        report["steerers"][name] = {"latents": latents, "by_multiplier": by_multiplier}
    return report


def _mean(effects: list[dict]) -> dict:
    return {key: float(np.mean([e[key] for e in effects]))
            for key in ("success_rate", "axis_accuracy", "other_kl")}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
