"""What every ground-truth world offers: activations with their true features.

A world is anything whose activations x [d_in] come with the true feature activations
f [n_features] that made them, and a dictionary of true directions such that
x ~ bias + f @ feature_directions. Synthetic worlds (`synthetic_saes.worlds.World`) are exact
sums; semi-synthetic worlds (a transformer trained here, a Tracr-compiled model) read their
activations off a real network and their ground truth off supervised dictionaries or the
compiler's labelled basis, so the sum is exact only where the model is.

Subclasses implement `num_features`, `d_in`, `feature_directions`, `bias`, `mean_magnitudes`,
`hierarchy`, `stream` and `config`; sampling, firing rates and input checks come from here, so
every metric, trainer and SAE family works on any world. A world may also offer
`contrastive_corpus(config)` (its own contrastive stories, used by the audit in place of
`synthetic_saes.corpora.make_corpus`) and `feature_names`.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from synthetic_saes.hierarchy import FeatureHierarchy

__all__ = ["BaseWorld", "WorldSample"]


class WorldSample(NamedTuple):
    """Samples of a world.

    Attributes:
        hidden: activations, float32 [n_samples, d_in].
        features: true feature activations, float32 [n_samples, n_features] (>= 0).
    """

    hidden: np.ndarray
    features: np.ndarray


class BaseWorld(abc.ABC):
    """A source of activations with known true features (see the module docstring)."""

    config: Any
    hierarchy: FeatureHierarchy

    @property
    @abc.abstractmethod
    def num_features(self) -> int: ...

    @property
    @abc.abstractmethod
    def d_in(self) -> int: ...

    @property
    @abc.abstractmethod
    def feature_directions(self) -> np.ndarray:
        """Unit-norm true feature directions, float32 [n_features, d_in]."""

    @property
    @abc.abstractmethod
    def bias(self) -> np.ndarray:
        """The activation every sample starts from, float32 [d_in]."""

    @property
    @abc.abstractmethod
    def mean_magnitudes(self) -> np.ndarray:
        """Per-feature mean magnitude when firing, float32 [n_features]."""

    @abc.abstractmethod
    def stream(self, batch_size: int, *, seed: int) -> Iterator[WorldSample]:
        """An endless stream of batches; the same seed gives the same batches."""

    @property
    def feature_names(self) -> tuple[str, ...]:
        """A readable name per feature (by default its index)."""
        return tuple(f"feature {i}" for i in range(self.num_features))

    @property
    def firing_probabilities(self) -> np.ndarray:
        """Per-feature firing probabilities, float32 [n_features]; by default the observed
        `firing_rates()`."""
        return self.firing_rates().astype(np.float32)

    def firing_rates(self, n_samples: int = 16_384, *, seed: int = 0) -> np.ndarray:
        """How often each feature actually fires, estimated on n_samples samples, float64
        [n_features] (cached per (n_samples, seed))."""
        key = (n_samples, seed)
        cache = self.__dict__.setdefault("_rates", {})
        if key not in cache:
            counts = np.zeros(self.num_features, dtype=np.int64)
            done = 0
            for batch in self.stream(min(4096, n_samples), seed=seed):
                take = min(batch.features.shape[0], n_samples - done)
                counts += (batch.features[:take] > 0).sum(axis=0)
                done += take
                if done >= n_samples:
                    break
            rates = counts / n_samples
            rates.setflags(write=False)
            cache[key] = rates
        return cache[key]

    def check_d_in(self, d_in: int, what: str = "SAE") -> None:
        """Raise ValueError if something of input dimension `d_in` cannot act on this world."""
        if int(d_in) != self.d_in:
            raise ValueError(f"{what} has d_in={d_in} but the world has d_in={self.d_in}")

    def encode_features(self, features: np.ndarray) -> np.ndarray:
        """The activations the true dictionary gives for true feature activations:
        features @ (directions) + bias.

        Args:
            features: float32 [n, n_features].
        Returns:
            float32 [n, d_in].
        """
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != self.num_features:
            raise ValueError(
                f"features must have shape [n, {self.num_features}], got {features.shape}"
            )
        return features @ self.feature_directions + self.bias

    def sample(self, n_samples: int, *, seed: int, batch_size: int = 4096) -> WorldSample:
        """Draw `n_samples` activations with their true features; same seed, same samples."""
        return self._collect(n_samples, seed, batch_size, keep_features=True)

    def sample_hidden(self, n_samples: int, *, seed: int, batch_size: int = 4096) -> np.ndarray:
        """`sample(n_samples, seed=seed).hidden` without keeping the true features, which are
        n_features / d_in times larger (a training buffer of millions of samples):
        float32 [n_samples, d_in]."""
        return self._collect(n_samples, seed, batch_size, keep_features=False).hidden

    def _collect(self, n_samples: int, seed: int, batch_size: int, *,
                 keep_features: bool) -> WorldSample:
        if n_samples <= 0:
            raise ValueError(f"n_samples must be positive, got {n_samples}")
        hidden = np.empty((n_samples, self.d_in), dtype=np.float32)
        features = np.empty((n_samples if keep_features else 0, self.num_features),
                            dtype=np.float32)
        start = 0
        for batch in self.stream(min(batch_size, n_samples), seed=seed):
            stop = min(start + batch.hidden.shape[0], n_samples)
            hidden[start:stop] = batch.hidden[: stop - start]
            if keep_features:
                features[start:stop] = batch.features[: stop - start]
            start = stop
            if start == n_samples:
                break
        return WorldSample(hidden, features)

    def true_l0(self, n_samples: int = 8192, *, seed: int = 0) -> float:
        """Mean number of active true features per sample, estimated on n_samples."""
        return float((self.sample(n_samples, seed=seed).features > 0).sum(1).mean())
