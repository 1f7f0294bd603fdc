"""A world read off a SIIT-trained transformer: its activations at a hook, with the Tracr
program's variables as ground truth.

`SIITWorld` is a `BaseWorld`, so trainers, metrics and the audit run on it unchanged:

    samples       the hook's activations at every non-BOS position of sequences drawn as
                  TracrWorld draws them (length uniform in 1..max_seq_len, tokens uniform),
                  run through the SIIT-trained low-level model (`siit.train_siit`).
    features      one indicator per value of each categorical program variable available at
                  the hook ("tokens=a", "indices=3", "hist=2", named as TracrWorld names
                  them): the inputs (tokens, indices) everywhere, and a computed variable from
                  the hook its aligned component writes (fires) at, on. A position's value of
                  each variable is read off the compiled model's residual stream (exact).
                  Feature k is ||u_k|| when the position carries it, 0 otherwise.
    directions    a supervised dictionary (`dictionary.fit_supervised_dictionary`) fitted at
                  the hook on `fit_sequences` sequences; its held-out quality (explained
                  variance, probe accuracy per variable) on `quality_sequences` is `quality`.
    hierarchy     empty (as TracrWorld's).

Unlike a compiled model's axis-aligned basis, the trained model stores these variables in
superposition, so the supervised dictionary is exact only up to its reported quality.
Measured (default SIIT configs, trained on padded pairs of independent lengths; least
squares on 2048 sequences, 512 others for the check): hist's dictionary explains 0.94 / 0.97
of the variance after layers 0 / 1 (probes: hist 0.99 / 1.0, tokens 0.47 / 0.40, indices
0.59 / 0.23); reverse's 0.62 / 0.71 / 0.69 / 0.90 after layers 0-3 (reverse 1.0; tokens
0.73-0.85, indices 0.79-0.96; length 0.35-0.39 and opp_idx 0.51-0.64 against chance 0.2: the
model does not store them as additive directions).
The programs' input spaces are small (363 sequences for reverse and hist), so the fit and the
check draw from the same inputs: "held-out" means independently drawn.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
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
from synthetic_saes.semisynthetic.siit import (
    SIITConfig,
    SIITModel,
    _with_bos,
    high_level_nodes,
    pad_token_id,
    train_siit,
)
from synthetic_saes.semisynthetic.tracr_models import load_tracr_model
from synthetic_saes.threads import single_threaded_torch
from synthetic_saes.validation import reject_unknown_keys, require_positive_int, require_seed

__all__ = ["SIITWorldConfig", "SIITWorld", "siit_hook_names", "siit_feature_names"]

_BLOCK_HOOKS = ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "mlp.hook_pre",
                "mlp.hook_post", "hook_mlp_out", "hook_resid_post")
_INPUTS = ("tokens", "indices")


def siit_hook_names(n_layers: int) -> tuple[str, ...]:
    """The hooks a SIIT world can read (one vector per position), in forward order."""
    names = ["hook_embed", "hook_pos_embed"]
    for layer in range(n_layers):
        names += [f"blocks.{layer}.{h}" for h in _BLOCK_HOOKS]
    return tuple(names)


def _hook_order(hook: str) -> tuple[int, int]:
    """(layer, rank) of a hook or a component in forward order (embeddings at layer -1)."""
    if not hook.startswith("blocks."):
        return (-1, 0)
    layer, rest = re.match(r"^blocks\.(\d+)\.(.*)$", hook).groups()
    ranks = {"hook_resid_pre": 0, "attn.hook_z": 1, "hook_attn_out": 2, "hook_resid_mid": 3,
             "mlp.hook_pre": 4, "mlp.hook_post": 5, "hook_mlp_out": 6, "hook_resid_post": 7}
    return (int(layer), ranks[rest])


@dataclass(frozen=True, kw_only=True)
class SIITWorldConfig:
    """A SIIT world: the program, its SIIT-trained model, the hook read and the dictionary.

    Attributes:
        program: a Tracr program in `siit.SIIT_PROGRAMS`.
        siit: the model's SIITConfig; None becomes SIITConfig(program=program) (its program
            must be `program`).
        hook: a hook of `siit_hook_names`; None becomes the last layer's hook_resid_post.
        fit_sequences: sequences whose positions fit the supervised dictionary.
        quality_sequences: independently drawn sequences its quality is measured on.
        method: the dictionary fit, "least_squares" or "conditional_means".
        sequences_per_batch: sequences per forward pass of the sample stream.
        seed: seeds the dictionary's sequences (sample streams take their own seeds).
    """

    program: str = "reverse"
    siit: SIITConfig | None = None
    hook: str | None = None
    fit_sequences: int = 2048
    quality_sequences: int = 512
    method: str = "least_squares"
    sequences_per_batch: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.siit is None:
            object.__setattr__(self, "siit", SIITConfig(program=self.program))
        if self.siit.program != self.program:
            raise ValueError(f"the SIIT config trains {self.siit.program!r}, not the world's "
                             f"program {self.program!r}")
        hooks = siit_hook_names(self.siit.n_layers)
        if self.hook is None:
            object.__setattr__(self, "hook", f"blocks.{self.siit.n_layers - 1}.hook_resid_post")
        if self.hook not in hooks:
            raise ValueError(f"unknown hook {self.hook!r} for the SIIT model; valid hooks: "
                             f"{list(hooks)}")
        for name in ("fit_sequences", "quality_sequences", "sequences_per_batch"):
            require_positive_int(name, getattr(self, name))
        if self.method not in ("least_squares", "conditional_means"):
            raise ValueError(f"method must be 'least_squares' or 'conditional_means', "
                             f"got {self.method!r}")
        require_seed(self.seed)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["siit"] = self.siit.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SIITWorldConfig:
        reject_unknown_keys(cls, data)
        data = dict(data)
        if isinstance(data.get("siit"), dict):
            data["siit"] = SIITConfig.from_dict(data["siit"])
        return cls(**data)


class SIITWorld(DictionaryWorld):
    """Activations of a SIIT-trained model at a hook (see the module docstring).

    Args:
        trained: the SIIT model (`siit.train_siit` / `load_siit_model`); its config must be
            `config.siit`.
        config: the world's config.
        progress: show bars while the dictionary's sequences run.

    Attributes:
        variables: the program variables whose values are the features.
    """

    def __init__(self, trained: SIITModel, config: SIITWorldConfig, *, progress: bool = False):
        if trained.config != config.siit:
            raise ValueError("the SIIT model was trained with another config than the world's")
        self.trained = trained
        self.model = trained.model.eval()
        self.config = config
        self.progress = progress
        self.tracr = load_tracr_model(config.program, dtype=torch.float64)
        self._vocab_ids = np.array([self.tracr.token_id(t) for t in self.tracr.vocab])
        self._layer = (int(config.hook.split(".")[1]) if config.hook.startswith("blocks.")
                       else 0)
        self.variables = _variables(self.tracr, config)
        self._columns, names = _value_columns(self.tracr, self.variables)
        self._names = tuple(names)
        self.hierarchy = FeatureHierarchy.from_edges(len(self._names), [])

    @classmethod
    def build(cls, config: SIITWorldConfig, directory: str | Path, *,
              progress: bool = False) -> SIITWorld:
        """Load the SIIT model trained in `directory`, training it there first if absent.

        Raises:
            ValueError: `directory` holds a model trained with another config.
        """
        return cls(train_siit(config.siit, directory, progress=progress), config,
                   progress=progress)

    def __repr__(self) -> str:
        return (f"SIITWorld(program={self.config.program!r}, hook={self.config.hook!r}, "
                f"d_in={self.d_in}, n_features={self.num_features})")

    # --- labels ----------------------------------------------------------------------------
    def _compiled_values(self, ids: np.ndarray) -> np.ndarray:
        return _compiled_values(self.tracr, ids)

    def indicators(self, ids: np.ndarray) -> np.ndarray:
        """Which features each non-BOS position carries, bool [n * length, n_features]."""
        return self._compiled_values(ids)[:, self._columns] > 0.5

    def activations(self, ids: np.ndarray) -> np.ndarray:
        """The hook's activations at non-BOS positions, float32 [n * length, d_in] for input
        ids [n, length] (BOS added; padded to max_seq_len with the pad token, as in training,
        and the pad positions dropped)."""
        ids = np.asarray(ids, dtype=np.int64)
        n, length = ids.shape
        padded = np.full((n, self.tracr.max_seq_len), pad_token_id(self.tracr), dtype=np.int64)
        padded[:, :length] = ids
        with torch.no_grad(), single_threaded_torch():
            _, cache = self.model.run_with_cache(
                _with_bos(padded, self.tracr.bos_id),
                names_filter=lambda name: name == self.config.hook,
                stop_at_layer=self._layer + 1)
        hidden = cache[self.config.hook][:, 1:length + 1]
        return hidden.reshape(-1, hidden.shape[-1]).float().numpy()

    def _draw(self, rng: np.random.Generator, n_sequences: int):
        """Activations and indicators of n_sequences random sequences, grouped by length."""
        lengths = rng.integers(1, self.tracr.max_seq_len + 1, size=n_sequences)
        acts, inds = [], []
        for length in range(1, self.tracr.max_seq_len + 1):
            n = int((lengths == length).sum())
            if n:
                ids = self._vocab_ids[rng.integers(0, len(self._vocab_ids), size=(n, length))]
                acts.append(self.activations(ids))
                inds.append(self.indicators(ids))
        return np.concatenate(acts), np.concatenate(inds)

    # --- ground truth ----------------------------------------------------------------------
    @cached_property
    def dictionary(self) -> SupervisedDictionary:
        """The supervised dictionary at the hook, fitted on `fit_sequences` sequences."""
        rng = np.random.default_rng(derive_seed(self.config.seed, "siit-dictionary-fit"))
        acts, inds = self._draw(rng, self.config.fit_sequences)
        return fit_supervised_dictionary(acts, inds, self._names, method=self.config.method)

    @cached_property
    def quality(self) -> DictionaryQuality:
        """The dictionary's explained variance and probe accuracy on fresh sequences."""
        rng = np.random.default_rng(derive_seed(self.config.seed, "siit-dictionary-quality"))
        acts, inds = self._draw(rng, self.config.quality_sequences)
        return dictionary_quality(self.dictionary, acts, inds)

    @property
    def d_in(self) -> int:
        return int(self.model.cfg.d_mlp if "mlp.hook_p" in self.config.hook
                   else self.model.cfg.d_model)

    def stream(self, batch_size: int, *, seed: int) -> Iterator[WorldSample]:
        """Endless batches of position activations and their true features; the same seed,
        the same batches (rows shuffled within a buffer of `sequences_per_batch`)."""
        require_positive_int("batch_size", batch_size)
        require_seed(seed)
        rng = np.random.default_rng(derive_seed(self.config.seed, "siit-world-stream", seed))
        norms = self.mean_magnitudes
        hidden = np.empty((0, self.d_in), dtype=np.float32)
        features = np.empty((0, self.num_features), dtype=np.float32)
        while True:
            while hidden.shape[0] < batch_size:
                acts, inds = self._draw(rng, self.config.sequences_per_batch)
                order = rng.permutation(acts.shape[0])
                hidden = np.concatenate([hidden, acts[order]])
                features = np.concatenate([features, (inds[order] * norms).astype(np.float32)])
            yield WorldSample(hidden[:batch_size], features[:batch_size])
            hidden, features = hidden[batch_size:], features[batch_size:]

    def contrastive_corpus(self, config):
        """CE-Bench's input on this world: inputs that differ only in the tokens at marked
        positions (`synthetic_saes.semisynthetic.program_corpus`), the same stories as on the
        compiled model's world for the same config."""
        from synthetic_saes.semisynthetic.program_corpus import program_contrastive_corpus

        norms = self.mean_magnitudes
        return program_contrastive_corpus(
            config, vocab=self.tracr.vocab, token_ids=self._vocab_ids,
            max_seq_len=self.tracr.max_seq_len, feature_names=self.feature_names,
            activations=self.activations,
            features=lambda ids: (self.indicators(ids) * norms).astype(np.float32),
            d_in=self.d_in)

    def summary(self) -> dict[str, Any]:
        """What a report says about this world: the dictionary's quality and the SIIT model's
        saved evaluation."""
        return {"program": self.config.program, "hook": self.config.hook,
                "n_features": self.num_features, "d_in": self.d_in,
                "variables": list(self.variables),
                "dictionary_quality": self.quality.to_dict(),
                "siit_evaluation": self.trained.log.get("evaluation"),
                "siit_train_seconds": self.trained.log.get("train_seconds")}


def _variables(tracr, config: SIITWorldConfig) -> tuple[str, ...]:
    """The program variables a hook carries: the inputs, and every computed variable whose
    aligned component comes at or before the hook (selector-width helpers left out)."""
    at = _hook_order(config.hook)
    aligned = config.siit.alignment_map
    computed = [node.name for node in high_level_nodes(tracr)
                if _hook_order(aligned[node.name][0]) <= at and
                not node.name.endswith("_selector_width_attn_output")]
    return (*_INPUTS, *computed)


def _compiled_values(tracr, ids: np.ndarray) -> np.ndarray:
    """The compiled model's last residual stream at non-BOS positions, float64
    [n * length, d_model_tracr] for ids [n, length]."""
    hook = f"blocks.{tracr.n_layers - 1}.hook_resid_post"
    with torch.no_grad(), single_threaded_torch():
        _, cache = tracr.model.run_with_cache(
            _with_bos(ids, tracr.bos_id), names_filter=lambda n: n == hook)
    return cache[hook][:, 1:].reshape(-1, tracr.d_model).numpy()


def _value_columns(tracr, variables: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """Residual dimensions of the compiled model that carry a value of one of `variables`
    that some input takes (found by running every input), and their names."""
    labels = tracr.residual_labels
    vocab_ids = np.array([tracr.token_id(t) for t in tracr.vocab])
    candidates = [d for d, label in enumerate(labels)
                  if label.encoding == "categorical" and label.variable in variables]
    fired = np.zeros(len(labels), dtype=bool)
    for length in range(1, tracr.max_seq_len + 1):
        grid = np.stack(np.meshgrid(*[vocab_ids] * length, indexing="ij"), -1)
        fired |= (_compiled_values(tracr, grid.reshape(-1, length)) > 0.5).any(axis=0)
    columns = np.array([d for d in candidates if fired[d]], dtype=np.int64)
    order = sorted(range(len(columns)), key=lambda i: (
        variables.index(labels[columns[i]].variable), i))
    columns = columns[order]
    return columns, [labels[d].feature_name for d in columns]


def siit_feature_names(config: SIITWorldConfig) -> tuple[str, ...]:
    """The features of the SIIT world of `config`, known without training its model (they are
    the program's variable values, read off the compiled model)."""
    tracr = load_tracr_model(config.program, dtype=torch.float64)
    return tuple(_value_columns(tracr, _variables(tracr, config))[1])
