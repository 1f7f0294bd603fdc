"""A small HookedTransformer trained here on the templated language, and how it is judged.

Training is next-token prediction on freshly generated stories (BOS prepended, right padded,
loss on real tokens only), bit-identical from the same seed (torch runs on one thread, see
`synthetic_saes.threads`). The trained model is saved as a local
model folder (`cebench.models.save_model`: config, safetensors weights, the word-level
tokenizer) plus `language_model.json` holding the configs, the loss curve and the evaluation,
which a fresh process reproduces exactly from the folder.

Evaluation on held-out stories:
    loss            mean next-token cross-entropy.
    pole_accuracy   at every later mention of the entity (where the story's pole is known
                    only from the context), the fraction of positions where the model puts more
                    probability on the first words of the story pole's phrases than on the
                    opposite pole's: the behaviour that interventions and steering act on.
    axis_accuracy   the same positions: more probability on the story axis's first words than
                    on all other axes' (what steering the pole must leave alone).
    probe_accuracy  per attribute (and `word`), a multinomial logistic probe on the hook's
                    activations, fitted on half of the held-out tokens carrying the attribute
                    and scored on the other half.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from synthetic_saes.rng import derive_seed
from synthetic_saes.threads import single_threaded_torch
from synthetic_saes.semisynthetic.language import ATTRIBUTES, AXES, Language, LanguageConfig, Story
from synthetic_saes.validation import reject_unknown_keys, require_positive_int, require_seed

__all__ = [
    "ModelConfig", "train_language_model", "load_language_model", "evaluate_language_model",
    "story_tokens", "recall_margins", "recall_positions", "RecallMargins", "REPORT_FILENAME",
    "LAYER_COMPONENTS", "readable_hooks", "check_hook",
]

REPORT_FILENAME = "language_model.json"


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """The model and its training (validated)."""

    n_layers: int = 2
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    n_ctx: int = 96
    train_steps: int = 600
    batch_size: int = 32
    lr: float = 2e-3
    hook: str = "blocks.0.hook_resid_post"
    eval_stories: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_layers", "d_model", "n_heads", "d_mlp", "n_ctx", "train_steps",
                     "batch_size", "eval_stories"):
            require_positive_int(name, getattr(self, name))
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads "
                             f"({self.n_heads})")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        require_seed(self.seed)
        check_hook(self.hook, self.n_layers)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        reject_unknown_keys(cls, data)
        return cls(**data)


def story_tokens(language: Language, stories: list[Story], tokenizer, n_ctx: int):
    """BOS + words as ids, right padded: (tokens int64 [n, T], mask bool [n, T])."""
    ids = [np.concatenate([[tokenizer.bos_token_id], language.encode(s, tokenizer)])
           for s in stories]
    longest = max(len(i) for i in ids)
    if longest > n_ctx:
        raise ValueError(f"a story has {longest} tokens, more than the model's context {n_ctx}")
    tokens = np.full((len(ids), longest), tokenizer.pad_token_id, dtype=np.int64)
    mask = np.zeros((len(ids), longest), dtype=bool)
    for row, seq in enumerate(ids):
        tokens[row, :len(seq)] = seq
        mask[row, :len(seq)] = True
    return tokens, mask


def _make_model(config: ModelConfig, tokenizer):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=config.n_layers, d_model=config.d_model, n_heads=config.n_heads,
        d_head=config.d_model // config.n_heads, d_mlp=config.d_mlp, n_ctx=config.n_ctx,
        d_vocab=len(tokenizer), act_fn="gelu", normalization_type="LN", seed=config.seed,
        device="cpu", default_prepend_bos=False,
    )
    return HookedTransformer(cfg, tokenizer=tokenizer)


def _loss(model, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    logits = model(tokens, attention_mask=mask.long(), return_type="logits")
    target = tokens[:, 1:]
    valid = mask[:, 1:]
    losses = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none")
    return (losses * valid.reshape(-1)).sum() / valid.sum()


def train_language_model(language: Language, config: ModelConfig, directory: str | Path, *,
                         progress: bool = False):
    """Train, evaluate and save a model of the language into `directory`.

    Returns:
        (model, report) with report = the contents of language_model.json.
    """
    with single_threaded_torch():  # bit-identical weights from the same seed
        return _train(language, config, Path(directory), progress)


def _train(language: Language, config: ModelConfig, directory: Path, progress: bool):
    from tqdm.auto import tqdm

    from cebench.models import save_model

    tokenizer = language.build_tokenizer(directory)
    torch.manual_seed(config.seed)
    model = _make_model(config, tokenizer)
    if config.hook not in model.hook_dict:
        raise ValueError(f"the model has no hook {config.hook!r}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr,
                                                   total_steps=config.train_steps,
                                                   pct_start=0.1)
    rng = np.random.default_rng(derive_seed(config.seed, "language-model-data"))
    curve = []
    model.train()
    for step in tqdm(range(config.train_steps), desc="train language model",
                     disable=not progress):
        stories = [language.random_story(rng) for _ in range(config.batch_size)]
        tokens, mask = story_tokens(language, stories, tokenizer, config.n_ctx)
        loss = _loss(model, torch.from_numpy(tokens), torch.from_numpy(mask))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 50 == 0 or step == config.train_steps - 1:
            curve.append([step, float(loss.detach())])
    model.eval()
    save_model(model, directory)
    evaluation = evaluate_language_model(model, language, config)
    report = {"language": language.config.to_dict(), "model": config.to_dict(),
              "loss_curve": curve, "evaluation": evaluation}
    (directory / REPORT_FILENAME).write_text(json.dumps(report, indent=2))
    return model, report


def load_language_model(directory: str | Path):
    """(model, language, config, report) from a folder written by `train_language_model`."""
    from cebench.models import load_model

    directory = Path(directory)
    path = directory / REPORT_FILENAME
    if not path.exists():
        raise ValueError(f"{directory} holds no trained language model ({REPORT_FILENAME})")
    report = json.loads(path.read_text())
    language = Language(LanguageConfig.from_dict(report["language"]))
    config = ModelConfig.from_dict(report["model"])
    model = load_model(directory)
    vocabulary = set(model.tokenizer.get_vocab())
    missing = sorted(set(language.vocabulary) - vocabulary)
    if missing or len(vocabulary) != len(language.vocabulary) + 4:
        raise ValueError(f"{directory} was trained on another version of the language (its "
                         f"tokenizer lacks {missing[:5] or 'nothing'} and has "
                         f"{len(vocabulary)} tokens); train the model again")
    return model, language, config, report


def _first_word_ids(vocab: dict[str, int]) -> dict[tuple[str, str], list[int]]:
    """(axis, pole) -> token ids of the first words of its phrases."""
    return {(axis, pole): sorted({vocab[p.split()[0]] for p in phrases})
            for axis, (high, low) in AXES.items()
            for pole, phrases in (("high", high), ("low", low))}


class RecallMargins(NamedTuple):
    """What the model predicts where it must recall the story's pole and axis (every later
    mention of the entity; the logits there predict the first word of the pole phrase).

    Attributes:
        pole: logsumexp of the logits of the story axis's first words of the story's pole
            minus that of the opposite pole, float64 [n_positions] (> 0: the right pole).
        axis: logsumexp over the story axis's first words (both poles) minus logsumexp over
            every other axis's first words, float64 [n_positions] (> 0: the right axis).
        positions: (story, token index counting BOS) per position, int64 [n_positions, 2].
    """

    pole: np.ndarray
    axis: np.ndarray
    positions: np.ndarray


def recall_positions(stories: list[Story]) -> np.ndarray:
    """(story, token index counting BOS) of every later entity mention, int64 [n, 2]."""
    return np.asarray([(row, i + 1) for row, story in enumerate(stories)
                       for i, value in enumerate(story.labels["story_pole"]) if value is not None],
                      dtype=np.int64).reshape(-1, 2)


def recall_margins(logits: torch.Tensor, stories: list[Story], tokenizer) -> RecallMargins:
    """The pole and axis margins at every recall position (see `RecallMargins`).

    Args:
        logits: [n_stories, T, d_vocab] for BOS + words.
    """
    ids = _first_word_ids(tokenizer.get_vocab())
    positions = recall_positions(stories)
    pole, axis = [], []
    for row, position in positions:
        story = stories[row]
        other = "low" if story.pole == "high" else "high"
        scores = logits[row, position].double()
        own = torch.logsumexp(scores[ids[story.axis, story.pole]], 0)
        opposite = torch.logsumexp(scores[ids[story.axis, other]], 0)
        # each word once: some first words open phrases of both poles ("sang", "grew")
        same_axis = torch.logsumexp(
            scores[sorted({*ids[story.axis, "high"], *ids[story.axis, "low"]})], 0)
        others = torch.logsumexp(scores[sorted({i for (a, _), v in ids.items()
                                                if a != story.axis for i in v})], 0)
        pole.append(float(own - opposite))
        axis.append(float(same_axis - others))
    return RecallMargins(np.asarray(pole), np.asarray(axis), positions)


def probe_accuracy(x: np.ndarray, labels: list, *, seed: int, l2: float = 1e-3) -> float:
    """Held-out accuracy of a multinomial logistic probe (L-BFGS, standardised inputs, L2
    penalty `l2`) fitted on a random half of (x [n, d], labels [n]) and scored on the other."""
    values = sorted(set(labels))
    if len(values) < 2:
        raise ValueError("a probe needs at least two classes")
    y = torch.tensor([values.index(v) for v in labels])
    order = np.random.default_rng(seed).permutation(len(y))
    train, test = order[: len(y) // 2], order[len(y) // 2:]
    x = torch.as_tensor(np.asarray(x, dtype=np.float64))
    mean, std = x[train].mean(0), x[train].std(0) + 1e-6
    z = (x - mean) / std
    weights = torch.zeros(z.shape[1], len(values), dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(len(values), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights, bias], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(z[train] @ weights + bias, y[train])
        loss = loss + l2 * (weights ** 2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        predicted = (z[test] @ weights + bias).argmax(1)
    return float((predicted == y[test]).double().mean())


def evaluate_language_model(model, language: Language, config: ModelConfig) -> dict:
    """Loss, pole accuracy and attribute-probe accuracies on held-out stories (deterministic)."""
    with single_threaded_torch():
        return _evaluate(model, language, config)


def _evaluate(model, language: Language, config: ModelConfig) -> dict:
    stories = language.stories(config.eval_stories, seed=derive_seed(config.seed, "eval"))
    tokens, mask = story_tokens(language, stories, model.tokenizer, config.n_ctx)
    t, m = torch.from_numpy(tokens), torch.from_numpy(mask)
    with torch.no_grad():
        loss = float(_loss(model, t, m))
        logits, cache = model.run_with_cache(t, attention_mask=m.long(), names_filter=config.hook)
    margins = recall_margins(logits, stories, model.tokenizer)
    acts = cache[config.hook].numpy()
    probes = {}
    for name in ("word", *ATTRIBUTES):
        xs, labels = [], []
        for row, story in enumerate(stories):
            for i, value in enumerate(story.labels[name]):
                if value is not None:
                    xs.append(acts[row, i + 1])
                    labels.append(value)
        probes[name] = probe_accuracy(np.asarray(xs), labels,
                                      seed=derive_seed(config.seed, "probe", name))
    return {"loss": loss, "pole_accuracy": float((margins.pole > 0).mean()),
            "pole_margin": float(margins.pole.mean()),
            "axis_accuracy": float((margins.axis > 0).mean()),
            "n_recall_positions": int(len(margins.pole)), "probe_accuracy": probes}


LAYER_COMPONENTS: tuple[str, ...] = ("resid_pre", "attn_out", "resid_mid", "mlp_out",
                                     "resid_post")
"""A layer's per-position activations of width d_model (blocks.{l}.hook_{component}), in
forward order within the layer."""


def readable_hooks(n_layers: int) -> tuple[str, ...]:
    """The hooks a world can read on a model of `n_layers` layers: the `LAYER_COMPONENTS` of
    every layer, blocks.{l}.hook_{component}, in forward order."""
    return tuple(f"blocks.{layer}.hook_{c}" for layer in range(n_layers)
                 for c in LAYER_COMPONENTS)


def check_hook(hook: str, n_layers: int) -> str:
    """`hook` if a world can read it on an `n_layers`-layer model (before any training).

    Raises:
        ValueError: naming the hook and listing the readable ones.
    """
    valid = readable_hooks(n_layers)
    if hook not in valid:
        raise ValueError(f"unknown hook {hook!r} for a {n_layers}-layer model; readable "
                         f"hooks: {list(valid)}")
    return hook
