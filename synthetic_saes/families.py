"""SAEs of known, graded quality built from a world's ground truth.

Everything starts from the *oracle* of a (world, seed) (`synthetic_saes.oracle`): a jumprelu
SAE whose decoder is the true feature directions and b_dec the world's bias (both frozen), and
whose encoder, encoder bias and thresholds are trained on the world's samples (the JAX
trainer's loss, L0 penalty) starting from the transposed true directions: the best encoder we
can fit to the true dictionary. The oracle is fitted once per seed (`make_family` fits the
oracles of all its seeds together) and every member of that seed is derived from it in well
under a second.

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

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from synthetic_saes.base_world import BaseWorld
from synthetic_saes.oracle import OracleBase, OracleConfig, fit_missing_oracles, fit_oracles
from synthetic_saes.sae_params import SAEParams
from synthetic_saes.threads import single_threaded_torch
from synthetic_saes.validation import require_seed
from synthetic_saes.worlds import World

__all__ = [
    "ConstructedSAE",
    "OracleConfig",
    "OracleBase",
    "fit_oracles",
    "fit_missing_oracles",
    "FamilySpec",
    "FAMILIES",
    "CONTROLS",
    "control",
    "default_best_k",
    "untrained_sae",
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


def _member(base: OracleBase, family: str, knobs: dict, params: SAEParams) -> ConstructedSAE:
    knob_text = "/".join(f"{k}={_fmt(v)}" for k, v in knobs.items())
    name = "/".join(p for p in (family, knob_text, f"seed={base.seed}") if p)
    return ConstructedSAE(name=name, family=family, knobs=dict(knobs), seed=base.seed,
                          params=params)


def _fmt(value: float | int) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.clip(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-8, None)
    return (matrix / norms).astype(np.float32)


# Knob checks: each raises ValueError before any oracle is fitted and returns the knob value.


def _check_noise(world: World, noise: float) -> float:
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    return noise


def _check_fraction(world: World, value: float) -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {value}")
    return float(value)


def _check_merge(world: World, value: float) -> float:
    value = _check_fraction(world, value)
    if not world.hierarchy.exclusive_parents():
        raise ValueError("the world has no mutually exclusive parents to merge")
    return value


def _check_width(world: World, value: int) -> int:
    if not 1 <= int(value) <= world.num_features:
        raise ValueError(f"width must be in [1, {world.num_features}], got {value}")
    return int(value)


def _check_best_k(world: World, k: int) -> int:
    if not 1 <= int(k) <= world.num_features:
        raise ValueError(f"k must be in [1, {world.num_features}], got {k}")
    return int(k)


# ---- the degradation families ---------------------------------------------------------------


def decoder_noise(base: OracleBase, noise: float) -> ConstructedSAE:
    """Decoder rows and encoder directions tilted by Gaussian noise of size `noise`."""
    _check_noise(base.world, noise)
    oracle, world = base.oracle, base.world
    if noise == 0:
        return _member(base, "decoder_noise", {"noise": 0.0}, oracle)
    r = base.rng("decoder_noise").standard_normal(world.feature_directions.shape)
    tilt = (noise / np.sqrt(world.d_in)) * r.astype(np.float32)
    decoder = _unit_rows(oracle.W_dec + tilt)
    enc = oracle.W_enc.T
    enc_norm = np.linalg.norm(enc, axis=1, keepdims=True)
    encoder = (_unit_rows(enc / np.clip(enc_norm, 1e-8, None) + tilt) * enc_norm).T
    params = oracle.replace(W_dec=decoder, W_enc=encoder)
    return _member(base, "decoder_noise", {"noise": float(noise)}, params)


def dropped(base: OracleBase, fraction: float) -> ConstructedSAE:
    """round(fraction * N) latents replaced by random directions firing at the same rates."""
    fraction = _check_fraction(base.world, fraction)
    oracle, world = base.oracle, base.world
    rng = base.rng("dropped")
    order = rng.permutation(world.num_features)
    random_dirs = _unit_rows(rng.standard_normal(world.feature_directions.shape))
    lost = order[: int(round(fraction * world.num_features))]
    if lost.size == 0:
        return _member(base, "dropped", {"fraction": fraction}, oracle)
    decoder = np.array(oracle.W_dec)
    encoder = np.array(oracle.W_enc)
    decoder[lost] = random_dirs[lost]
    encoder[:, lost] = random_dirs[lost].T * np.linalg.norm(oracle.W_enc[:, lost], axis=0)
    b_enc = np.array(oracle.b_enc)
    b_enc[lost] = 0.0
    draft = oracle.replace(W_dec=decoder, W_enc=encoder, b_enc=b_enc)
    threshold = np.array(oracle.threshold)
    threshold[lost] = base.rate_matched_thresholds(draft, base.oracle_firing_rates, lost)
    return _member(base, "dropped", {"fraction": fraction}, draft.replace(threshold=threshold))


def merged(base: OracleBase, fraction: float) -> ConstructedSAE:
    """A fraction of the mutually exclusive parents absorbed into their children."""
    fraction = _check_merge(base.world, fraction)
    oracle, world = base.oracle, base.world
    parents = world.hierarchy.exclusive_parents()
    order = base.rng("merged").permutation(len(parents))
    chosen = [parents[i] for i in order[: int(round(fraction * len(parents)))]]
    if not chosen:
        return _member(base, "merged", {"fraction": fraction}, oracle)
    G, m = world.feature_directions, world.mean_magnitudes
    decoder = np.array(oracle.W_dec)
    encoder = np.array(oracle.W_enc)
    b_enc = np.array(oracle.b_enc)
    silent_mean = base.oracle_silent_pre_activations
    for parent in chosen:
        kids = list(world.hierarchy.children[parent])
        ratio = m[parent] / m[kids]
        decoder[kids] = decoder[kids] + G[parent]
        # Subtract the children's pre-activations, centred on their value when silent, so the
        # parent's pre-activation drops by about a_P exactly when a child fires.
        encoder[:, parent] -= (oracle.W_enc[:, kids] * ratio).sum(axis=1)
        b_enc[parent] -= float(((oracle.b_enc[kids] - silent_mean[kids]) * ratio).sum())
    params = oracle.replace(W_dec=_unit_rows(decoder), W_enc=encoder, b_enc=b_enc)
    return _member(base, "merged", {"fraction": fraction}, params)


def split(base: OracleBase, fraction: float) -> ConstructedSAE:
    """A fraction of the features split across two latents each (width N + #split)."""
    fraction = _check_fraction(base.world, fraction)
    oracle, world = base.oracle, base.world
    rng = base.rng("split")
    order = rng.permutation(world.num_features)
    G = world.feature_directions
    r = rng.standard_normal(G.shape).astype(np.float32)
    r = _unit_rows(r - (r * G).sum(axis=1, keepdims=True) * G)  # orthogonal to g_k
    chosen = np.sort(order[: int(round(fraction * world.num_features))])
    if chosen.size == 0:
        return _member(base, "split", {"fraction": fraction}, oracle)
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
    rates = base.oracle_firing_rates
    halves = np.concatenate([chosen, np.arange(world.num_features, draft.d_sae)])
    half_rates = np.concatenate([rates, rates[chosen]]) / 2.0
    threshold = np.array(draft.threshold)
    threshold[halves] = base.rate_matched_thresholds(draft, half_rates, halves)
    params = draft.replace(threshold=threshold)
    return _member(base, "split", {"fraction": fraction}, params)


def width(base: OracleBase, width: int) -> ConstructedSAE:
    """The oracle's latents of the `width` most frequent true features."""
    width = _check_width(base.world, width)
    oracle, world = base.oracle, base.world
    with single_threaded_torch():  # the same samples, faster on busy cores (see oracle.py)
        rates = world.firing_rates()
    keep = np.sort(np.argsort(-rates, kind="stable")[:width])
    params = oracle.replace(
        W_enc=oracle.W_enc[:, keep], b_enc=oracle.b_enc[keep], W_dec=oracle.W_dec[keep],
        threshold=oracle.threshold[keep],
    )
    return _member(base, "width", {"width": width}, params)


# ---- diagnostic controls ------------------------------------------------------------------


def oracle(base: OracleBase) -> ConstructedSAE:
    return _member(base, "oracle", {}, base.oracle)


def permuted_decoder(base: OracleBase) -> ConstructedSAE:
    """The oracle with its decoder rows permuted."""
    perm = base.rng("permuted_decoder").permutation(base.world.num_features)
    params = base.oracle.replace(W_dec=base.oracle.W_dec[perm])
    return _member(base, "permuted_decoder", {}, params)


def untrained_sae(world: BaseWorld, rng: np.random.Generator) -> SAEParams:
    """Random unit decoder rows (one per true feature), tied encoder, relu, zero biases: an
    SAE that learned nothing, needing no oracle."""
    decoder = _unit_rows(rng.standard_normal((world.num_features, world.d_in)))
    return SAEParams(
        W_enc=decoder.T,
        b_enc=np.zeros(world.num_features, dtype=np.float32),
        W_dec=decoder,
        b_dec=np.zeros(world.d_in, dtype=np.float32),
        architecture="relu",
    )


def random_init(base: OracleBase) -> ConstructedSAE:
    """Random unit decoder rows, tied encoder, relu, zero biases: an untrained SAE."""
    return _member(base, "random_init", {}, untrained_sae(base.world, base.rng("random_init")))


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
    threshold = base.rate_matched_thresholds(draft, base.oracle_firing_rates)
    return _member(base, "random_l0_matched", {}, draft.replace(threshold=threshold))


def best_k(base: OracleBase, k: int) -> ConstructedSAE:
    """The oracle with only its k latents of highest F1 able to fire."""
    k = _check_best_k(base.world, k)
    world, orc = base.world, base.oracle
    f1 = base.latent_f1(orc, np.arange(world.num_features))
    keep = np.argsort(-f1, kind="stable")[:k]
    threshold = np.full(world.num_features, np.inf, dtype=np.float32)
    threshold[keep] = orc.threshold[keep]
    return _member(base, "best_k", {"k": k}, orc.replace(threshold=threshold))


# ---- registries ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FamilySpec:
    """A degradation family: its knob, default knob values (oracle first), its builder, and
    `check(world, value)`, which raises ValueError for a knob value the world cannot take
    (called by `make_family` before any oracle is fitted)."""

    knob: str
    default_values: Callable[[World], tuple[float | int, ...]]
    build: Callable[[OracleBase, Any], ConstructedSAE]
    description: str
    check: Callable[[World, Any], Any] = lambda world, value: value


FAMILIES: dict[str, FamilySpec] = {
    "decoder_noise": FamilySpec(
        "noise", lambda w: (0.0, 0.25, 0.5, 1.0, 2.0), decoder_noise,
        "decoder rows and encoder directions tilted by Gaussian noise", _check_noise),
    "dropped": FamilySpec(
        "fraction", lambda w: (0.0, 0.1, 0.25, 0.5, 0.75), dropped,
        "true features whose latent is replaced by a random one", _check_fraction),
    "merged": FamilySpec(
        "fraction", lambda w: (0.0, 0.25, 0.5, 0.75, 1.0), merged,
        "parents absorbed into their mutually exclusive children", _check_merge),
    "split": FamilySpec(
        "fraction", lambda w: (0.0, 0.1, 0.25, 0.5, 1.0), split,
        "features split across two latents", _check_fraction),
    "width": FamilySpec(
        "width",
        lambda w: tuple(sorted({max(1, w.num_features // d) for d in (8, 4, 2, 1)}, reverse=True)),
        width, "the oracle restricted to its most frequent features", _check_width),
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

    The knob values are checked first, then the oracles still missing are fitted together
    (`fit_oracles`), then every member is derived from its seed's oracle. `bases`
    (seed -> OracleBase) lets several families share their oracles; without it, oracles are
    kept per world object, seed and oracle config for the process, so a later `make_family` or
    `make_controls` on the same world reuses them instead of refitting (the same numbers: the
    fit is deterministic). `progress` shows the oracles' fit and a bar over the members.

    Raises:
        ValueError: on an unknown family, a knob value out of range, or repeated seeds.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown SAE family {family!r}; known families: {sorted(FAMILIES)}")
    spec = FAMILIES[family]
    values = spec.default_values(world) if values is None else tuple(values)
    seeds = _check_seeds(seeds)
    for value in values:
        spec.check(world, value)
    family_bases = [_base(world, seed, oracle_config, bases, progress) for seed in seeds]
    fit_missing_oracles(family_bases, progress=progress)
    members = []
    bar = tqdm(total=len(seeds) * len(values), unit="sae", desc=f"family {family}",
               disable=not progress)
    for base in family_bases:
        for value in values:
            bar.set_postfix_str(f"{spec.knob}={_fmt(value)}, seed {base.seed}")
            members.append(spec.build(base, value))
            bar.update(1)
    bar.close()
    return members


def make_controls(world: World, *, seed: int = 0, k: int | None = None,
                  oracle_config: OracleConfig | None = None,
                  bases: dict[int, OracleBase] | None = None,
                  progress: bool = False) -> list[ConstructedSAE]:
    """The diagnostic controls of one seed, in `CONTROLS` order (best_k keeps k latents,
    `default_best_k` by default); `progress` shows the oracle's fit and the controls."""
    if k is not None:
        _check_best_k(world, k)
    base = _base(world, seed, oracle_config, bases, progress)
    fit_missing_oracles([base], progress=progress)
    out = []
    for name in (bar := tqdm(CONTROLS, unit="sae", desc=f"controls of seed {seed}",
                             disable=not progress)):
        bar.set_postfix_str(name)
        out.append(control(base, name, k=k))
    return out


def _check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    seeds = tuple(require_seed(s) for s in seeds)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    return seeds


# Oracle bases of the calls given no `bases`, per world object and (seed, config): a later
# make_family / make_controls on the same world reuses the fitted oracle and its calibration
# (the fit is deterministic in them, so this changes no number). Weak keys: a world's bases go
# with it.
_PROCESS_BASES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _base(world: World, seed: int, config: OracleConfig | None,
          bases: dict[int, OracleBase] | None, progress: bool = False) -> OracleBase:
    if bases is None:
        shared = _PROCESS_BASES.setdefault(world, {})
        key = (seed, config or OracleConfig())
        if key not in shared:
            shared[key] = OracleBase(world, seed=seed, config=key[1], progress=progress)
        shared[key].progress = progress
        return shared[key]
    if seed not in bases:
        bases[seed] = OracleBase(world, seed=seed, config=config, progress=progress)
    base = bases[seed]
    if base.world is not world:
        raise ValueError("the shared oracle bases belong to a different world")
    return base
