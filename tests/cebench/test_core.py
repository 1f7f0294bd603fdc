import json
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cebench.core import (
    Encoder, EncoderConfig, _latent_blocks, _most_distinct, _n_slots, _tile_slots, encode,
    encoder_from_sae, score_activations, segment_sums, segments_for_pairs,
)
from cebench.scores import score_latents
from synthetic_saes.sae_params import SAEParams

D_IN, D_SAE = 12, 30


def make_params(rng, architecture):
    extra = {}
    if architecture == "jumprelu":
        extra["threshold"] = rng.uniform(0.05, 0.6, D_SAE)
    if architecture == "topk":
        extra["k"] = 4
    return SAEParams(W_enc=rng.standard_normal((D_IN, D_SAE)) * 0.5,
                     b_enc=rng.standard_normal(D_SAE) * 0.1,
                     W_dec=rng.standard_normal((D_SAE, D_IN)),
                     b_dec=rng.standard_normal(D_IN) * 0.1, architecture=architecture,
                     apply_b_dec_to_input=bool(rng.integers(2)), **extra)


def make_pairs(rng, n_pairs, max_tokens=20):
    return [tuple(rng.standard_normal((int(rng.integers(1, max_tokens)), D_IN)).astype(np.float32)
                  for _ in range(2)) for _ in range(n_pairs)]


def make_marks(rng, pairs):
    marks = []
    for a, b in pairs:
        ma, mb = rng.random(len(a)) < 0.4, rng.random(len(b)) < 0.4
        ma[0], mb[-1] = True, False
        marks.append((ma, mb))
    return marks


def assert_same_scores(ours, expected, rel=2e-5):
    for name in ("contrastive", "independent", "interpretability", "l0", "sparsity_aware"):
        assert getattr(ours, name) == pytest.approx(getattr(expected, name), rel=rel, abs=1e-6)
    for score in ("contrastive", "independent", "interpretability"):
        for pooling, value in expected.pooled[score].items():
            assert ours.pooled[score][pooling] == pytest.approx(value, rel=rel, abs=1e-5)


@given(seed=st.integers(0, 100_000), architecture=st.sampled_from(["relu", "jumprelu", "topk"]),
       variant=st.sampled_from(["v4", "v1"]), chunk=st.sampled_from([1, 7, 64, 4096]))
def test_core_equals_score_latents(seed, architecture, variant, chunk):
    rng = np.random.default_rng(seed)
    params = make_params(rng, architecture)
    pairs = make_pairs(rng, int(rng.integers(1, 6)))
    marks = make_marks(rng, pairs) if variant == "v1" else None
    ours = score_activations(params, pairs, variant=variant, marked=marks, chunk_size=chunk)
    expected = score_latents([(params.encode(a), params.encode(b)) for a, b in pairs],
                             variant=variant, marked=marks)
    assert_same_scores(ours, expected)


@pytest.mark.parametrize("architecture", ["standard", "jumprelu", "topk", "gated"])
def test_encoder_matches_sae_lens_encode(architecture):
    from sae_lens import SAE

    torch.manual_seed(0)
    cfg = {"architecture": architecture, "d_in": D_IN, "d_sae": D_SAE, "dtype": "float32",
           "device": "cpu", "apply_b_dec_to_input": True}
    if architecture == "topk":
        cfg.update(k=5, rescale_acts_by_decoder_norm=True)
    sae = SAE.from_dict(cfg)
    with torch.no_grad():
        for name, param in sae.named_parameters():
            param.copy_(torch.randn_like(param) * (0.3 if name != "threshold" else 0.2).__abs__())
        if architecture == "jumprelu":
            sae.threshold.abs_()
    encoder = encoder_from_sae(sae)
    x = torch.randn(50, D_IN)
    with torch.no_grad():
        expected = sae.encode(x).numpy()
    ours = np.asarray(jax.jit(encode, static_argnames="config")(
        {k: jnp.asarray(v) for k, v in encoder.params.items()}, jnp.asarray(x.numpy()),
        config=encoder.config))
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)


def test_jumprelu_threshold_ties_are_inactive_as_in_sae_lens():
    """pre == threshold exactly (integer weights make pre-activations exact) is inactive."""
    W = np.eye(4, dtype=np.float32)
    p = SAEParams(W_enc=W, b_enc=np.zeros(4), W_dec=W, b_dec=np.zeros(4),
                  architecture="jumprelu", threshold=np.array([1.0, 2.0, 3.0, 0.5]),
                  apply_b_dec_to_input=False)
    x = np.array([[1.0, 2.0, 2.0, 1.0]], np.float32)  # ties on latents 0 and 1
    expected = np.array([[0.0, 0.0, 0.0, 1.0]], np.float32)
    np.testing.assert_array_equal(p.encode(x), expected)
    with torch.no_grad():
        np.testing.assert_array_equal(p.to_sae_lens().encode(torch.from_numpy(x)).numpy(),
                                      expected)
    enc = encoder_from_sae(p)
    ours = encode({k: jnp.asarray(v) for k, v in enc.params.items()}, jnp.asarray(x), enc.config)
    np.testing.assert_array_equal(np.asarray(ours), expected)


def test_jit_equals_eager():
    rng = np.random.default_rng(1)
    enc = encoder_from_sae(make_params(rng, "topk"))
    params = {k: jnp.asarray(v) for k, v in enc.params.items()}
    x = jnp.asarray(rng.standard_normal((9, D_IN)), jnp.float32)
    with jax.disable_jit():
        eager = np.asarray(encode(params, x, enc.config))
    jitted = np.asarray(jax.jit(encode, static_argnames="config")(params, x, config=enc.config))
    np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-6)


def test_bfloat16_matmul_stays_close():
    rng = np.random.default_rng(2)
    params = make_params(rng, "relu")
    pairs = make_pairs(rng, 5)
    f32 = score_activations(params, pairs)
    bf16 = score_activations(params, pairs, compute_dtype="bfloat16")
    assert bf16.contrastive == pytest.approx(f32.contrastive, rel=0.05)
    assert bf16.interpretability == pytest.approx(f32.interpretability, rel=0.05)


def test_segment_sums_literal():
    rng = np.random.default_rng(3)
    enc = encoder_from_sae(make_params(rng, "relu"))
    x = rng.standard_normal((23, D_IN)).astype(np.float32)
    seg = np.sort(rng.integers(0, 5, 23)).astype(np.int32)
    out = segment_sums(x, seg, 6, enc, chunk_size=4)
    latents = np.asarray(encode({k: jnp.asarray(v) for k, v in enc.params.items()},
                                jnp.asarray(x), enc.config))
    for s in range(6):
        np.testing.assert_allclose(out.sums[s], latents[seg == s].sum(0), rtol=1e-5, atol=1e-5)
    assert out.counts.tolist() == np.bincount(seg, minlength=6).tolist()
    assert out.active == int((latents != 0).sum())


def literal_tile_slots(ids, tile, n_slots, n_segments):
    """Per tile: its distinct segments in order fill the first slots; padding (-1) has none."""
    slots, rows = [], []
    for start in range(0, len(ids), tile):
        part = [int(i) for i in ids[start:start + tile]]
        distinct = sorted({i for i in part if i >= 0})
        rows.append(distinct + [n_segments] * (n_slots - len(distinct)))
        slots += [distinct.index(i) if i >= 0 else n_slots for i in part]
    return np.array(slots, np.int32), np.array(rows, np.int32).reshape(-1, n_slots)


@given(seed=st.integers(0, 100_000), tile=st.integers(1, 12), n_tiles=st.integers(0, 5),
       n_segments=st.integers(1, 40), sorted_ids=st.booleans())
def test_tile_slots_equal_literal(seed, tile, n_tiles, n_segments, sorted_ids):
    rng = np.random.default_rng(seed)
    ids = rng.integers(-1, n_segments, n_tiles * tile)
    if sorted_ids:  # stories in order, padding at the end, as segment_sums streams them
        ids = np.concatenate([np.sort(ids[ids >= 0]), ids[ids < 0]])
    distinct = max([len(set(ids[i:i + tile]) - {-1}) for i in range(0, ids.size, tile)],
                   default=0)
    n_slots = _n_slots(ids, tile, n_segments)
    assert n_slots == min(tile, max(8, -(-distinct // 8) * 8))
    slot, rows = _tile_slots(ids, tile, n_slots, n_segments)
    expected_slot, expected_rows = literal_tile_slots(ids, tile, n_slots, n_segments)
    np.testing.assert_array_equal(slot, expected_slot)
    np.testing.assert_array_equal(rows, expected_rows)
    if distinct > 1:
        with pytest.raises(ValueError, match="more than n_slots=1 distinct segments"):
            _tile_slots(ids, tile, 1, n_segments)


def test_most_distinct_reads_every_piece_of_a_long_stream():
    """Over 2^20 tokens the stream is read in pieces; the busiest tile is in the last one."""
    tile = 3
    ids = np.zeros(3 * tile * (2**20 // tile) + 5 * tile, np.int64)
    ids[:tile] = [1, 2, 2]  # a tile with 2 distinct segments in the first piece
    ids[-tile:] = [4, -1, 6]  # 2 distinct + padding in the last piece
    ids[-2 * tile:-tile] = [7, 8, 9]  # 3 distinct, in the last piece
    assert _most_distinct(ids, tile, 10) == 3
    assert _most_distinct(ids[:-2 * tile], tile, 10) == 2
    assert _most_distinct(np.zeros(0, np.int64), tile, 10) == 0


@pytest.mark.parametrize("architecture", ["relu", "jumprelu", "gated"])
@pytest.mark.parametrize("block", [1, 4, 7, D_SAE, 64])
def test_latent_blocks_encode_as_the_whole_encoder(architecture, block):
    """Blocks of latents encode as the whole SAE does, and padding columns are exactly zero
    whatever the input."""
    rng = np.random.default_rng(5)
    params = {"W_enc": rng.standard_normal((D_IN, D_SAE)).astype(np.float32),
              "b_dec": rng.standard_normal(D_IN).astype(np.float32)}
    if architecture == "gated":
        params.update({name: rng.standard_normal(D_SAE).astype(np.float32)
                       for name in ("b_gate", "r_mag", "b_mag")})
    else:
        params["b_enc"] = rng.standard_normal(D_SAE).astype(np.float32)
    if architecture == "jumprelu":
        params["threshold"] = rng.uniform(0.05, 0.6, D_SAE).astype(np.float32)
    config = EncoderConfig(architecture, True)
    x = jnp.asarray(rng.standard_normal((17, D_IN)) * 100, jnp.float32)
    whole = np.asarray(encode(params, x, config))
    blocks = _latent_blocks(params, block)
    n_blocks = -(-D_SAE // block)
    assert blocks["W_enc"].shape == (n_blocks, D_IN, block) and "b_dec" not in blocks
    parts = [np.asarray(encode({**{k: v[b] for k, v in blocks.items()},
                                "b_dec": params["b_dec"]}, x, config)) for b in range(n_blocks)]
    joined = np.concatenate(parts, axis=1)
    np.testing.assert_allclose(joined[:, :D_SAE], whole, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(joined[:, D_SAE:], 0.0)


def test_segment_sums_by_hand_across_chunks_tiles_and_latent_blocks():
    """Identity encoder (latents = x for x >= 0): segment 0 spans two chunks and several
    tiles, the last tile holds segments out of order, segment 3 is empty, the last chunk
    is ragged and d_sae = 4 is not a multiple of the latent block."""
    enc = Encoder(EncoderConfig("relu", False), {
        "W_enc": np.eye(4, dtype=np.float32), "b_enc": np.zeros(4, np.float32),
        "b_dec": np.zeros(4, np.float32)})
    x = np.array([[i, 1, 0, 2 * i] for i in range(10)], np.float32)
    seg = np.array([0, 0, 0, 0, 0, 0, 0, 2, 1, 2])
    expected = np.array([[21, 7, 0, 42], [8, 1, 0, 16], [16, 2, 0, 32], [0, 0, 0, 0]])
    for chunk, tile_tokens, tile_latents in [(4, 2, 3), (3, 3, 1), (10, 4, 4), (2048, 3, 2),
                                             (7, 512, 512)]:
        out = segment_sums(x, seg, 4, enc, chunk_size=chunk, tile_tokens=tile_tokens,
                           tile_latents=tile_latents)
        np.testing.assert_array_equal(out.sums, expected)
        assert out.counts.tolist() == [7, 1, 2, 0]
        # token 0 has one nonzero latent, every other token three
        assert out.active_counts.tolist() == [19, 3, 6, 0]


@settings(max_examples=20)
@given(seed=st.integers(0, 100_000),
       architecture=st.sampled_from(["relu", "jumprelu", "topk", "gated"]),
       n_tokens=st.integers(0, 70), n_segments=st.integers(1, 12),
       layout=st.sampled_from(["stories", "random"]), chunk=st.sampled_from([1, 5, 16, 64]),
       tile_tokens=st.sampled_from([1, 3, 8, 512]), tile_latents=st.sampled_from([1, 7, 64]))
def test_tiled_segment_sums_equal_literal(seed, architecture, n_tokens, n_segments, layout,
                                          chunk, tile_tokens, tile_latents):
    """Any chunk and tile sizes, stories in order or ids at random, every architecture."""
    rng = np.random.default_rng(seed)
    params = {"W_enc": rng.standard_normal((D_IN, D_SAE)).astype(np.float32) * 0.5,
              "b_dec": rng.standard_normal(D_IN).astype(np.float32) * 0.1,
              "b_enc": rng.standard_normal(D_SAE).astype(np.float32) * 0.1,
              "threshold": rng.uniform(0.05, 0.6, D_SAE).astype(np.float32)}
    if architecture == "gated":
        params = {"W_enc": params["W_enc"], "b_dec": params["b_dec"],
                  **{name: rng.standard_normal(D_SAE).astype(np.float32) * 0.3
                     for name in ("b_gate", "r_mag", "b_mag")}}
    elif architecture != "jumprelu":
        del params["threshold"]
    enc = Encoder(EncoderConfig(architecture, bool(rng.integers(2)),
                                4 if architecture == "topk" else None), params)
    x = rng.standard_normal((n_tokens, D_IN)).astype(np.float32)
    seg = rng.integers(0, n_segments, n_tokens)
    if layout == "stories":
        seg = np.sort(seg)
    out = segment_sums(x, seg, n_segments, enc, chunk_size=chunk, tile_tokens=tile_tokens,
                       tile_latents=tile_latents)
    latents = np.asarray(encode({k: jnp.asarray(v) for k, v in params.items()},
                                jnp.asarray(x), enc.config))
    assert out.sums.shape == (n_segments, D_SAE) and out.sums.dtype == np.float32
    for s in range(n_segments):
        np.testing.assert_allclose(out.sums[s], latents[seg == s].sum(0), rtol=1e-5, atol=1e-5)
        assert out.active_counts[s] == int((latents[seg == s] != 0).sum())
    assert out.counts.tolist() == np.bincount(seg, minlength=n_segments).tolist()


def test_segments_of_pairs():
    seg, n = segments_for_pairs([3, 1], [2, 2])
    assert n == 4 and seg.tolist() == [0, 0, 0, 1, 1, 2, 3, 3]
    seg, n = segments_for_pairs([3], [2], [(np.array([True, False, True]),
                                            np.array([False, True]))])
    assert n == 4 and seg.tolist() == [1, 0, 1, 2, 3]


def test_bad_input_is_refused():
    rng = np.random.default_rng(4)
    params = make_params(rng, "relu")
    good = make_pairs(rng, 2)
    with pytest.raises(ValueError, match=f"activations have d_in=5 but the SAE has d_in={D_IN}"):
        score_activations(params, [(np.zeros((3, 5)), np.zeros((2, 5)))])
    bad = [(good[0][0].copy(), good[0][1])]
    bad[0][0][1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        score_activations(params, bad)
    with pytest.raises(ValueError, match="pair 0 story b is empty"):
        score_activations(params, [(good[0][0], np.zeros((0, D_IN)))])
    enc = encoder_from_sae(params)
    with pytest.raises(ValueError, match="segment_ids must be in"):
        segment_sums(np.zeros((3, D_IN), np.float32), np.array([1, 0, 2]), 2, enc)
    with pytest.raises(ValueError, match="contain NaN or Inf"):
        segment_sums(np.full((3, D_IN), np.inf, np.float32), np.zeros(3, int), 1, enc)
    with pytest.raises(ValueError, match="topk encoder needs k"):
        EncoderConfig("topk", True, None)
    for name in ("chunk_size", "tile_tokens", "tile_latents"):
        with pytest.raises(ValueError, match=f"{name} must be >= 1, got 0"):
            segment_sums(np.zeros((3, D_IN), np.float32), np.zeros(3, int), 1, enc,
                         **{name: 0})


def test_sharded_over_four_devices_equals_one_device(tmp_path):
    """Runs in a fresh process: the host-device count must be set before JAX starts."""
    script = textwrap.dedent(f"""
        import os
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
        import jax, numpy as np
        from synthetic_saes.sae_params import SAEParams
        from cebench.core import score_activations
        assert len(jax.local_devices()) == 4, jax.local_devices()
        rng = np.random.default_rng(0)
        p = SAEParams(W_enc=rng.standard_normal(({D_IN}, {D_SAE})), b_enc=np.zeros({D_SAE}),
                      W_dec=rng.standard_normal(({D_SAE}, {D_IN})), b_dec=np.zeros({D_IN}),
                      architecture="topk", k=3)
        pairs = [tuple(rng.standard_normal((int(rng.integers(1, 40)), {D_IN})).astype(np.float32)
                       for _ in range(2)) for _ in range(9)]
        four = score_activations(p, pairs, chunk_size=10)
        one = score_activations(p, pairs, chunk_size=10, devices=jax.local_devices()[:1])
        for k, v in one.metrics().items():
            assert abs(four.metrics()[k] - v) <= 1e-5 * max(1, abs(v)), (k, v, four.metrics()[k])
        # 800 tokens in whole tiles of 200 per device, then a tail of 500 tokens in tiles of
        # 128 per device that straddle the 200-token tiles; segment ids at random.
        from cebench.core import encoder_from_sae, encode, segment_sums
        x = rng.standard_normal((1300, {D_IN})).astype(np.float32)
        seg = rng.integers(0, 50, 1300)
        enc = encoder_from_sae(p)
        tiled = segment_sums(x, seg, 50, enc, chunk_size=800, tile_tokens=200)
        latents = np.asarray(encode(enc.params, x, enc.config))
        expected = np.stack([latents[seg == s].sum(0) for s in range(50)])
        np.testing.assert_allclose(tiled.sums, expected, rtol=1e-5, atol=1e-4)
        assert tiled.active == int((latents != 0).sum())
        print("ok", len(jax.local_devices()))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ok 4" in result.stdout


def test_two_processes_with_jax_distributed_equal_one(tmp_path):
    """Two local processes (2 CPU devices each, gloo collectives) share the token stream
    through jax.distributed and get the single-process sums."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    worker = textwrap.dedent(f"""
        import os, sys, json
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
        import jax
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        process = int(sys.argv[1])
        jax.distributed.initialize("127.0.0.1:{port}", num_processes=2, process_id=process)
        import numpy as np
        from synthetic_saes.sae_params import SAEParams
        from cebench.core import encoder_from_sae, segment_sums
        rng = np.random.default_rng(0)
        p = SAEParams(W_enc=rng.standard_normal(({D_IN}, {D_SAE})), b_enc=np.zeros({D_SAE}),
                      W_dec=rng.standard_normal(({D_SAE}, {D_IN})), b_dec=np.zeros({D_IN}),
                      architecture="relu")
        x = rng.standard_normal((101, {D_IN})).astype(np.float32)
        seg = np.sort(rng.integers(0, 9, 101)).astype(np.int32)
        out = segment_sums(x, seg, 9, encoder_from_sae(p), chunk_size=16)
        np.save(sys.argv[2], out.sums)
        print(json.dumps({{"devices": len(jax.devices()), "active": out.active}}))
    """)
    script = tmp_path / "worker.py"
    script.write_text(worker)
    procs = [subprocess.Popen([sys.executable, str(script), str(i), str(tmp_path / f"s{i}.npy")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert all(r["devices"] == 4 for r in reports)
    rng = np.random.default_rng(0)
    p = SAEParams(W_enc=rng.standard_normal((D_IN, D_SAE)), b_enc=np.zeros(D_SAE),
                  W_dec=rng.standard_normal((D_SAE, D_IN)), b_dec=np.zeros(D_IN),
                  architecture="relu")
    x = rng.standard_normal((101, D_IN)).astype(np.float32)
    seg = np.sort(rng.integers(0, 9, 101)).astype(np.int32)
    single = segment_sums(x, seg, 9, encoder_from_sae(p), chunk_size=16)
    for i, report in enumerate(reports):
        np.testing.assert_allclose(np.load(tmp_path / f"s{i}.npy"), single.sums, rtol=1e-5,
                                   atol=1e-4)
        assert report["active"] == single.active
