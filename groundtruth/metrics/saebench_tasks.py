"""SAEBench's TPP and SCR tasks built on a ground-truth world's hierarchy.

SAEBench draws its tasks from labelled text (bias-in-bios professions x gender, Amazon
categories x rating); the reference audit of those benchmarks on synthetic data (Chanin 2026,
decoderesearch/saebench-reliability-audit @ 28dd6c71, `saebench_audit/synthetic/data_gen.py`,
`eval_tpp.py`, `eval_scr.py`) builds them from a world's feature hierarchy, and so do we:

    pool   one seeded draw of `pool_samples` world samples: activations and which features fire.
    TPP    a task is a parent whose children are mutually exclusive; each child is a class (the
           samples where it fires), classes with fewer than `tpp_min_per_class` samples are
           dropped and a task needs `tpp_min_classes` (2) classes left. Classes are cut to the same size,
           min(`tpp_samples_per_class`, smallest class), and split `train_fraction` / rest,
           as the audit's `_build_class_acts` / `_split_train_test` do. (The audit keeps only
           depth-2 parents with exactly four children, a property of SynthSAEBench-16k; our
           worlds have other shapes, so any exclusive parent with two usable children counts.)
    SCR    a task is two features T and S from different root trees, each firing at a rate in
           [`scr_min_rate`, `scr_max_rate`] (the audit's single "in" concepts), with at least
           `scr_min_per_cell` samples in each of the four (T, S) cells. The six classes are
           SAEBench's `get_spurious_corr_data` quadrants with q samples per quadrant:
               S = 11 + 01, S_neg = 10 + 00      (S balanced over T)
               T = 11 + 10, T_neg = 01 + 00      (T balanced over S)
               bias = 11 (2q), bias_neg = 00 (2q) (T and S coincide: the biased probe's data)
           Each cell is shuffled and split into train / test rows before the quadrants are
           taken (SAEBench has separate train / test datasets); q = min(`scr_samples_per_quadrant`,
           n11 // 2, n00 // 2, n01, n10), split `train_fraction` / rest. (The audit conditions
           S and T on the natural distribution; SAEBench's balanced quadrants are followed here.)

Which tasks are used when more are eligible than `tpp_max_tasks` / `scr_max_tasks` is a seeded
draw; the seed also draws the pool and the splits.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from synthetic_saes.base_world import BaseWorld
from synthetic_saes.hierarchy import FeatureHierarchy
from synthetic_saes.rng import derive_seed
from synthetic_saes.validation import reject_unknown_keys, require_positive_int

__all__ = ["N_VALUES", "SaeBenchTaskConfig", "TaskPool", "TppTask", "ScrTask", "draw_pool",
           "choose_tpp_tasks", "tpp_class_rows", "choose_scr_tasks", "scr_class_rows",
           "SCR_CLASSES", "DEFAULT_TASKS", "shared", "task_pool"]

N_VALUES = (2, 5, 10, 20, 50, 100, 500)
"""SAEBench's numbers of ablated latents (`ScrAndTppEvalConfig.n_values`)."""

SCR_CLASSES = ("S", "S_neg", "T", "T_neg", "bias", "bias_neg")


@dataclass(frozen=True, kw_only=True)
class SaeBenchTaskConfig:
    """Sizes of the TPP / SCR tasks.

    Attributes:
        pool_samples: world samples drawn per seed (the tasks' rows come from them).
        train_fraction: share of each class's rows used to train probes (the audit's 0.8).
        tpp_max_tasks: at most this many sibling groups (a seeded draw among the eligible).
        tpp_samples_per_class: class size cap (the audit's 2000).
        tpp_min_per_class: smallest usable class (the audit's 25).
        tpp_min_classes: fewest usable classes of a task (the audit's 2). With two classes
            each probe is the other's complement: ablating one class's latent also flips the
            other probe's negatives, so even the oracle scores TPP ~0 on such a task; 3 or more
            (SAEBench uses 5 classes, the audit's groups 4) makes TPP informative.
        scr_max_tasks: at most this many (T, S) pairs.
        scr_samples_per_quadrant: quadrant size cap, train + test (SAEBench: 1000 + 250).
        scr_min_per_cell: smallest usable (T, S) cell (the audit's 100).
        scr_min_rate, scr_max_rate: firing-rate range of T and S (the audit's 0.03, 0.30).
    """

    pool_samples: int = 16384
    train_fraction: float = 0.8
    tpp_max_tasks: int = 8
    tpp_samples_per_class: int = 2000
    tpp_min_per_class: int = 25
    tpp_min_classes: int = 2
    scr_max_tasks: int = 4
    scr_samples_per_quadrant: int = 1250
    scr_min_per_cell: int = 100
    scr_min_rate: float = 0.03
    scr_max_rate: float = 0.30

    def __post_init__(self) -> None:
        for name in ("pool_samples", "tpp_max_tasks", "tpp_samples_per_class",
                     "tpp_min_per_class", "scr_max_tasks", "scr_samples_per_quadrant",
                     "scr_min_per_cell"):
            require_positive_int(name, getattr(self, name))
        if not 0 < self.train_fraction < 1:
            raise ValueError(f"train_fraction must be in (0, 1), got {self.train_fraction}")
        if self.tpp_min_per_class < 5:
            raise ValueError("tpp_min_per_class must be >= 5 (a class needs train and test "
                             f"rows), got {self.tpp_min_per_class}")
        if self.tpp_min_classes < 2:
            raise ValueError(f"tpp_min_classes must be >= 2, got {self.tpp_min_classes}")
        if self.scr_min_per_cell < 10:
            raise ValueError(f"scr_min_per_cell must be >= 10, got {self.scr_min_per_cell}")
        if not 0 <= self.scr_min_rate < self.scr_max_rate <= 1:
            raise ValueError("need 0 <= scr_min_rate < scr_max_rate <= 1, got "
                             f"{self.scr_min_rate}, {self.scr_max_rate}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SaeBenchTaskConfig:
        reject_unknown_keys(cls, data)
        return cls(**data)


@dataclass(frozen=True, eq=False)
class TaskPool:
    """World samples the tasks are cut from.

    Attributes:
        hidden: activations, float32 [n_samples, d_in].
        fires: which true features fire, bool [n_samples, n_features].
    """

    hidden: np.ndarray
    fires: np.ndarray


@dataclass(frozen=True)
class TppTask:
    """A sibling group: `classes` are mutually exclusive children of `parent`."""

    parent: int
    classes: tuple[int, ...]


@dataclass(frozen=True)
class ScrTask:
    """Target feature T and spurious feature S (different root trees) with the pool's counts
    of the four cells, keyed "11" (T and S fire), "10" (T only), "01" (S only), "00"."""

    t: int
    s: int
    cells: tuple[tuple[str, int], ...]


def draw_pool(world: BaseWorld, n_samples: int, *, seed: int) -> TaskPool:
    """`n_samples` world samples (same seed, same pool), keeping only which features fire."""
    require_positive_int("n_samples", n_samples)
    hidden = np.empty((n_samples, world.d_in), dtype=np.float32)
    fires = np.empty((n_samples, world.num_features), dtype=bool)
    start = 0
    for batch in world.stream(min(4096, n_samples), seed=seed):
        stop = min(start + batch.hidden.shape[0], n_samples)
        hidden[start:stop] = batch.hidden[: stop - start]
        fires[start:stop] = batch.features[: stop - start] > 0
        start = stop
        if start == n_samples:
            break
    return TaskPool(hidden, fires)


def choose_tpp_tasks(hierarchy: FeatureHierarchy, fires: np.ndarray,
                     config: SaeBenchTaskConfig, *, rng: np.random.Generator) -> list[TppTask]:
    """The TPP tasks: up to `tpp_max_tasks` usable sibling groups, a seeded draw.

    Raises:
        ValueError: the hierarchy has no mutually exclusive sibling group, or none with two
            classes of at least `tpp_min_per_class` samples in the pool (TPP is not
            applicable to this world).
    """
    parents = hierarchy.exclusive_parents()
    if not parents:
        raise ValueError("TPP is not applicable: the world has no mutually exclusive sibling "
                         "groups")
    counts = fires.sum(axis=0)
    tasks = []
    for parent in parents:
        usable = tuple(c for c in hierarchy.children[parent]
                       if counts[c] >= config.tpp_min_per_class)
        if len(usable) >= config.tpp_min_classes:
            tasks.append(TppTask(parent, usable))
    if not tasks:
        raise ValueError(f"TPP is not applicable: no sibling group has {config.tpp_min_classes} "
                         f"classes with >= {config.tpp_min_per_class} samples in a pool of "
                         f"{fires.shape[0]}")
    order = rng.permutation(len(tasks))[: config.tpp_max_tasks]
    return [tasks[i] for i in sorted(order)]


def tpp_class_rows(pool: TaskPool, task: TppTask, config: SaeBenchTaskConfig
                   ) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Train and test activations of each class of a TPP task (class feature -> [n, d_in]).

    Every class keeps its first min(`tpp_samples_per_class`, smallest class) pool rows (the
    pool is already a random draw), the first `train_fraction` of them for training.
    """
    rows = {c: np.flatnonzero(pool.fires[:, c]) for c in task.classes}
    size = min(config.tpp_samples_per_class, min(r.size for r in rows.values()))
    n_train = int(size * config.train_fraction)
    train = {c: pool.hidden[r[:n_train]] for c, r in rows.items()}
    test = {c: pool.hidden[r[n_train:size]] for c, r in rows.items()}
    return train, test


def _roots(hierarchy: FeatureHierarchy) -> np.ndarray:
    """Root of each feature's tree, -1 for features outside the hierarchy."""
    roots = np.full(hierarchy.num_features, -1, dtype=np.int64)
    for k in range(hierarchy.num_features):
        if hierarchy.parent[k] >= 0 or hierarchy.children[k]:
            chain = hierarchy.ancestors(k)
            roots[k] = chain[-1] if chain else k
    return roots


def _cells(n: int, n_t: int, n_s: int, n_ts: int) -> dict[str, int]:
    return {"11": n_ts, "10": n_t - n_ts, "01": n_s - n_ts, "00": n - n_t - n_s + n_ts}


def choose_scr_tasks(hierarchy: FeatureHierarchy, fires: np.ndarray,
                     config: SaeBenchTaskConfig, *, rng: np.random.Generator) -> list[ScrTask]:
    """The SCR tasks: up to `scr_max_tasks` usable (T, S) pairs, a seeded draw.

    Raises:
        ValueError: fewer than two root trees hold a feature in the rate range, or no pair has
            `scr_min_per_cell` samples in every cell (SCR is not applicable to this world).
    """
    roots = _roots(hierarchy)
    rates = fires.mean(axis=0)
    candidates = np.flatnonzero((roots >= 0) & (rates >= config.scr_min_rate)
                                & (rates <= config.scr_max_rate))
    if np.unique(roots[candidates]).size < 2:
        raise ValueError("SCR is not applicable: fewer than two hierarchy trees have a feature "
                         f"firing at a rate in [{config.scr_min_rate}, {config.scr_max_rate}]")
    f = fires[:, candidates].astype(np.float32)
    joint = np.rint(f.T @ f).astype(np.int64)  # co-firing counts [c, c]
    single = np.diag(joint)
    n = fires.shape[0]
    pairs = []
    for i in range(candidates.size):
        for j in range(i + 1, candidates.size):
            if roots[candidates[i]] == roots[candidates[j]]:
                continue
            cells = _cells(n, int(single[i]), int(single[j]), int(joint[i, j]))
            if min(cells.values()) >= config.scr_min_per_cell:
                pairs.append(ScrTask(int(candidates[i]), int(candidates[j]),
                                     tuple(cells.items())))
    if not pairs:
        raise ValueError(f"SCR is not applicable: no pair of features from different trees has "
                         f">= {config.scr_min_per_cell} samples in every (T, S) cell of a pool "
                         f"of {n}")
    order = rng.permutation(len(pairs))[: config.scr_max_tasks]
    return [pairs[i] for i in sorted(order)]


def scr_class_rows(pool: TaskPool, task: ScrTask, config: SaeBenchTaskConfig, *,
                   rng: np.random.Generator
                   ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Train and test activations of SAEBench's six SCR classes (see the module docstring).

    Returns:
        (train, test), each class name in SCR_CLASSES -> [rows, d_in].
    """
    t, s = pool.fires[:, task.t], pool.fires[:, task.s]
    cells = {"11": t & s, "10": t & ~s, "01": ~t & s, "00": ~t & ~s}
    rows = {k: rng.permutation(np.flatnonzero(v)) for k, v in cells.items()}
    q = min(config.scr_samples_per_quadrant, rows["11"].size // 2, rows["00"].size // 2,
            rows["01"].size, rows["10"].size)
    q_train = int(q * config.train_fraction)
    q_test = q - q_train
    if q_train < 1 or q_test < 1:
        raise ValueError(f"SCR task (T={task.t}, S={task.s}) has too few samples per quadrant "
                         f"({q}) for a train and a test split")
    # each cell's first rows go to training, the next to testing (twice as many for 11 and 00,
    # which also fill the biased classes)
    need = {"11": 2, "00": 2, "10": 1, "01": 1}
    split = {k: (rows[k][: need[k] * q_train],
                 rows[k][need[k] * q_train: need[k] * (q_train + q_test)]) for k in rows}

    def classes(part: int, m: int) -> dict[str, np.ndarray]:
        c = {k: split[k][part] for k in split}
        take = {
            "S": np.concatenate([c["11"][:m], c["01"][:m]]),
            "S_neg": np.concatenate([c["10"][:m], c["00"][:m]]),
            "T": np.concatenate([c["11"][:m], c["10"][:m]]),
            "T_neg": np.concatenate([c["01"][:m], c["00"][:m]]),
            "bias": c["11"][: 2 * m],
            "bias_neg": c["00"][: 2 * m],
        }
        return {k: pool.hidden[v] for k, v in take.items()}

    return classes(0, q_train), classes(1, q_test)


DEFAULT_TASKS = SaeBenchTaskConfig()
"""The sizes the registered tpp_top* / scr_top* metrics use."""

# Per AuditData: what every SAE shares for one seed (the pool, the tasks, the probes), built
# once as SAEBench trains its probes once per dataset; dropped with the AuditData.
_SHARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def shared(data, key: tuple, build: Callable[[], Any]) -> Any:
    """`build()` computed once per (AuditData `data`, key)."""
    store = _SHARED.setdefault(data, {})
    if key not in store:
        store[key] = build()
    return store[key]


def task_pool(data, seed: int, config: SaeBenchTaskConfig = DEFAULT_TASKS) -> TaskPool:
    """The pool of metric seed `seed` on `data.world`, shared by TPP and SCR."""
    return shared(data, ("pool", seed, config), lambda: draw_pool(
        data.world, config.pool_samples, seed=derive_seed(seed, "saebench-task-pool")))
