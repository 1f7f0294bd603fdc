"""SAEBench's Spurious Correlation Removal (SCR) on two features of different root trees.

A task is a target feature T and a spurious feature S (`saebench_tasks`). Three probes are
trained: T (T balanced over S), S (S balanced over T) and the biased probe on rows where T and
S coincide (both fire vs neither), which learns both. Ablating the top-N latents attributed to
S (|effect| on S's probe, `ablation.latent_effects`) should restore the biased probe's accuracy
on T's rows. As SAEBench's `get_scr_plotting_dict`:

    dir1(N) = (A_bias->T(ablate top-N of S) - A_bias->T) / (A_T - A_bias->T)
    dir2(N) = (A_bias->S(ablate top-N of T) - A_bias->S) / (A_S - A_bias->S)

with A_bias->T the biased probe's clean accuracy on T's test rows, A_T the T probe's, a
direction scored 0 when its denominator is below 0.001; SCR(N) is dir1 where the biased
probe is worse on T (A_bias->T < A_bias->S: it leans on S, so ablating S should help), dir2
where it is worse on S. SAEBench leaves a tie unscored; the reference audit averages the two
directions, and so do we. The metric is the mean over tasks. Unbounded in principle (1 = the
ablation restores the clean probe's accuracy, 0 = no change, negative = worse); higher is better.

N: SAEBench's n_values clipped to d_sae, as for TPP (`tpp.clip_n_values`).
Deviation: scikit-learn probes (see `ablation`).

Metrics `scr_top{N}` (seed: the task pool drawn from the world, the (T, S) pairs used and the
train/test rows).

References:
    Karvonen et al., "SAEBench" (2025), https://arxiv.org/abs/2503.09532
    adamkarvonen/SAEBench @ 8042bb38, sae_bench/evals/scr_and_tpp/main.py
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from groundtruth.metrics.ablation import (
    ablate_latents, balanced_probe_set, latent_effects, probe_accuracy, select_top_n,
    train_probe,
)
from groundtruth.metrics.quality import as_params
from groundtruth.metrics.registry import register_metric
from groundtruth.metrics.saebench_tasks import (
    DEFAULT_TASKS, N_VALUES, SCR_CLASSES, SaeBenchTaskConfig, ScrTask, choose_scr_tasks,
    scr_class_rows, shared, task_pool,
)
from groundtruth.metrics.tpp import clip_n_values
from synthetic_saes.rng import derive_seed

__all__ = ["ScrProbes", "ScrResult", "prepare_scr", "scr_task_result", "scr_results",
           "normalised_scr", "scr_direction"]

_PAIRS = {"S": "S_neg", "T": "T_neg", "bias": "bias_neg"}
_MIN_ROWS = 2


def normalised_scr(changed: float, original: float, clean: float) -> float:
    """(changed - original) / (clean - original), 0 where clean - original < 0.001.

    Examples:
        >>> round(normalised_scr(0.8, 0.6, 1.0), 6)
        0.5
        >>> normalised_scr(0.9, 0.95, 0.9505)
        0.0
    """
    if clean - original < 0.001:
        return 0.0
    return (changed - original) / (clean - original)


def scr_direction(dir1: float, dir2: float, bias_on_t: float, bias_on_s: float) -> float:
    """The reported SCR: dir1 if the biased probe is worse on T, dir2 if worse on S, their
    mean on a tie (SAEBench leaves a tie unscored; the audit averages)."""
    if bias_on_t < bias_on_s:
        return dir1
    if bias_on_t > bias_on_s:
        return dir2
    return 0.5 * (dir1 + dir2)


@dataclass(frozen=True, eq=False)
class ScrProbes:
    """The SAE-independent part of an SCR task.

    Attributes:
        probes: "S", "T", "bias" -> probe.
        effect_sets: "S", "T" -> (x, y) training rows of the attribution.
        test_sets: "S", "T" -> (x, y) held-out rows.
        clean: accuracies "T", "S" (each probe on its rows), "bias_on_T", "bias_on_S".
    """

    probes: dict
    effect_sets: dict
    test_sets: dict
    clean: dict


@dataclass(frozen=True, eq=False)
class ScrResult:
    """SCR of one SAE on one task.

    Attributes:
        n_values: numbers of ablated latents (clipped to d_sae).
        effects: "S", "T" -> float64 [d_sae] |attribution| to that probe.
        selected: "S", "T" -> tuple of the latents ablated at each N.
        changed: "bias_on_T", "bias_on_S" -> float64 [n_n], the biased probe's accuracy after
            ablating S's (resp. T's) top-N latents.
        dir1, dir2, score: float64 [n_n].
        clean: the clean accuracies (see ScrProbes).
    """

    n_values: tuple[int, ...]
    effects: dict
    selected: dict
    changed: dict
    dir1: np.ndarray
    dir2: np.ndarray
    score: np.ndarray
    clean: dict


def prepare_scr(train: dict, test: dict, *, seed: int) -> ScrProbes:
    """Probes of one SCR task from its six classes' rows (SCR_CLASSES -> [n, d_in]).

    Raises:
        ValueError: a class missing or with fewer than 2 rows in either split.
    """
    for name in SCR_CLASSES:
        for part, rows in (("train", train), ("test", test)):
            if name not in rows or rows[name].shape[0] < _MIN_ROWS:
                have = rows[name].shape[0] if name in rows else 0
                raise ValueError(f"SCR class {name!r} has too few {part} samples: {have} "
                                 f"(need >= {_MIN_ROWS})")
    rng = np.random.default_rng(derive_seed(seed, "scr-probe-sets"))
    probes, effect_sets, test_sets = {}, {}, {}
    for name, neg in _PAIRS.items():
        probes[name] = train_probe(*balanced_probe_set(train[name], [train[neg]], rng=rng))
        effect_sets[name] = balanced_probe_set(train[name], [train[neg]], rng=rng)
        test_sets[name] = balanced_probe_set(test[name], [test[neg]], rng=rng)
    clean = {"T": probe_accuracy(probes["T"], *test_sets["T"]),
             "S": probe_accuracy(probes["S"], *test_sets["S"]),
             "bias_on_T": probe_accuracy(probes["bias"], *test_sets["T"]),
             "bias_on_S": probe_accuracy(probes["bias"], *test_sets["S"])}
    return ScrProbes(probes, effect_sets, test_sets, clean)


def scr_task_result(sae, task: ScrProbes, n_values=N_VALUES) -> ScrResult:
    """SCR of `sae` on one prepared task at every N of `n_values` (clipped to d_sae)."""
    params = as_params(sae)
    ns = clip_n_values(n_values, params.d_sae)
    effects, selected, changed = {}, {}, {}
    # dir1 ablates S's latents and reads the biased probe on T's rows; dir2 the reverse
    for ablated, evaluated in (("S", "T"), ("T", "S")):
        x, y = task.effect_sets[ablated]
        effects[ablated] = latent_effects(params.encode(x), y, task.probes[ablated],
                                          params.W_dec, absolute=True)
        selected[ablated] = tuple(select_top_n(effects[ablated], n) for n in ns)
        tx, ty = task.test_sets[evaluated]
        latents = params.encode(tx)
        changed[f"bias_on_{evaluated}"] = np.array([
            probe_accuracy(task.probes["bias"], ablate_latents(tx, latents, params.W_dec, s), ty)
            for s in selected[ablated]])
    c = task.clean
    dir1 = np.array([normalised_scr(a, c["bias_on_T"], c["T"]) for a in changed["bias_on_T"]],
                    dtype=np.float64)
    dir2 = np.array([normalised_scr(a, c["bias_on_S"], c["S"]) for a in changed["bias_on_S"]],
                    dtype=np.float64)
    score = np.array([scr_direction(a, b, c["bias_on_T"], c["bias_on_S"])
                      for a, b in zip(dir1, dir2)], dtype=np.float64)
    return ScrResult(ns, effects, selected, changed, dir1, dir2, score, dict(c))


def _prepared_tasks(world, pool, config: SaeBenchTaskConfig, seed: int
                    ) -> list[tuple[ScrTask, ScrProbes]]:
    rng = np.random.default_rng(derive_seed(seed, "scr-tasks"))
    tasks = choose_scr_tasks(world.hierarchy, pool.fires, config, rng=rng)
    out = []
    for i, task in enumerate(tasks):
        train, test = scr_class_rows(pool, task, config,
                                     rng=np.random.default_rng(derive_seed(seed, "scr-rows", i)))
        out.append((task, prepare_scr(train, test, seed=derive_seed(seed, "scr-task", i))))
    return out


def scr_results(sae, data, seed: int, *, config: SaeBenchTaskConfig = DEFAULT_TASKS,
                n_values=N_VALUES) -> list[tuple[ScrTask, ScrResult]]:
    """SCR of `sae` on every task of metric seed `seed` (tasks and probes shared by all SAEs
    measured on the same AuditData `data`).

    Raises:
        ValueError: SCR is not applicable to the world (see `choose_scr_tasks`).
    """
    data.world.check_d_in(as_params(sae).d_in)
    tasks = shared(data, ("scr", seed, config), lambda: _prepared_tasks(
        data.world, task_pool(data, seed, config), config, seed))
    return [(task, scr_task_result(sae, probes, n_values)) for task, probes in tasks]


def _scr_metric(sae, data, seed: int, n: int) -> float:
    results = data.memo(sae, "scr", seed, lambda: scr_results(sae, data, seed))
    i = N_VALUES.index(n)
    return float(np.mean([result.score[i] for _, result in results]))


for _n in N_VALUES:
    register_metric(
        f"scr_top{_n}", kind="probing",
        seed_changes="the task pool drawn from the world, the (T, S) pairs used and the "
                     "train/test rows",
        description=f"SAEBench SCR at N={_n} (clipped to d_sae): normalised recovery of a "
                    "biased probe's accuracy on T after ablating S's top latents")(
        lambda sae, data, seed, _n=_n: _scr_metric(sae, data, seed, _n))
