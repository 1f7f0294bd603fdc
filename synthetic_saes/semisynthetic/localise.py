"""Where a task is computed: activation patching over hook points and position classes.

The map. For counterfactual pairs (clean, corrupt: token arrays of one length per pair that
change the task's answer), a behaviour metric m(logits) of each run, and position classes
(name -> the positions of a pair it covers), every (hook point, position class) is patched:
the receiving run takes the donor run's activations at that hook on the class's positions
and runs on from there. The fraction of the behaviour transferred, per pair i,

    denoise (the default; clean activations patched into the corrupt run):
        t_i = (m_i(corrupt <- clean) - m_i(corrupt)) / (m_i(clean) - m_i(corrupt))
    noise (corrupt activations patched into the clean run):
        t_i = (m_i(clean) - m_i(clean <- corrupt)) / (m_i(clean) - m_i(corrupt))

is 1 when the patched activations carry everything the behaviour needs from the changed
input, 0 when they carry none of it. Each point reports the mean over pairs and a seeded
percentile-bootstrap interval over pairs (one set of resampled pairs for every point), and
points are ranked by the mean. Pairs whose clean and corrupt metrics differ by at most
`min_effect` have no defined fraction: they are left out and listed in the result
(`excluded`), never dropped silently; none left is an error.

Hook points are the five per-layer activations of a TransformerLens model, in forward order:
blocks.{l}.hook_resid_pre, hook_attn_out, hook_resid_mid, hook_mlp_out, hook_resid_post
(resid_mid = resid_pre + attn_out and resid_post = resid_mid + mlp_out exactly; resid_post
of layer l is resid_pre of layer l+1, so both appear in the map with equal values).
Pairs are run in groups of equal length, so no padding ever enters a run (Tracr models
attend in both directions).

How this follows SAGE (Venhoff et al. 2024). SAGE's step (a), in its abstract's words,
"automatically identif[ies] task-specific activations" and then "compute[s] ground truth
features at these points" (supervised dictionaries, its step (b); here `worlds_at`). What is
implemented is exact activation patching at every (layer x component x position class), both
directions available, the transferred fraction per pair with bootstrap intervals over pairs,
a ranking, and a threshold rule on the interval's lower end (`select_points`). Deviations,
stated plainly: the paper's method section was not readable from the stored copy available
here (only its abstract and the start of its introduction), so its section and equation numbers, its
patching direction (denoising is the default here), any gradient (attribution-patching)
approximation it uses for speed, and its exact selection rule are not reproduced; every
point is patched exactly, which a 2-layer model affords.

The language task (`localise_pole_recall`): at every later mention of the story's entity the
model must recall the story's pole to predict the pole phrase that follows
(`model.recall_margins`). Pairs are `Language.counterfactual_pairs` (a story and the same
story at the other pole, aligned token by token); the metric is the mean over the pair's
later mentions of logsumexp(logits of the clean pole's first words on the story's axis) -
logsumexp(those of the corrupt pole's); classes: "later mention" (the recall positions),
"pole phrase" (the pole-phrase words, where the two stories differ) and "other" (the rest,
BOS included).

Ground truth at the located points (`worlds_at`): a `LanguageWorld` at each selected hook,
sharing one loaded model; its supervised dictionary and quality are the world's.

References:
    Venhoff et al., "SAGE: Scalable Ground Truth Evaluations for Large Sparse Autoencoders"
    (2024), https://arxiv.org/abs/2410.07456
    Heimersheim & Nanda, "How to use and interpret activation patching" (2024),
    https://arxiv.org/abs/2404.15255
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from synthetic_saes.rng import derive_seed
from synthetic_saes.semisynthetic.model import LAYER_COMPONENTS, readable_hooks
from synthetic_saes.threads import single_threaded_torch

__all__ = [
    "COMPONENTS", "DIRECTIONS", "POLE_RECALL_CLASSES", "PatchPoint", "PatchingResult",
    "patchable_hooks", "activation_patching", "select_points", "plot_patching_map",
    "pole_recall_task", "localise_pole_recall", "worlds_at",
]

COMPONENTS: tuple[str, ...] = LAYER_COMPONENTS
"""The per-layer hook points, in forward order within a layer."""

DIRECTIONS: tuple[str, ...] = ("denoise", "noise")
POLE_RECALL_CLASSES: tuple[str, ...] = ("later mention", "pole phrase", "other")

_HOOK = re.compile(r"^blocks\.(\d+)\.hook_(" + "|".join(COMPONENTS) + r")$")

# (pair index, logits [T, d_vocab] of that pair's run) -> the behaviour, a float
Metric = Callable[[int, torch.Tensor], float]


def patchable_hooks(model) -> tuple[str, ...]:
    """Every blocks.{l}.hook_{component} the model has, layer by layer in forward order."""
    return tuple(h for h in readable_hooks(model.cfg.n_layers) if h in model.hook_dict)


def _layer_component(hook: str) -> tuple[int, str]:
    match = _HOOK.match(hook)
    if match is None:
        raise ValueError(f"{hook!r} is not a blocks.<layer>.hook_<{'|'.join(COMPONENTS)}> name")
    return int(match.group(1)), match.group(2)


class PatchPoint(NamedTuple):
    """One (hook, position class) of a patching map: mean transferred fraction over pairs
    and its bootstrap interval [low, high]."""

    hook: str
    position_class: str
    mean: float
    low: float
    high: float


@dataclass(frozen=True, eq=False)
class PatchingResult:
    """An activation-patching map (see the module docstring).

    Attributes:
        hooks: the hook points, in forward order [n_hooks].
        position_classes: the class names [n_classes].
        direction: "denoise" or "noise".
        fractions: transferred fraction per point and kept pair, float64
            [n_hooks, n_classes, n_kept].
        mean, low, high: mean over kept pairs and the bootstrap interval, float64
            [n_hooks, n_classes].
        clean_metric, corrupt_metric: the unpatched runs' metric per pair, float64 [n_pairs].
        kept: indices of the pairs with a defined fraction, int64 [n_kept].
        excluded: indices of the pairs left out (|clean - corrupt| <= min_effect).
        confidence, n_resamples, seed: of the bootstrap.
    """

    hooks: tuple[str, ...]
    position_classes: tuple[str, ...]
    direction: str
    fractions: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    clean_metric: np.ndarray
    corrupt_metric: np.ndarray
    kept: np.ndarray
    excluded: tuple[int, ...]
    confidence: float
    n_resamples: int
    seed: int

    def point(self, hook: str, position_class: str) -> PatchPoint:
        """The point at (hook, position_class); ValueError if either is not in the map."""
        h = _index(self.hooks, hook, "hook")
        c = _index(self.position_classes, position_class, "position class")
        return PatchPoint(hook, position_class, float(self.mean[h, c]), float(self.low[h, c]),
                          float(self.high[h, c]))

    def ranked(self, *, components: Sequence[str] | None = None,
               position_classes: Sequence[str] | None = None) -> list[PatchPoint]:
        """Points by mean transferred fraction, highest first (ties in forward order),
        optionally only those of some components ("attn_out", ...) or classes."""
        classes = self._classes(position_classes)
        components = _check_components(components)
        points = [self.point(h, c) for h in self.hooks for c in classes
                  if _layer_component(h)[1] in components]
        return sorted(points, key=lambda p: -p.mean)  # sorted is stable

    def _classes(self, names: Sequence[str] | None) -> tuple[str, ...]:
        if names is None:
            return self.position_classes
        for name in names:
            _index(self.position_classes, name, "position class")
        return tuple(names)

    def to_dict(self) -> dict[str, Any]:
        return {
            "direction": self.direction, "hooks": list(self.hooks),
            "position_classes": list(self.position_classes),
            "points": [p._asdict() for p in self.ranked()],
            "fractions": self.fractions.tolist(),
            "clean_metric": self.clean_metric.tolist(),
            "corrupt_metric": self.corrupt_metric.tolist(),
            "kept": self.kept.tolist(), "excluded": list(self.excluded),
            "confidence": self.confidence, "n_resamples": self.n_resamples, "seed": self.seed,
        }


def _index(names: Sequence[str], name: str, what: str) -> int:
    if name not in names:
        raise ValueError(f"unknown {what} {name!r}; the map has {list(names)}")
    return list(names).index(name)


def _check_components(components: Sequence[str] | None) -> tuple[str, ...]:
    if components is None:
        return COMPONENTS
    unknown = [c for c in components if c not in COMPONENTS]
    if unknown:
        raise ValueError(f"unknown components {unknown}; known: {list(COMPONENTS)}")
    return tuple(components)


def _check_pairs(pairs) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for i, pair in enumerate(pairs):
        if len(pair) != 2:
            raise ValueError(f"pair {i} must be (clean, corrupt), got {len(pair)} items")
        clean, corrupt = (np.asarray(p) for p in pair)
        if clean.ndim != 1 or corrupt.ndim != 1:
            raise ValueError(f"pair {i}: tokens must be 1-d, got shapes {clean.shape} and "
                             f"{corrupt.shape}")
        if len(clean) != len(corrupt):
            raise ValueError(f"pair {i} has unequal lengths: clean {len(clean)}, corrupt "
                             f"{len(corrupt)} tokens")
        if len(clean) == 0 or not (np.issubdtype(clean.dtype, np.integer)
                                   and np.issubdtype(corrupt.dtype, np.integer)):
            raise ValueError(f"pair {i}: tokens must be non-empty integer ids")
        out.append((clean.astype(np.int64), corrupt.astype(np.int64)))
    if not out:
        raise ValueError("activation patching needs at least one pair")
    return out


def _check_classes(position_classes, pairs) -> dict[str, list[np.ndarray]]:
    if not position_classes:
        raise ValueError("position_classes must name at least one class")
    out = {}
    for name, masks in position_classes.items():
        masks = list(masks)
        if len(masks) != len(pairs):
            raise ValueError(f"position class {name!r} has {len(masks)} masks for "
                             f"{len(pairs)} pairs")
        for i, (mask, (clean, _)) in enumerate(zip(masks, pairs)):
            mask = np.asarray(mask)
            if mask.dtype != bool or mask.shape != clean.shape:
                raise ValueError(f"position class {name!r}, pair {i}: the mask must be bool of "
                                 f"shape {clean.shape}, got {mask.dtype} {mask.shape}")
        out[str(name)] = [np.asarray(m) for m in masks]
    return out


def activation_patching(model, pairs: Sequence[tuple[Any, Any]], metric: Metric,
                        position_classes: Mapping[str, Sequence[np.ndarray]], *,
                        hooks: Sequence[str] | None = None, direction: str = "denoise",
                        n_resamples: int = 1000, confidence: float = 0.95,
                        min_effect: float = 1e-6, seed: int = 0,
                        batch_size: int = 64) -> PatchingResult:
    """The activation-patching map of `model` (module docstring).

    Args:
        model: a TransformerLens HookedTransformer (its forward takes token ids as given: no
            BOS is added, so pairs carry their own).
        pairs: (clean, corrupt) token ids per pair, int [T_i] each, equal within a pair.
        metric: metric(pair index, logits [T_i, d_vocab]) -> float, the behaviour.
        position_classes: name -> one bool mask [T_i] per pair (classes may overlap).
        hooks: hook points (default: `patchable_hooks(model)`).
        direction: "denoise" (clean into corrupt) or "noise" (corrupt into clean).
        n_resamples, confidence: of the percentile bootstrap over pairs.
        min_effect: pairs with |m(clean) - m(corrupt)| <= min_effect are left out.
        seed: seeds the bootstrap.
        batch_size: pairs per forward pass.

    Returns:
        a `PatchingResult`; `result.ranked()` lists the points by mean transferred fraction.

    Raises:
        ValueError (before any forward pass): a pair of unequal lengths (naming the pair and
        both lengths), an unknown hook (listing the valid ones), a bad mask, direction,
        confidence or n_resamples; after the clean and corrupt runs: no pair with an effect.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {list(DIRECTIONS)}, got {direction!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if int(n_resamples) < 1 or int(batch_size) < 1:
        raise ValueError(f"n_resamples and batch_size must be >= 1, got {n_resamples}, "
                         f"{batch_size}")
    if not min_effect >= 0:
        raise ValueError(f"min_effect must be >= 0, got {min_effect}")
    pairs = _check_pairs(pairs)
    valid = patchable_hooks(model)
    hooks = valid if hooks is None else tuple(hooks)
    unknown = [h for h in hooks if h not in valid]
    if unknown or not hooks:
        raise ValueError(f"unknown hook point {unknown[0] if unknown else '(none given)'!r}; "
                         f"valid: {list(valid)}")
    hooks = tuple(sorted(set(hooks), key=valid.index))
    classes = _check_classes(position_classes, pairs)
    names = tuple(classes)
    n_pairs = len(pairs)
    clean_m = np.zeros(n_pairs)
    corrupt_m = np.zeros(n_pairs)
    patched = np.zeros((len(hooks), len(names), n_pairs))

    by_length: dict[int, list[int]] = {}
    for i, (clean, _) in enumerate(pairs):
        by_length.setdefault(len(clean), []).append(i)
    with torch.no_grad(), single_threaded_torch():
        for length in sorted(by_length):
            group = by_length[length]
            for start in range(0, len(group), batch_size):
                rows = group[start:start + batch_size]
                _patch_batch(model, [pairs[i] for i in rows], rows, metric, classes, hooks,
                             direction, clean_m, corrupt_m, patched)

    effect = clean_m - corrupt_m
    kept = np.flatnonzero(np.abs(effect) > min_effect)
    excluded = tuple(int(i) for i in np.flatnonzero(np.abs(effect) <= min_effect))
    if len(kept) == 0:
        raise ValueError(f"no pair changes the behaviour by more than min_effect={min_effect} "
                         "(the clean and corrupt runs agree): nothing to localise")
    if direction == "denoise":
        fractions = (patched[..., kept] - corrupt_m[kept]) / effect[kept]
    else:
        fractions = (clean_m[kept] - patched[..., kept]) / effect[kept]
    mean, low, high = _bootstrap(fractions, int(n_resamples), confidence, seed)
    return PatchingResult(hooks=hooks, position_classes=names, direction=direction,
                          fractions=fractions, mean=mean, low=low, high=high,
                          clean_metric=clean_m, corrupt_metric=corrupt_m, kept=kept,
                          excluded=excluded, confidence=float(confidence),
                          n_resamples=int(n_resamples), seed=int(seed))


def _patch_batch(model, batch, rows, metric, classes, hooks, direction, clean_m, corrupt_m,
                 patched) -> None:
    clean = torch.from_numpy(np.stack([c for c, _ in batch]))
    corrupt = torch.from_numpy(np.stack([k for _, k in batch]))
    wanted = set(hooks)
    clean_logits, clean_cache = model.run_with_cache(clean, names_filter=lambda n: n in wanted)
    corrupt_logits, corrupt_cache = model.run_with_cache(corrupt,
                                                         names_filter=lambda n: n in wanted)
    for j, row in enumerate(rows):
        clean_m[row] = float(metric(row, clean_logits[j]))
        corrupt_m[row] = float(metric(row, corrupt_logits[j]))
    receiver, donor = (corrupt, clean_cache) if direction == "denoise" else (clean, corrupt_cache)
    for c, masks in enumerate(classes.values()):
        mask = torch.from_numpy(np.stack([masks[row] for row in rows]))
        if not mask.any():
            # nothing to patch: the run is the receiver's own
            own = corrupt_m if direction == "denoise" else clean_m
            patched[:, c, rows] = own[rows]
            continue
        for h, hook in enumerate(hooks):
            source = donor[hook]

            def patch(acts: torch.Tensor, hook=None, source=source, mask=mask) -> torch.Tensor:
                acts = acts.clone()
                acts[mask] = source[mask].to(acts.dtype)
                return acts

            logits = model.run_with_hooks(receiver, fwd_hooks=[(hook, patch)])
            for j, row in enumerate(rows):
                patched[h, c, row] = float(metric(row, logits[j]))


def _bootstrap(fractions: np.ndarray, n_resamples: int, confidence: float, seed: int):
    """Mean over the last axis and its percentile-bootstrap interval (pairs resampled with
    replacement, the same resamples for every point)."""
    n = fractions.shape[-1]
    rng = np.random.default_rng(derive_seed(seed, "patching-bootstrap"))
    draws = rng.integers(0, n, size=(n_resamples, n))
    means = fractions[..., draws].mean(axis=-1)  # [..., n_resamples]
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha], axis=-1)
    return fractions.mean(axis=-1), low, high


def select_points(result: PatchingResult, *, threshold: float = 0.5,
                  position_classes: Sequence[str] | None = None,
                  components: Sequence[str] | None = None) -> tuple[str, ...]:
    """The hooks where patching transfers the behaviour: a hook is selected when, for at least
    one of `position_classes` (default: all), the lower end of its transferred fraction's
    interval exceeds `threshold`; optionally only hooks of some `components`.

    Returns:
        hook names in forward order (possibly empty).
    """
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    classes = result._classes(position_classes)
    components = _check_components(components)
    columns = [result.position_classes.index(c) for c in classes]
    return tuple(h for i, h in enumerate(result.hooks)
                 if _layer_component(h)[1] in components
                 and (result.low[i, columns] > threshold).any())


def plot_patching_map(result: PatchingResult, path: str | Path, *,
                      title: str | None = None) -> Path:
    """A heatmap per position class (layer x component, colour = mean transferred fraction,
    the value written in each cell) with a shared colour bar, saved to `path` (PNG/PDF/SVG by
    its suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = sorted({_layer_component(h)[0] for h in result.hooks})
    components = [c for c in COMPONENTS if any(_layer_component(h)[1] == c
                                               for h in result.hooks)]
    n_classes = len(result.position_classes)
    grid = np.full((n_classes, len(layers), len(components)), np.nan)
    for i, hook in enumerate(result.hooks):
        layer, component = _layer_component(hook)
        grid[:, layers.index(layer), components.index(component)] = result.mean[i]
    limit = max(1.0, float(np.nanmax(np.abs(grid))))
    fig, axes = plt.subplots(1, n_classes, figsize=(1.3 * len(components) * n_classes + 1.5,
                                                    0.6 * len(layers) + 2.2), squeeze=False)
    image = None
    for k, name in enumerate(result.position_classes):
        ax = axes[0, k]
        image = ax.imshow(grid[k], cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
        ax.set_xticks(range(len(components)), components, rotation=45, ha="right")
        ax.set_yticks(range(len(layers)), [str(layer) for layer in layers])
        ax.set_xlabel("component")
        ax.set_ylabel("layer")
        ax.set_title(f"positions: {name}")
        for (r, c), value in np.ndenumerate(grid[k]):
            if np.isfinite(value):
                ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if abs(value) > 0.6 * limit else "black")
    fig.colorbar(image, ax=axes[0, :].tolist(), label="fraction of behaviour transferred")
    fig.suptitle(title or f"activation patching ({result.direction}, {len(result.kept)} pairs)",
                 y=1.04)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


# ---- the language task --------------------------------------------------------------------


def pole_recall_task(language, tokenizer, n_pairs: int, *, seed: int, n_ctx: int):
    """Pairs, metric and position classes of pole recall (module docstring).

    Returns:
        (pairs [(clean ids [T_i], corrupt ids [T_i])] with BOS, metric, position_classes,
        story pairs [(clean Story, corrupt Story)]).
    """
    from synthetic_saes.semisynthetic.model import _first_word_ids, recall_positions

    if int(n_pairs) < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
    stories = language.counterfactual_pairs(int(n_pairs), seed=seed)
    ids = _first_word_ids(tokenizer.get_vocab())
    bos = tokenizer.bos_token_id
    pairs, classes = [], {name: [] for name in POLE_RECALL_CLASSES}
    recall = []
    for clean, corrupt in stories:
        tokens = [np.concatenate([[bos], language.encode(s, tokenizer)]) for s in (clean, corrupt)]
        if len(tokens[0]) > n_ctx:
            raise ValueError(f"a story has {len(tokens[0])} tokens, more than the model's "
                             f"context {n_ctx}")
        pairs.append((tokens[0], tokens[1]))
        positions = recall_positions([clean])[:, 1]
        recall.append(positions)
        later = np.zeros(len(tokens[0]), dtype=bool)
        later[positions] = True
        phrase = np.concatenate([[False], np.asarray(clean.marked, dtype=bool)])
        classes["later mention"].append(later)
        classes["pole phrase"].append(phrase)
        classes["other"].append(~(later | phrase))

    def metric(i: int, logits: torch.Tensor) -> float:
        clean, corrupt = stories[i]
        if len(recall[i]) == 0:  # no later mention: no behaviour (the pair is excluded)
            return 0.0
        scores = logits[recall[i]].double()
        own = torch.logsumexp(scores[:, ids[clean.axis, clean.pole]], dim=1)
        other = torch.logsumexp(scores[:, ids[clean.axis, corrupt.pole]], dim=1)
        return float((own - other).mean())

    return pairs, metric, classes, stories


def localise_pole_recall(world_or_model, *, language=None, n_pairs: int = 64, seed: int = 0,
                         hooks: Sequence[str] | None = None, direction: str = "denoise",
                         n_resamples: int = 1000, confidence: float = 0.95) -> PatchingResult:
    """The patching map of pole recall at the later mention on a trained language model.

    Args:
        world_or_model: a `LanguageWorld` or the trained HookedTransformer (with its
            tokenizer).
        language: the model's `Language` (default: the world's, else `Language()`).
        n_pairs: counterfactual pairs, drawn with `seed` (which also seeds the bootstrap).
        hooks, direction, n_resamples, confidence: as in `activation_patching`.

    Returns:
        a `PatchingResult` with classes "later mention", "pole phrase", "other". Pairs without
        a later mention have no behaviour and are listed in `excluded`.
    """
    from synthetic_saes.semisynthetic.language import Language

    model = getattr(world_or_model, "model", world_or_model)
    language = language or getattr(world_or_model, "language", None) or Language()
    pairs, metric, classes, _ = pole_recall_task(
        language, model.tokenizer, n_pairs, seed=derive_seed(seed, "pole-recall-pairs"),
        n_ctx=model.cfg.n_ctx)
    return activation_patching(model, pairs, metric, classes, hooks=hooks, direction=direction,
                               n_resamples=n_resamples, confidence=confidence, seed=seed)


def worlds_at(config, directory: str | Path, hooks: Sequence[str], *,
              progress: bool = False) -> dict:
    """A `LanguageWorld` at each hook (the model trained in `directory` once, loaded once):
    each world's `dictionary` is the supervised dictionary fitted at its hook and its
    `quality` that dictionary's held-out explained variance and probe accuracy.

    Args:
        config: the `LanguageWorldConfig` (its `hook` is replaced by each of `hooks`).
        directory: the model folder (trained there first if absent).

    Raises:
        ValueError: a hook the model lacks, or no hooks.
    """
    from synthetic_saes.semisynthetic.world import LanguageWorld

    hooks = list(dict.fromkeys(hooks))
    if not hooks:
        raise ValueError("worlds_at needs at least one hook")
    first = LanguageWorld.build(replace(config, hook=hooks[0]), directory, progress=progress)
    worlds = {hooks[0]: first}
    for hook in hooks[1:]:
        worlds[hook] = LanguageWorld(first.model, first.language, replace(config, hook=hook),
                                     model_report=first.model_report, progress=progress)
    return worlds
