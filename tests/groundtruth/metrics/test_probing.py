import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import minimize

from groundtruth.metrics.probing import (
    ProbingData,
    ProbingScore,
    auc,
    choose_probe_features,
    fit_logistic,
    k_sparse_probe,
    k_sparse_probing,
    sample_probing_data,
    select_latents,
)
from synthetic_saes.sae_params import SAEParams
from synthetic_saes.worlds import World, build_world, preset

# ---- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def orthonormal_world():
    """32 features on orthonormal directions in 32 dimensions: no interference, no hierarchy,
    no correlation, so the true dictionary read out exactly recovers every feature."""
    model = build_world(preset("tiny", num_features=32, hidden_dim=32, hierarchy_roots=0,
                               correlation_rank=0)).model
    G = np.linalg.qr(np.random.default_rng(0).standard_normal((32, 32)))[0].astype(np.float32)
    model.feature_dict.feature_vectors.data[:] = torch.from_numpy(G)
    return World(model)


def _oracle(world):
    G = np.array(world.feature_directions)
    return SAEParams(W_enc=G.T, b_enc=np.zeros(32), W_dec=G, b_dec=world.bias,
                     architecture="jumprelu", threshold=np.full(32, 1e-3))


def _random_relu(world, seed, d_sae=48):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((d_sae, world.d_in)).astype(np.float32)
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    return SAEParams(W_enc=W.T, b_enc=np.zeros(d_sae), W_dec=W, b_dec=world.bias)


class _NoiseSAE:
    """Latents independent of the input: probing can only score chance."""

    d_in = 32

    def encode(self, x):
        rng = np.random.default_rng(int(abs(x[0, 0]) * 1e6))
        return rng.standard_normal((x.shape[0], 16)).astype(np.float32)


SMALL = dict(n_train=128, n_test=128)

# ---- auc ----------------------------------------------------------------------------------


def _pairwise_auc(scores, labels):
    pos, neg = scores[labels], scores[~labels]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (pos.size * neg.size)


@given(st.lists(st.tuples(st.integers(-3, 3), st.booleans()), min_size=2, max_size=40))
def test_auc_equals_pairwise_count_with_ties(pairs):
    labels = np.array([p[1] for p in pairs])
    if labels.all() or not labels.any():
        labels[0] = not labels[0]
    scores = np.array([float(p[0]) for p in pairs])
    assert auc(scores, labels) == pytest.approx(_pairwise_auc(scores, labels), abs=1e-12)


def test_auc_hand_cases():
    y = np.array([False, False, True, True])
    assert auc(np.array([0.1, 0.2, 0.3, 0.4]), y) == 1.0
    assert auc(np.array([0.4, 0.3, 0.2, 0.1]), y) == 0.0
    assert auc(np.ones(4), y) == 0.5
    assert auc(np.array([0.0, 1.0, 1.0, 2.0]), np.array([0, 0, 1, 1])) == pytest.approx(0.875)


# ---- fit_logistic -------------------------------------------------------------------------


def _objective(theta, X, y, l2):
    s = X @ theta[:-1] + theta[-1]
    return np.sum(np.logaddexp(0, s) - y * s) + 0.5 * l2 * theta[:-1] @ theta[:-1]


def _gradient(w, b, X, y, l2):
    r = 1 / (1 + np.exp(-(X @ w + b))) - y
    return np.concatenate([X.T @ r + l2 * w, [r.sum()]])


@pytest.mark.parametrize("l2", [0.1, 1.0, 10.0])
def test_fit_logistic_reaches_the_optimum(l2):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3))
    y = (X @ [1.5, -1.0, 0.0] + 0.3 + rng.logistic(size=200)) > 0
    w, b = fit_logistic(X, y, l2=l2)
    # sklearn's lbfgs stops at its tol=1e-4 on the objective averaged over samples (our
    # hand-written Newton went to 1e-10), so the gradient of the summed loss is ~1e-2 here.
    assert np.abs(_gradient(w, b, X, y, l2)).max() / X.shape[0] < 1e-4
    generic = minimize(_objective, np.zeros(4), args=(X, y.astype(float), l2), method="BFGS",
                       options={"gtol": 1e-8})
    np.testing.assert_allclose(np.append(w, b), generic.x, atol=1e-3)


def test_fit_logistic_is_deterministic_and_finite_on_separable_data():
    X = np.array([[-2.0], [-1.0], [1.0], [2.0]])
    y = np.array([0, 0, 1, 1])
    w1, b1 = fit_logistic(X, y, l2=1.0)
    w2, b2 = fit_logistic(X, y, l2=1.0)
    assert np.array_equal(w1, w2) and b1 == b2
    assert w1[0] > 0 and np.isfinite(w1).all()
    assert b1 == pytest.approx(0.0, abs=1e-6)  # symmetric data
    assert np.abs(_gradient(w1, b1, X, y, 1.0)).max() / X.shape[0] < 1e-4  # lbfgs' tol
    # A stronger penalty shrinks the weight.
    assert fit_logistic(X, y, l2=10.0)[0][0] < w1[0]


def test_fit_logistic_with_uninformative_features_fits_the_base_rate():
    w, b = fit_logistic(np.zeros((4, 2)), np.array([1, 1, 1, 0]))
    np.testing.assert_allclose(w, 0.0, atol=1e-7)
    assert b == pytest.approx(np.log(3.0), abs=1e-3)  # lbfgs stops at its tol, 1e-4


# ---- select_latents / k_sparse_probe ------------------------------------------------------


def test_select_latents_hand_case():
    latents = np.array([
        [1.0, 0.0, 5.0, 0.0, 2.0],
        [1.0, 0.0, 5.0, 0.0, 2.0],
        [0.0, 2.0, 5.0, 1.0, 1.0],
        [0.0, 2.0, 5.0, 1.0, 1.0],
    ])
    labels = np.array([True, True, False, False])
    # |differences|: 1, 2, 0, 1, 1 -> latent 1 first, then the ties 0, 3, 4 by index.
    assert select_latents(latents, labels, 1).tolist() == [1]
    assert select_latents(latents, labels, 3).tolist() == [1, 0, 3]
    assert select_latents(latents, labels, 5).tolist() == [1, 0, 3, 4, 2]
    assert select_latents(latents, labels, 2).dtype == np.int64


def test_k_sparse_probe_finds_the_informative_latent():
    rng = np.random.default_rng(0)
    y_train, y_test = rng.random(200) < 0.5, rng.random(100) < 0.5
    train, test = rng.standard_normal((200, 10)), rng.standard_normal((100, 10))
    train[:, 7] += 4 * y_train
    test[:, 7] += 4 * y_test
    result = k_sparse_probe(train, y_train, test, y_test, k=1)
    assert result.selected.tolist() == [7]
    assert result.auc > 0.95 and result.accuracy > 0.9
    assert (result.n_train, result.n_test) == (200, 100)
    # A constant latent (std 0) is harmless.
    train[:, 3], test[:, 3] = 1.0, 1.0
    assert k_sparse_probe(train, y_train, test, y_test, k=10).auc > 0.95


# ---- probing on a world -------------------------------------------------------------------


def test_exact_features_probe_perfectly_and_random_saes_do_not(orthonormal_world):
    world = orthonormal_world
    features = choose_probe_features(world, n_tasks=4, seed=0)
    oracle = k_sparse_probing(_oracle(world), world, features=features, k=1, **SMALL)
    assert oracle.score == pytest.approx(1.0, abs=1e-3)
    assert oracle.selected[:, 0].tolist() == features.tolist()  # latent f is feature f
    assert oracle.per_task_accuracy.min() > 0.95

    # Random directions in 32 dimensions still overlap each feature (|cos| up to ~0.5 for
    # the best of 48), so a random SAE scores well above chance, but clearly below the oracle.
    rand = [k_sparse_probing(_random_relu(world, s), world, features=features, k=1,
                             **SMALL).score for s in range(3)]
    assert max(rand) < 0.92 and min(rand) > 0.6
    # Latents that ignore the input score chance.
    noise = k_sparse_probing(_NoiseSAE(), world, features=features, k=1, **SMALL)
    assert noise.score == pytest.approx(0.5, abs=0.1)


def test_same_seed_same_score_other_seed_differs(orthonormal_world):
    world = orthonormal_world
    sae = _random_relu(world, 0)
    features = np.array([2, 9, 20])
    a = k_sparse_probing(sae, world, features=features, k=2, seed=3, **SMALL)
    b = k_sparse_probing(sae, world, features=features, k=2, seed=3, **SMALL)
    c = k_sparse_probing(sae, world, features=features, k=2, seed=4, **SMALL)
    assert isinstance(a, ProbingScore) and a.score == b.score
    for name in ("per_task_auc", "per_task_accuracy", "features", "selected"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert a.per_task_auc.dtype == np.float64 and a.selected.shape == (3, 2)
    assert not np.array_equal(a.per_task_auc, c.per_task_auc)


def test_pre_drawn_data_gives_the_same_score_and_balanced_splits(orthonormal_world):
    world = orthonormal_world
    features = np.array([1, 5, 30])
    data = sample_probing_data(world, features=features, n_train=101, n_test=60, seed=2)
    assert isinstance(data, ProbingData)
    assert data.train_rows.shape == (3, 101) and data.test_rows.shape == (3, 60)
    assert data.hidden.shape[1] == 32 and data.n_drawn >= data.hidden.shape[0]
    # Check the labels against the world: redraw the stream and recover each kept sample's
    # features by matching its hidden vector.
    sample = world.sample(data.n_drawn, seed=_probing_seed(2))
    lookup = {row.tobytes(): i for i, row in enumerate(sample.hidden)}
    index = np.array([lookup[row.tobytes()] for row in data.hidden])
    for t, f in enumerate(features):
        fires_train = sample.features[index[data.train_rows[t]], f] > 0
        fires_test = sample.features[index[data.test_rows[t]], f] > 0
        assert np.array_equal(fires_train, data.train_labels)
        assert np.array_equal(fires_test, data.test_labels)
        assert fires_train.sum() == 50 and fires_test.sum() == 30
        assert not set(data.train_rows[t]) & set(data.test_rows[t])
    sae = _random_relu(world, 1)
    fresh = k_sparse_probing(sae, world, features=features, k=3, n_train=101, n_test=60,
                             seed=2)
    reused = k_sparse_probing(sae, world, features=features, k=3, n_train=101, n_test=60,
                              seed=2, data=data)
    assert np.array_equal(fresh.per_task_auc, reused.per_task_auc)


def _probing_seed(seed):
    from synthetic_saes.rng import derive_seed

    return derive_seed(seed, "probe-pool")


def test_choose_probe_features(tiny_world):
    p = tiny_world.firing_probabilities
    chosen = choose_probe_features(tiny_world, n_tasks=8, min_rate=0.025, max_rate=0.3, seed=1)
    assert chosen.dtype == np.int64 and chosen.shape == (8,)
    assert np.all(np.diff(chosen) > 0)
    assert np.all((p[chosen] >= 0.025) & (p[chosen] <= 0.3))
    assert np.array_equal(chosen, choose_probe_features(tiny_world, n_tasks=8, min_rate=0.025,
                                                        max_rate=0.3, seed=1))
    assert not np.array_equal(chosen, choose_probe_features(tiny_world, n_tasks=8,
                                                            min_rate=0.025, seed=2))
    rates = np.zeros(64)
    rates[[3, 7]] = 0.1
    assert choose_probe_features(tiny_world, n_tasks=2, rates=rates).tolist() == [3, 7]
    qualifying = int(((p >= 0.05) & (p <= 0.2)).sum())
    with pytest.raises(ValueError, match=f"only {qualifying} of 64 features"):
        choose_probe_features(tiny_world, n_tasks=qualifying + 1, min_rate=0.05, max_rate=0.2)


# ---- invalid inputs -----------------------------------------------------------------------


def test_kernels_reject_bad_inputs():
    y = np.array([True, False, True])
    x = np.ones((3, 2))
    with pytest.raises(ValueError, match="both classes"):
        auc(np.arange(3.0), np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="labels must have shape"):
        auc(np.arange(3.0), np.array([True, False]))
    with pytest.raises(ValueError, match="NaN or Inf"):
        auc(np.array([0.0, np.nan, 1.0]), y)
    with pytest.raises(ValueError, match="bool or 0/1"):
        auc(np.arange(3.0), np.array([0, 2, 1]))
    with pytest.raises(ValueError, match=r"k must be an int in \[1, d_sae=2\]"):
        select_latents(x, y, 3)
    with pytest.raises(ValueError, match=r"k must be an int in \[1, d_sae=2\]"):
        select_latents(x, y, 0)
    with pytest.raises(ValueError, match="latents must be"):
        select_latents(np.ones(3), y, 1)
    with pytest.raises(ValueError, match="l2 must be a positive number"):
        fit_logistic(x, y, l2=0.0)
    with pytest.raises(ValueError, match="both classes"):
        fit_logistic(x, np.zeros(3, dtype=bool))
    with pytest.raises(ValueError, match="test_latents have d_sae=3"):
        k_sparse_probe(x, y, np.ones((3, 3)), y, k=1)
    with pytest.raises(ValueError, match="test_labels must contain both classes"):
        k_sparse_probe(x, y, x, np.ones(3, dtype=bool), k=1)


def test_probing_rejects_bad_inputs(orthonormal_world):
    world = orthonormal_world
    sae = _random_relu(world, 0)
    f = np.array([1, 2])
    narrow = SAEParams(W_enc=np.ones((31, 4)), b_enc=np.zeros(4), W_dec=np.ones((4, 31)),
                       b_dec=np.zeros(31))
    with pytest.raises(ValueError, match="SAE has d_in=31 but the world has d_in=32"):
        k_sparse_probing(narrow, world, features=f)
    with pytest.raises(ValueError, match="must have .d_in and .encode"):
        k_sparse_probing(object(), world, features=f)
    with pytest.raises(ValueError, match=r"k must be an int in \[1, d_sae=48\]"):
        k_sparse_probing(sae, world, features=f, k=49)
    with pytest.raises(ValueError, match=r"features must be in \[0, 32\)"):
        k_sparse_probing(sae, world, features=np.array([0, 32]))
    with pytest.raises(ValueError, match="features must be distinct"):
        k_sparse_probing(sae, world, features=np.array([3, 3]))
    with pytest.raises(ValueError, match="features must be integer"):
        k_sparse_probing(sae, world, features=np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="n_train must be an int >= 2"):
        k_sparse_probing(sae, world, features=f, n_train=1)
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        k_sparse_probing(sae, world, features=f, seed=-1)
    with pytest.raises(ValueError, match="lack examples: feature 31: "):
        sample_probing_data(world, features=np.array([31]), n_train=2048, n_test=2048,
                            pool=4096)
    data = sample_probing_data(world, features=f, **SMALL)
    with pytest.raises(ValueError, match="data was drawn with seed=0 but seed=1"):
        k_sparse_probing(sae, world, features=f, seed=1, data=data, **SMALL)
    with pytest.raises(ValueError, match="data was drawn for features"):
        k_sparse_probing(sae, world, features=np.array([1, 3]), data=data, **SMALL)
    with pytest.raises(ValueError, match="min_rate .* must be <= max_rate"):
        choose_probe_features(world, min_rate=0.3, max_rate=0.1)
    with pytest.raises(ValueError, match="n_tasks must be a positive int"):
        choose_probe_features(world, n_tasks=0)
