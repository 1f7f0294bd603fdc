"""Hierarchy-conditioned absorption (groundtruth/metrics/absorption.py)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from groundtruth.metrics.absorption import edge_absorption, mean_absorption_gap
from groundtruth.metrics.data import AuditData
from groundtruth.metrics.registry import evaluate_metric, get_metric
from synthetic_saes.hierarchy import FeatureHierarchy
from tests.groundtruth.metrics.saebench_fixtures import HandWorld, absorbing_sae, oracle_sae


@pytest.fixture(scope="module")
def world():
    return HandWorld()


@pytest.fixture(scope="module")
def sample(world):
    return world.sample(4096, seed=1)


def literal_table(latent_fires, fires, edges, latents):
    """Per-edge (n_without, fires_without, n_with, fires_with), one sample at a time."""
    out = []
    for (p, c), j in zip(edges, latents):
        counts = [0, 0, 0, 0]
        for row in range(fires.shape[0]):
            if not fires[row, p]:
                continue
            k = 2 if fires[row, c] else 0
            counts[k] += 1
            counts[k + 1] += int(latent_fires[row, j])
        out.append(counts)
    return np.array(out)


def test_absorbing_sae_has_gap_one_on_its_edge_and_oracle_zero(world, sample):
    oracle = edge_absorption(oracle_sae(world), world, sample.features, sample.hidden)
    assert oracle.eligible.all()
    np.testing.assert_array_equal(oracle.gap, 0.0)
    assert mean_absorption_gap(oracle) == 0.0
    absorbed = edge_absorption(absorbing_sae(world), world, sample.features, sample.hidden)
    edge = np.flatnonzero((absorbed.parent == 0) & (absorbed.child == 2))[0]
    assert absorbed.latent[edge] == 0 and absorbed.cosine[edge] == pytest.approx(1.0, abs=1e-5)
    assert absorbed.gap[edge] == pytest.approx(1.0)
    assert absorbed.fires_with[edge] == 0 and absorbed.fires_without[edge] == absorbed.n_without[
        edge]
    # the parent's other (exclusive) children see it fire less often without them: negative gaps
    siblings = (absorbed.parent == 0) & (absorbed.child != 2)
    assert (absorbed.gap[siblings] < 0).all()


def test_counts_equal_a_literal_per_sample_count(world, sample):
    sae = absorbing_sae(world)
    table = edge_absorption(sae, world, sample.features[:300], sample.hidden[:300])
    edges = np.stack([table.parent, table.child], 1)
    literal = literal_table(sae.encode(sample.hidden[:300]) != 0, sample.features[:300] > 0,
                            edges, table.latent)
    np.testing.assert_array_equal(
        np.stack([table.n_without, table.fires_without, table.n_with, table.fires_with], 1),
        literal)


@given(st.integers(0, 2**31 - 1))
def test_recalls_are_probabilities_and_gap_bounded(seed):
    world = HandWorld(seed=seed % 7)
    rng = np.random.default_rng(seed)
    s = world.sample(64, seed=seed % 1000)
    sae = oracle_sae(world).replace(b_enc=rng.normal(0, 1, 12).astype(np.float32))
    table = edge_absorption(sae, world, s.features, s.hidden)
    ok = table.eligible
    assert ((table.recall_without[ok] >= 0) & (table.recall_without[ok] <= 1)).all()
    assert (np.abs(table.gap[ok]) <= 1).all()
    assert np.isnan(table.gap[~ok]).all()


def test_registered_metric(world):
    data = AuditData(world)
    assert evaluate_metric("absorption_hierarchy", oracle_sae(world), data, 0) == 0.0
    spec = get_metric("absorption_hierarchy")
    assert not spec.higher_is_better and spec.kind == "ground_truth"


def test_no_edge_or_no_eligible_edge_raises(world, sample):
    class Flat(HandWorld):
        def __init__(self):
            super().__init__()
            self.hierarchy = FeatureHierarchy.from_edges(12, [])

    flat = Flat()
    with pytest.raises(ValueError, match="not applicable: the world's hierarchy has no parent"):
        edge_absorption(oracle_sae(flat), flat, sample.features, sample.hidden)
    only_parent_alone = np.zeros_like(sample.features)
    only_parent_alone[:, 0] = 1.0
    table = edge_absorption(oracle_sae(world), world, only_parent_alone, sample.hidden)
    with pytest.raises(ValueError, match="undefined: none of the 5 edges"):
        mean_absorption_gap(table)
    with pytest.raises(ValueError, match="features must be"):
        edge_absorption(oracle_sae(world), world, sample.features[:, :3], sample.hidden)
