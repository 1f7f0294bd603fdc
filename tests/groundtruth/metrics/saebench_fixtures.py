"""A small hand-built world with exact ground truth, and SAEs with known behaviour on it.

Features (N = 12 in d_in = 32, random unit directions, so an SAE with encoder pinv(G) reads the
features back exactly):
    0, 1        roots of two trees
    2, 3, 4     mutually exclusive children of 0 (a TPP task of three classes)
    5, 6        mutually exclusive children of 1
    7 .. 11     free features
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from synthetic_saes.base_world import BaseWorld, WorldSample
from synthetic_saes.hierarchy import FeatureHierarchy
from synthetic_saes.sae_params import SAEParams

N_FEATURES, D_IN = 12, 32
EDGES = [(0, 2), (0, 3), (0, 4), (1, 5), (1, 6)]


class HandWorld(BaseWorld):
    """Roots fire at 0.5; given its root, one child fires (uniformly) or, one time in four,
    none; free features at 0.2; magnitudes 1 + U(0, 1)."""

    config = None

    def __init__(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        g = rng.standard_normal((N_FEATURES, D_IN))
        self._g = (g / np.linalg.norm(g, axis=1, keepdims=True)).astype(np.float32)
        self._bias = (0.1 * rng.standard_normal(D_IN)).astype(np.float32)
        self.hierarchy = FeatureHierarchy.from_edges(N_FEATURES, EDGES, exclusive_parents=(0, 1))

    num_features = property(lambda self: N_FEATURES)
    d_in = property(lambda self: D_IN)
    feature_directions = property(lambda self: self._g)
    bias = property(lambda self: self._bias)
    mean_magnitudes = property(lambda self: np.full(N_FEATURES, 1.5, np.float32))

    def stream(self, batch_size: int, *, seed: int) -> Iterator[WorldSample]:
        rng = np.random.default_rng(seed)
        while True:
            on = np.zeros((batch_size, N_FEATURES), dtype=bool)
            on[:, :2] = rng.random((batch_size, 2)) < 0.5
            for root, kids in ((0, [2, 3, 4]), (1, [5, 6])):
                pick = np.where(rng.random(batch_size) < 0.25, -1,
                                rng.integers(0, len(kids), batch_size))
                for i, kid in enumerate(kids):
                    on[:, kid] = on[:, root] & (pick == i)
            on[:, 7:] = rng.random((batch_size, 5)) < 0.2
            f = (on * (1.0 + rng.random((batch_size, N_FEATURES)))).astype(np.float32)
            yield WorldSample(self.encode_features(f), f)


def oracle_sae(world: HandWorld) -> SAEParams:
    """Decoder = the true directions, encoder = their pseudo-inverse: latents = features."""
    g = world.feature_directions
    return SAEParams(W_enc=np.linalg.pinv(g).astype(np.float32),
                     b_enc=np.zeros(N_FEATURES, np.float32), W_dec=g, b_dec=world.bias)


def merged_siblings_sae(world: HandWorld, a: int = 2, b: int = 3) -> SAEParams:
    """The oracle with siblings a and b merged into latent a: it fires as f_a + f_b and decodes
    normalize(g_a + g_b); b's latent is dropped (d_sae = N - 1)."""
    o = oracle_sae(world)
    enc, dec = np.array(o.W_enc), np.array(o.W_dec)
    enc[:, a] += enc[:, b]
    merged = dec[a] + dec[b]
    dec[a] = merged / np.linalg.norm(merged)
    keep = [k for k in range(N_FEATURES) if k != b]
    return SAEParams(W_enc=enc[:, keep], b_enc=np.zeros(len(keep), np.float32),
                     W_dec=dec[keep], b_dec=o.b_dec)


def absorbing_sae(world: HandWorld, parent: int = 0, child: int = 2) -> SAEParams:
    """The oracle whose parent latent is silenced whenever `child` fires (its pre-activation
    loses 10 f_child), the absorbing child latent writing g_child + g_parent."""
    o = oracle_sae(world)
    enc, dec = np.array(o.W_enc), np.array(o.W_dec)
    enc[:, parent] -= 10.0 * enc[:, child]
    both = dec[child] + dec[parent]
    dec[child] = both / np.linalg.norm(both)
    return o.replace(W_enc=enc, W_dec=dec)
