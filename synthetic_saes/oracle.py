"""The oracle of a (world, seed): the true dictionary with the best encoder we can fit to it.

The oracle is a jumprelu SAE whose decoder is the true feature directions G [N, d_in] and b_dec
the world's bias (both frozen), and whose encoder W_enc [d_in, N], encoder bias b_enc [N] and
thresholds [N] are trained from W_enc = G^T, b_enc = 0, thresholds
theta_k = min(`init_threshold`, m_k / 2) (m_k the world's mean magnitude of feature k) by Adam
on the jumprelu loss

    loss = mean_batch ||x - x_hat||^2 + l0_coefficient * mean_batch sum_k H(pre_k - threshold_k)

(the JAX trainer's loss, `synthetic_saes.training.architectures.sae_loss`), over
`training_samples // batch_size` batches of the seed's own sample stream
(`derive_seed(seed, "oracle-data")`).

Why theta_k <= m_k / 2: the threshold's gradient only flows where a pre-activation lies within
`bandwidth` / 2 of it, so a threshold above every value a feature takes never moves and its
latent never fires. The preset worlds' magnitudes are >= 4 (theta_k = 2 = init_threshold, as
before); a Tracr world's are 0.17-1, where a threshold of 2 left the oracle silent (F1 0).

`fit_oracles` fits the oracles of several seeds together: one compiled step for all of them
(compiled once per process and config), gradients only for the trained parameters, and the
world sampled in a background thread, with torch on one thread, while the steps run. It computes
exactly what `train_population(world, ..., seeds=[seed], init_params=..., frozen=("W_dec",
"b_dec"))` computes for each seed on its own (tests compare the two).

References:
    Rajamanoharan et al., "Jumping ahead: JumpReLU SAEs", https://arxiv.org/abs/2407.14435
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from synthetic_saes.base_world import BaseWorld
from synthetic_saes.rng import derive_seed
from synthetic_saes.sae_params import SAEParams
from synthetic_saes.threads import single_threaded_torch
from synthetic_saes.validation import reject_unknown_keys, require_positive_int, require_seed

__all__ = ["OracleConfig", "OracleBase", "fit_oracles", "fit_missing_oracles"]

_LOG_EVERY = 10  # steps between finiteness checks of the loss, as the trainer logs


@dataclass(frozen=True, kw_only=True)
class OracleConfig:
    """How the oracle's encoder is fitted to the true dictionary (jumprelu, L0 penalty).

    Thresholds are in activation units (the preset worlds have magnitudes ~4-5); each starts at
    min(init_threshold, half the feature's mean magnitude).
    """

    training_samples: int = 100_000
    batch_size: int = 1024
    lr: float = 3e-3
    l0_coefficient: float = 1.0
    init_threshold: float = 2.0
    bandwidth: float = 1.0
    calibration_samples: int = 8192

    def __post_init__(self) -> None:
        for name in ("training_samples", "batch_size", "calibration_samples"):
            require_positive_int(name, getattr(self, name))
        for name in ("lr", "init_threshold", "bandwidth"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.l0_coefficient < 0:
            raise ValueError(f"l0_coefficient must be >= 0, got {self.l0_coefficient}")
        if self.training_samples < self.batch_size:
            raise ValueError(
                f"training_samples ({self.training_samples}) must be at least one batch "
                f"({self.batch_size})"
            )

    @property
    def steps(self) -> int:
        """Adam steps of the fit: training_samples // batch_size."""
        return self.training_samples // self.batch_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OracleConfig:
        reject_unknown_keys(cls, data)
        return cls(**data)

    def training_config(self, num_features: int):
        """The `TrainingConfig` of the same fit (what `train_population` would be given)."""
        from synthetic_saes.training import TrainingConfig

        return TrainingConfig(
            architecture="jumprelu",
            k=None,
            d_sae=num_features,
            training_samples=self.training_samples,
            batch_size=self.batch_size,
            lr=self.lr,
            l0_coefficient=self.l0_coefficient,
            jumprelu_init_threshold=self.init_threshold,
            jumprelu_bandwidth=self.bandwidth,
            n_checkpoints=1,
        )


class OracleBase:
    """The oracle of one (world, seed) and calibration samples; shared by derived members.

    Everything is computed on first use and kept: the oracle (an encoder fit, ~100k world
    samples), the calibration samples, and the oracle's firing rates and mean silent
    pre-activations on them, which several members need. `fit_oracles` fills the oracles of
    several bases at once.
    """

    def __init__(self, world: BaseWorld, *, seed: int = 0, config: OracleConfig | None = None,
                 progress: bool = False):
        require_seed(seed)
        self.world = world
        self.seed = seed
        self.config = config or OracleConfig()
        self.progress = progress

    @property
    def has_oracle(self) -> bool:
        """Whether the oracle is already computed (or was given)."""
        return "oracle" in self.__dict__

    @cached_property
    def oracle(self) -> SAEParams:
        world = self.world
        if hasattr(world, "supervised_oracle"):  # a world that knows its labels fits its own
            return world.supervised_oracle(seed=self.seed)
        return fit_oracles(world, [self.seed], self.config, progress=self.progress)[self.seed]

    @cached_property
    def calibration(self) -> tuple[np.ndarray, np.ndarray]:
        """(x [n, d_in], feature firing bool [n, n_features]) on their own sample stream."""
        with single_threaded_torch():  # the same samples, faster on busy cores (see below)
            sample = self.world.sample(
                self.config.calibration_samples, seed=derive_seed(self.seed, "calibration")
            )
        return sample.hidden, sample.features > 0

    @cached_property
    def oracle_firing_rates(self) -> np.ndarray:
        """`firing_rates(self.oracle)`, computed once, [N]."""
        rates = self.firing_rates(self.oracle)
        rates.setflags(write=False)
        return rates

    @cached_property
    def oracle_silent_pre_activations(self) -> np.ndarray:
        """Mean pre-activation of each oracle latent over the calibration samples on which its
        true feature is silent (0 if it never is), [N]."""
        x, fires = self.calibration
        pre = self.oracle.pre_activations(x)
        silent_mean = np.where(fires, 0.0, pre).sum(0) / np.maximum((~fires).sum(0), 1)
        silent_mean.setflags(write=False)
        return silent_mean

    def rng(self, family: str) -> np.random.Generator:
        return np.random.default_rng(derive_seed(self.seed, "families", family))

    def firing_rates(self, params: SAEParams) -> np.ndarray:
        """Fraction of calibration samples on which each latent fires, [d_sae]."""
        x, _ = self.calibration
        return (params.encode(x) != 0).mean(axis=0)

    def rate_matched_thresholds(self, params: SAEParams, rates: np.ndarray,
                                latents: np.ndarray | None = None) -> np.ndarray:
        """Thresholds at which latents of `params` fire on a fraction `rates` [d_sae] of the
        calibration samples: the (1 - rate) quantile of each latent's pre-activations
        (linear interpolation between order statistics).

        Args:
            params: the SAE.
            rates: target firing rate of every latent, [d_sae].
            latents: the latents whose thresholds are wanted (indices); all by default.
        Returns:
            float32 [d_sae] when `latents` is None, else [len(latents)], in `latents` order.
        """
        rates = np.asarray(rates, dtype=np.float64)
        if rates.shape != (params.d_sae,):
            raise ValueError(f"rates must have shape ({params.d_sae},), got {rates.shape}")
        x, _ = self.calibration
        pre = params.pre_activations(x)
        columns = np.arange(pre.shape[1]) if latents is None else np.asarray(latents)
        n = pre.shape[0]
        rates = rates[columns]
        position = np.clip(1.0 - rates, 0.0, 1.0) * (n - 1)
        lo = np.floor(position).astype(np.int64)
        hi = np.minimum(lo + 1, n - 1)
        weight = (position - lo).astype(np.float32)
        below = np.empty(len(columns), dtype=np.float32)
        above = np.empty(len(columns), dtype=np.float32)
        # Two order statistics per latent: partitioning finds them in O(n) where sorting took
        # O(n log n) (the same values: an order statistic is an element, not a computation).
        for i, (column, j, k) in enumerate(zip(pre.T[columns], lo, hi)):
            part = np.partition(column, (j, k))
            below[i], above[i] = part[j], part[k]
        return (1 - weight) * below + weight * above

    def latent_f1(self, params: SAEParams, targets: np.ndarray) -> np.ndarray:
        """F1 of each latent as a detector of its target feature on calibration samples."""
        x, fires = self.calibration
        fired = params.encode(x) != 0
        truth = fires[:, targets]
        tp = (fired & truth).sum(axis=0)
        denom = fired.sum(axis=0) + truth.sum(axis=0)
        return np.divide(2.0 * tp, denom, out=np.zeros(len(targets)), where=denom > 0)


# ---- the encoder fit ----------------------------------------------------------------------


@lru_cache(maxsize=8)
def _fit_step(config: OracleConfig, num_features: int):
    """The jitted step of the fit, compiled once per config and world width.

    step(trainable, opt_state, frozen, x) -> (trainable, opt_state, loss [S]) with
    trainable = {W_enc [S, d_in, N], b_enc [S, N], log_threshold [S, N]}, frozen =
    {W_dec [N, d_in], b_dec [d_in]} (shared), x [S, batch, d_in]: the step of train_population
    (vmapped over a seed axis, Adam on the trained parameters) without the frozen ones'
    gradients. `fit_oracles` calls it with S = 1 for each seed.
    """
    import jax
    import optax

    from synthetic_saes.training.architectures import sae_loss

    training = config.training_config(num_features)
    optimizer = optax.adam(training.lr, b1=training.adam_beta1, b2=training.adam_beta2)

    def seed_loss(trainable, frozen, x):
        return sae_loss({**trainable, **frozen}, x, training)[0]

    def step(trainable, opt_state, frozen, x):
        loss, grads = jax.vmap(jax.value_and_grad(seed_loss), in_axes=(0, None, 0))(
            trainable, frozen, x)
        updates, opt_state = optimizer.update(grads, opt_state, trainable)
        return optax.apply_updates(trainable, updates), opt_state, loss

    return jax.jit(step, donate_argnums=(0, 1)), optimizer


def _seed_batches(world: BaseWorld, seeds: Sequence[int], batch_size: int
                  ) -> Iterator[np.ndarray]:
    """Endless stacked batches [S, batch, d_in]: seed s's batch from its own oracle stream."""
    streams = [world.stream(batch_size, seed=derive_seed(s, "oracle-data")) for s in seeds]
    while True:
        yield np.stack([np.asarray(next(stream).hidden, dtype=np.float32) for stream in streams])


def fit_oracles(world: BaseWorld, seeds: Sequence[int], config: OracleConfig | None = None, *,
                progress: bool = False) -> dict[int, SAEParams]:
    """Fit the oracle encoders of several seeds at once (see the module docstring).

    Args:
        world: the world (its true directions become the frozen decoder).
        seeds: distinct non-negative seeds; seed s trains on its own stream
            `derive_seed(s, "oracle-data")`.
        config: the fit (default `OracleConfig()`).
        progress: show a bar over the steps (samples per second and ETA).

    Returns:
        seed -> the oracle (jumprelu SAEParams, d_sae = n_features, latent k = feature k).

    Raises:
        ValueError: on repeated or negative seeds.
        FloatingPointError: if a seed's loss stops being finite.

    Examples:
        >>> from synthetic_saes.worlds import build_world
        >>> world = build_world("tiny")
        >>> oracles = fit_oracles(world, [0, 1], OracleConfig(training_samples=2048))
        >>> sorted(oracles), oracles[0].d_sae, oracles[0].architecture
        ([0, 1], 64, 'jumprelu')
        >>> bool((oracles[0].W_dec == world.feature_directions).all())
        True
    """
    import jax
    import jax.numpy as jnp

    from synthetic_saes.training.trainer import _prefetched

    config = config or OracleConfig()
    seeds = tuple(require_seed(s) for s in seeds)
    if not seeds:
        raise ValueError("seeds must not be empty")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    n_seeds, N = len(seeds), world.num_features
    G = np.array(world.feature_directions, dtype=np.float32)
    step, optimizer = _fit_step(config, N)
    # The initial values train_population gives every seed: W_enc = G^T, b_enc = 0,
    # log thresholds = log(min(init_threshold, m_k / 2)) (float64 then cast, as it does).
    start = np.minimum(config.init_threshold,
                       np.asarray(world.mean_magnitudes, dtype=np.float64) / 2)
    one = {
        "W_enc": jnp.asarray(G.T),
        "b_enc": jnp.zeros(N, jnp.float32),
        "log_threshold": jnp.asarray(np.log(start), jnp.float32),
    }
    # One state per seed, each stepped by the same compiled step with a seed axis of 1: a
    # seed's oracle is then bit for bit what train_population gives it alone, whichever seeds
    # are fitted beside it (vmapping the seeds together saves ~1/3 of the step's CPU time but
    # moves thresholds by ~1 ulp, differently for each set of companions).
    states = []
    for _ in seeds:  # separate buffers: the step donates (overwrites) its inputs
        trainable = {k: jnp.array(v[None]) for k, v in one.items()}
        states.append((trainable, optimizer.init(trainable)))
    frozen = {"W_dec": jnp.asarray(G), "b_dec": jnp.asarray(world.bias, dtype=jnp.float32)}
    total = config.steps
    plural = "s" if n_seeds > 1 else ""
    bar = tqdm(total=total * config.batch_size * n_seeds, unit="sample", unit_scale=True,
               desc=f"oracle{plural} of seed{plural} {', '.join(map(str, seeds))}: fit the "
                    "encoder to the true features",
               disable=not progress, smoothing=0.1)
    # Sampling runs in a background thread beside the JAX step, with torch on one thread:
    # the same samples (checked bit for bit), and on busy cores torch's two-thread pool made
    # sampling ~5x slower (cpu world, 2 cores).
    with single_threaded_torch():
        batches = _prefetched(_seed_batches(world, seeds, config.batch_size))
        try:
            for index in range(1, total + 1):
                x = next(batches)
                losses = []
                for i, (trainable, opt_state) in enumerate(states):
                    trainable, opt_state, loss = step(trainable, opt_state, frozen,
                                                      jnp.asarray(x[i:i + 1]))
                    states[i] = (trainable, opt_state)
                    losses.append(loss)
                if index % _LOG_EVERY == 0 or index == total:
                    values = np.concatenate([np.asarray(jax.device_get(v)) for v in losses])
                    if not np.isfinite(values).all():
                        raise FloatingPointError(
                            f"non-finite oracle loss at step {index}: {values}")
                    bar.set_postfix(loss=f"{float(values.mean()):.3g}")
                bar.update(config.batch_size * n_seeds)
        finally:
            bar.close()
            batches.close()
    fitted = [{k: np.asarray(jax.device_get(v), dtype=np.float32)[0] for k, v in t.items()}
              for t, _ in states]
    bias = np.asarray(world.bias, dtype=np.float32)
    return {
        seed: SAEParams(
            W_enc=fitted[i]["W_enc"],
            b_enc=fitted[i]["b_enc"],
            W_dec=G,
            b_dec=bias,
            architecture="jumprelu",
            threshold=np.exp(fitted[i]["log_threshold"]).astype(np.float32),
            apply_b_dec_to_input=True,
        )
        for i, seed in enumerate(seeds)
    }


def fit_missing_oracles(bases: Sequence[OracleBase], *, progress: bool = False) -> None:
    """Fit, together, the oracles `bases` do not hold yet (one `fit_oracles` call per world and
    config; worlds with their own supervised oracle fit it themselves on first use)."""
    groups: dict[tuple[int, OracleConfig], list[OracleBase]] = {}
    for base in bases:
        if not base.has_oracle and not hasattr(base.world, "supervised_oracle"):
            groups.setdefault((id(base.world), base.config), []).append(base)
    for group in groups.values():
        seeds = list(dict.fromkeys(base.seed for base in group))
        fitted = fit_oracles(group[0].world, seeds, group[0].config, progress=progress)
        for base in group:
            base.__dict__["oracle"] = fitted[base.seed]  # fills the cached property
