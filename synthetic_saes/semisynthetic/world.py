"""A world read off a real transformer: the trained language model's activations at a hook,
with a supervised dictionary as their ground truth.

`LanguageWorld` is a `BaseWorld`, so every trainer, family, metric and study that runs on a
synthetic world runs here unchanged:

    samples       the hook's activations on every story token (BOS excluded) of seeded random
                  stories, shuffled within a buffer of `stories_per_batch` stories.
    features      one per "attribute=value" of the language ("word=knight", "category=animal",
                  "story_sense=mood:high", ...): a token's feature k is ||u_k|| when the token
                  carries k and 0 otherwise, so a sample is ~ bias + features @ directions up
                  to the dictionary's residual (its explained variance is in `quality`).
    directions    the supervised dictionary's unit vectors u_k / ||u_k|| (least squares by
                  default, fitted on `fit_stories` stories of their own seed).
    hierarchy     category -> its entity words (mutually exclusive children).

`contrastive_corpus(corpus_config)` builds CE-Bench's input from the language's contrastive
pairs (same entity and axis, high vs low pole) through cebench's own dataset, tokenizer and
activation code (BOS included, as `cebench score` does by default), so the audit's CE scores
on this world are the scores `cebench score` gives on the saved model folder.

`LanguageWorld.build(config, directory)` trains the model into `directory` the first time and
loads it afterwards (a folder trained with another config is an error, never reused).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from synthetic_saes.base_world import WorldSample
from synthetic_saes.hierarchy import FeatureHierarchy
from synthetic_saes.rng import derive_seed
from synthetic_saes.semisynthetic.dictionary_world import DictionaryWorld
from synthetic_saes.semisynthetic.dictionary import (
    DictionaryQuality,
    SupervisedDictionary,
    dictionary_quality,
    fit_supervised_dictionary,
)
from synthetic_saes.semisynthetic.language import (
    ATTRIBUTES,
    ENTITIES,
    Language,
    LanguageConfig,
    Story,
)
from synthetic_saes.semisynthetic.model import (
    REPORT_FILENAME,
    ModelConfig,
    check_hook,
    load_language_model,
    story_tokens,
    train_language_model,
)
from synthetic_saes.threads import single_threaded_torch
from synthetic_saes.validation import reject_unknown_keys, require_positive_int, require_seed

__all__ = ["LanguageWorldConfig", "LanguageWorld", "feature_names_of", "story_indicators",
           "DICTIONARY_ATTRIBUTES"]

DICTIONARY_ATTRIBUTES: tuple[str, ...] = ("word", "category", "axis", "pole", "story_sense",
                                          "story_entity")
"""The attributes whose values are the world's features: story_sense stands for story_axis
and story_pole, which the model does not represent separately (see `language`) and whose
indicators are sums of story_sense's."""


@dataclass(frozen=True, kw_only=True)
class LanguageWorldConfig:
    """A language world: the language, the model trained on it and where it is read.

    Attributes:
        language, model: the language and the model (trained from `model.seed`).
        hook: the hook read; "" means `model.hook`.
        fit_stories: stories whose tokens fit the supervised dictionary.
        quality_stories: held-out stories on which its quality is measured.
        method: the dictionary fit, "least_squares" or "conditional_means".
        stories_per_batch: stories per forward pass of the sample stream (the shuffle buffer).
        seed: seeds the dictionary's stories (sample streams take their own seeds).
    """

    language: LanguageConfig = field(default_factory=LanguageConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    hook: str = ""
    fit_stories: int = 1024
    quality_stories: int = 256
    method: str = "least_squares"
    stories_per_batch: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("fit_stories", "quality_stories", "stories_per_batch"):
            require_positive_int(name, getattr(self, name))
        if self.method not in ("least_squares", "conditional_means"):
            raise ValueError(f"method must be 'least_squares' or 'conditional_means', "
                             f"got {self.method!r}")
        require_seed(self.seed)
        check_hook(self.hook_name, self.model.n_layers)  # before the model is trained

    @property
    def hook_name(self) -> str:
        return self.hook or self.model.hook

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["language"] = self.language.to_dict()
        out["model"] = self.model.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LanguageWorldConfig:
        reject_unknown_keys(cls, data)
        data = dict(data)
        if isinstance(data.get("language"), dict):
            data["language"] = LanguageConfig.from_dict(data["language"])
        if isinstance(data.get("model"), dict):
            data["model"] = ModelConfig.from_dict(data["model"])
        return cls(**data)


def feature_names_of(language: Language) -> tuple[str, ...]:
    """"attribute=value" for every word of the vocabulary and every attribute value."""
    names = [f"word={w}" for w in language.vocabulary]
    names += [f"{a}={v}" for a in DICTIONARY_ATTRIBUTES[1:] for v in ATTRIBUTES[a]]
    return tuple(names)


def story_indicators(stories: list[Story], names: tuple[str, ...]) -> np.ndarray:
    """Which features each story token carries, bool [total words, n_features] (stories in
    order, words in order, no BOS)."""
    column = {name: i for i, name in enumerate(names)}
    n_tokens = sum(len(s.words) for s in stories)
    out = np.zeros((n_tokens, len(names)), dtype=bool)
    row = 0
    for story in stories:
        for i in range(len(story.words)):
            for attribute in DICTIONARY_ATTRIBUTES:
                value = story.labels[attribute][i]
                if value is not None:
                    out[row, column[f"{attribute}={value}"]] = True
            row += 1
    return out


class LanguageWorld(DictionaryWorld):
    """Activations of the trained language model at a hook (see the module docstring).

    Args:
        model: the trained HookedTransformer (with its tokenizer).
        language: the language it was trained on.
        config: the world's config (its `model` must be the model's training config).
        model_report: the model's saved training report (language_model.json), if any.
        progress: show a bar while the model runs over the stories the dictionary is fitted
            and assessed on (minutes on a CPU for the default sizes).

    Raises:
        ValueError: the model has no hook `config.hook_name`.
    """

    def __init__(self, model, language: Language, config: LanguageWorldConfig, *,
                 model_report: dict | None = None, progress: bool = False):
        if config.hook_name not in model.hook_dict:
            valid = [h for h in model.hook_dict
                     if h.rsplit(".", 1)[-1] in ("hook_resid_pre", "hook_attn_out",
                                                 "hook_resid_mid", "hook_mlp_out",
                                                 "hook_resid_post")]
            raise ValueError(f"the model has no hook {config.hook_name!r}; per-layer hooks: "
                             f"{valid}")
        self.model = model.eval()
        self.language = language
        self.config = config
        self.model_report = model_report
        self.progress = progress
        self.tokenizer = model.tokenizer
        self._names = feature_names_of(language)
        entity_words = {f"word={e}": f"category={c}" for e, c in ENTITIES.items()}
        index = {n: i for i, n in enumerate(self._names)}
        edges = [(index[parent], index[child]) for child, parent in entity_words.items()]
        parents = sorted({p for p, _ in edges})
        self.hierarchy = FeatureHierarchy.from_edges(len(self._names), edges, parents)

    @classmethod
    def build(cls, config: LanguageWorldConfig, directory: str | Path, *,
              progress: bool = False) -> LanguageWorld:
        """Load the model trained in `directory`, training it there first if it is absent.

        Raises:
            ValueError: `directory` holds a model trained with another language or model
                config.
        """
        directory = Path(directory)
        if not (directory / REPORT_FILENAME).exists():
            train_language_model(Language(config.language), config.model, directory,
                                 progress=progress)
        model, language, model_config, report = load_language_model(directory)
        if model_config != config.model or language.config != config.language:
            raise ValueError(f"{directory} holds a model trained with another config; use "
                             "another folder or delete it")
        return cls(model, language, config, model_report=report, progress=progress)

    def __repr__(self) -> str:
        return (f"LanguageWorld(hook={self.config.hook_name!r}, d_in={self.d_in}, "
                f"n_features={self.num_features}, layers={self.model.cfg.n_layers})")

    # --- activations -----------------------------------------------------------------------
    def story_activations(self, stories: list[Story]) -> np.ndarray:
        """Hook activations of every word of `stories` (BOS run but dropped), float32
        [total words, d_in], stories in order."""
        tokens, mask = story_tokens(self.language, stories, self.tokenizer,
                                    self.model.cfg.n_ctx)
        with torch.no_grad(), single_threaded_torch():
            _, cache = self.model.run_with_cache(
                torch.from_numpy(tokens), attention_mask=torch.from_numpy(mask).long(),
                names_filter=self.config.hook_name, return_type=None)
        acts = cache[self.config.hook_name].float().numpy()
        return np.concatenate([acts[row, 1:len(s.words) + 1] for row, s in enumerate(stories)])

    def _tokens(self, n_stories: int, seed: int, purpose: str) -> tuple[np.ndarray, np.ndarray]:
        from tqdm.auto import tqdm

        stories = self.language.stories(n_stories, seed=seed)
        with tqdm(total=n_stories, unit="story", disable=not self.progress,
                  desc=f"{self.config.hook_name} activations for the {purpose}") as bar:
            chunks = []
            for i in range(0, n_stories, 256):
                chunks.append(self.story_activations(stories[i:i + 256]))
                bar.update(len(stories[i:i + 256]))
        return np.concatenate(chunks), story_indicators(stories, self._names)

    # --- ground truth ----------------------------------------------------------------------
    @cached_property
    def dictionary(self) -> SupervisedDictionary:
        """The supervised dictionary at the hook, fitted on `fit_stories` stories."""
        acts, indicators = self._tokens(self.config.fit_stories,
                                        derive_seed(self.config.seed, "dictionary-fit"),
                                        "supervised dictionary fit")
        return fit_supervised_dictionary(acts, indicators, self._names,
                                         method=self.config.method)

    @cached_property
    def quality(self) -> DictionaryQuality:
        """The dictionary's explained variance and probe accuracy on held-out stories."""
        acts, indicators = self._tokens(self.config.quality_stories,
                                        derive_seed(self.config.seed, "dictionary-quality"),
                                        "dictionary quality check")
        return dictionary_quality(self.dictionary, acts, indicators)

    @property
    def d_in(self) -> int:
        return int(self.model.cfg.d_model)

    def stream(self, batch_size: int, *, seed: int) -> Iterator[WorldSample]:
        """Endless batches of token activations and their true features; same seed, same
        batches."""
        require_positive_int("batch_size", batch_size)
        require_seed(seed)
        rng = np.random.default_rng(derive_seed(seed, "language-world-stream"))
        norms = self.mean_magnitudes
        hidden = np.empty((0, self.d_in), dtype=np.float32)
        features = np.empty((0, self.num_features), dtype=np.float32)
        while True:
            while hidden.shape[0] < batch_size:
                stories = [self.language.random_story(rng)
                           for _ in range(self.config.stories_per_batch)]
                acts = self.story_activations(stories)
                feats = story_indicators(stories, self._names) * norms
                order = rng.permutation(acts.shape[0])
                hidden = np.concatenate([hidden, acts[order]])
                features = np.concatenate([features, feats[order].astype(np.float32)])
            yield WorldSample(hidden[:batch_size], features[:batch_size])
            hidden, features = hidden[batch_size:], features[batch_size:]

    # --- CE-Bench input --------------------------------------------------------------------
    def contrastive_dataset(self, n_pairs: int, *, seed: int, schema: str = "v1"):
        """The language's contrastive pairs as a cebench `ContrastiveDataset` of schema "v1"
        (pole phrases marked) or "v4", with the (high, low) `Story` pairs they came from.
        Equal to loading `language.dataset_rows(n_pairs, seed=seed, schema=schema)` with
        `cebench.load_contrastive_dataset`."""
        from cebench.datasets import ContrastiveDataset, ContrastiveRow, parse_tagged_story

        if schema not in ("v1", "v4"):
            raise ValueError(f"schema must be 'v1' or 'v4', got {schema!r}")
        pairs = self.language.contrastive_pairs(n_pairs, seed=seed)
        rows = []
        for index, record in enumerate(self.language.dataset_rows(n_pairs, seed=seed,
                                                                  schema=schema)):
            if schema == "v1":
                text_a, spans_a = parse_tagged_story(record["story1"])
                text_b, spans_b = parse_tagged_story(record["story2"])
                rows.append(ContrastiveRow(index=index, subject=record["subject"],
                                           story_a=text_a, story_b=text_b, marked_a=spans_a,
                                           marked_b=spans_b))
            else:
                rows.append(ContrastiveRow(
                    index=index, subject=record["subject_title"], story_a=record["story1"],
                    story_b=record["story2"], subject_a=record["subject1"],
                    subject_b=record["subject2"], subject_id=record["subject_id"]))
        return ContrastiveDataset(name="language", schema=schema, rows=tuple(rows)), pairs

    def contrastive_corpus(self, config):
        """CE-Bench's input on this world: `config.n_pairs` contrastive pairs drawn with
        `config.seed` (a `synthetic_saes.corpora.CorpusConfig`; its story length, marked
        fraction and parent sharing belong to synthetic worlds and are ignored here)."""
        from cebench.activations import compute_activations
        from cebench.datasets import tokenize_dataset
        from synthetic_saes.corpora import ContrastiveCorpus, StoryPair, Subject

        dataset, pairs = self.contrastive_dataset(config.n_pairs, seed=config.seed)
        tokenized = tokenize_dataset(dataset, self.tokenizer)
        with single_threaded_torch():
            acts, lengths, marked = compute_activations(self.model, self.config.hook_name,
                                                        tokenized, bos="include")
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        norms = self.mean_magnitudes
        index = {n: i for i, n in enumerate(self._names)}
        story_pairs, subjects = [], []
        for i, (high, low) in enumerate(pairs):
            subject = Subject(index[f"axis={high.axis}"],
                              index[f"story_sense={high.axis}:high"],
                              index[f"story_sense={high.axis}:low"])
            subjects.append(subject)
            parts = []
            for j, story in enumerate((high, low)):
                start, stop = offsets[2 * i + j], offsets[2 * i + j + 1]
                if stop - start != len(story.words) + 1:
                    raise ValueError("the tokenizer does not map one word to one token")
                features = np.zeros((stop - start, self.num_features), dtype=np.float32)
                features[1:] = story_indicators([story], self._names) * norms
                parts.append((acts[start:stop], sp.csr_matrix(features), marked[start:stop]))
            (ha, fa, ma), (hb, fb, mb) = parts
            story_pairs.append(StoryPair(
                index=i, subject=subject, hidden_a=ha, hidden_b=hb, features_a=fa,
                features_b=fb, marked_a=ma, marked_b=mb,
                differing_features=(subject.high, subject.low),
                shared_features=(index[f"axis={high.axis}"],)))
        return ContrastiveCorpus(config, subjects, story_pairs, self.d_in, self.num_features)

    def summary(self) -> dict[str, Any]:
        """What a report says about this world: the dictionary's quality and the model's
        saved training loss and evaluation."""
        report = self.model_report or {}
        curve = report.get("loss_curve") or [[None, None]]
        return {"hook": self.config.hook_name, "n_features": self.num_features,
                "d_in": self.d_in, "dictionary_quality": self.quality.to_dict(),
                "model_final_training_loss": curve[-1][1],
                "model_evaluation": report.get("evaluation")}
