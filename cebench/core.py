"""The JAX core: token activations -> SAE encode -> per-segment latent sums -> CE-Bench scores.

The expensive part of CE-Bench is encoding every token with the SAE ([n_tokens, d_in] @
[d_in, d_sae]). The core streams tokens in fixed-size chunks through one jitted step that
encodes the chunk and adds its latents into per-segment sums, so the [n_tokens, d_sae] latent
matrix never exists and memory does not grow with the number of tokens (it holds one chunk's
latents and the [n_segments, d_sae] sums). A segment is a story (v4) or a story's marked or
unmarked tokens (v1).

Devices: the chunk's token axis is sharded over every device (`jax.sharding`); each device
accumulates its own partial sums and the partials are added once at the end. On one host with
several accelerators nothing else is needed. Across hosts, every process calls
`jax.distributed.initialize()` first and then runs the same `segment_sums` call on the same
token stream: each process feeds only its own devices' rows of every chunk, and the final
addition is an all-reduce (see the README).

Precision: float32 by default. `compute_dtype="bfloat16"` casts the input and W_enc to bfloat16
for the matmul and accumulates in float32 (for accelerators; on CPU it is slower).

Encoders (the inference semantics of sae_lens):
    pre = (x - b_dec * apply_b_dec_to_input) @ W_enc + b_enc
    relu       max(pre, 0)
    jumprelu   max(pre, 0) * (pre > threshold)  -- strict: pre == threshold is inactive, as in
               sae_lens. A pre-activation within float rounding of its threshold can land on
               either side in two implementations (different summation orders); such ties are
               measure-zero for real data and the tests keep clear of them except on purpose.
    topk       max(pre, 0) on each row's k largest pre-activations
    gated      (x' @ W_enc + b_gate > 0) * max(x' @ (W_enc * exp(r_mag)) + b_mag, 0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from cebench.sae_weights import SAEWeights
from cebench.scores import (
    PAPER_ALPHA, CEScores, PerPairScores, check_latent_pairs, check_variant, row_scores,
    segment_distances, summarize,
)

__all__ = [
    "EncoderConfig",
    "Encoder",
    "SegmentSums",
    "encoder_from_sae",
    "encode",
    "segment_sums",
    "segments_for_pairs",
    "score_segments",
    "score_activations",
]

Architecture = Literal["relu", "jumprelu", "topk", "gated"]


@dataclass(frozen=True)
class EncoderConfig:
    """Static settings of an encoder (hashable: a static argument of jitted functions)."""

    architecture: Architecture
    apply_b_dec_to_input: bool
    k: int | None = None
    compute_dtype: Literal["float32", "bfloat16"] = "float32"

    def __post_init__(self) -> None:
        if self.architecture not in ("relu", "jumprelu", "topk", "gated"):
            raise ValueError(f"unsupported encoder architecture {self.architecture!r}")
        if self.architecture == "topk" and (self.k is None or self.k < 1):
            raise ValueError(f"a topk encoder needs k >= 1, got {self.k}")
        if self.compute_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"compute_dtype must be float32 or bfloat16, got {self.compute_dtype!r}")


class Encoder(NamedTuple):
    """An SAE's encoder: static config plus float32 arrays (W_enc [d_in, d_sae], b_enc,
    b_dec [d_in], and threshold / b_gate, r_mag, b_mag where the architecture needs them)."""

    config: EncoderConfig
    params: dict[str, np.ndarray]

    @property
    def d_in(self) -> int:
        return int(self.params["W_enc"].shape[0])

    @property
    def d_sae(self) -> int:
        return int(self.params["W_enc"].shape[1])


def encoder_from_sae(sae, *, compute_dtype: str = "float32") -> Encoder:
    """The encoder of a sae_lens SAE (standard, jumprelu, topk, gated) or of any
    `cebench.sae_weights.SAEWeights` (e.g. `synthetic_saes.SAEParams`)."""
    if isinstance(sae, SAEWeights):
        params = {"W_enc": sae.W_enc, "b_enc": sae.b_enc, "b_dec": sae.b_dec}
        if sae.architecture == "jumprelu":
            params["threshold"] = sae.threshold
        config = EncoderConfig(sae.architecture, sae.apply_b_dec_to_input, sae.k, compute_dtype)
        return Encoder(config, {k: np.asarray(v, np.float32) for k, v in params.items()})
    name = sae.cfg.architecture()
    if getattr(sae.cfg, "normalize_activations", "none") not in ("none", None):
        raise ValueError(
            f"SAEs with normalize_activations={sae.cfg.normalize_activations!r} are not supported"
        )
    if getattr(sae.cfg, "reshape_activations", "none") not in ("none", None):
        raise ValueError(
            f"SAEs with reshape_activations={sae.cfg.reshape_activations!r} are not supported"
        )

    def arr(name_: str) -> np.ndarray:
        return getattr(sae, name_).detach().to("cpu").float().numpy()

    params = {"W_enc": arr("W_enc"), "b_dec": arr("b_dec")}
    apply_b_dec = bool(sae.cfg.apply_b_dec_to_input)
    if name == "standard":
        params["b_enc"] = arr("b_enc")
        config = EncoderConfig("relu", apply_b_dec, None, compute_dtype)
    elif name == "jumprelu":
        params.update(b_enc=arr("b_enc"), threshold=arr("threshold"))
        config = EncoderConfig("jumprelu", apply_b_dec, None, compute_dtype)
    elif name == "topk":
        params["b_enc"] = arr("b_enc")
        if getattr(sae.cfg, "rescale_acts_by_decoder_norm", False):
            norms = np.linalg.norm(arr("W_dec"), axis=1).clip(min=1e-8)
            params["W_enc"] = params["W_enc"] * norms
            params["b_enc"] = params["b_enc"] * norms
        config = EncoderConfig("topk", apply_b_dec, int(sae.cfg.k), compute_dtype)
    elif name == "gated":
        params.update(b_gate=arr("b_gate"), r_mag=arr("r_mag"), b_mag=arr("b_mag"))
        config = EncoderConfig("gated", apply_b_dec, None, compute_dtype)
    else:
        raise ValueError(
            f"sae_lens architecture {name!r} is not supported by the core; supported: "
            "standard, jumprelu, topk, gated"
        )
    return Encoder(config, params)


def encode(params: dict, x: jax.Array, config: EncoderConfig) -> jax.Array:
    """Latents [n, d_sae] (float32) of activations x [n, d_in]."""
    x = x.astype(jnp.float32)
    if config.apply_b_dec_to_input:
        x = x - params["b_dec"]
    low = config.compute_dtype == "bfloat16"

    def matmul(a, w):
        if low:
            return jnp.matmul(a.astype(jnp.bfloat16), w.astype(jnp.bfloat16),
                              preferred_element_type=jnp.float32)
        return a @ w

    if config.architecture == "gated":
        gate = (matmul(x, params["W_enc"]) + params["b_gate"]) > 0
        magnitude = matmul(x, params["W_enc"] * jnp.exp(params["r_mag"])) + params["b_mag"]
        return jnp.where(gate, jax.nn.relu(magnitude), 0.0)
    pre = matmul(x, params["W_enc"]) + params["b_enc"]
    acts = jax.nn.relu(pre)
    if config.architecture == "jumprelu":
        return jnp.where(pre > params["threshold"], acts, 0.0)
    if config.architecture == "topk":
        _, idx = jax.lax.top_k(pre, config.k)  # exactly k per row, ties broken by index
        mask = jnp.zeros(pre.shape, bool).at[jnp.arange(pre.shape[0])[:, None], idx].set(True)
        return jnp.where(mask, acts, 0.0)
    return acts


class SegmentSums(NamedTuple):
    """sums float32 [n_segments, d_sae], counts int64 [n_segments] (tokens), active_counts int64
    [n_segments] (latents != 0 summed over each segment's tokens, for L0)."""

    sums: np.ndarray
    counts: np.ndarray
    active_counts: np.ndarray

    @property
    def active(self) -> int:
        """Active (token, latent) entries over all tokens."""
        return int(self.active_counts.sum())


def _mesh(devices: Sequence[Any] | None) -> Mesh:
    """The token-axis mesh: the given devices, else every device of every process (after
    `jax.distributed.initialize()` that spans hosts; otherwise the local devices)."""
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(np.array(devices), ("tokens",))


def _global_array(value: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global array from a host value every process holds in full; each process
    materialises only the shards of its own devices (works on one or many hosts)."""
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


@partial(jax.jit, static_argnames=("config", "n_segments", "mesh"), donate_argnums=(0, 1))
def _accumulate(sums, active, params, x, segments, *, config, n_segments, mesh):
    """Add one chunk's latents into per-device partial sums.

    sums [n_dev, n_segments + 1, d_sae] and active [n_dev, n_segments + 1] (nonzero latents per
    segment) are per-device partials; x [chunk, d_in], segments [chunk] are sharded over the
    devices along the chunk axis. Padding rows carry segment id n_segments (a spare row).
    """

    def local(sums_l, active_l, params_l, x_l, seg_l):
        latents = encode(params_l, x_l, config)
        # Padding rows go to the spare segment n_segments, so they need no masking here; the
        # float count fuses with the encode on CPU (an integer count costs a second pass).
        part = jax.ops.segment_sum(latents, seg_l, num_segments=n_segments + 1)
        per_token = (latents != 0).astype(jnp.float32).sum(axis=1).astype(jnp.int32)
        # Per-segment counts stay far below 2^31 (tokens of one story x d_sae).
        active = jax.ops.segment_sum(per_token, seg_l, num_segments=n_segments + 1)
        return sums_l + part[None], active_l + active[None]

    sharded = jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(P("tokens"), P("tokens"), P(), P("tokens"), P("tokens")),
        out_specs=(P("tokens"), P("tokens")),
    )
    return sharded(sums, active, params, x, segments)


def segment_sums(
    activations: np.ndarray,
    segment_ids: np.ndarray,
    n_segments: int,
    encoder: Encoder,
    *,
    chunk_size: int = 2048,
    devices: Sequence[Any] | None = None,
    progress: bool = False,
) -> SegmentSums:
    """Stream tokens through the encoder, summing latents per segment.

    Args:
        activations: [n_tokens, d_in] (numpy array or memmap; read one chunk at a time).
        segment_ids: int [n_tokens] in [0, n_segments).
        n_segments: number of segments.
        encoder: from `encoder_from_sae`.
        chunk_size: tokens per step (rounded up to a multiple of the device count).
        devices: devices to shard the token axis over (default: all local devices).
        progress: show a progress bar (tokens/s and ETA).
    """
    n_tokens, d_in = activations.shape
    if d_in != encoder.d_in:
        raise ValueError(f"activations have d_in={d_in} but the SAE has d_in={encoder.d_in}")
    segment_ids = np.asarray(segment_ids)
    if segment_ids.shape != (n_tokens,):
        raise ValueError(f"segment_ids must have shape ({n_tokens},), got {segment_ids.shape}")
    if n_tokens and (segment_ids.min() < 0 or segment_ids.max() >= n_segments):
        raise ValueError(f"segment_ids must be in [0, n_segments={n_segments})")
    mesh = _mesh(devices)
    n_dev = mesh.devices.size
    chunk = max(n_dev, -(-int(chunk_size) // n_dev) * n_dev)
    token_sharding = NamedSharding(mesh, P("tokens"))
    replicated = NamedSharding(mesh, P())
    params = {k: _global_array(np.asarray(v, np.float32), replicated)
              for k, v in encoder.params.items()}
    sums = jax.jit(lambda: jnp.zeros((n_dev, n_segments + 1, encoder.d_sae), jnp.float32),
                   out_shardings=token_sharding)()
    active = jax.jit(lambda: jnp.zeros((n_dev, n_segments + 1), jnp.int32),
                     out_shardings=token_sharding)()
    from tqdm.auto import tqdm

    bar = tqdm(total=n_tokens, unit="tok", unit_scale=True, desc="encode", disable=not progress)
    for start in range(0, n_tokens, chunk):
        stop = min(start + chunk, n_tokens)
        x = np.zeros((chunk, d_in), np.float32)
        x[: stop - start] = activations[start:stop]
        if not np.isfinite(x).all():
            raise ValueError(f"activations contain NaN or Inf (tokens {start}..{stop - 1})")
        seg = np.full(chunk, n_segments, np.int32)  # padding goes to a spare segment
        seg[: stop - start] = segment_ids[start:stop]
        sums, active = _accumulate(
            sums, active, params, _global_array(x, token_sharding),
            _global_array(seg, token_sharding),
            config=encoder.config, n_segments=n_segments, mesh=mesh,
        )
        bar.update(stop - start)
    bar.close()
    # Add the devices' partials on the devices (an all-reduce across hosts), then fetch.
    totals = jax.jit(lambda s, a: (s.sum(axis=0), a.sum(axis=0)),
                     out_shardings=(replicated, replicated))(sums, active)
    total = np.asarray(jax.device_get(totals[0]), dtype=np.float64)[:n_segments]
    counts = np.bincount(segment_ids, minlength=n_segments).astype(np.int64)
    active_counts = np.asarray(jax.device_get(totals[1]), np.int64)[:n_segments]
    return SegmentSums(total.astype(np.float32), counts, active_counts)


def segments_for_pairs(lengths_a: Sequence[int], lengths_b: Sequence[int],
                       marked: Sequence[tuple[np.ndarray, np.ndarray]] | None = None):
    """Segment ids of pairs laid out as A_0, B_0, A_1, B_1, ... (tokens in order).

    v4 (marked None): story A_p is segment 2p, B_p is 2p + 1.
    v1: 4p + 2 side + marked, i.e. (A unmarked, A marked, B unmarked, B marked) = 4p .. 4p + 3.

    Returns:
        (segment_ids int32 [n_tokens], n_segments).
    """
    segments = []
    for p, (na, nb) in enumerate(zip(lengths_a, lengths_b)):
        for side, n in enumerate((na, nb)):
            if marked is None:
                segments.append(np.full(n, 2 * p + side, np.int32))
            else:
                mask = np.asarray(marked[p][side], bool)
                segments.append((4 * p + 2 * side + mask).astype(np.int32))
    n_segments = (2 if marked is None else 4) * len(lengths_a)
    return np.concatenate(segments), n_segments


@partial(jax.jit, static_argnames=("variant", "ibar_zero_defect"))
def _scores_kernel(sums: jax.Array, counts: jax.Array, *, variant: str, ibar_zero_defect: bool):
    """Per-row poolings and argmax latents from segment sums, on the device (float32)."""
    contrast, independence = segment_distances(sums, counts, variant=variant,
                                               ibar_zero_defect=ibar_zero_defect, xp=jnp)
    return row_scores(contrast, independence, xp=jnp)


def score_segments(sums: SegmentSums, *, variant: str, alpha: float,
                   ibar_zero_defect: bool) -> CEScores:
    """CE-Bench scores from segment sums, computed by a jitted kernel (float32).

    Agrees with `cebench.scores.scores_from_segment_means` (float64) to float32 rounding.
    """
    check_variant(variant, ibar_zero_defect)
    per_pair = PerPairScores.from_rows(*jax.device_get(_scores_kernel(
        jnp.asarray(sums.sums), jnp.asarray(sums.counts), variant=variant,
        ibar_zero_defect=ibar_zero_defect)))
    n_tokens = int(sums.counts.sum())
    return summarize(per_pair, l0=sums.active / max(n_tokens, 1), alpha=alpha, variant=variant,
                     ibar_zero_defect=ibar_zero_defect, d_sae=sums.sums.shape[-1],
                     n_tokens=n_tokens)


def score_activations(
    sae,
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    variant: str = "v4",
    marked: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    alpha: float = PAPER_ALPHA,
    ibar_zero_defect: bool = False,
    chunk_size: int = 2048,
    compute_dtype: str = "float32",
    devices: Sequence[Any] | None = None,
) -> CEScores:
    """CE-Bench scores of model activations through an SAE, via the JAX core.

    Args:
        sae: a sae_lens SAE, an `SAEWeights` (e.g. `SAEParams`) or an `Encoder`.
        pairs: per row, (activations_a [T_a, d_in], activations_b [T_b, d_in]).
        variant, marked, alpha, ibar_zero_defect: as in `cebench.score_latents`.
        chunk_size, compute_dtype, devices: see `segment_sums` and `EncoderConfig`.

    Raises:
        ValueError: d_in mismatch, NaN or Inf activations, an empty story, bad marks.
    """
    encoder = sae if isinstance(sae, Encoder) else encoder_from_sae(sae,
                                                                    compute_dtype=compute_dtype)
    checked, masks = check_latent_pairs(pairs, marked, variant=variant, what="activations")
    d_in = checked[0][0].shape[1]
    if d_in != encoder.d_in:
        raise ValueError(f"activations have d_in={d_in} but the SAE has d_in={encoder.d_in}")
    flat = np.concatenate([s for pair in checked for s in pair]).astype(np.float32, copy=False)
    segment_ids, n_segments = segments_for_pairs(
        [a.shape[0] for a, _ in checked], [b.shape[0] for _, b in checked], masks)
    sums = segment_sums(flat, segment_ids, n_segments, encoder, chunk_size=chunk_size,
                        devices=devices)
    return score_segments(sums, variant=variant, alpha=alpha, ibar_zero_defect=ibar_zero_defect)
