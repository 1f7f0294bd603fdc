"""Sparse probing in two modes: SAEBench's and the sae-probes package's.

Both probe the k latents that best separate a task's classes on its train split and score the
probe on its test split; they differ in how latents are ranked, how the probe is fitted and
what is reported.

SAEBench mode (`sae_bench/evals/sparse_probing/probe_training.py`, `get_top_k_mean_diff_mask`,
`apply_topk_mask_reduce_dim`, `train_sklearn_probe`; SAEBench commit 8042bb38):

    d_j = |mean_{i: y_i = 1} z_ij - mean_{i: y_i = 0} z_ij|       (raw latents z, float32)
    S   = the k latents of largest d_j, kept in increasing index order (SAEBench's mask)
    probe = sklearn LogisticRegression(penalty="l2", C=1, max_iter=1000) on z[:, S], no scaling
    score = test accuracy of probe.predict, in [0, 1] (0.5 chance on balanced splits).

sae-probes mode (`sae_probes.run_sae_evals.get_sorted_indices` with `mean_act_normalization`,
`sae_probes.utils_training.find_best_reg` with penalty "l1"; sae-probes 0.4.2, as SAEBench's
`sparse_probing_sae_probes` eval calls it with seed 42):

    m_j = sum_i |z_ij| / (#{i: z_ij != 0} + 1e-6),   z'_ij = z_ij / (m_j + 1e-6)
    S   = the k latents of largest |mean_{y=1} z'_j - mean_{y=0} z'_j| (rank order)
    C*  = argmax over C in logspace(5, -5, 10) of the mean validation AUC of
          LogisticRegression(C, L1, solver saga, random_state=seed, max_iter=1000), where the
          validation splits are: leave-2-out for n <= 12, stratified 6-fold (shuffled, seed) for
          n < 128, else one split holding out the last min(0.2 n, 100) train rows (folds whose
          validation lacks a class are dropped); first C wins ties
    probe = the same model at C*, fitted on the train split permuted by RandomState(seed)
    score = test ROC AUC of probe.predict_proba, in [0, 1] (0.5 chance, 1 best).

sklearn 1.8 deprecated `penalty="l1"`; `l1_ratio=1` is the same model (identical coefficients,
checked in the tests) without the warning.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import LeavePOut, StratifiedKFold
from threadpoolctl import ThreadpoolController

__all__ = ["SPARSE_PROBES_SEED", "REG_GRID", "ProbeScore", "top_k_mean_diff",
           "mean_act_normalized", "sorted_by_normalized_mean_diff", "saebench_probe",
           "validation_splits", "sae_probes_probe"]

SPARSE_PROBES_SEED = 42  # SAEBench's random_seed, passed to sae-probes as its seed
REG_GRID = np.logspace(5, -5, 10)  # sae-probes' Cs
# One BLAS / OpenMP thread per fit: tiny problems, which default threads slow ~16x on a busy
# 2-core machine (see groundtruth.metrics.probing).
_THREADS = ThreadpoolController()
_N_WORKERS = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                 else (os.cpu_count() or 1))


class ProbeScore(NamedTuple):
    """One sparse probe on one task.

    Attributes:
        accuracy: test accuracy of the probe's predictions, in [0, 1].
        auc: test ROC AUC of its predicted probabilities, in [0, 1].
        selected: int64 [k], the latents it uses.
        C: the inverse regularisation strength it was fitted with.
    """

    accuracy: float
    auc: float
    selected: np.ndarray
    C: float


def _check(train: np.ndarray, y_train: np.ndarray, test: np.ndarray, y_test: np.ndarray,
           k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    train, test = np.asarray(train), np.asarray(test)
    if train.ndim != 2 or test.ndim != 2 or train.shape[1] != test.shape[1]:
        raise ValueError(f"latents must be [n, d_sae] with one d_sae, got train {train.shape} "
                         f"and test {test.shape}")
    d_sae = train.shape[1]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= d_sae:
        raise ValueError(f"k must be an int in [1, d_sae={d_sae}], got {k!r}")
    if not (np.isfinite(train).all() and np.isfinite(test).all()):
        raise ValueError("latents contain NaN or Inf")
    out = []
    for name, y, x in (("train", y_train, train), ("test", y_test, test)):
        y = np.asarray(y)
        if y.shape != (x.shape[0],) or not np.isin(y, (0, 1)).all():
            raise ValueError(f"{name} labels must be 0/1 of shape ({x.shape[0]},), got "
                             f"shape {y.shape}")
        n_pos = int(y.sum())
        if n_pos < 2 or y.size - n_pos < 2:
            raise ValueError(f"the {name} split needs at least 2 samples of each class, got "
                             f"{n_pos} positives and {y.size - n_pos} negatives")
        out.append(y.astype(np.int64))
    return train.astype(np.float32), out[0], test.astype(np.float32), out[1]


def top_k_mean_diff(latents: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """SAEBench's latent choice: the k largest |class-mean difference|, in index order.

    Args:
        latents: float [n, d_sae].  labels: 0/1 [n].  k: in [1, d_sae].

    Returns:
        int64 [k], increasing (the columns `apply_topk_mask_reduce_dim` keeps). Exact ties at
        the k-th place go to the lower index (SAEBench's torch.argsort leaves them unordered).

    Examples:
        >>> z = np.array([[0.0, 3.0, 1.0], [0.0, 2.0, 1.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
        >>> top_k_mean_diff(z, np.array([1, 1, 0, 0]), 2).tolist()  # diffs 1, 2.5, 1
        [0, 1]
    """
    z = np.asarray(latents, dtype=np.float32)
    y = np.asarray(labels) == 1
    diff = np.abs(z[y].mean(axis=0) - z[~y].mean(axis=0))
    return np.sort(np.argsort(-diff, kind="stable")[:k]).astype(np.int64)


def mean_act_normalized(latents: np.ndarray) -> np.ndarray:
    """sae-probes' `mean_act_normalization`: each latent over its mean |activation| when active.

        z'_ij = z_ij / (sum_i |z_ij| / (#{i: z_ij != 0} + 1e-6) + 1e-6)

    Args:
        latents: float [n, d_sae].

    Returns:
        float32 [n, d_sae].
    """
    z = np.asarray(latents, dtype=np.float32)
    sums = np.abs(z).sum(axis=0)
    counts = (z != 0).sum(axis=0).astype(np.float32)
    means = sums / (counts + np.float32(1e-6))
    return z / (means + np.float32(1e-6))


def sorted_by_normalized_mean_diff(latents: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """sae-probes' `get_sorted_indices(X, y, mean_act_normalization)`: all latents by
    decreasing |class-mean difference| of the normalised latents (ties by lower index).

    Returns:
        int64 [d_sae].
    """
    z = mean_act_normalized(latents)
    y = np.asarray(labels) == 1
    diff = z[y].mean(axis=0) - z[~y].mean(axis=0)
    return np.argsort(-np.abs(diff), kind="stable").astype(np.int64)


def saebench_probe(train_latents: np.ndarray, train_labels: np.ndarray,
                   test_latents: np.ndarray, test_labels: np.ndarray, *, k: int) -> ProbeScore:
    """SAEBench's top-k sparse probe (see the module docstring); `accuracy` is its score.

    Args:
        train_latents: [n_train, d_sae].  train_labels: 0/1 or bool [n_train].
        test_latents: [n_test, d_sae].  test_labels: 0/1 or bool [n_test].
        k: latents, in [1, d_sae].

    Returns:
        A `ProbeScore` (`auc` from predict_proba as well, for reference).

    Raises:
        ValueError: bad shapes, non-finite latents, k out of range, a split with fewer than 2
            samples of a class.
    """
    train, y_train, test, y_test = _check(train_latents, train_labels, test_latents,
                                          test_labels, k)
    selected = top_k_mean_diff(train, y_train, k)
    probe = LogisticRegression(C=1.0, max_iter=1000)
    with _THREADS.limit(limits=1), warnings.catch_warnings():
        # SAEBench raised max_iter to 1000 for these warnings and otherwise lets them pass.
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe.fit(train[:, selected], y_train)
    accuracy = float(accuracy_score(y_test, probe.predict(test[:, selected])))
    auc = float(roc_auc_score(y_test, probe.predict_proba(test[:, selected])[:, 1]))
    return ProbeScore(accuracy, auc, selected, 1.0)


def validation_splits(y_train: np.ndarray, *, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """sae-probes' `get_cv` + `get_splits`: the (train, validation) row splits of a train set.

    n <= 12: leave-2-out; n < 128: StratifiedKFold(6, shuffle, seed); otherwise one split whose
    validation is the last min(int(0.2 n), 100) rows. Splits from the first two whose
    validation holds one class only are dropped (the fixed split is kept as is).
    """
    n = y_train.shape[0]
    if n <= 12:
        cv = LeavePOut(2)
    elif n < 128:
        cv = StratifiedKFold(n_splits=6, shuffle=True, random_state=seed)
    else:
        val = min(int(0.2 * n), 100)
        return [(np.arange(n - val), np.arange(n - val, n))]
    dummy = np.zeros((n, 1))
    return [(tr, va) for tr, va in cv.split(dummy, y_train) if len(np.unique(y_train[va])) == 2]


def _l1_model(C: float, seed: int) -> LogisticRegression:
    return LogisticRegression(C=C, l1_ratio=1.0, solver="saga", random_state=seed,
                              max_iter=1000)


def sae_probes_probe(train_latents: np.ndarray, train_labels: np.ndarray,
                     test_latents: np.ndarray, test_labels: np.ndarray, *, k: int,
                     seed: int = SPARSE_PROBES_SEED) -> ProbeScore:
    """sae-probes' top-k L1 probe with its regularisation search; `auc` is its score.

    Args:
        train_latents: [n_train, d_sae].  train_labels: 0/1 or bool [n_train].
        test_latents: [n_test, d_sae].  test_labels: 0/1 or bool [n_test].
        k: latents, in [1, d_sae].
        seed: sae-probes' seed (its cross-validation shuffle, saga's and the final permutation).

    Returns:
        A `ProbeScore` with the chosen C.

    Raises:
        ValueError: as `saebench_probe`; also when the fixed validation split (n >= 128) lacks
            a class (shuffle the train rows first: sae-probes' roc_auc_score would fail).
    """
    train, y_train, test, y_test = _check(train_latents, train_labels, test_latents,
                                          test_labels, k)
    selected = sorted_by_normalized_mean_diff(train, y_train)[:k]
    x_train, x_test = train[:, selected], test[:, selected]
    n = x_train.shape[0]
    with _THREADS.limit(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        best_C = None
        if n > 3:
            splits = validation_splits(y_train, seed=seed)
            for tr, va in splits:
                if len(np.unique(y_train[va])) < 2:
                    raise ValueError("the validation rows (the last of the train split) hold "
                                     "one class; shuffle the train split")
            def fold_auc(job: tuple[float, int]) -> float:
                C, f = job
                tr, va = splits[f]
                if len(np.unique(y_train[tr])) < 2:
                    return 0.5  # sae-probes' neutral score
                model = _l1_model(C, seed).fit(x_train[tr], y_train[tr])
                return roc_auc_score(y_train[va], model.predict_proba(x_train[va])[:, 1])

            # The fits are independent and saga runs without the GIL: one thread per core
            # gives the very same numbers ~2x faster on 2 cores (measured: 10 fits, 1.95x).
            jobs = [(C, f) for C in REG_GRID for f in range(len(splits))]
            with ThreadPoolExecutor(_N_WORKERS) as pool:
                aucs = np.array(list(pool.map(fold_auc, jobs))).reshape(len(REG_GRID), -1)
            scores = aucs.mean(axis=1)
            best_C = float(REG_GRID[int(np.argmax(scores))])
        model = _l1_model(best_C if best_C is not None else 1.0, seed)
        order = np.random.RandomState(seed).permutation(n)
        model.fit(x_train[order], y_train[order])
    accuracy = float(accuracy_score(y_test, model.predict(x_test)))
    auc = float(roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]))
    return ProbeScore(accuracy, auc, selected.astype(np.int64), best_C if best_C else 1.0)
