"""A world read off a Tracr-compiled transformer: residual activations in a labelled basis.

Tracr's residual stream has one dimension per program-variable value (`tokens=a`,
`indices=2`, `reverse=3`), per numerical variable (`frac_prevs`) and one constant `one`
dimension. At a residual hook, every token position's activation is therefore

    x = bias + sum_k f_k e_{d_k}          x [d_model], f [n_features]

where the e_d are standard basis vectors, `bias` is the constant `one` dimension (value 1 at
every position), and the true features are the other dimensions that are ever non-zero at
that hook (embeddings and the layers before the hook write them; later layers' dimensions are
still zero and are left out, so the world has no dead features). A categorical feature is a
0/1 indicator; a numerical one (`frac_prevs`, `is_x`, and Tracr's selector-width helper
`<name>_selector_width_attn_output` = 1 / (width + 1)) carries its value.

Exactness. The model runs in float64 on its float32 weights (then x is stored as float32):
in float32, Tracr's large MLP weights leave rounding errors up to ~1e-5 in dimensions that
should be exactly 0, which would fire as spurious features (measured on `hist`: a `hist=5`
"feature" at 39% of positions with mean value 0.01). Tracr's attention is a softmax with
large but finite logits, so a dimension that should be 0 can still hold ~1e-12: coordinates
with |x_d| <= `zero_tolerance` count as silent (f_k = 0). The activation x is the model's,
untouched, so x == bias + f @ feature_directions holds to within zero_tolerance; categorical
features are 1 up to the float32 rounding of the weights (~5e-7). A numerical dimension that
takes negative values (none does in the registered programs) is left out of the features
and listed in `excluded_labels`, and there the identity fails by design.

Samples: a sequence length is drawn uniformly from [min_length, max_length], then tokens
uniformly from the program's vocab; the model runs on [BOS] + tokens and every non-BOS
position is one sample (the BOS position is excluded: it carries no position and no program
variables). Rows are shuffled within each batch.

The support (which dimensions are ever non-zero) and mean magnitudes are computed exactly by
enumerating every input when there are at most 50,000 of them (all registered programs),
weighting each token by its probability under the sampler; otherwise from 8,192 sampled
sequences (seeded by the config's seed).

Measured (tests/synthetic_saes/semisynthetic/test_tracr_world.py settings: d_sae =
n_features, 65k samples, lr 1e-2): the oracle scores MCC = F1 = 1; topk (k = true L0) and
relu_l1 SAEs reconstruct well (explained variance 0.83-0.99) yet reach only MCC 0.42-0.62,
F1 0.37-0.59, against 0.33-0.52 / 0.18-0.34 for random SAEs. Tracr's variables are
deterministic functions of one another (in `reverse`, opp_idx of length and index), so
dictionaries sparser than the labelled basis exist and SAEs find them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch

from synthetic_saes.arrays import readonly
from synthetic_saes.base_world import BaseWorld, WorldSample
from synthetic_saes.hierarchy import FeatureHierarchy
from synthetic_saes.rng import derive_seed
from synthetic_saes.threads import single_threaded_torch
from synthetic_saes.semisynthetic.tracr_models import (
    PROGRAMS,
    TracrModel,
    load_tracr_model,
    read_fixture_config,
    residual_hook_names,
)
from synthetic_saes.validation import reject_unknown_keys, require_positive_int, require_seed

__all__ = ["TracrWorldConfig", "TracrWorld"]

_ENUMERATE_LIMIT = 50_000
_SUPPORT_SEQUENCES = 8192
# Sequences run per forward chunk at least: each forward costs ~1 ms of hook overhead per
# length, so small batches are drawn from a buffer of larger chunks.
_MIN_CHUNK_SEQUENCES = 1024


@dataclass(frozen=True, kw_only=True)
class TracrWorldConfig:
    """Which compiled model, which hook, which inputs; validated on construction.

    Attributes:
        program: a registered Tracr program (see `tracr_models.PROGRAMS`), or any name when
            `fixture_dir` is given.
        hook_name: a residual hook, blocks.{l}.hook_resid_{pre,mid,post}; None (the default)
            becomes the last layer's hook_resid_post.
        min_length, max_length: input lengths are drawn uniformly from this range,
            1 <= min_length <= max_length <= the program's max_seq_len; max_length None
            becomes max_seq_len.
        zero_tolerance: coordinates with |x_d| <= this count as silent features (>= 0).
        seed: the world's seed (>= 0); seeds the support sample when inputs are too many to
            enumerate, and every stream (with the stream's own seed).
        fixture_dir: a fixture directory to load instead of the program's shipped fixture.
    """

    program: str = "reverse"
    hook_name: str | None = None
    min_length: int = 1
    max_length: int | None = None
    zero_tolerance: float = 1e-6
    seed: int = 0
    fixture_dir: str | None = None

    def __post_init__(self) -> None:
        if self.fixture_dir is None and self.program not in PROGRAMS:
            raise ValueError(
                f"unknown Tracr program {self.program!r}; known programs: {sorted(PROGRAMS)}"
            )
        fixture = read_fixture_config(self.fixture_dir or self.program)
        n_layers = int(fixture["hooked_transformer"]["n_layers"])
        max_seq_len = int(fixture["max_seq_len"])
        hooks = residual_hook_names(n_layers)
        if self.hook_name is None:
            object.__setattr__(self, "hook_name", hooks[-1])
        if self.hook_name not in hooks:
            raise ValueError(
                f"unknown hook {self.hook_name!r} for Tracr program {self.program!r}; valid "
                f"hooks: {list(hooks)}"
            )
        if self.max_length is None:
            object.__setattr__(self, "max_length", max_seq_len)
        require_positive_int("min_length", self.min_length)
        require_positive_int("max_length", self.max_length)
        if not self.min_length <= self.max_length <= max_seq_len:
            raise ValueError(
                f"need 1 <= min_length <= max_length <= max_seq_len={max_seq_len}, got "
                f"min_length={self.min_length}, max_length={self.max_length}"
            )
        if not 0 <= self.zero_tolerance < 0.01:
            raise ValueError(f"zero_tolerance must be in [0, 0.01), got {self.zero_tolerance}")
        require_seed(self.seed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TracrWorldConfig:
        reject_unknown_keys(cls, data)
        return cls(**data)

    def replace(self, **changes: Any) -> TracrWorldConfig:
        return TracrWorldConfig.from_dict({**self.to_dict(), **changes})


class TracrWorld(BaseWorld):
    """Residual activations of a Tracr-compiled model with their exact labelled features.

    Attributes:
        config: the world's config.
        model: the loaded `TracrModel`.
        feature_dims: int64 [n_features], the residual dimension of each feature.
        feature_labels: the `ResidualLabel` of each feature.
        excluded_labels: non-constant dimensions left out because they take negative values.
        hierarchy: empty (Tracr's variables are flat; values of one categorical variable are
            mutually exclusive, which the hierarchy format cannot state without a parent).
    """

    def __init__(self, config: TracrWorldConfig | str = "reverse"):
        if isinstance(config, str):
            config = TracrWorldConfig(program=config)
        self.config = config
        self.model: TracrModel = load_tracr_model(config.fixture_dir or config.program,
                                                  dtype=torch.float64)
        self._layer = int(config.hook_name.split(".")[1])
        self._vocab_ids = np.array([self.model.token_id(t) for t in self.model.vocab])
        acts, weights = self._support_activations()
        labels = self.model.residual_labels
        constant = np.array([label.encoding == "constant" for label in labels])
        tol = config.zero_tolerance
        active = (np.abs(acts) > tol).any(axis=0) & ~constant
        negative = (acts < -tol).any(axis=0) & active
        self.feature_dims = readonly(np.flatnonzero(active & ~negative))
        self.feature_labels = tuple(labels[d] for d in self.feature_dims)
        self.excluded_labels = tuple(labels[d] for d in np.flatnonzero(negative))
        bias = np.zeros(self.model.d_model, dtype=np.float32)
        bias[constant] = np.median(acts[:, constant], axis=0) if len(acts) else 0.0
        self._bias = readonly(bias)
        values = self._features(acts)
        fires = values > 0
        totals = (weights[:, None] * values).sum(0)
        counts = (weights[:, None] * fires).sum(0)
        self._mean_magnitudes = readonly((totals / counts).astype(np.float32))
        self._min_magnitudes = readonly(
            np.where(fires, values, np.inf).min(axis=0).astype(np.float32))
        self.hierarchy = FeatureHierarchy.from_edges(self.num_features, [])

    # ---- ground truth ---------------------------------------------------------------------

    @property
    def num_features(self) -> int:
        return int(self.feature_dims.shape[0])

    @property
    def d_in(self) -> int:
        return self.model.d_model

    @cached_property
    def feature_directions(self) -> np.ndarray:
        """One-hot rows e_{d_k}, float32 [n_features, d_model]."""
        return readonly(np.eye(self.d_in, dtype=np.float32)[self.feature_dims])

    @property
    def bias(self) -> np.ndarray:
        """The constant `one` dimension (1 there, 0 elsewhere), float32 [d_model]."""
        return self._bias

    @property
    def mean_magnitudes(self) -> np.ndarray:
        """Mean value of each feature when it fires, float32 [n_features] (1 for categorical)."""
        return self._mean_magnitudes

    @property
    def min_magnitudes(self) -> np.ndarray:
        """Smallest value of each feature when it fires, float32 [n_features]."""
        return self._min_magnitudes

    @property
    def feature_names(self) -> tuple[str, ...]:
        """"variable=value" per categorical feature, the variable's name per numerical one."""
        return tuple(label.feature_name for label in self.feature_labels)

    # ---- sampling -------------------------------------------------------------------------

    def activations(self, token_ids: np.ndarray) -> np.ndarray:
        """Hook activations of inputs of one length, BOS position dropped.

        Args:
            token_ids: int [n_sequences, length] input ids (without BOS).
        Returns:
            float32 [n_sequences * length, d_model], sequence-major.
        """
        token_ids = np.asarray(token_ids, dtype=np.int64)
        n, length = token_ids.shape
        if n == 0:
            return np.zeros((0, self.d_in), dtype=np.float32)
        bos = np.full((n, 1), self.model.bos_id, dtype=np.int64)
        tokens = torch.from_numpy(np.concatenate([bos, token_ids], axis=1))
        with torch.no_grad(), single_threaded_torch():
            _, cache = self.model.model.run_with_cache(
                tokens, names_filter=lambda name: name == self.config.hook_name,
                stop_at_layer=self._layer + 1,
            )
        hidden = cache[self.config.hook_name][:, 1:, :]
        return hidden.reshape(n * length, self.d_in).numpy().astype(np.float32)

    def features_of(self, hidden: np.ndarray) -> np.ndarray:
        """True feature activations of activations: the feature coordinates with values at
        or below zero_tolerance set to 0, float32 [n, n_features] for hidden [n, d_model]."""
        return self._features(np.asarray(hidden, dtype=np.float32))

    def _features(self, hidden: np.ndarray) -> np.ndarray:
        values = hidden[:, self.feature_dims]
        return np.where(values > self.config.zero_tolerance, values, 0.0).astype(np.float32)

    def stream(self, batch_size: int, *, seed: int) -> Iterator[WorldSample]:
        """Endless batches of `batch_size` token positions; the same seed, the same batches.

        The stream's generator is seeded by (config.seed, seed); rows are shuffled within
        each batch.
        """
        require_positive_int("batch_size", batch_size)
        require_seed(seed)
        rng = np.random.default_rng(derive_seed(self.config.seed, "tracr_stream", seed))
        lo, hi = self.config.min_length, self.config.max_length
        mean_length = (lo + hi) / 2
        buffer = np.zeros((0, self.d_in), dtype=np.float32)
        while True:
            while buffer.shape[0] < batch_size:
                n_seq = max(int(np.ceil((batch_size - buffer.shape[0]) / mean_length)) + 1,
                            _MIN_CHUNK_SEQUENCES)
                chunk = self._sample_hidden(rng, n_seq)
                buffer = np.concatenate([buffer, chunk[rng.permutation(chunk.shape[0])]])
            hidden, buffer = buffer[:batch_size], buffer[batch_size:]
            yield WorldSample(hidden, self._features(hidden))

    def _sample_hidden(self, rng: np.random.Generator, n_sequences: int) -> np.ndarray:
        lo, hi = self.config.min_length, self.config.max_length
        lengths = rng.integers(lo, hi + 1, size=n_sequences)
        ids = self._vocab_ids[rng.integers(0, len(self._vocab_ids), size=(n_sequences, hi))]
        parts = [self.activations(ids[lengths == length, :length])
                 for length in range(lo, hi + 1)]
        return np.concatenate(parts)

    def _support_activations(self) -> tuple[np.ndarray, np.ndarray]:
        """Activations of every input (or of a sample) and each row's sampling probability.

        Returns:
            acts float32 [n_tokens, d_model] and weights float64 [n_tokens] (summing to the
            mean sequence length: token-level weights under the sampler).
        """
        lo, hi = self.config.min_length, self.config.max_length
        n_vocab = len(self._vocab_ids)
        n_lengths = hi - lo + 1
        total = sum(n_vocab**length for length in range(lo, hi + 1))
        acts, weights = [], []
        if total <= _ENUMERATE_LIMIT:
            for length in range(lo, hi + 1):
                ids = np.array(list(itertools.product(range(n_vocab), repeat=length)))
                acts.append(self.activations(self._vocab_ids[ids]))
                weights.append(np.full(len(ids) * length, 1.0 / (n_lengths * n_vocab**length)))
        else:
            rng = np.random.default_rng(derive_seed(self.config.seed, "tracr_support"))
            chunk = self._sample_hidden(rng, _SUPPORT_SEQUENCES)
            acts.append(chunk)
            weights.append(np.full(len(chunk), 1.0 / _SUPPORT_SEQUENCES))
        return np.concatenate(acts), np.concatenate(weights)

    # ---- CE-Bench input ------------------------------------------------------------------

    def features_of_tokens(self, token_ids: np.ndarray) -> np.ndarray:
        """True features of inputs of one length, float32 [n_sequences * length, n_features]
        for token_ids int [n_sequences, length] (BOS excluded)."""
        return self.features_of(self.activations(token_ids))

    def contrastive_corpus(self, config):
        """CE-Bench's input on this world: inputs that differ only in the tokens at marked
        positions (`synthetic_saes.semisynthetic.program_corpus`)."""
        from synthetic_saes.semisynthetic.program_corpus import program_contrastive_corpus

        return program_contrastive_corpus(
            config, vocab=self.model.vocab, token_ids=self._vocab_ids,
            max_seq_len=self.config.max_length, feature_names=self.feature_names,
            activations=self.activations, features=self.features_of_tokens, d_in=self.d_in)

    def summary(self) -> dict[str, Any]:
        """What a report says about this world: its program, hook and sizes (its ground truth
        is the compiler's exact basis)."""
        return {"program": self.config.program, "hook": self.config.hook_name,
                "n_features": self.num_features, "d_in": self.d_in,
                "ground_truth": "the compiler's labelled residual basis (exact)"}

    def __repr__(self) -> str:
        return (f"TracrWorld(program={self.config.program!r}, hook={self.config.hook_name!r}, "
                f"n_features={self.num_features}, d_in={self.d_in})")
