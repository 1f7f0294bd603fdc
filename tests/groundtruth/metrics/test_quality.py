import numpy as np
import pytest
import torch
from sae_lens.synthetic import eval_sae_on_synthetic_data

from groundtruth.metrics.quality import evaluate_quality
from synthetic_saes.rng import TorchStream
from synthetic_saes.sae_params import SAEParams


def _random_relu(world, seed, d_sae=48):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((d_sae, world.d_in)).astype(np.float32)
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    return SAEParams(W_enc=W.T * 0.5, b_enc=np.full(d_sae, -1.0), W_dec=W,
                     b_dec=world.bias, architecture="relu")


def test_shared_metrics_equal_sae_lens_on_the_same_samples(tiny_world):
    params = _random_relu(tiny_world, 0)
    ours = evaluate_quality(params, tiny_world, n_samples=3000, seed=11, batch_size=1000)
    sae = params.to_sae_lens()  # building it draws random init weights: keep it outside
    stream = TorchStream(11)
    with stream.active():
        theirs = eval_sae_on_synthetic_data(
            sae, tiny_world.model.feature_dict,
            tiny_world.model.activation_generator, num_samples=3000, batch_size=1000,
        )
    assert ours.mcc == pytest.approx(theirs.mcc, abs=1e-6)
    assert ours.uniqueness == pytest.approx(theirs.uniqueness)
    assert ours.true_l0 == pytest.approx(theirs.true_l0)
    assert ours.l0 == pytest.approx(theirs.sae_l0, rel=1e-3)
    assert ours.dead_latents == theirs.dead_latents
    assert ours.shrinkage == pytest.approx(theirs.shrinkage, rel=1e-4)
    assert ours.explained_variance == pytest.approx(theirs.explained_variance, abs=1e-4)
    assert ours.f1 == pytest.approx(theirs.classification.f1_score, abs=1e-3)
    assert ours.precision == pytest.approx(theirs.classification.precision, abs=1e-3)
    assert ours.recall == pytest.approx(theirs.classification.recall, abs=1e-3)


def test_per_latent_scores_average_to_the_summary(tiny_world):
    q = evaluate_quality(_random_relu(tiny_world, 1), tiny_world, n_samples=2000, seed=0)
    assert q.per_latent.f1.mean() == pytest.approx(q.f1, abs=1e-6)
    assert q.per_latent.precision.mean() == pytest.approx(q.precision, abs=1e-6)
    assert q.per_latent.firing_rate.sum() == pytest.approx(q.l0, rel=1e-6)
    assert set(q.scalars()) >= {"mcc", "f1", "explained_variance", "absorption_rate"}


def test_same_seed_same_quality(tiny_world):
    p = _random_relu(tiny_world, 2)
    a = evaluate_quality(p, tiny_world, n_samples=1000, seed=3)
    b = evaluate_quality(p, tiny_world, n_samples=1000, seed=3)
    assert a.scalars() == b.scalars()


def test_true_dictionary_with_exact_codes_is_perfect(tiny_world):
    """An SAE that detects every feature exactly on a world without interference."""
    from synthetic_saes.worlds import World, build_world, preset

    model = build_world(preset("tiny", num_features=32, hidden_dim=32, hierarchy_roots=2,
                               correlation_rank=0)).model
    G = np.linalg.qr(np.random.default_rng(0).standard_normal((32, 32)))[0].astype(np.float32)
    model.feature_dict.feature_vectors.data[:] = torch.from_numpy(G)  # orthonormal directions
    world = World(model)
    oracle = SAEParams(W_enc=G.T, b_enc=np.zeros(32), W_dec=G, b_dec=world.bias,
                       architecture="jumprelu", threshold=np.full(32, 1e-3))
    q = evaluate_quality(oracle, world, n_samples=2000, seed=0)
    assert q.mcc == pytest.approx(1.0) and q.f1 == pytest.approx(1.0, abs=1e-6)
    assert q.explained_variance == pytest.approx(1.0, abs=1e-4)
    assert q.shrinkage == pytest.approx(1.0, abs=1e-4)
    assert q.absorption_rate == 0.0 and q.absorption_events > 0


def test_absorption_counts_a_child_latent_that_writes_its_parent(tiny_world):
    """Hand-built absorption on the tiny world: for one parent, the parent latent goes silent
    whenever a child fires and the child latents' decoders carry the parent direction."""
    G = np.array(tiny_world.feature_directions)
    h = tiny_world.hierarchy
    parent = h.exclusive_parents()[0]
    kids = list(h.children[parent])
    W_dec = G.copy()
    W_dec[kids] = G[kids] + G[parent]
    W_dec /= np.linalg.norm(W_dec, axis=1, keepdims=True)
    sample = tiny_world.sample(4000, seed=7)
    fires = sample.features > 0

    # Latents equal the true features, except the parent is silent under a child.
    latents = sample.features.copy()
    latents[fires[:, kids].any(axis=1), parent] = 0.0
    events = sum(int((fires[:, p] & fires[:, c]).sum()) for p, c in h.parent_child_pairs())
    absorbed = sum(int((fires[:, parent] & fires[:, c]).sum()) for c in kids)

    from groundtruth.metrics import quality

    counter = quality._AbsorptionCounter(
        tiny_world,
        SAEParams(W_enc=G.T, b_enc=np.zeros(64), W_dec=W_dec, b_dec=tiny_world.bias),
        np.arange(64), 0.2,
    )
    counter.add(sample.features, latents)
    rate, n_events = counter.result()
    assert n_events == events and absorbed > 0
    assert rate == pytest.approx(absorbed / events)


def test_wrong_d_in_is_a_clear_error(tiny_world):
    rng = np.random.default_rng(0)
    params = SAEParams(W_enc=rng.standard_normal((31, 8)), b_enc=np.zeros(8),
                       W_dec=rng.standard_normal((8, 31)), b_dec=np.zeros(31))
    with pytest.raises(ValueError, match="SAE has d_in=31 but the world has d_in=32"):
        evaluate_quality(params, tiny_world, n_samples=10)


def test_accepts_sae_lens_saes(tiny_world):
    p = _random_relu(tiny_world, 4)
    a = evaluate_quality(p, tiny_world, n_samples=500, seed=1)
    b = evaluate_quality(p.to_sae_lens(), tiny_world, n_samples=500, seed=1)
    assert a.f1 == pytest.approx(b.f1) and a.mcc == pytest.approx(b.mcc)


def test_a_shared_sample_gives_the_same_quality_as_drawing_it(tiny_world):
    p = _random_relu(tiny_world, 5)
    drawn = evaluate_quality(p, tiny_world, n_samples=1500, seed=4, batch_size=500)
    shared = evaluate_quality(p, tiny_world, sample=tiny_world.sample(1500, seed=4, batch_size=500),
                              batch_size=500)
    assert drawn.scalars() == shared.scalars()


@pytest.mark.parametrize("kind", ["relu", "topk", "dead"])
def test_counts_equal_sae_lens_calculators_exactly(tiny_world, kind):
    """The integer counts give sae_lens's L0, dead-latent and detection numbers bit for bit
    (its calculators sum the same 0/1 values as float32), over several batches."""
    import torch
    from sae_lens.synthetic import (
        ClassificationMetricsCalculator, DeadLatentsCalculator, L0Calculator,
    )

    params = _random_relu(tiny_world, 3)
    if kind == "topk":
        params = params.replace(architecture="topk", k=3)
    if kind == "dead":
        b_enc = params.b_enc.copy()
        b_enc[::2] = -1e6
        params = params.replace(b_enc=b_enc)
    sample = tiny_world.sample(700, seed=5)
    ours = evaluate_quality(params, tiny_world, sample=sample, batch_size=256)
    true_l0, sae_l0, dead = L0Calculator(), L0Calculator(), DeadLatentsCalculator(params.d_sae)
    detection = ClassificationMetricsCalculator(torch.from_numpy(params.W_dec.copy()),
                                                torch.from_numpy(tiny_world.feature_directions.copy()))
    for start in range(0, 700, 256):
        z = torch.from_numpy(params.encode(sample.hidden[start:start + 256]))
        a = torch.from_numpy(sample.features[start:start + 256])
        true_l0.add_batch(a), sae_l0.add_batch(z), dead.add_batch(z), detection.add_batch(z, a)
    theirs = detection.compute()
    assert (ours.l0, ours.true_l0, ours.dead_latents) == (
        sae_l0.compute(), true_l0.compute(), dead.compute())
    assert (ours.precision, ours.recall, ours.f1, ours.accuracy) == (
        theirs.precision, theirs.recall, theirs.f1_score, theirs.accuracy)
