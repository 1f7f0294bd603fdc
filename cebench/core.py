"""The JAX core: token activations -> SAE encode -> per-segment latent sums -> CE-Bench scores.

The expensive part of CE-Bench is encoding every token with the SAE ([n_tokens, d_in] @
[d_in, d_sae]). The core streams tokens in fixed-size chunks through one jitted step that
encodes the chunk and adds its latents into per-segment sums, so the [n_tokens, d_sae] latent
matrix never exists and memory does not grow with the number of tokens (it holds one chunk's
activations, one tile's latents and the [n_segments, d_sae] sums). A segment is a story (v4)
or a story's marked or unmarked tokens (v1).

Speed: within a chunk the step walks tiles of 512 tokens x 512 latents (on CPU), so each
tile's latents are thresholded, counted and summed while they are in cache, and sums them per
segment with a one-hot matmul over the tile's few segments (a story spans many tokens), added
into the sums' rows: per-tile work does not depend on the number of segments. On 2 CPU cores
this runs at the float32 matmul rate of the same shapes (tests/benchmarks/test_cebench_speed.py).

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
from functools import cache, partial
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


def _centre(b_dec: jax.Array, x: jax.Array, config: EncoderConfig) -> jax.Array:
    """The SAE's input x' [n, d_in] (float32): x - b_dec when the SAE applies b_dec to its input."""
    x = x.astype(jnp.float32)
    return x - b_dec if config.apply_b_dec_to_input else x


def _encode_centred(params: dict, x: jax.Array, config: EncoderConfig) -> jax.Array:
    """Latents [n, d] of centred inputs x' [n, d_in], for params over any d latents (all of an
    SAE's, or a block of them: every architecture but topk acts on each latent alone)."""
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


def encode(params: dict, x: jax.Array, config: EncoderConfig) -> jax.Array:
    """Latents [n, d_sae] (float32) of activations x [n, d_in]."""
    return _encode_centred(params, _centre(params["b_dec"], x, config), config)


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


# Tiles on CPU (see `segment_sums`): a tile's pre-activations [512 tokens, 512 latents] (1 MiB)
# stay in the core's 2 MiB L2 cache between the matmul and the passes that read them.
CPU_TILE_TOKENS = 512
CPU_TILE_LATENTS = 512
# Slots per tile are rounded up to a multiple of this, so corpora of similar story lengths
# share one compiled step.
_SLOT_MULTIPLE = 8
# The tokens past the last whole tiles go in one smaller tile per device, its size rounded up
# to a multiple of this: little padding, few distinct compiled shapes.
_TAIL_MULTIPLE = 64


def _mesh(devices: Sequence[Any] | None) -> Mesh:
    """The token-axis mesh: the given devices, else every device of every process (after
    `jax.distributed.initialize()` that spans hosts; otherwise the local devices)."""
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(np.array(devices), ("tokens",))


def _global_array(value: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global array from a host value every process holds in full; each process
    materialises only the shards of its own devices (works on one or many hosts)."""
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


@cache
def _zeros(shape: tuple[int, ...], dtype: Any, sharding: NamedSharding):
    """A jitted maker of zeros [shape] laid out as `sharding` (made once per shape: a fresh
    `jax.jit(lambda: ...)` per call would compile on every call)."""
    return jax.jit(partial(jnp.zeros, shape, dtype), out_shardings=sharding)


@cache
def _add_partials(sharding: NamedSharding):
    """A jitted sum of the devices' partials (sums, active) over their first axis, laid out as
    `sharding` (an all-reduce across hosts)."""
    return jax.jit(lambda s, a: (s.sum(axis=0), a.sum(axis=0)), out_shardings=(sharding, sharding))


def _latent_blocks(params: dict[str, np.ndarray], block: int) -> dict[str, np.ndarray]:
    """An encoder's per-latent parameters in blocks of `block` latents.

    W_enc [d_in, d_sae] -> [n_blocks, d_in, block]; each per-latent vector [d_sae] ->
    [n_blocks, block]; b_dec is left out. Columns past d_sae are zero, and a zero column
    gives a zero latent for relu, jumprelu and gated (pre-activation 0 is inactive) whatever
    the input; topk is never blocked.
    """
    d_in, d_sae = params["W_enc"].shape
    n_blocks = -(-d_sae // block)
    pad = n_blocks * block - d_sae
    out = {}
    for name, value in params.items():
        if name == "b_dec":
            continue
        value = np.asarray(value, np.float32)
        if pad:  # np.pad copies even when there is nothing to pad
            value = np.pad(value, ((0, 0),) * (value.ndim - 1) + ((0, pad),))
        if name == "W_enc":
            value = value.reshape(d_in, n_blocks, block).transpose(1, 0, 2)
            out[name] = np.ascontiguousarray(value)
        else:
            out[name] = value.reshape(n_blocks, block)
    return out


def _sorted_tiles(segment_ids: np.ndarray, tile: int, n_segments: int):
    """Distinct segments per tile, sorted: the tile's segment `slots`.

    Args:
        segment_ids: int [n_tiles * tile]; -1 marks a padding token.

    Returns:
        (sorted_ids [n_tiles, tile], order [n_tiles, tile], first bool [n_tiles, tile]): each
        tile's ids sorted (padding last, as n_segments) by the stable permutation `order`;
        `first` marks the first token of each distinct real segment in sorted order.
    """
    ids = np.where(segment_ids < 0, n_segments, segment_ids).reshape(-1, tile)
    order = np.argsort(ids, axis=1, kind="stable")
    sorted_ids = np.take_along_axis(ids, order, axis=1)
    first = np.ones(sorted_ids.shape, bool)
    first[:, 1:] = sorted_ids[:, 1:] != sorted_ids[:, :-1]
    first &= sorted_ids < n_segments
    return sorted_ids, order, first


def _most_distinct(segment_ids: np.ndarray, tile: int, n_segments: int) -> int:
    """The most distinct segments in any tile of a token stream (int [n_tiles * tile], -1 =
    padding), read a million tokens at a time so the sort's scratch stays bounded."""
    piece = tile * max(1, 2**20 // tile)
    return max((int(_sorted_tiles(segment_ids[start:start + piece], tile, n_segments)[2]
                    .sum(axis=1).max(initial=0))
                for start in range(0, segment_ids.size, piece)), default=0)


def _n_slots(segment_ids: np.ndarray, tile: int, n_segments: int) -> int:
    """Slots per tile for a token stream: the most distinct segments in any tile, rounded up to
    a multiple of 8 (at most `tile`). segment_ids int [n_tiles * tile], -1 = padding."""
    return _round_slots(_most_distinct(segment_ids, tile, n_segments), tile)


def _round_slots(distinct: int, tile: int) -> int:
    return min(tile, max(_SLOT_MULTIPLE, -(-distinct // _SLOT_MULTIPLE) * _SLOT_MULTIPLE))


def _padded(values: np.ndarray, multiple: int, dtype=None) -> np.ndarray:
    """values [n, ...] padded to a multiple of `multiple` rows: zeros for activations (float
    dtype given), -1 (no segment) for segment ids."""
    n = values.shape[0]
    if dtype is None:
        out = np.full(-(-n // multiple) * multiple, -1, np.int64)
    else:
        out = np.zeros((-(-n // multiple) * multiple, *values.shape[1:]), dtype)
    out[:n] = values
    return out


def _tile_slots(segment_ids: np.ndarray, tile: int, n_slots: int, n_segments: int):
    """Each tile's tokens mapped to slots, one slot per distinct segment of the tile.

    Args:
        segment_ids: int [n_tiles * tile] in [0, n_segments), or -1 for a padding token.
        tile: tokens per tile.
        n_slots: slots per tile, at least the most distinct segments in any tile.
        n_segments: number of segments.

    Returns:
        (slot int32 [n_tiles * tile], rows int32 [n_tiles, n_slots]): token i of tile t is in
        slot slot[i] of tile t, and rows[t, slot[i]] == segment_ids[i]. A padding token has
        slot n_slots (no slot) and an unused slot has row n_segments (no segment). Slots follow
        segment order within each tile.

    Raises:
        ValueError: a tile has more than n_slots distinct segments.
    """
    sorted_ids, order, first = _sorted_tiles(segment_ids, tile, n_segments)
    if first.sum(axis=1).max(initial=0) > n_slots:
        raise ValueError(f"a tile has more than n_slots={n_slots} distinct segments")
    rank = np.cumsum(first, axis=1) - 1  # slot of each token, in sorted order
    slot = np.empty_like(rank)
    np.put_along_axis(slot, order, rank, axis=1)
    slot = slot.reshape(-1)
    slot[segment_ids < 0] = n_slots
    rows = np.full((sorted_ids.shape[0], n_slots), n_segments, np.int32)
    tiles, positions = np.nonzero(first)
    rows[tiles, rank[tiles, positions]] = sorted_ids[tiles, positions]
    return slot.astype(np.int32), rows


@partial(jax.jit, static_argnames=("config", "n_slots", "mesh"), donate_argnums=(0, 1))
def _accumulate(sums, active, blocks, b_dec, x, slot, rows, *, config, n_slots, mesh):
    """Add one chunk's latents into per-device partial sums.

    sums [n_dev, n_blocks, n_segments, block] and active [n_dev, n_segments] (nonzero latents
    per segment) are per-device partials; blocks (from `_latent_blocks`) and b_dec [d_in] are
    replicated; x [chunk, d_in], slot [chunk] and rows [chunk // tile, n_slots] (from
    `_tile_slots`) are sharded over the devices along their first axis.

    Each device walks its tiles; in a tile it walks the latent blocks, encoding [tile, block]
    latents and summing them per slot with a one-hot matmul ([n_slots, tile] @ [tile, block]:
    n_slots / d_in of the encoding's work), then scatter-adds the [n_slots, d_sae] slot sums
    into its partial's rows. Per tile the work is independent of the number of segments.
    """

    def local(sums_l, active_l, blocks_l, b_dec_l, x_l, slot_l, rows_l):
        n_tiles = rows_l.shape[0]
        tile = x_l.shape[0] // n_tiles

        def tile_step(carry, tile_in):
            sums_c, active_c = carry
            x_t, slot_t, rows_t = tile_in
            x_t = _centre(b_dec_l, x_t, config)
            onehot = jax.nn.one_hot(slot_t, n_slots, dtype=jnp.float32)  # padding: a zero row

            def block_step(nonzero, block_params):
                latents = _encode_centred(block_params, x_t, config)
                # The float count fuses with the encoding on CPU; exact below 2^24 latents.
                nonzero = nonzero + (latents != 0).sum(axis=1, dtype=jnp.float32)
                # HIGHEST: a plain sum on every backend (no TF32 rounding of latents on GPUs).
                return nonzero, jnp.matmul(onehot.T, latents, precision=jax.lax.Precision.HIGHEST)

            # The count varies over the token axis as x does (shard_map's typing of the carry).
            zero = jax.lax.pcast(jnp.zeros(tile, jnp.float32), ("tokens",), to="varying")
            nonzero, part = jax.lax.scan(block_step, zero, blocks_l)
            sums_c = sums_c.at[:, rows_t].add(part, mode="drop")  # unused slots are dropped
            per_slot = jax.ops.segment_sum(nonzero.astype(jnp.int32), slot_t,
                                           num_segments=n_slots)
            # Per-segment counts stay far below 2^31 (tokens of one story x d_sae).
            active_c = active_c.at[rows_t].add(per_slot, mode="drop")
            return (sums_c, active_c), None

        tiles_in = (x_l.reshape(n_tiles, tile, -1), slot_l.reshape(n_tiles, tile), rows_l)
        (sums_l, active_l), _ = jax.lax.scan(tile_step, (sums_l[0], active_l[0]), tiles_in)
        return sums_l[None], active_l[None]

    sharded = jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(P("tokens"), P("tokens"), P(), P(), P("tokens"), P("tokens"), P("tokens")),
        out_specs=(P("tokens"), P("tokens")),
    )
    return sharded(sums, active, blocks, b_dec, x, slot, rows)


def segment_sums(
    activations: np.ndarray,
    segment_ids: np.ndarray,
    n_segments: int,
    encoder: Encoder,
    *,
    chunk_size: int = 2048,
    devices: Sequence[Any] | None = None,
    progress: bool = False,
    tile_tokens: int | None = None,
    tile_latents: int | None = None,
) -> SegmentSums:
    """Stream tokens through the encoder, summing latents per segment.

    The host reads `chunk_size` tokens at a time; on the devices each chunk is cut into tiles
    of `tile_tokens` tokens x `tile_latents` latents, so a tile's latents are summed while
    they are still in cache, and a tile's segments are summed with a small one-hot matmul
    over the tile's distinct segments. The last chunk is padded only to a whole number of
    tiles. Memory: one chunk of activations, the parameters, and the [n_segments, d_sae] sums.

    Args:
        activations: [n_tokens, d_in] (numpy array or memmap; read one chunk at a time).
        segment_ids: int [n_tokens] in [0, n_segments).
        n_segments: number of segments.
        encoder: from `encoder_from_sae`.
        chunk_size: tokens per host step (rounded up to whole tiles on every device).
        devices: devices to shard the token axis over (default: all local devices).
        progress: show a progress bar (tokens/s and ETA).
        tile_tokens: tokens per tile (default 512, at most a device's share of a chunk).
        tile_latents: latents per tile (default 512 on CPU, all of them elsewhere; topk always
            uses all, as its top-k runs over every latent).

    Raises:
        ValueError: d_in mismatch, bad segment ids or tile sizes, NaN or Inf activations.
    """
    n_tokens, d_in = activations.shape
    if d_in != encoder.d_in:
        raise ValueError(f"activations have d_in={d_in} but the SAE has d_in={encoder.d_in}")
    segment_ids = np.asarray(segment_ids)
    if segment_ids.shape != (n_tokens,):
        raise ValueError(f"segment_ids must have shape ({n_tokens},), got {segment_ids.shape}")
    if n_tokens and (segment_ids.min() < 0 or segment_ids.max() >= n_segments):
        raise ValueError(f"segment_ids must be in [0, n_segments={n_segments})")
    for name, value in (("chunk_size", chunk_size), ("tile_tokens", tile_tokens),
                        ("tile_latents", tile_latents)):
        if value is not None and int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    mesh = _mesh(devices)
    n_dev = mesh.devices.size
    on_cpu = mesh.devices.flat[0].platform == "cpu"
    tile = min(int(tile_tokens or CPU_TILE_TOKENS), -(-int(chunk_size) // n_dev))
    step = tile * n_dev  # tokens in one tile on every device
    chunk = -(-int(chunk_size) // step) * step
    block = encoder.d_sae
    if encoder.config.architecture != "topk" and (tile_latents or on_cpu):
        block = min(encoder.d_sae, int(tile_latents or CPU_TILE_LATENTS))

    token_sharding = NamedSharding(mesh, P("tokens"))
    replicated = NamedSharding(mesh, P())
    blocks = {k: _global_array(v, replicated)
              for k, v in _latent_blocks(encoder.params, block).items()}
    b_dec = _global_array(np.asarray(encoder.params["b_dec"], np.float32), replicated)
    n_blocks = blocks["W_enc"].shape[0]
    # Spans of whole tiles on every device, in chunks; then the tail (fewer tokens than one
    # tile per device) in one smaller tile per device, rather than padding it to a whole tile.
    n_whole = n_tokens // step * step
    spans = [(start, min(start + chunk, n_whole), tile) for start in range(0, n_whole, chunk)]
    if n_tokens > n_whole:
        tail = -(-(n_tokens - n_whole) // n_dev)
        spans.append((n_whole, n_tokens, min(tile, -(-tail // _TAIL_MULTIPLE) * _TAIL_MULTIPLE)))
    n_slots = _round_slots(max(_most_distinct(_padded(segment_ids[a:b], t * n_dev), t, n_segments)
                               for a, b, t in [(0, n_whole, tile)] + spans[-1:]), tile)
    sums = _zeros((n_dev, n_blocks, n_segments, block), jnp.float32, token_sharding)()
    active = _zeros((n_dev, n_segments), jnp.int32, token_sharding)()
    from tqdm.auto import tqdm

    bar = tqdm(total=n_tokens, unit="tok", unit_scale=True, desc="encode", disable=not progress)
    for start, stop, span_tile in spans:
        x = _padded(activations[start:stop], span_tile * n_dev, np.float32)
        if not np.isfinite(x).all():
            raise ValueError(f"activations contain NaN or Inf (tokens {start}..{stop - 1})")
        ids = _padded(segment_ids[start:stop], span_tile * n_dev)
        slot, rows = _tile_slots(ids, span_tile, n_slots, n_segments)
        sums, active = _accumulate(
            sums, active, blocks, b_dec, _global_array(x, token_sharding),
            _global_array(slot, token_sharding), _global_array(rows, token_sharding),
            config=encoder.config, n_slots=n_slots, mesh=mesh,
        )
        bar.update(stop - start)
    bar.close()
    # Add the devices' partials on the devices (an all-reduce across hosts), then fetch.
    totals = _add_partials(replicated)(sums, active)
    total = np.asarray(jax.device_get(totals[0]), np.float32)  # [n_blocks, n_segments, block]
    total = total.transpose(1, 0, 2).reshape(n_segments, n_blocks * block)[:, : encoder.d_sae]
    counts = np.bincount(segment_ids, minlength=n_segments).astype(np.int64)
    active_counts = np.asarray(jax.device_get(totals[1]), np.int64)
    return SegmentSums(np.ascontiguousarray(total), counts, active_counts)


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
