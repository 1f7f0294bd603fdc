"""SAEs of known, graded quality built from a world's ground truth.

Everything starts from the *oracle* of a (world, seed): a jumprelu SAE whose decoder is the
true feature directions and b_dec the world's bias (both frozen), and whose encoder, encoder
bias and thresholds are trained on the world's samples (the JAX trainer, L0 penalty) starting
from the transposed true directions: the best encoder we can fit to the true dictionary.

Degradation families, each derived from the oracle of its seed; the knob's first default
value reproduces the oracle and quality falls as the knob grows:
    decoder_noise  noise s: decoder rows normalize(g_k + s r_k / sqrt(d_in)), r_k ~ N(0, I),
                   and each encoder column tilted by the same noise (norm kept):
                   |cos(d_k, g_k)| ~ 1 / sqrt(1 + s^2).
    dropped        fraction p: round(p N) true features lose their latent to a random unit
                   direction (encoder of the oracle column's norm) that fires at the dropped
                   latent's rate.
    merged         fraction q of the mutually exclusive parents are absorbed into their
                   children: child decoders become normalize(g_c + g_P); the parent's
                   pre-activation loses sum_c (m_P / m_c) (pre_c - mean silent pre_c) (m = mean
                   magnitude), so it is silent when a child fires.
    split          fraction s of the features are split across two latents: encoders
                   e_k +/- 2 |e_k| r_k, decoders normalize(g_k +/- 0.3 r_k), r_k a random unit
                   direction orthogonal to g_k; each half's threshold makes it fire at half
                   the oracle latent's rate (L0 unchanged).
    width          width w: the oracle's latents of the w most frequently firing true
                   features (observed rates; equal per-latent quality, growing coverage; for
                   width confounds).
Diagnostic controls:
    oracle             the oracle itself.
    permuted_decoder   the oracle with its decoder rows randomly permuted: MCC stays 1 though
                       no latent decodes what it detects.
    random_init        random unit decoder rows, tied encoder, relu, zero biases (untrained).
    random_l0_matched  random unit directions firing at the oracle latents' rates (same L0).
    best_k             the oracle keeping only its k latents of highest F1 (on calibration
                       samples); the others never fire (threshold +inf).

Within a seed, knob values share their random draws and chosen subsets are nested, so
quality falls monotonically along each knob for each seed. Same seed, same SAEs, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from synthetic_saes.rng import derive_seed
from synthetic_saes.sae_params import SAEParams
from synthetic_saes.validation import require_positive_int, require_seed
from synthetic_saes.worlds import World

__all__ = [
    "ConstructedSAE",
    "OracleConfig",
    "OracleBase",
    "FamilySpec",
    "FAMILIES",
    "CONTROLS",
    "control",
    "default_best_k",
    "make_family",
    "make_controls",
    "decoder_noise",
    "dropped",
    "merged",
    "split",
    "width",
    "permuted_decoder",
    "random_init",
    "random_l0_matched",
    "best_k",
]

_SPLIT_ENCODER_TILT = 2.0
_SPLIT_DECODER_TILT = 0.3


@dataclass(frozen=True, eq=False)
class ConstructedSAE:
    """A constructed SAE and how it was made.

    Attributes:
        name: unique, readable id, e.g. "decoder_noise/noise=0.5/seed=0".
        family: family or control name.
        knobs: the knob values that made it, e.g. {"noise": 0.5}.
        seed: the seed of its oracle and random draws.
        params: the weights.
    """

    name: str
    family: str
    knobs: dict[str, float | int]
    seed: int
    params: SAEParams

    def to_sae_lens(self, *, model_name: str = "synthetic", hook_name: str = "hidden"):
        return self.params.to_sae_lens(
            model_name=model_name, hook_name=hook_name, metadata=self.metadata()
        )

    def save(self, path: str | Path, *, model_name: str = "synthetic", hook_name: str = "hidden"):
        """Write a sae_lens directory; family, knobs and seed go into cfg.json's metadata."""
        return self.params.save(
            path, model_name=model_name, hook_name=hook_name, metadata=self.metadata()
        )

    def metadata(self) -> dict[str, Any]:
        return {
            "groundtruth_family": self.family,
            "groundtruth_knobs": dict(self.knobs),
            "groundtruth_seed": self.seed,
            "groundtruth_name": self.name,
        }


@dataclass(frozen=True, kw_only=True)
class OracleConfig:
    """How the oracle's encoder is fitted to the true dictionary (jumprelu, L0 penalty).

    Thresholds are in activation units (the preset worlds have magnitudes ~4-5).
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class OracleBase:
    """The oracle of one (world, seed) and calibration samples; shared by derived members.

    Both are computed on first use: training the oracle takes ~15 s on the cpu world.
    """

    def __init__(self, world: World, *, seed: int = 0, config: OracleConfig | None = None,
                 progress: bool = False):
        require_seed(seed)
        self.world = world
        self.seed = seed
        self.config = config or OracleConfig()
        self.progress = progress

    @cached_property
    def oracle(self) -> SAEParams:
        from synthetic_saes.training import TrainingConfig, train_population

        world = self.world
        if hasattr(world, "supervised_oracle"):  # a world that knows its labels fits its own
            return world.supervised_oracle(seed=self.seed)
        cfg = self.config
        training = TrainingConfig(
            architecture="jumprelu",
            k=None,
            d_sae=world.num_features,
            training_samples=cfg.training_samples,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            l0_coefficient=cfg.l0_coefficient,
            jumprelu_init_threshold=cfg.init_threshold,
            jumprelu_bandwidth=cfg.bandwidth,
            n_checkpoints=1,
        )
        G = np.array(world.feature_directions)
        population = train_population(
            world,
            training,
            seeds=[self.seed],
            data_seed=derive_seed(self.seed, "oracle-data"),
            progress=self.progress,
            init_params={"W_dec": G, "W_enc": G.T, "b_dec": world.bias},
            frozen=("W_dec", "b_dec"),
            desc=f"oracle of seed {self.seed}: fit the encoder to the true features",
        )
        return population.params(0)

    @cached_property
    def calibration(self) -> tuple[np.ndarray, np.ndarray]:
        """(x [n, d_in], feature firing bool [n, n_features]) on their own sample stream."""
        sample = self.world.sample(
            self.config.calibration_samples, seed=derive_seed(self.seed, "calibration")
        )
        return sample.hidden, sample.features > 0

    def rng(self, family: str) -> np.random.Generator:
        return np.random.default_rng(derive_seed(self.seed, "families", family))

    def firing_rates(self, params: SAEParams) -> np.ndarray:
        """Fraction of calibration samples on which each latent fires, [d_sae]."""
        x, _ = self.calibration
        return (params.encode(x) != 0).mean(axis=0)

    def rate_matched_thresholds(self, params: SAEParams, rates: np.ndarray) -> np.ndarray:
        """Thresholds at which each latent of `params` fires on a fraction `rates` [d_sae] of
        the calibration samples."""
        x, _ = self.calibration
        ordered = np.sort(params.pre_activations(x), axis=0)
        n = ordered.shape[0]
        position = np.clip(1.0 - np.asarray(rates, dtype=np.float64), 0.0, 1.0) * (n - 1)
        lo = np.floor(position).astype(np.int64)
        hi = np.minimum(lo + 1, n - 1)
        columns = np.arange(ordered.shape[1])
        weight = (position - lo).astype(np.float32)
        return (1 - weight) * ordered[lo, columns] + weight * ordered[hi, columns]

    def latent_f1(self, params: SAEParams, targets: np.ndarray) -> np.ndarray:
        """F1 of each latent as a detector of its target feature on calibration samples."""
        x, fires = self.calibration
        fired = params.encode(x) != 0
        truth = fires[:, targets]
        tp = (fired & truth).sum(axis=0)
        denom = fired.sum(axis=0) + truth.sum(axis=0)
        return np.divide(2.0 * tp, denom, out=np.zeros(len(targets)), where=denom > 0)

    def member(self, family: str, knobs: dict, params: SAEParams) -> ConstructedSAE:
        knob_text = "/".join(f"{k}={_fmt(v)}" for k, v in knobs.items())
        name = "/".join(p for p in (family, knob_text, f"seed={self.seed}") if p)
        return ConstructedSAE(name=name, family=family, knobs=dict(knobs), seed=self.seed,
                              params=params)


def _fmt(value: float | int) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.clip(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-8, None)
    return (matrix / norms).astype(np.float32)


def _check_fraction(name: str, value: float) -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return float(value)


# ---- the degradation families ---------------------------------------------------------------


def decoder_noise(base: OracleBase, noise: float) -> ConstructedSAE:
    """Decoder rows and encoder directions tilted by Gaussian noise of size `noise`."""
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    oracle, world = base.oracle, base.world
    if noise == 0:
        return base.member("decoder_noise", {"noise": 0.0}, oracle)
    r = base.rng("decoder_noise").standard_normal(world.feature_directions.shape)
    tilt = (noise / np.sqrt(world.d_in)) * r.astype(np.float32)
    decoder = _unit_rows(oracle.W_dec + tilt)
    enc = oracle.W_enc.T
    enc_norm = np.linalg.norm(enc, axis=1, keepdims=True)
    encoder = (_unit_rows(enc / np.clip(enc_norm, 1e-8, None) + tilt) * enc_norm).T
    params = oracle.replace(W_dec=decoder, W_enc=encoder)
    return base.member("decoder_noise", {"noise": float(noise)}, params)


def dropped(base: OracleBase, fraction: float) -> ConstructedSAE:
    """round(fraction * N) latents replaced by random directions firing at the same rates."""
    fraction = _check_fraction("fraction", fraction)
    oracle, world = base.oracle, base.world
    rng = base.rng("dropped")
    order = rng.permutation(world.num_features)
    random_dirs = _unit_rows(rng.standard_normal(world.feature_directions.shape))
    lost = order[: int(round(fraction * world.num_features))]
    if lost.size == 0:
        return base.member("dropped", {"fraction": fraction}, oracle)
    decoder = np.array(oracle.W_dec)
    encoder = np.array(oracle.W_enc)
    decoder[lost] = random_dirs[lost]
    encoder[:, lost] = random_dirs[lost].T * np.linalg.norm(oracle.W_enc[:, lost], axis=0)
    b_enc = np.array(oracle.b_enc)
    b_enc[lost] = 0.0
    rates = base.firing_rates(oracle)
    draft = oracle.replace(W_dec=decoder, W_enc=encoder, b_enc=b_enc)
    threshold = np.array(oracle.threshold)
    threshold[lost] = base.rate_matched_thresholds(draft, rates)[lost]
    return base.member("dropped", {"fraction": fraction}, draft.replace(threshold=threshold))


def merged(base: OracleBase, fraction: float) -> ConstructedSAE:
    """A fraction of the mutually exclusive parents absorbed into their children."""
    fraction = _check_fraction("fraction", fraction)
    oracle, world = base.oracle, base.world
    parents = world.hierarchy.exclusive_parents()
    if not parents:
        raise ValueError("the world has no mutually exclusive parents to merge")
    order = base.rng("merged").permutation(len(parents))
    chosen = [parents[i] for i in order[: int(round(fraction * len(parents)))]]
    if not chosen:
        return base.member("merged", {"fraction": fraction}, oracle)
    G, m = world.feature_directions, world.mean_magnitudes
    decoder = np.array(oracle.W_dec)
    encoder = np.array(oracle.W_enc)
    b_enc = np.array(oracle.b_enc)
    x, fires = base.calibration
    pre = oracle.pre_activations(x)
    silent_mean = np.where(fires, 0.0, pre).sum(0) / np.maximum((~fires).sum(0), 1)
    for parent in chosen:
        kids = list(world.hierarchy.children[parent])
        ratio = m[parent] / m[kids]
        decoder[kids] = decoder[kids] + G[parent]
        # Subtract the children's pre-activations, centred on their value when silent, so the
        # parent's pre-activation drops by about a_P exactly when a child fires.
        encoder[:, parent] -= (oracle.W_enc[:, kids] * ratio).sum(axis=1)
        b_enc[parent] -= float(((oracle.b_enc[kids] - silent_mean[kids]) * ratio).sum())
    params = oracle.replace(W_dec=_unit_rows(decoder), W_enc=encoder, b_enc=b_enc)
    return base.member("merged", {"fraction": fraction}, params)


def split(base: OracleBase, fraction: float) -> ConstructedSAE:
    """A fraction of the features split across two latents each (width N + #split)."""
    fraction = _check_fraction("fraction", fraction)
    oracle, world = base.oracle, base.world
    rng = base.rng("split")
    order = rng.permutation(world.num_features)
    G = world.feature_directions
    r = rng.standard_normal(G.shape).astype(np.float32)
    r = _unit_rows(r - (r * G).sum(axis=1, keepdims=True) * G)  # orthogonal to g_k
    chosen = np.sort(order[: int(round(fraction * world.num_features))])
    if chosen.size == 0:
        return base.member("split", {"fraction": fraction}, oracle)
    enc = np.array(oracle.W_enc.T)  # [N, d_in]
    enc_norm = np.linalg.norm(enc, axis=1, keepdims=True)
    tilt_enc = _SPLIT_ENCODER_TILT * enc_norm[chosen] * r[chosen]
    tilt_dec = _SPLIT_DECODER_TILT * r[chosen]
    extra_enc = enc[chosen] - tilt_enc
    extra_dec = oracle.W_dec[chosen] - tilt_dec
    enc[chosen] += tilt_enc
    decoder = np.array(oracle.W_dec)
    decoder[chosen] += tilt_dec
    draft = SAEParams(
        W_enc=np.concatenate([enc, extra_enc]).T,
        b_enc=np.concatenate([oracle.b_enc, oracle.b_enc[chosen]]),
        W_dec=_unit_rows(np.concatenate([decoder, extra_dec])),
        b_dec=oracle.b_dec,
        architecture="jumprelu",
        threshold=np.concatenate([oracle.threshold, oracle.threshold[chosen]]),
    )
    # Each half fires at half the oracle latent's rate, so L0 stays the oracle's.
    rates = base.firing_rates(oracle)
    halves = np.concatenate([chosen, np.arange(world.num_features, draft.d_sae)])
    half_rates = np.concatenate([rates, rates[chosen]]) / 2.0
    threshold = np.array(draft.threshold)
    threshold[halves] = base.rate_matched_thresholds(draft, half_rates)[halves]
    params = draft.replace(threshold=threshold)
    return base.member("split", {"fraction": fraction}, params)


def width(base: OracleBase, width: int) -> ConstructedSAE:
    """The oracle's latents of the `width` most frequent true features."""
    width = int(width)
    oracle, world = base.oracle, base.world
    if not 1 <= width <= world.num_features:
        raise ValueError(f"width must be in [1, {world.num_features}], got {width}")
    keep = np.sort(np.argsort(-world.firing_rates(), kind="stable")[:width])
    params = oracle.replace(
        W_enc=oracle.W_enc[:, keep], b_enc=oracle.b_enc[keep], W_dec=oracle.W_dec[keep],
        threshold=oracle.threshold[keep],
    )
    return base.member("width", {"width": width}, params)


# ---- diagnostic controls ------------------------------------------------------------------


def oracle(base: OracleBase) -> ConstructedSAE:
    return base.member("oracle", {}, base.oracle)


def permuted_decoder(base: OracleBase) -> ConstructedSAE:
    """The oracle with its decoder rows permuted."""
    perm = base.rng("permuted_decoder").permutation(base.world.num_features)
    return base.member("permuted_decoder", {}, base.oracle.replace(W_dec=base.oracle.W_dec[perm]))


def random_init(base: OracleBase) -> ConstructedSAE:
    """Random unit decoder rows, tied encoder, relu, zero biases: an untrained SAE."""
    world = base.world
    decoder = _unit_rows(base.rng("random_init").standard_normal(
        (world.num_features, world.d_in)))
    params = SAEParams(
        W_enc=decoder.T,
        b_enc=np.zeros(world.num_features, dtype=np.float32),
        W_dec=decoder,
        b_dec=np.zeros(world.d_in, dtype=np.float32),
        architecture="relu",
    )
    return base.member("random_init", {}, params)


def random_l0_matched(base: OracleBase) -> ConstructedSAE:
    """Random unit directions with thresholds firing at the oracle latents' rates."""
    world, orc = base.world, base.oracle
    directions = _unit_rows(base.rng("random_l0_matched").standard_normal(
        (world.num_features, world.d_in)))
    draft = orc.replace(
        W_dec=directions,
        W_enc=directions.T * np.linalg.norm(orc.W_enc, axis=0),
        b_enc=np.zeros(world.num_features, dtype=np.float32),
    )
    threshold = base.rate_matched_thresholds(draft, base.firing_rates(orc))
    return base.member("random_l0_matched", {}, draft.replace(threshold=threshold))


def best_k(base: OracleBase, k: int) -> ConstructedSAE:
    """The oracle with only its k latents of highest F1 able to fire."""
    world, orc = base.world, base.oracle
    k = int(k)
    if not 1 <= k <= world.num_features:
        raise ValueError(f"k must be in [1, {world.num_features}], got {k}")
    f1 = base.latent_f1(orc, np.arange(world.num_features))
    keep = np.argsort(-f1, kind="stable")[:k]
    threshold = np.full(world.num_features, np.inf, dtype=np.float32)
    threshold[keep] = orc.threshold[keep]
    return base.member("best_k", {"k": k}, orc.replace(threshold=threshold))


# ---- registries ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FamilySpec:
    """A degradation family: its knob, default knob values (oracle first), its builder."""

    knob: str
    default_values: Callable[[World], tuple[float | int, ...]]
    build: Callable[[OracleBase, Any], ConstructedSAE]
    description: str


FAMILIES: dict[str, FamilySpec] = {
    "decoder_noise": FamilySpec(
        "noise", lambda w: (0.0, 0.25, 0.5, 1.0, 2.0), decoder_noise,
        "decoder rows and encoder directions tilted by Gaussian noise"),
    "dropped": FamilySpec(
        "fraction", lambda w: (0.0, 0.1, 0.25, 0.5, 0.75), dropped,
        "true features whose latent is replaced by a random one"),
    "merged": FamilySpec(
        "fraction", lambda w: (0.0, 0.25, 0.5, 0.75, 1.0), merged,
        "parents absorbed into their mutually exclusive children"),
    "split": FamilySpec(
        "fraction", lambda w: (0.0, 0.1, 0.25, 0.5, 1.0), split,
        "features split across two latents"),
    "width": FamilySpec(
        "width",
        lambda w: tuple(sorted({max(1, w.num_features // d) for d in (8, 4, 2, 1)}, reverse=True)),
        width, "the oracle restricted to its most frequent features"),
}

CONTROLS: tuple[str, ...] = (
    "oracle", "permuted_decoder", "random_init", "random_l0_matched", "best_k",
)
"""The diagnostic controls, in the order every listing of them uses."""


def default_best_k(world: World) -> int:
    """best_k's default k: N / 16 of the world's N true features (at least 1)."""
    return max(1, world.num_features // 16)


def control(base: OracleBase, name: str, *, k: int | None = None) -> ConstructedSAE:
    """The control `name` of `base`'s seed; best_k keeps `k` latents (`default_best_k`)."""
    if name not in CONTROLS:
        raise ValueError(f"unknown control {name!r}; known: {list(CONTROLS)}")
    if name == "best_k":
        return best_k(base, default_best_k(base.world) if k is None else k)
    builders = {"oracle": oracle, "permuted_decoder": permuted_decoder,
                "random_init": random_init, "random_l0_matched": random_l0_matched}
    return builders[name](base)


def make_family(world: World, family: str, values: Sequence[float | int] | None = None, *,
                seeds: Sequence[int] = (0,), oracle_config: OracleConfig | None = None,
                bases: dict[int, OracleBase] | None = None,
                progress: bool = False) -> list[ConstructedSAE]:
    """Members of `family` for every seed and knob value (one oracle per seed).

    `bases` (seed -> OracleBase) lets several families share their oracles; `progress` shows
    the oracles' training and a bar over the members.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown SAE family {family!r}; known families: {sorted(FAMILIES)}")
    spec = FAMILIES[family]
    values = spec.default_values(world) if values is None else tuple(values)
    members = []
    bar = tqdm(total=len(seeds) * len(values), unit="sae", desc=f"family {family}",
               disable=not progress)
    for seed in seeds:
        base = _base(world, seed, oracle_config, bases, progress)
        for value in values:
            members.append(spec.build(base, value))
            bar.update(1)
    bar.close()
    return members


def make_controls(world: World, *, seed: int = 0, k: int | None = None,
                  oracle_config: OracleConfig | None = None,
                  bases: dict[int, OracleBase] | None = None,
                  progress: bool = False) -> list[ConstructedSAE]:
    """The diagnostic controls of one seed, in `CONTROLS` order (best_k keeps k latents,
    `default_best_k` by default); `progress` shows the oracle's training and the controls."""
    base = _base(world, seed, oracle_config, bases, progress)
    return [control(base, name, k=k)
            for name in tqdm(CONTROLS, unit="sae", desc="controls", disable=not progress)]


def _base(world: World, seed: int, config: OracleConfig | None,
          bases: dict[int, OracleBase] | None, progress: bool = False) -> OracleBase:
    if bases is None:
        return OracleBase(world, seed=seed, config=config, progress=progress)
    if seed not in bases:
        bases[seed] = OracleBase(world, seed=seed, config=config, progress=progress)
    base = bases[seed]
    if base.world is not world:
        raise ValueError("the shared oracle bases belong to a different world")
    return base
