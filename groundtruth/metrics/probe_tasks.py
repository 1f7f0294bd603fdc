"""Boolean sparse-probing tasks over a world's true features, and their class-balanced splits.

A task is a label over world samples computed from true-feature firing (features[:, f] > 0):
a single feature, or the AND / OR of a few. Following the synthetic sparse-probing tasks of
the SAEBench reliability audit (Chanin 2026, `saebench_audit/synthetic/data_gen.py`,
`_build_sp_tasks` / `_sample_bool_sp`, and `eval_sae_probes.py`, `balanced_split`), tasks come
in kinds by operator and by "reach":

    single_in, single_out          one feature in / out of reach
    and_in, or_in                  AND / OR of 2 or 3 features in reach
    or_out                         OR of 2, 3 or 4 features out of reach
    and_mixed                      AND of (in, out) counts (1, 1), (2, 1), (1, 2)
    or_mixed                       OR of (in, out) counts (1, 1), (1, 2), (2, 2)

Changes our worlds force (the reference is tuned to SynthSAEBench-16k, 16,384 features, a
60,000-sample pool and SAEs of width 4096):

* Reach. The reference calls feature f "in" when f < 4096 = d_sae: SynthSAEBench orders
  features by decreasing frequency, so these are the 4096 most frequent, the ones a 4096-wide
  SAE can afford. Our worlds do not promise that order and our SAEs differ in width, so "in"
  is the `reach_fraction` most frequent features by firing rate observed on the pool (default
  1/4 = 4096 / 16,384). It is a property of the world, not of one SAE, so every SAE of a study
  is probed on the same tasks.
* Rate windows. The reference's absolute label-rate windows (e.g. 0.005-0.20 for single_in,
  0.0007-0.005 for single_out) fit SynthSAEBench's rates (5e-4 to 0.4); the tiny world's rates
  span 0.02-0.3, where no feature would qualify as single_out. We keep one window for every
  kind: at least `min_positives` positives in the pool and a label rate of at most `max_rate`.
* Counts. `singles` tasks per single kind (reference 24) and up to `booleans` per (kind,
  sizes) entry (reference 4), smaller by default so that a metric stays fast on a CPU. Like the
  reference, a Boolean entry keeps the tasks it finds within its tries (an AND of rare
  features may find none: the task list says what was drawn); unlike it, a single kind with
  too few features, or a Boolean kind with no task at all, raises.
* Streams. The reference seeds NumPy's legacy RandomState with seed + offsets; we draw from
  named sub-streams of the seed (`derive_seed`).

The split follows `balanced_split` exactly: per task, positives and negatives are shuffled;
train takes min(train_positives, n_pos // 2) positives and as many negatives (at most
n_neg // 2), capped at max_train // 2 of each; test takes up to test_positives of the remaining
positives and as many negatives; both splits are shuffled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from synthetic_saes.arrays import readonly
from synthetic_saes.base_world import BaseWorld
from synthetic_saes.rng import derive_seed
from synthetic_saes.validation import require_positive_int, require_seed

__all__ = ["TASK_KINDS", "TaskConfig", "ProbeTask", "TaskSplit", "TaskData", "label_of",
           "draw_tasks", "balanced_split", "sample_task_data"]

# kind -> (operator, reach of the first group, reach of the second group or None, sizes).
# Sizes are (from the first group, from the second group), as in the reference.
TASK_KINDS: dict[str, tuple[str, str, str | None, tuple[tuple[int, int], ...]]] = {
    "and_in": ("and", "in", None, ((2, 0), (3, 0))),
    "or_in": ("or", "in", None, ((2, 0), (3, 0))),
    "or_out": ("or", "out", None, ((2, 0), (3, 0), (4, 0))),
    "and_mixed": ("and", "in", "out", ((1, 1), (2, 1), (1, 2))),
    "or_mixed": ("or", "in", "out", ((1, 1), (1, 2), (2, 2))),
}

# The reference's minimum positives per split: fewer and it drops the task.
MIN_SPLIT_POSITIVES = 5


@dataclass(frozen=True, kw_only=True)
class TaskConfig:
    """How Boolean probing tasks are drawn and split (see the module docstring).

    Attributes:
        pool: world samples drawn per seed; task labels and splits come from them
            (reference 60,000).
        reach_fraction: share of features, most frequent first, that count as in reach.
        singles: tasks of each single kind (reference 24).
        booleans: tasks per (kind, sizes) entry of `TASK_KINDS` (reference 4).
        min_positives: least positives (and negatives) a task's label needs in the pool,
            >= 2 * MIN_SPLIT_POSITIVES.
        max_rate: largest label rate of a task, in (0, 1).
        max_train, train_positives, test_positives: the split sizes of `balanced_split`
            (reference 1024, 512, 1500).
        max_tries: feature draws per Boolean task before the attempt fails (reference 200).
    """

    pool: int = 16_384
    reach_fraction: float = 0.25
    singles: int = 8
    booleans: int = 2
    min_positives: int = 20
    max_rate: float = 0.3
    max_train: int = 1024
    train_positives: int = 512
    test_positives: int = 1500
    max_tries: int = 200

    def __post_init__(self) -> None:
        for name in ("pool", "singles", "booleans", "min_positives", "max_train",
                     "train_positives", "test_positives", "max_tries"):
            require_positive_int(name, getattr(self, name))
        if self.min_positives < 2 * MIN_SPLIT_POSITIVES:
            raise ValueError(f"min_positives must be >= {2 * MIN_SPLIT_POSITIVES} "
                             f"({MIN_SPLIT_POSITIVES} per split), got {self.min_positives}")
        if self.max_train < 2:
            raise ValueError(f"max_train must be >= 2, got {self.max_train}")
        for name in ("reach_fraction", "max_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
                raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")


class ProbeTask(NamedTuple):
    """One Boolean task: label = op over features[:, f] > 0 for f in `features`."""

    kind: str  # "single_in", "single_out" or a key of TASK_KINDS
    op: str  # "single", "and" or "or"
    features: tuple[int, ...]
    positive_rate: float  # label rate on the pool it was drawn from

    @property
    def name(self) -> str:
        return f"{self.kind}__{self.op}__{'_'.join(map(str, self.features))}"


class TaskSplit(NamedTuple):
    """Rows of the pool in one task's train and test splits, with their labels."""

    train_rows: np.ndarray  # int64 [n_train]
    train_labels: np.ndarray  # bool [n_train]
    test_rows: np.ndarray  # int64 [n_test]
    test_labels: np.ndarray  # bool [n_test]


@dataclass(frozen=True, eq=False)
class TaskData:
    """The tasks of one seed and the world samples their splits use; independent of any SAE.

    Attributes:
        tasks: the drawn tasks.
        splits: one `TaskSplit` per task; its rows index `hidden`.
        hidden: the pool samples some split uses, each once, [n_kept, d_in].
        in_reach: bool [n_features], the features counted as in reach.
        seed: the seed it was drawn with.
    """

    tasks: tuple[ProbeTask, ...]
    splits: tuple[TaskSplit, ...]
    hidden: np.ndarray
    in_reach: np.ndarray
    seed: int


def label_of(fires: np.ndarray, op: str, features: Any) -> np.ndarray:
    """bool [n]: the task label of each sample, from fires = features > 0, bool [n, n_features].

    "single" reads one column, "and" requires every listed feature, "or" any of them.

    Examples:
        >>> fires = np.array([[True, False], [True, True], [False, False]])
        >>> label_of(fires, "and", [0, 1]).tolist(), label_of(fires, "or", [0, 1]).tolist()
        ([False, True, False], [True, True, False])
    """
    columns = fires[:, list(features)]
    if op == "single":
        if columns.shape[1] != 1:
            raise ValueError(f"a single task has one feature, got {list(features)}")
        return columns[:, 0].copy()
    if op == "and":
        return columns.all(axis=1)
    if op == "or":
        return columns.any(axis=1)
    raise ValueError(f"unknown task operator {op!r}; known: 'single', 'and', 'or'")


def draw_tasks(fires: np.ndarray, config: TaskConfig, *, seed: int
               ) -> tuple[tuple[ProbeTask, ...], np.ndarray]:
    """Draw every kind of task from a pool's firing matrix.

    Args:
        fires: bool [n_pool, n_features], true features firing on the pool.
        config: counts and windows.
        seed: non-negative int; a named sub-stream per kind and size entry.

    Returns:
        (tasks, in_reach bool [n_features]).

    Raises:
        ValueError: when a kind cannot be filled (the message names it and the counts).
    """
    seed = require_seed(seed)
    n_pool, n_features = fires.shape
    counts = fires.sum(axis=0)
    rates = counts / n_pool
    n_in = max(1, int(round(config.reach_fraction * n_features)))
    # Most frequent first; ties by index (stable), so the split is a function of the pool.
    order = np.argsort(-rates, kind="stable")
    in_reach = np.zeros(n_features, dtype=bool)
    in_reach[order[:n_in]] = True

    def usable(n_pos: int) -> bool:
        return (config.min_positives <= n_pos <= config.max_rate * n_pool
                and n_pool - n_pos >= config.min_positives)

    tasks: list[ProbeTask] = []
    for kind, reach in (("single_in", in_reach), ("single_out", ~in_reach)):
        candidates = [int(f) for f in np.flatnonzero(reach) if usable(int(counts[f]))]
        rng = np.random.default_rng(derive_seed(seed, "probe-tasks", kind))
        rng.shuffle(candidates)
        if len(candidates) < config.singles:
            raise ValueError(
                f"{kind}: only {len(candidates)} features have between {config.min_positives} "
                f"positives and a rate of {config.max_rate} in a pool of {n_pool}, fewer than "
                f"singles={config.singles}")
        tasks += [ProbeTask(kind, "single", (f,), float(rates[f]))
                  for f in candidates[:config.singles]]

    groups = {"in": np.flatnonzero(in_reach), "out": np.flatnonzero(~in_reach)}
    for kind, (op, first, second, sizes) in TASK_KINDS.items():
        found = []
        for entry, (size_a, size_b) in enumerate(sizes):
            cand_a = groups[first]
            cand_b = groups[second] if second is not None else np.empty(0, dtype=np.int64)
            rng = np.random.default_rng(derive_seed(seed, "probe-tasks", kind, entry))
            kept = _draw_boolean(fires, op, cand_a, cand_b, size_a, size_b, rng, usable, config)
            found.append(len(kept))
            tasks += [ProbeTask(kind, op, feats, float(n_pos / n_pool)) for feats, n_pos in kept]
        if sum(found) == 0:
            raise ValueError(
                f"{kind}: no feature set of sizes {list(sizes)} has between "
                f"{config.min_positives} positives and a rate of {config.max_rate} in a pool "
                f"of {n_pool}; draw a larger pool or lower min_positives")
    return tuple(tasks), in_reach


def _draw_boolean(fires, op, cand_a, cand_b, size_a, size_b, rng, usable, config):
    # The reference's loop: up to 5 * n attempts, each drawing up to max_tries feature sets
    # and keeping the first whose label rate is in the window.
    if cand_a.size < size_a or cand_b.size < size_b:
        return []
    kept: list[tuple[tuple[int, ...], int]] = []
    for _ in range(5 * config.booleans):
        if len(kept) >= config.booleans:
            break
        for _ in range(config.max_tries):
            feats = list(rng.choice(cand_a, size=size_a, replace=False))
            if size_b > 0:
                feats += list(rng.choice(cand_b, size=size_b, replace=False))
            n_pos = int(label_of(fires, op, feats).sum())
            if usable(n_pos):
                kept.append((tuple(int(f) for f in feats), n_pos))
                break
    return kept


def balanced_split(labels: np.ndarray, config: TaskConfig, *, seed: int, name: str = "task"
                   ) -> TaskSplit:
    """The reference's `balanced_split` of one task's pool labels (see the module docstring).

    Args:
        labels: bool [n_pool].
        config: max_train, train_positives, test_positives.
        seed: non-negative int.
        name: the task, for error messages.

    Returns:
        A `TaskSplit` whose rows index the pool.

    Raises:
        ValueError: fewer than MIN_SPLIT_POSITIVES positives or negatives for either split
            (the reference silently drops such a task).
    """
    rng = np.random.default_rng(require_seed(seed))
    pos = np.flatnonzero(labels)
    neg = np.flatnonzero(~labels)
    rng.shuffle(pos)
    rng.shuffle(neg)
    pos_train = min(config.train_positives, pos.size // 2)
    pos_test = min(config.test_positives, pos.size - pos_train)
    neg_train = min(pos_train, neg.size // 2)
    neg_test = min(pos_test, neg.size - neg_train)
    if min(pos_train, pos_test, neg_train, neg_test) < MIN_SPLIT_POSITIVES:
        raise ValueError(
            f"{name} has too few samples in a class: {pos.size} positives and {neg.size} "
            f"negatives, need at least {2 * MIN_SPLIT_POSITIVES} of each "
            f"({MIN_SPLIT_POSITIVES} per split)")
    if pos_train + neg_train > config.max_train:
        pos_train = neg_train = config.max_train // 2
    train = np.concatenate([pos[:pos_train], neg[:neg_train]])
    test = np.concatenate([pos[pos_train:pos_train + pos_test],
                           neg[neg_train:neg_train + neg_test]])
    rng.shuffle(train)
    rng.shuffle(test)
    return TaskSplit(train.astype(np.int64), labels[train], test.astype(np.int64), labels[test])


def sample_task_data(world: BaseWorld, config: TaskConfig | None = None, *, seed: int
                     ) -> TaskData:
    """Draw a pool of `config.pool` world samples, the tasks on it and their splits.

    The seed changes the pool (`world.sample(pool, seed=derive_seed(seed, "probe-task-pool"))`),
    the tasks drawn on it and the splits (as reseeding does in the reference).

    Raises:
        ValueError: a kind that cannot be filled, or a task too rare to split.
    """
    config = config or TaskConfig()
    seed = require_seed(seed)
    sample = world.sample(config.pool, seed=derive_seed(seed, "probe-task-pool"))
    fires = np.asarray(sample.features) > 0
    tasks, in_reach = draw_tasks(fires, config, seed=seed)
    splits = [balanced_split(label_of(fires, t.op, t.features), config,
                             seed=derive_seed(seed, "probe-task-split", i), name=t.name)
              for i, t in enumerate(tasks)]
    used = np.unique(np.concatenate([np.concatenate([s.train_rows, s.test_rows])
                                     for s in splits]))
    index = np.full(config.pool, -1, dtype=np.int64)
    index[used] = np.arange(used.size)
    splits = tuple(TaskSplit(readonly(index[s.train_rows]), readonly(s.train_labels),
                             readonly(index[s.test_rows]), readonly(s.test_labels))
                   for s in splits)
    return TaskData(tasks=tasks, splits=splits, hidden=readonly(np.asarray(sample.hidden)[used]),
                    in_reach=readonly(in_reach), seed=seed)
