"""The previous, slow path to the oracle and its members, kept as the baseline.

`BaselineOracleBase` is an `OracleBase` computed as the code before `fit_oracles` did: the
oracle trained by `train_population` (one seed per call, a fresh compile each time, gradients
of the frozen decoder computed and thrown away, torch sampling on its default threads), the
oracle's firing rates and silent pre-activations recomputed for every member, and rate-matched
thresholds from a full sort of every latent's pre-activations. The family builders run
unchanged on it, so tests check the fast path against it bit for bit and benchmarks time both
in the same run.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from synthetic_saes.oracle import OracleBase
from synthetic_saes.rng import derive_seed
from synthetic_saes.sae_params import SAEParams

__all__ = ["BaselineOracleBase"]


class BaselineOracleBase(OracleBase):
    """`OracleBase` as computed before `fit_oracles` (see the module docstring)."""

    @property
    def has_oracle(self) -> bool:
        return True  # make_family must not fit it the fast way: `oracle` trains it below

    @cached_property
    def oracle(self) -> SAEParams:
        from synthetic_saes.training import train_population

        world = self.world
        if hasattr(world, "supervised_oracle"):
            return world.supervised_oracle(seed=self.seed)
        G = np.array(world.feature_directions)
        population = train_population(
            world,
            self.config.training_config(world.num_features),
            seeds=[self.seed],
            data_seed=derive_seed(self.seed, "oracle-data"),
            progress=self.progress,
            init_params={"W_dec": G, "W_enc": G.T, "b_dec": world.bias},
            frozen=("W_dec", "b_dec"),
            desc=f"oracle of seed {self.seed} (baseline)",
        )
        return population.params(0)

    @cached_property
    def calibration(self) -> tuple[np.ndarray, np.ndarray]:
        sample = self.world.sample(
            self.config.calibration_samples, seed=derive_seed(self.seed, "calibration")
        )
        return sample.hidden, sample.features > 0

    @property
    def oracle_firing_rates(self) -> np.ndarray:
        return self.firing_rates(self.oracle)

    @property
    def oracle_silent_pre_activations(self) -> np.ndarray:
        x, fires = self.calibration
        pre = self.oracle.pre_activations(x)
        return np.where(fires, 0.0, pre).sum(0) / np.maximum((~fires).sum(0), 1)

    def rate_matched_thresholds(self, params: SAEParams, rates: np.ndarray,
                                latents: np.ndarray | None = None) -> np.ndarray:
        x, _ = self.calibration
        ordered = np.sort(params.pre_activations(x), axis=0)
        n = ordered.shape[0]
        position = np.clip(1.0 - np.asarray(rates, dtype=np.float64), 0.0, 1.0) * (n - 1)
        lo = np.floor(position).astype(np.int64)
        hi = np.minimum(lo + 1, n - 1)
        columns = np.arange(ordered.shape[1])
        weight = (position - lo).astype(np.float32)
        thresholds = (1 - weight) * ordered[lo, columns] + weight * ordered[hi, columns]
        return thresholds if latents is None else thresholds[latents]
