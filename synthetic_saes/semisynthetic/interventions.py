"""Sufficiency, necessity and sparse controllability of an SAE, measured through the model.

The behaviour: at every later mention of the story's entity the model must recall the story's
pole to predict the pole phrase that follows; its pole margin there (`model.recall_margins`,
> 0 means the right pole) is what every intervention below is judged by. Each intervention
replaces the activations at the world's hook on every story token (BOS untouched) and reruns
the model from there (Makelov, Lange & Nanda 2024, adapted to this language):

    sufficiency     x -> x_hat (the SAE's reconstruction): the fraction of the clean mean pole
                    margin that is kept. 1: the reconstruction carries everything the model
                    uses; 0: nothing.
    necessity       x -> x - x_hat + mean(x_hat) (what the SAE reconstructs is removed, its
                    mean put back): 1 - the fraction of the clean margin that survives.
                    1: the model's recall goes entirely through what the SAE captures.
    control@k       on counterfactual minimal pairs (a story and the same story at the other
                    pole, aligned token by token), edit the source's code toward the target's
                    on the k latents per token whose change moves the reconstruction most,
                    x + sum_{j in top k} (f_j(x') - f_j(x)) W_dec[j]; the success rate is the
                    fraction of recall positions where the edited model now prefers the target
                    pole (margin < 0 for the source's pole).

A sublayer's reconstruction from residual-stream SAEs (`sublayer.SublayerSAE`) is judged by
the same sufficiency and necessity at the sublayer hook (`sublayer_interventions`): its
x_hat = SAE_after(r_after) - SAE_before(r_before) is computed from the clean residual stream
around the sublayer on the same tokens. It has no control@k: its code is two SAEs' codes whose
edits would have to move both residual reconstructions consistently.

The supervised dictionary is the reference (`dictionary_interventions`): its reconstruction
bias + sum of the token's attribute vectors, and its edit, which swaps the vectors of the
attribute values that differ between source and target at each token (on pole phrase words:
the word and the pole; on later mentions: the story sense).

Reference: Makelov, Lange & Nanda, "Towards principled evaluations of sparse autoencoders for
interpretability and control" (2024), https://arxiv.org/abs/2405.08366
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from synthetic_saes.rng import derive_seed
from synthetic_saes.sae_params import SAEParams
from synthetic_saes.semisynthetic.language import Story
from synthetic_saes.semisynthetic.model import recall_margins, story_tokens
from synthetic_saes.semisynthetic.world import LanguageWorld, story_indicators
from synthetic_saes.threads import single_threaded_torch

__all__ = ["InterventionScores", "sae_interventions", "dictionary_interventions",
           "sublayer_interventions", "run_with_replaced", "pole_tokens", "DEFAULT_KS"]

DEFAULT_KS: tuple[int, ...] = (1, 2, 4, 8)

# activations [n_tokens, d_in] of the edited story words -> their replacement, same shape
Replace = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class InterventionScores:
    """What an SAE (or the supervised dictionary) does to the model's pole recall.

    Attributes:
        clean_margin: mean pole margin of the unedited model on the evaluation stories.
        sufficiency, necessity: see the module docstring.
        control_success: k -> success rate of the k-latent edit (the dictionary's own edit
            under key 0).
        full_patch_success: success rate when the pole tokens' activations are replaced by the
            target's (the ceiling of any edit of these tokens at this hook).
        n_positions: recall positions measured (sufficiency and necessity).
        n_control_positions: recall positions of the counterfactual pairs.
    """

    clean_margin: float
    sufficiency: float
    necessity: float
    control_success: dict[int, float]
    full_patch_success: float
    n_positions: int
    n_control_positions: int

    def to_dict(self) -> dict:
        out = asdict(self)
        out["control_success"] = {str(k): v for k, v in self.control_success.items()}
        return out


def _word_rows(stories: Sequence[Story]) -> tuple[np.ndarray, np.ndarray]:
    """(row, token index counting BOS) of every story word, int64 [n_tokens] each."""
    rows = np.concatenate([np.full(len(s.words), i) for i, s in enumerate(stories)])
    cols = np.concatenate([np.arange(1, len(s.words) + 1) for s in stories])
    return rows.astype(np.int64), cols.astype(np.int64)


def pole_tokens(stories: Sequence[Story]) -> np.ndarray:
    """Which story words carry `pole` or `story_sense`, bool [total words] (no BOS)."""
    return np.array([p is not None or q is not None for s in stories
                     for p, q in zip(s.labels["pole"], s.labels["story_sense"])], dtype=bool)


def run_with_replaced(world: LanguageWorld, stories: Sequence[Story],
                      replace: Replace | None, *,
                      where: np.ndarray | None = None) -> tuple[np.ndarray, torch.Tensor]:
    """Run the model on `stories` with the hook's activations on the story words selected by
    `where` (bool [total words]; None: every word) replaced by
    `replace(acts [n_selected, d_in]) -> [n_selected, d_in]` (None: unedited).

    Returns:
        (clean activations of the story words [n_tokens, d_in], logits [n, T, d_vocab]).
    """
    tokens, mask = story_tokens(world.language, list(stories), world.tokenizer,
                                world.model.cfg.n_ctx)
    rows, cols = _word_rows(stories)
    if where is not None:
        rows, cols = rows[where], cols[where]
    seen: dict[str, np.ndarray] = {}

    def hook(acts: torch.Tensor, hook=None) -> torch.Tensor:
        words = acts[rows, cols].detach().float().cpu().numpy()
        seen["acts"] = words
        if replace is None:
            return acts
        new = np.asarray(replace(words), dtype=np.float32)
        if new.shape != words.shape or not np.isfinite(new).all():
            raise ValueError("a replacement must be finite and keep the activations' shape")
        acts = acts.clone()
        acts[rows, cols] = torch.from_numpy(new).to(acts.dtype)
        return acts

    with torch.no_grad(), single_threaded_torch():
        logits = world.model.run_with_hooks(
            torch.from_numpy(tokens), attention_mask=torch.from_numpy(mask).long(),
            fwd_hooks=[(world.config.hook_name, hook)])
    return seen["acts"], logits


def _margins(world: LanguageWorld, stories: Sequence[Story], replace: Replace | None):
    acts, logits = run_with_replaced(world, stories, replace, where=pole_tokens(stories))
    return acts, recall_margins(logits, list(stories), world.tokenizer).pole


def _ratio(edited: np.ndarray, clean: np.ndarray) -> float:
    return float(edited.mean() / clean.mean())


def _evaluation(world: LanguageWorld, n_stories: int, n_pairs: int, seed: int):
    stories = world.language.stories(n_stories, seed=derive_seed(seed, "intervention-stories"))
    pairs = world.language.counterfactual_pairs(n_pairs,
                                                seed=derive_seed(seed, "intervention-pairs"))
    return stories, [s for s, _ in pairs], [t for _, t in pairs]


def _scores(world, stories, sources, targets, reconstruct: Callable[[np.ndarray, list], np.ndarray],
            edits: dict[int, Callable[[np.ndarray, np.ndarray], np.ndarray]]) -> InterventionScores:
    acts, clean = _margins(world, stories, None)
    if not clean.mean() > 0:
        raise ValueError("the model does not recall the pole on these stories (mean clean "
                         f"margin {clean.mean():.3f}); train it longer")
    # edits happen at the hook only, so every run sees the clean `acts` there: reconstruct once
    recon = reconstruct(acts, stories)
    mean_recon = recon.mean(axis=0)
    _, sufficient = _margins(world, stories, lambda x: recon)
    _, ablated = _margins(world, stories, lambda x: x - recon + mean_recon)
    target_acts, _ = run_with_replaced(world, targets, None, where=pole_tokens(targets))
    _, patched = _margins(world, sources, lambda x: target_acts)
    control = {}
    for k, edit in edits.items():
        _, edited = _margins(world, sources, lambda x, edit=edit: edit(x, target_acts))
        control[k] = float((edited < 0).mean())
    return InterventionScores(
        clean_margin=float(clean.mean()), sufficiency=_ratio(sufficient, clean),
        necessity=1.0 - _ratio(ablated, clean), control_success=control,
        full_patch_success=float((patched < 0).mean()), n_positions=int(len(clean)),
        n_control_positions=int(len(patched)))


def sae_interventions(world: LanguageWorld, sae: SAEParams, *, n_stories: int = 64,
                      n_pairs: int = 64, ks: Sequence[int] = DEFAULT_KS,
                      seed: int = 0) -> InterventionScores:
    """Sufficiency, necessity and control@k of `sae` at the world's hook (module docstring).

    Raises:
        ValueError: the SAE's d_in differs from the hook's, a k < 1, or a model that does
            not recall the pole.
    """
    world.check_d_in(sae.d_in)
    if any(int(k) < 1 for k in ks):
        raise ValueError(f"every k must be >= 1, got {list(ks)}")
    stories, sources, targets = _evaluation(world, n_stories, n_pairs, seed)
    norms = np.linalg.norm(sae.W_dec, axis=1)

    def edit(k: int):
        def apply(x: np.ndarray, x_target: np.ndarray) -> np.ndarray:
            delta = sae.encode(x_target) - sae.encode(x)
            keep = min(k, delta.shape[1])
            top = np.argpartition(-np.abs(delta) * norms, keep - 1, axis=1)[:, :keep]
            chosen = np.take_along_axis(delta, top, axis=1)
            return x + np.einsum("nk,nkd->nd", chosen, sae.W_dec[top])
        return apply

    return _scores(world, stories, sources, targets,
                   lambda x, _stories: sae.decode(sae.encode(x)),
                   {int(k): edit(int(k)) for k in ks})


def dictionary_interventions(world: LanguageWorld, *, n_stories: int = 64, n_pairs: int = 64,
                             seed: int = 0) -> InterventionScores:
    """The same measurements for the supervised dictionary, which reads the token labels:
    its reconstruction and its label-swapping edit (reported as control_success[0])."""
    stories, sources, targets = _evaluation(world, n_stories, n_pairs, seed)
    dictionary = world.dictionary
    names = world.feature_names

    def reconstruct(x: np.ndarray, which: list) -> np.ndarray:
        return dictionary.reconstruct(story_indicators(list(which), names)[pole_tokens(which)])

    source_ind = story_indicators(sources, names)[pole_tokens(sources)].astype(np.float32)
    target_ind = story_indicators(targets, names)[pole_tokens(targets)].astype(np.float32)
    swap = (target_ind - source_ind) @ dictionary.vectors

    return _scores(world, stories, sources, targets, reconstruct,
                   {0: lambda x, _target: x + swap})


def sublayer_interventions(world: LanguageWorld, sublayer_sae, *, n_stories: int = 64,
                           n_pairs: int = 64, seed: int = 0) -> InterventionScores:
    """Sufficiency and necessity of a `SublayerSAE`'s reconstruction at the world's hook,
    which must be the sublayer (attn_out / mlp_out) the SAE reconstructs; control_success is
    empty (module docstring). Same stories as `sae_interventions` for the same seed.

    Raises:
        ValueError: the world's hook is not a sublayer hook, or d_in differs.
    """
    from synthetic_saes.semisynthetic.sublayer import language_sublayer_activations

    world.check_d_in(sublayer_sae.d_in)
    stories, sources, targets = _evaluation(world, n_stories, n_pairs, seed)

    def reconstruct(x: np.ndarray, which: list) -> np.ndarray:
        acts = language_sublayer_activations(world, which, world.config.hook_name)
        where = pole_tokens(which)
        return sublayer_sae.reconstruct(acts.resid_before[where], acts.resid_after[where])

    return _scores(world, stories, sources, targets, reconstruct, {})
