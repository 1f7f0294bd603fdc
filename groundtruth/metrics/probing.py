"""k-sparse probing of SAE latents on ground-truth feature labels.

The metric of sae-probes / SAEBench's sparse probing, on a world whose true features are
known, so every true feature f is a binary task "does f fire?" (features[:, f] > 0):

    1. Build a class-balanced dataset of world samples x (half with f firing, half without)
       and encode it: latents = sae.encode(x), [n, d_sae].
    2. Split it at random into train and test, each split class-balanced (stratified).
    3. Select the k latents with the largest |mean over positives - mean over negatives| on
       the train split (`select_latents`).
    4. Standardise those k latents with the train mean and std (a std of 0 becomes 1) and fit
       an L2-regularised logistic regression on the train split (`fit_logistic`, sklearn's
       `LogisticRegression`).
    5. Score the probe on the test split: ROC AUC of its decision function (`auc`, sklearn's
       `roc_auc_score`) and
       accuracy of predicting "fires" when the probability exceeds 0.5.

`k_sparse_probing` runs this for several tasks (chosen by `choose_probe_features`) and
reports the mean test AUC, in [0, 1], higher is better, 0.5 is chance, 1 is a perfect probe.
Steps 1-2 do not depend on the SAE: `sample_probing_data` draws them once (a `ProbingData`)
so that many SAEs can be probed on the same data, which is most of the saving. It is the one
sampler of probing sets: the audit's `AuditData.probe_sets` draws with it too.

References:
    Gao et al., "Scaling and evaluating sparse autoencoders" (2024),
        https://arxiv.org/abs/2406.04093
    Kantamneni et al., "Are Sparse Autoencoders Useful? A Case Study in Sparse Probing"
        (2025), https://arxiv.org/abs/2502.16681
    Karvonen et al., "SAEBench" (2025), https://arxiv.org/abs/2503.09532
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from threadpoolctl import ThreadpoolController

from synthetic_saes.arrays import readonly
from synthetic_saes.base_world import BaseWorld
from synthetic_saes.rng import derive_seed
from synthetic_saes.validation import require_seed

__all__ = [
    "ProbeResult",
    "ProbingScore",
    "select_latents",
    "fit_logistic",
    "auc",
    "k_sparse_probe",
    "choose_probe_features",
    "ProbeSet",
    "ProbingData",
    "sample_probing_data",
    "k_sparse_probing",
]

# Rows encoded per `sae.encode` call.
_ENCODE_BATCH = 4096
# One BLAS / OpenMP thread per fit: a probe is a tiny problem, and on a shared 2-core machine
# the default threads made each sklearn fit 16x slower (98 ms against 6 ms for 256 x 5).
_THREADS = ThreadpoolController()


# ---- results ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ProbeResult:
    """One k-sparse probe scored on held-out data.

    Attributes:
        accuracy: fraction of test examples classified correctly (predicted probability > 0.5
            means "positive"), in [0, 1].
        auc: test ROC AUC of the probe's decision function, in [0, 1] (0.5 chance, 1 best).
        selected: the k latents the probe uses, int64 [k], in decreasing order of their
            train-split class-mean difference.
        n_train, n_test: examples in each split.
    """

    accuracy: float
    auc: float
    selected: np.ndarray
    n_train: int
    n_test: int


@dataclass(frozen=True, eq=False)
class ProbingScore:
    """k-sparse probing of one SAE over several ground-truth feature tasks.

    Attributes:
        score: mean test AUC over tasks, in [0, 1] (0.5 chance, 1 best).
        per_task_auc: test AUC per task, float64 [n_tasks].
        per_task_accuracy: test accuracy per task, float64 [n_tasks].
        features: the true feature of each task, int64 [n_tasks].
        k: latents per probe.
        selected: the latents each task's probe used, int64 [n_tasks, k].
    """

    score: float
    per_task_auc: np.ndarray
    per_task_accuracy: np.ndarray
    features: np.ndarray
    k: int
    selected: np.ndarray


# ---- kernels ------------------------------------------------------------------------------


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC, sklearn's `roc_auc_score` (as SAEBench and sae-probes score probes).

        AUC = (sum of the ranks of the positives - n_pos (n_pos + 1) / 2) / (n_pos n_neg)

    with ranks 1..n of `scores` in increasing order, tied scores sharing their average rank:
    the probability that a random positive scores above a random negative, ties counting one
    half.

    Args:
        scores: finite real scores [n] (higher means "more positive").
        labels: [n], bool or 0/1; both classes must be present.

    Returns:
        A float in [0, 1]: 1 when every positive outscores every negative, 0.5 for chance.

    Raises:
        ValueError: on shape mismatch, non-finite scores, labels other than 0/1, or a
            missing class.

    Examples:
        >>> auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
        0.75
    """
    scores = _as_finite(scores, "scores", ndim=1)
    y = _as_labels(labels, "labels", n=scores.shape[0])
    n_pos = int(y.sum())
    _require_both_classes(n_pos, y.shape[0] - n_pos, "labels")
    return float(roc_auc_score(y, scores))


def select_latents(latents: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """The k latents whose mean activation differs most between the two classes.

    For each latent j, d_j = |mean of latents[i, j] over positives i - mean over negatives|
    (computed in float64). Latents are returned in decreasing order of d_j; exact ties are
    broken by the lower latent index (a stable sort), so the result is deterministic.

    Args:
        latents: finite [n, d_sae] latent activations.
        labels: [n], bool or 0/1; both classes must be present.
        k: number of latents, in [1, d_sae].

    Returns:
        int64 [k] latent indices.

    Raises:
        ValueError: on bad shapes, non-finite latents, a missing class, or k out of range.

    Examples:
        >>> latents = np.array([[1.0, 3.0, 0.0], [1.0, 3.0, 2.0], [0.0, 0.0, 2.0]])
        >>> select_latents(latents, np.array([True, True, False]), 2).tolist()  # ties 0, 2
        [1, 0]
    """
    latents = _as_finite(latents, "latents", ndim=2)
    y = _as_labels(labels, "labels", n=latents.shape[0])
    k = _require_k(k, latents.shape[1])
    return _select(latents, y, k)


def _select(latents: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    n_pos = int(y.sum())
    n_neg = y.shape[0] - n_pos
    _require_both_classes(n_pos, n_neg, "labels")
    pos = y.astype(np.float64)
    sum_pos = pos @ latents
    sum_all = latents.sum(axis=0, dtype=np.float64)
    diff = np.abs(sum_pos / n_pos - (sum_all - sum_pos) / n_neg)
    return np.argsort(-diff, kind="stable")[:k].astype(np.int64)


def fit_logistic(
    features: np.ndarray, labels: np.ndarray, *, l2: float = 1.0
) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression: sklearn's `LogisticRegression(C=1 / l2)`.

    Minimises, over weights w [k] and an unpenalised bias b, with s_i = x_i . w + b,

        L(w, b) = sum_i [log(1 + exp(s_i)) - y_i s_i] + 0.5 * l2 * ||w||^2,

    with sklearn's defaults otherwise (lbfgs, tol 1e-4) and max_iter=1000, the settings
    SAEBench's `train_sklearn_probe` uses. The objective is strictly convex, so the optimum is
    unique even on separable data; lbfgs stops within its tolerance of it (gradient entries
    ~1e-4 relative), deterministically.

    Args:
        features: finite [n, k] design matrix (standardise it first for a scale-free penalty).
        labels: [n], bool or 0/1; both classes must be present.
        l2: penalty strength, > 0.

    Returns:
        (weights float64 [k], bias float).

    Raises:
        ValueError: on bad shapes, non-finite features, a missing class, or l2 <= 0.
    """
    X = _as_finite(features, "features", ndim=2)
    y = _as_labels(labels, "labels", n=X.shape[0])
    l2 = _require_l2(l2)
    _require_both_classes(int(y.sum()), int((~y).sum()), "labels")
    return _fit(X, y, l2)


def _fit(X: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    model = LogisticRegression(C=1.0 / l2, max_iter=1000)
    with _THREADS.limit(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # as SAEBench: max_iter 1000
        model.fit(np.asarray(X, dtype=np.float64), y)
    return model.coef_[0].astype(np.float64), float(model.intercept_[0])


def k_sparse_probe(
    train_latents: np.ndarray,
    train_labels: np.ndarray,
    test_latents: np.ndarray,
    test_labels: np.ndarray,
    *,
    k: int,
    l2: float = 1.0,
) -> ProbeResult:
    """Fit a k-sparse probe on the train split and score it on the test split.

    Selects k latents on the train split (`select_latents`), standardises them with the train
    mean and std (a std of 0 becomes 1, so a constant latent contributes 0), fits
    `fit_logistic(z_train, train_labels, l2=l2)` and scores the test split: AUC of the decision
    function s = z_test . w + b (the same ranking as the predicted probability, without its
    float saturation), and accuracy of predicting "positive" when s > 0, i.e. when the
    predicted probability exceeds 0.5 (sklearn's `predict`).

    Args:
        train_latents: finite [n_train, d_sae].  train_labels: [n_train], bool or 0/1.
        test_latents: finite [n_test, d_sae].  test_labels: [n_test], bool or 0/1.
        k: latents per probe, in [1, d_sae].
        l2: logistic-regression penalty, > 0.

    Returns:
        A `ProbeResult`.

    Raises:
        ValueError: on bad shapes, non-finite latents, a split missing a class, k out of
            range or l2 <= 0.
    """
    train = _as_finite(train_latents, "train_latents", ndim=2)
    test = _as_finite(test_latents, "test_latents", ndim=2)
    if test.shape[1] != train.shape[1]:
        raise ValueError(
            f"test_latents have d_sae={test.shape[1]} but train_latents have "
            f"d_sae={train.shape[1]}"
        )
    y_train = _as_labels(train_labels, "train_labels", n=train.shape[0])
    y_test = _as_labels(test_labels, "test_labels", n=test.shape[0])
    k = _require_k(k, train.shape[1])
    l2 = _require_l2(l2)
    _require_both_classes(int(y_train.sum()), int((~y_train).sum()), "train_labels")
    _require_both_classes(int(y_test.sum()), int((~y_test).sum()), "test_labels")
    return _probe(train, y_train, test, y_test, k, l2)


def _probe(
    train: np.ndarray, y_train: np.ndarray, test: np.ndarray, y_test: np.ndarray, k: int,
    l2: float,
) -> ProbeResult:
    selected = _select(train, y_train, k)
    x_train = train[:, selected].astype(np.float64)
    x_test = test[:, selected].astype(np.float64)
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std == 0] = 1.0
    weights, bias = _fit((x_train - mean) / std, y_train, l2)
    scores = ((x_test - mean) / std) @ weights + bias
    accuracy = float(np.mean((scores > 0) == y_test))
    return ProbeResult(
        accuracy=accuracy,
        auc=auc(scores, y_test),
        selected=readonly(selected),
        n_train=int(train.shape[0]),
        n_test=int(test.shape[0]),
    )


# ---- on a world ---------------------------------------------------------------------------


def choose_probe_features(
    world: BaseWorld,
    *,
    n_tasks: int = 8,
    min_rate: float = 0.02,
    max_rate: float = 0.3,
    seed: int = 0,
    rates: np.ndarray | None = None,
) -> np.ndarray:
    """True features to probe: `n_tasks` of those whose firing rate is in [min_rate, max_rate].

    The candidates are the features f with min_rate <= rates[f] <= max_rate, where `rates`
    defaults to `world.firing_probabilities`; `n_tasks` of them are drawn uniformly without
    replacement by `np.random.default_rng(derive_seed(seed, "probe_features"))` and returned
    sorted.

    Note: `world.firing_probabilities` are the sampler's probabilities after hierarchy
    compensation, which for a child feature are well above the rate at which it fires (a
    child fires only with its parent). Pass `rates` (e.g. firing rates measured on a sample,
    `(world.sample(n, seed=s).features > 0).mean(0)`) to filter on observed rates instead.

    Args:
        world: the world.
        n_tasks: number of features, >= 1.
        min_rate, max_rate: inclusive rate range, 0 <= min_rate <= max_rate <= 1.
        seed: non-negative int.
        rates: optional per-feature rates, [n_features].

    Returns:
        int64 [n_tasks] feature indices, increasing.

    Raises:
        ValueError: on bad arguments, or when fewer than n_tasks features qualify (the
            message says how many do).
    """
    n_tasks = _require_positive_int("n_tasks", n_tasks)
    seed = require_seed(seed)
    for name, value in (("min_rate", min_rate), ("max_rate", max_rate)):
        if not (isinstance(value, (int, float, np.floating, np.integer)) and 0 <= value <= 1):
            raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    if min_rate > max_rate:
        raise ValueError(f"min_rate ({min_rate}) must be <= max_rate ({max_rate})")
    if rates is None:
        rates = world.firing_probabilities
    rates = _as_finite(rates, "rates", ndim=1)
    if rates.shape[0] != world.num_features:
        raise ValueError(
            f"rates must have shape ({world.num_features},), got {rates.shape}"
        )
    candidates = np.flatnonzero((rates >= min_rate) & (rates <= max_rate))
    if candidates.size < n_tasks:
        raise ValueError(
            f"only {candidates.size} of {world.num_features} features have a firing rate in "
            f"[{min_rate}, {max_rate}], fewer than n_tasks={n_tasks}; widen the range or "
            "ask for fewer tasks"
        )
    rng = np.random.default_rng(derive_seed(seed, "probe_features"))
    chosen = rng.choice(candidates, size=n_tasks, replace=False)
    return np.sort(chosen).astype(np.int64)


class ProbeSet(NamedTuple):
    """One probing task: x [n, d_in] and labels bool [n] for train and test."""

    feature: int
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


@dataclass(frozen=True, eq=False)
class ProbingData:
    """The world samples and splits of k-sparse probing tasks; independent of any SAE.

    Draw it once with `sample_probing_data` and pass it to `k_sparse_probing(data=...)` for
    every SAE probed on the same world, tasks and seed: the SAEs then share one draw, and
    each call only encodes and fits. The audit draws its probe sets this way too
    (`AuditData.probe_sets`).

    Attributes:
        hidden: the world samples some task uses, each stored once, [n_kept, d_in].
        train_rows: rows of `hidden` in each task's train split, int64 [n_tasks, n_train];
            the first n_train // 2 of each row are positives, the rest negatives.
        test_rows: the same for the test split, int64 [n_tasks, n_test]; the first
            n_test // 2 are positives.
        features: the true feature of each task, int64 [n_tasks].
        n_train, n_test: examples per task in each split.
        seed: the seed it was drawn with.
        n_drawn: world samples drawn (the pool).
    """

    hidden: np.ndarray
    train_rows: np.ndarray
    test_rows: np.ndarray
    features: np.ndarray
    n_train: int
    n_test: int
    seed: int
    n_drawn: int

    @property
    def d_in(self) -> int:
        return int(self.hidden.shape[1])

    @property
    def train_labels(self) -> np.ndarray:
        """bool [n_train]: True for the positives (the first n_train // 2 train rows)."""
        return np.arange(self.n_train) < self.n_train // 2

    @property
    def test_labels(self) -> np.ndarray:
        """bool [n_test]: True for the positives (the first n_test // 2 test rows)."""
        return np.arange(self.n_test) < self.n_test // 2

    def probe_sets(self) -> list[ProbeSet]:
        """Every task as a `ProbeSet` (its samples copied out of `hidden`)."""
        return [ProbeSet(int(f), self.hidden[self.train_rows[t]], self.train_labels,
                         self.hidden[self.test_rows[t]], self.test_labels)
                for t, f in enumerate(self.features)]


def sample_probing_data(
    world: BaseWorld,
    *,
    features: np.ndarray,
    n_train: int = 256,
    n_test: int = 256,
    seed: int = 0,
    pool: int = 16_384,
) -> ProbingData:
    """Draw the class-balanced datasets of the tasks "does true feature f fire?".

    1. `pool` world samples are drawn once, `world.sample(pool, seed=derive_seed(seed,
       "probe-pool"))`, and shared by all tasks.
    2. With P = n_train // 2 + n_test // 2 positives (features[:, f] > 0) and
       N = (n_train + n_test) - P negatives per task, and
       `rng = np.random.default_rng(derive_seed(seed, "probe-split"))`, each task in order
       draws P of the pool's positives and then N of its negatives without replacement
       (`rng.choice`); the train split takes the first n_train // 2 positives and
       n_train - n_train // 2 negatives, the test split the rest.

    The seed changes both the sample draw and the split; the same arguments give the same
    data.

    Args:
        world: the world.
        features: true-feature indices of the tasks, distinct, int [n_tasks].
        n_train, n_test: examples per task in each split, each >= 2.
        seed: non-negative int.
        pool: world samples drawn, >= 1; every task must find P positives and N negatives in
            them.

    Returns:
        A `ProbingData`.

    Raises:
        ValueError: on bad arguments, or a feature that fires too rarely (or too often) to
            fill its classes from the pool (the message lists the counts).
    """
    features = _as_feature_indices(features, world.num_features)
    n_train = _require_split_size("n_train", n_train)
    n_test = _require_split_size("n_test", n_test)
    seed = require_seed(seed)
    pool = _require_positive_int("pool", pool)

    train_pos, test_pos = n_train // 2, n_test // 2
    train_neg, test_neg = n_train - train_pos, n_test - test_pos
    need_pos, need_neg = train_pos + test_pos, train_neg + test_neg
    sample = world.sample(pool, seed=derive_seed(seed, "probe-pool"))
    fires = sample.features[:, features] > 0  # [pool, n_tasks]
    short = [f"feature {int(f)}: {int(p)}/{need_pos} positives, {int(pool - p)}/{need_neg} "
             "negatives" for f, p in zip(features, fires.sum(axis=0))
             if p < need_pos or pool - p < need_neg]
    if short:
        raise ValueError(
            f"in a pool of {pool} world samples some tasks lack examples: {'; '.join(short)}. "
            "Probe features with firing rates further from 0 and 1, ask for fewer examples, "
            "or draw a larger pool")
    rng = np.random.default_rng(derive_seed(seed, "probe-split"))
    train_rows = np.empty((features.size, n_train), dtype=np.int64)
    test_rows = np.empty((features.size, n_test), dtype=np.int64)
    for t in range(features.size):
        pos = rng.choice(np.flatnonzero(fires[:, t]), need_pos, replace=False)
        neg = rng.choice(np.flatnonzero(~fires[:, t]), need_neg, replace=False)
        train_rows[t] = np.concatenate([pos[:train_pos], neg[:train_neg]])
        test_rows[t] = np.concatenate([pos[train_pos:], neg[train_neg:]])
    kept, index = np.unique(np.concatenate([train_rows, test_rows], axis=1), return_inverse=True)
    index = index.reshape(features.size, n_train + n_test)
    return ProbingData(
        hidden=readonly(sample.hidden[kept]),
        train_rows=readonly(index[:, :n_train]),
        test_rows=readonly(index[:, n_train:]),
        features=readonly(features),
        n_train=n_train,
        n_test=n_test,
        seed=seed,
        n_drawn=pool,
    )


def k_sparse_probing(
    sae: Any,
    world: BaseWorld,
    *,
    features: np.ndarray,
    k: int = 1,
    n_train: int = 256,
    n_test: int = 256,
    seed: int = 0,
    l2: float = 1.0,
    pool: int = 16_384,
    data: ProbingData | None = None,
) -> ProbingScore:
    """k-sparse probing of `sae` on the tasks "does true feature f fire?", f in `features`.

    Draws the tasks' data with `sample_probing_data(world, features=features,
    n_train=n_train, n_test=n_test, seed=seed, pool=pool)` (or takes `data`,
    drawn that way beforehand, which gives the identical result), encodes each sample once
    with `sae.encode`, and runs `k_sparse_probe(..., k=k, l2=l2)` on each task's train/test
    split. The score is the mean test AUC over tasks.

    The seed is the metric's own randomness: changing it changes the sample draw and the
    train/test split (and nothing else); the same seed gives the same score. Use it for
    reseed-noise studies. To probe many SAEs, draw `data` once and pass it to every call:
    world sampling is most of the cost.

    Args:
        sae: anything with `.d_in` and `.encode(x [n, d_in]) -> latents [n, d_sae]` (e.g. an
            `SAEParams`).
        world: the world whose samples are encoded.
        features: true-feature indices of the tasks, distinct, int [n_tasks] (see
            `choose_probe_features`).
        k: latents per probe, in [1, d_sae].
        n_train, n_test: examples per task in each split, each >= 2.
        seed: non-negative int.
        l2: logistic-regression penalty, > 0.
        pool: world samples drawn to fill the tasks' classes, >= 1.
        data: optional pre-drawn `ProbingData`; it must have been drawn from this world with
            these features, n_train, n_test and seed.

    Returns:
        A `ProbingScore`; `score` is the mean test AUC, in [0, 1], higher is better.

    Raises:
        ValueError: on bad arguments, an SAE whose d_in differs from the world's, latents of
            the wrong shape or non-finite, `data` drawn with other settings, or a feature too
            rare (or too common) to fill its classes from the pool.
    """
    if not callable(getattr(sae, "encode", None)) or not hasattr(sae, "d_in"):
        raise ValueError(f"sae must have .d_in and .encode(x), got a {type(sae).__name__}")
    world.check_d_in(sae.d_in)
    k = _require_positive_int("k", k)
    d_sae = getattr(sae, "d_sae", None)
    if d_sae is not None:
        _require_k(k, int(d_sae))
    l2 = _require_l2(l2)
    if data is None:
        data = sample_probing_data(
            world, features=features, n_train=n_train, n_test=n_test, seed=seed,
            pool=pool,
        )
    else:
        _check_data(data, world, features, n_train, n_test, seed, pool)

    latents = _encode(sae, data.hidden, k)
    y_train, y_test = data.train_labels, data.test_labels
    n_tasks = data.features.size
    aucs = np.empty(n_tasks)
    accuracies = np.empty(n_tasks)
    selected = np.empty((n_tasks, k), dtype=np.int64)
    for t in range(n_tasks):
        result = _probe(
            latents[data.train_rows[t]], y_train, latents[data.test_rows[t]], y_test, k, l2
        )
        aucs[t], accuracies[t], selected[t] = result.auc, result.accuracy, result.selected
    return ProbingScore(
        score=float(aucs.mean()),
        per_task_auc=readonly(aucs),
        per_task_accuracy=readonly(accuracies),
        features=data.features,
        k=k,
        selected=readonly(selected),
    )


def _check_data(
    data: Any, world: BaseWorld, features: Any, n_train: Any, n_test: Any, seed: Any, pool: Any
) -> None:
    if not isinstance(data, ProbingData):
        raise ValueError(f"data must be a ProbingData, got a {type(data).__name__}")
    world.check_d_in(data.d_in, what="data")
    features = _as_feature_indices(features, world.num_features)
    drawn = {"n_train": data.n_train, "n_test": data.n_test, "seed": data.seed,
             "pool": data.n_drawn}
    asked = {"n_train": n_train, "n_test": n_test, "seed": seed, "pool": pool}
    for name in drawn:
        if drawn[name] != asked[name]:
            raise ValueError(
                f"data was drawn with {name}={drawn[name]} but {name}={asked[name]} was asked"
            )
    if not np.array_equal(data.features, features):
        raise ValueError(
            f"data was drawn for features {data.features.tolist()} but features "
            f"{features.tolist()} were asked"
        )


def _encode(sae: Any, hidden: np.ndarray, k: int) -> np.ndarray:
    chunks = []
    for start in range(0, hidden.shape[0], _ENCODE_BATCH):
        x = hidden[start:start + _ENCODE_BATCH]
        latents = np.asarray(sae.encode(x))
        if latents.ndim != 2 or latents.shape[0] != x.shape[0]:
            raise ValueError(
                f"sae.encode returned shape {latents.shape} for input {x.shape}; expected "
                f"[{x.shape[0]}, d_sae]"
            )
        chunks.append(latents)
    latents = np.concatenate(chunks, axis=0)
    if not np.isfinite(latents).all():
        raise ValueError("sae.encode returned NaN or Inf")
    _require_k(k, latents.shape[1])
    return latents


# ---- validation ---------------------------------------------------------------------------


def _as_finite(value: Any, name: str, *, ndim: int) -> np.ndarray:
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:  # pragma: no cover - ragged input
        raise ValueError(f"{name} is not a numeric array: {error}") from error
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} must be a real numeric array, got dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise ValueError(f"{name} must be real, got dtype {array.dtype}")
    if array.ndim != ndim:
        dims = "[n]" if ndim == 1 else "[n, d]"
        raise ValueError(f"{name} must be {dims} ({ndim}-D), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return array


def _as_labels(value: Any, name: str, *, n: int) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 1 or array.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), got {array.shape}")
    if array.dtype == bool:
        return array
    if not np.issubdtype(array.dtype, np.number) or not np.isin(array, (0, 1)).all():
        raise ValueError(f"{name} must be bool or 0/1, got values {np.unique(array)[:5]}")
    return array.astype(bool)


def _require_both_classes(n_pos: int, n_neg: int, name: str) -> None:
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"{name} must contain both classes, got {n_pos} positives and {n_neg} negatives"
        )


def _require_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _require_k(k: Any, d_sae: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= d_sae:
        raise ValueError(f"k must be an int in [1, d_sae={d_sae}], got {k!r}")
    return int(k)


def _require_split_size(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 2:
        raise ValueError(f"{name} must be an int >= 2 (one example of each class), got {value!r}")
    return int(value)


def _require_l2(l2: Any) -> float:
    if isinstance(l2, bool) or not isinstance(l2, (int, float, np.integer, np.floating)):
        raise ValueError(f"l2 must be a positive number, got {l2!r}")
    if not (np.isfinite(l2) and l2 > 0):
        raise ValueError(f"l2 must be a positive number, got {l2!r}")
    return float(l2)


def _as_feature_indices(features: Any, num_features: int) -> np.ndarray:
    array = np.asarray(features)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"features must be a non-empty 1-D int array, got shape {array.shape}")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"features must be integer indices, got dtype {array.dtype}")
    if array.min() < 0 or array.max() >= num_features:
        raise ValueError(
            f"features must be in [0, {num_features}), got min {array.min()}, max {array.max()}"
        )
    if np.unique(array).size != array.size:
        raise ValueError("features must be distinct (a feature appears twice)")
    return array.astype(np.int64)
