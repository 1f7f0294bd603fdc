"""What a world whose ground truth is a supervised dictionary shares.

A `DictionaryWorld` reads activations off a real network and labels each position with the
values of known variables (token attributes of a language, a program's variables); its true
directions, bias and feature magnitudes are the supervised dictionary's
(`synthetic_saes.semisynthetic.dictionary`), fitted on the world's own activations. A subclass
provides `dictionary` (a `SupervisedDictionary`), `_names` (the feature names, in the
dictionary's order), `d_in`, `sample` and `stream` (`BaseWorld`); this class adds the
ground-truth properties and the supervised oracle every such world has.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import torch

from synthetic_saes.arrays import readonly
from synthetic_saes.base_world import BaseWorld
from synthetic_saes.rng import derive_seed
from synthetic_saes.threads import single_threaded_torch

__all__ = ["DictionaryWorld"]


class DictionaryWorld(BaseWorld):
    """A world whose ground truth is a supervised dictionary (see the module docstring)."""

    _names: tuple[str, ...]

    @property
    def num_features(self) -> int:
        return len(self._names)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self._names

    @cached_property
    def feature_directions(self) -> np.ndarray:
        return readonly(self.dictionary.directions, np.float32)

    @cached_property
    def bias(self) -> np.ndarray:
        return readonly(self.dictionary.bias, np.float32)

    @cached_property
    def mean_magnitudes(self) -> np.ndarray:
        return readonly(self.dictionary.norms, np.float32)

    def supervised_oracle(self, *, seed: int = 0, n_samples: int = 16_384, l2: float = 1e-4,
                          max_iter: int = 150):
        """The oracle SAE of this world: the supervised dictionary as decoder and, as encoder,
        one logistic detector per feature fitted to the true labels (multi-label logistic
        regression on x - bias over `n_samples` samples drawn with `seed`, `max_iter` L-BFGS
        steps, L2 `l2`).
        Latent k fires where its detector's logit is positive, with its logit rescaled so a
        typical firing gives the feature's magnitude. It knows the labels, as the supervised
        dictionaries of Makelov et al. do; `synthetic_saes.families.OracleBase` uses it in
        place of the encoder it would train.

        Returns:
            SAEParams (JumpReLU, threshold 0) with d_sae = n_features, latent k = feature k.
        """
        from synthetic_saes.sae_params import SAEParams

        sample = self.sample(n_samples, seed=derive_seed(seed, "supervised-oracle"))
        x = torch.from_numpy(sample.hidden.astype(np.float64) - self.bias)
        scale = x.std(0) + 1e-6
        z = x / scale
        labels = torch.from_numpy((sample.features > 0).astype(np.float64))
        weights = torch.zeros(z.shape[1], self.num_features, dtype=torch.float64,
                              requires_grad=True)
        offsets = torch.zeros(self.num_features, dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([weights, offsets], max_iter=max_iter,
                                      line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                z @ weights + offsets, labels, reduction="sum") / len(z)
            loss = loss + l2 * (weights ** 2).sum()
            loss.backward()
            return loss

        with single_threaded_torch():
            optimizer.step(closure)
        with torch.no_grad():
            w_enc = weights / scale[:, None]
            logits = x @ w_enc + offsets
            positive = torch.where(labels > 0, logits, torch.zeros_like(logits))
            typical = positive.sum(0) / labels.sum(0).clamp(min=1)
            # a barely detected feature (typical logit < 1) must not get a huge gain
            gain = torch.from_numpy(self.mean_magnitudes.astype(np.float64)) / typical.clamp(
                min=1.0)
        return SAEParams(W_enc=(w_enc * gain).numpy().astype(np.float32),
                         b_enc=(offsets * gain).detach().numpy().astype(np.float32),
                         W_dec=self.feature_directions, b_dec=self.bias,
                         architecture="jumprelu",
                         threshold=np.zeros(self.num_features, dtype=np.float32))

