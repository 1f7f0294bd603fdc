"""Sparse probing in SAEBench's and sae-probes' modes, against their own code.

`_their_*` below are test data: upstream functions copied verbatim (bodies unchanged; the
torch-typed signatures and decorators dropped), from
    sae-probes 0.4.2 (PyPI wheel; github.com/sae-probes/sae-probes): `get_sorted_indices`,
        `mean_act_normalization` (sae_probes/run_sae_evals.py), `get_cv`, `get_splits`,
        `find_best_reg` (sae_probes/utils_training.py);
    SAEBench commit 8042bb3828c6340da8d12062324e92b2077c571c: `get_top_k_mean_diff_mask`,
        `apply_topk_mask_reduce_dim`, `train_sklearn_probe` (sae_bench/evals/sparse_probing/
        probe_training.py).
sae-probes itself is not a dependency: it pins pandas < 3 and pyarrow < 26 (our environment has
pandas 3.1.1 and pyarrow 26.0.1) and pulls in xgboost and transformer-lens.
"""

import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import LeavePOut, StratifiedKFold

from groundtruth.metrics.data import AuditData, DataConfig
from groundtruth.metrics.registry import evaluate_metric, get_metric
from groundtruth.metrics.saebench_metrics import SAE_PROBES_KS, SPARSE_PROBING_KS, probe_scores
from groundtruth.metrics.sparse_probing import (
    mean_act_normalized, sae_probes_probe, saebench_probe, sorted_by_normalized_mean_diff,
    top_k_mean_diff,
)
from synthetic_saes.sae_params import SAEParams
from synthetic_saes.worlds import World, build_world, preset

# ---- their code (test data) ---------------------------------------------------------------


def _their_get_sorted_indices(X_train_sae, y_train, normalize_fn):
    X_train_sae_normalized = normalize_fn(X_train_sae) if normalize_fn else X_train_sae
    X_train_diff = X_train_sae_normalized[y_train == 1].mean(
        dim=0
    ) - X_train_sae_normalized[y_train == 0].mean(dim=0)
    sorted_indices = torch.argsort(torch.abs(X_train_diff), descending=True)
    return sorted_indices


def _their_mean_act_normalization(X_sae):
    col_sums = X_sae.abs().sum(dim=0)
    col_nonzero_counts = (X_sae != 0).sum(dim=0)
    col_means = col_sums / (col_nonzero_counts + 1e-6)
    return X_sae / (col_means + 1e-6)


def _their_get_cv(X_train, seed=42):
    n_samples = X_train.shape[0]
    if n_samples <= 12:
        cv = LeavePOut(2)
    elif n_samples < 128:
        cv = StratifiedKFold(n_splits=6, shuffle=True, random_state=seed)
    else:
        val_size = min(int(0.2 * n_samples), 100)
        train_size = n_samples - val_size
        cv = [(list(range(train_size)), list(range(train_size, n_samples)))]
    return cv


def _their_get_splits(cv, X_train, y_train):
    if hasattr(cv, "split"):
        splits = []
        for train_idx, val_idx in cv.split(X_train, y_train):
            if len(np.unique(y_train[val_idx])) == 2:
                splits.append((train_idx, val_idx))
    else:
        splits = cv
    return splits


def _their_find_best_reg(X_train, y_train, X_test, y_test, penalty="l2", seed=1):
    best_C = None
    if X_train.shape[0] > 3:
        cv = _their_get_cv(X_train, seed=seed)
        Cs = np.logspace(5, -5, 10)
        avg_scores = []

        def evaluate_fold(C, train_index, val_index):
            X_fold_train, X_fold_val = X_train[train_index], X_train[val_index]
            y_fold_train, y_fold_val = y_train[train_index], y_train[val_index]
            if len(np.unique(y_fold_train)) < 2:
                return 0.5
            if penalty == "l1":
                model = LogisticRegression(
                    C=C, penalty="l1", solver="saga", random_state=seed, max_iter=1000
                )
            else:
                model = LogisticRegression(C=C, random_state=seed, max_iter=1000)
            model.fit(X_fold_train, y_fold_train)
            y_pred_proba = model.predict_proba(X_fold_val)[:, 1]
            return roc_auc_score(y_fold_val, y_pred_proba)

        for C in Cs:
            splits = _their_get_splits(cv, X_train, y_train)
            fold_scores = [evaluate_fold(C, tr, va) for tr, va in splits]
            avg_scores.append(np.mean(fold_scores))
        best_C_index = np.argmax(avg_scores)
        best_C = Cs[best_C_index]
    if best_C is not None:
        if penalty == "l1":
            final_model = LogisticRegression(
                C=best_C, penalty="l1", solver="saga", random_state=seed, max_iter=1000
            )
        else:
            final_model = LogisticRegression(C=best_C, random_state=seed, max_iter=1000)
    else:
        if penalty == "l1":
            final_model = LogisticRegression(
                penalty="l1", solver="saga", random_state=seed, max_iter=1000
            )
        else:
            final_model = LogisticRegression(random_state=seed, max_iter=1000)
    rng = np.random.RandomState(seed)
    shuffle_idx = rng.permutation(len(X_train))
    X_train = X_train[shuffle_idx]
    y_train = y_train[shuffle_idx]
    final_model.fit(X_train, y_train)
    y_test_pred = final_model.predict(X_test)
    test_f1 = f1_score(y_test, y_test_pred, average="weighted")
    test_acc = accuracy_score(y_test, y_test_pred)
    y_test_pred_proba = final_model.predict_proba(X_test)[:, 1]
    test_auc = roc_auc_score(y_test, y_test_pred_proba)
    return test_acc, test_auc, best_C, test_f1


def _their_get_top_k_mean_diff_mask(acts_BD, labels_B, k):
    positive_mask_B = labels_B == 1
    negative_mask_B = labels_B == 0
    positive_distribution_D = acts_BD[positive_mask_B].mean(dim=0)
    negative_distribution_D = acts_BD[negative_mask_B].mean(dim=0)
    distribution_diff_D = (positive_distribution_D - negative_distribution_D).abs()
    top_k_indices_D = torch.argsort(distribution_diff_D, descending=True)[:k]
    mask_D = torch.ones(acts_BD.shape[1], dtype=torch.bool, device=acts_BD.device)
    mask_D[top_k_indices_D] = False
    return mask_D


def _their_train_sklearn_probe(train_inputs, train_labels, test_inputs, test_labels,
                               max_iter=1000, C=1.0):
    train_inputs = train_inputs.to(dtype=torch.float32)
    test_inputs = test_inputs.to(dtype=torch.float32)
    train_inputs_np = train_inputs.cpu().numpy()
    train_labels_np = train_labels.cpu().numpy()
    test_inputs_np = test_inputs.cpu().numpy()
    test_labels_np = test_labels.cpu().numpy()
    probe = LogisticRegression(penalty="l2", C=C, max_iter=max_iter)
    with warnings.catch_warnings():  # sklearn >= 1.8 deprecates `penalty` (same model)
        warnings.simplefilter("ignore", FutureWarning)
        probe.fit(train_inputs_np, train_labels_np)
    test_accuracy = accuracy_score(test_labels_np, probe.predict(test_inputs_np))
    return probe, test_accuracy


# ---- shared random inputs -----------------------------------------------------------------


def _sparse_latents(rng, n, d, informative=3):
    """ReLU latents with a few informative columns and many dead / rare ones, like an SAE's."""
    y = (np.arange(n) % 2).astype(np.int64)
    rng.shuffle(y)
    z = np.maximum(rng.standard_normal((n, d)) - 1.0, 0.0) * rng.uniform(0.5, 5, d)
    for j in range(informative):
        z[:, j * 3] += (rng.uniform(0.5, 2) * y + rng.standard_normal(n)).clip(0)
    z[:, -2:] = 0.0  # dead latents
    return z.astype(np.float32), y


@pytest.mark.parametrize("seed, n_train", [(0, 400), (1, 90), (2, 7)])  # the 3 CV rules
def test_sae_probes_mode_equals_their_code(seed, n_train):
    rng = np.random.default_rng(seed)
    z, y = _sparse_latents(rng, n_train + 300, 24)
    train, y_train, test, y_test = z[:n_train], y[:n_train], z[n_train:], y[n_train:]
    y_train[:4] = [0, 1, 0, 1]
    theirs = _their_get_sorted_indices(torch.from_numpy(train), torch.from_numpy(y_train),
                                       _their_mean_act_normalization).numpy()
    ours = sorted_by_normalized_mean_diff(train, y_train)
    np.testing.assert_allclose(
        mean_act_normalized(train), _their_mean_act_normalization(torch.from_numpy(train)),
        rtol=1e-6)
    # Same ranking up to the order inside exact ties (dead latents; on 7 rows, many more),
    # which torch's argsort leaves unspecified: equal |differences| position by position.
    z = _their_mean_act_normalization(torch.from_numpy(train))
    diff = (z[y_train == 1].mean(0) - z[y_train == 0].mean(0)).abs().numpy()
    assert np.array_equal(diff[ours], diff[theirs])
    if n_train >= 90:
        assert ours[:-2].tolist() == theirs[:-2].tolist()
    for k in SAE_PROBES_KS:
        top = ours[:k]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            acc, auc, C, _ = _their_find_best_reg(train[:, top], y_train, test[:, top], y_test,
                                                  penalty="l1", seed=42)
        mine = sae_probes_probe(train, y_train, test, y_test, k=k, seed=42)
        assert (mine.accuracy, mine.auc, mine.C) == (acc, auc, C), k
        assert mine.selected.tolist() == top.tolist()


@pytest.mark.parametrize("seed", [0, 1])
def test_saebench_mode_equals_their_code(seed):
    rng = np.random.default_rng(seed)
    z, y = _sparse_latents(rng, 600, 32)
    train, y_train, test, y_test = z[:400], y[:400], z[400:], y[400:]
    for k in SPARSE_PROBING_KS:
        mask = _their_get_top_k_mean_diff_mask(torch.from_numpy(train),
                                               torch.from_numpy(y_train).int(), k)
        keep = (~mask).numpy()
        _, accuracy = _their_train_sklearn_probe(
            torch.from_numpy(train)[:, ~mask], torch.from_numpy(y_train).int(),
            torch.from_numpy(test)[:, ~mask], torch.from_numpy(y_test).int())
        mine = saebench_probe(train, y_train, test, y_test, k=k)
        assert mine.selected.tolist() == np.flatnonzero(keep).tolist()
        assert mine.accuracy == accuracy
        assert top_k_mean_diff(train, y_train, k).tolist() == np.flatnonzero(keep).tolist()


def test_l1_ratio_one_is_their_l1_penalty():
    rng = np.random.default_rng(3)
    z, y = _sparse_latents(rng, 300, 12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn >= 1.8 deprecates `penalty`
        old = LogisticRegression(C=0.3, penalty="l1", solver="saga", random_state=42,
                                 max_iter=1000).fit(z, y)
    new = LogisticRegression(C=0.3, l1_ratio=1.0, solver="saga", random_state=42,
                             max_iter=1000).fit(z, y)
    assert np.array_equal(old.coef_, new.coef_) and np.array_equal(old.intercept_,
                                                                   new.intercept_)


def test_hand_built_probes():
    # Latent 2 is the label, latent 0 noise: both modes pick latent 2 and are perfect.
    rng = np.random.default_rng(0)
    y = np.tile([0, 1], 100)
    z = np.column_stack([rng.random(200), np.zeros(200), 3.0 * y]).astype(np.float32)
    for probe in (saebench_probe, sae_probes_probe):
        result = probe(z[:140], y[:140], z[140:], y[140:], k=1)
        assert result.selected.tolist() == [2]
        assert result.accuracy == 1.0 and result.auc == 1.0


def test_bad_inputs_raise_one_line_errors():
    z = np.ones((10, 4), np.float32)
    y = np.tile([0, 1], 5)
    for probe in (saebench_probe, sae_probes_probe):
        with pytest.raises(ValueError, match=r"k must be an int in \[1, d_sae=4\], got 5"):
            probe(z, y, z, y, k=5)
        with pytest.raises(ValueError, match="train split needs at least 2 samples of each"):
            probe(z, np.r_[1, np.zeros(9, int)], z, y, k=1)
        with pytest.raises(ValueError, match="NaN or Inf"):
            probe(np.full((10, 4), np.nan), y, z, y, k=1)


# ---- on a world ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def orthonormal_world():
    """32 features on orthonormal directions, no hierarchy or correlation: the true dictionary
    read out recovers every feature exactly."""
    model = build_world(preset("tiny", num_features=32, hidden_dim=32, hierarchy_roots=0,
                               correlation_rank=0)).model
    G = np.linalg.qr(np.random.default_rng(0).standard_normal((32, 32)))[0].astype(np.float32)
    model.feature_dict.feature_vectors.data[:] = torch.from_numpy(G)
    return World(model)


class _NoiseSAE:
    """Latents that ignore the input: probing can only score chance."""

    d_in, d_sae = 32, 32

    def encode(self, x):
        rng = np.random.default_rng(int(abs(float(x[0, 0])) * 1e6))
        return np.maximum(rng.standard_normal((x.shape[0], 32)), 0).astype(np.float32)


DATA = DataConfig(probe_tasks=2, probe_pool=4096)


def test_oracle_probes_single_features_perfectly_and_noise_sits_at_chance(orthonormal_world):
    world = orthonormal_world
    G = np.array(world.feature_directions)
    oracle = SAEParams(W_enc=G.T, b_enc=np.zeros(32), W_dec=G, b_dec=world.bias,
                       architecture="jumprelu", threshold=np.full(32, 1e-3))
    data = AuditData(world, DATA)
    from groundtruth.metrics.saebench_metrics import task_data

    tasks = task_data(data, 0).tasks
    single = np.array([t.op == "single" for t in tasks])
    n_feats = np.array([len(t.features) for t in tasks])
    # With as many latents as the task has features, AND / OR are (near) linear too.
    top5 = probe_scores(oracle, data, 0, mode="saebench", k=5)
    assert top5[n_feats <= 5].mean() > 0.97
    for mode in ("saebench", "sae_probes"):
        top1 = probe_scores(oracle, data, 0, mode=mode, k=1)
        assert top1[single].min() > 0.99, mode  # latent f is feature f
        noise = probe_scores(_NoiseSAE(), data, 0, mode=mode, k=1)
        # 2 sigma of a balanced test accuracy / AUC on >= 2 x 10 samples per task, averaged.
        assert abs(noise.mean() - 0.5) < 0.06, mode
    assert evaluate_metric("sparse_probing_top1", oracle, data, 0) > evaluate_metric(
        "sparse_probing_top1", _NoiseSAE(), data, 0) + 0.2


def test_metrics_are_registered_seeded_and_refuse_a_too_narrow_sae(orthonormal_world):
    world = orthonormal_world
    data = AuditData(world, DATA)
    for name in [f"sparse_probing_top{k}" for k in SPARSE_PROBING_KS] + [
            f"sae_probes_top{k}" for k in SAE_PROBES_KS]:
        spec = get_metric(name)
        assert spec.kind == "probing" and "tasks" in spec.seed_changes
    narrow = _NoiseSAE()
    narrow.d_sae = 8
    with pytest.raises(ValueError, match="k=16 exceeds the SAE's d_sae=8"):
        evaluate_metric("sae_probes_top16", narrow, data, 0)
    sae = _NoiseSAE()
    a = evaluate_metric("sparse_probing_top2", sae, data, 3)
    assert a == evaluate_metric("sparse_probing_top2", sae, AuditData(world, DATA), 3)
    assert a != evaluate_metric("sparse_probing_top2", sae, data, 4)
