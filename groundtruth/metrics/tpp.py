"""SAEBench's Targeted Probe Perturbation (TPP) on a world's mutually exclusive sibling groups.

A task is a sibling group (`saebench_tasks`), one class per sibling. Per class c a linear probe
separates c's activations from the other classes'; latents are ranked by their attribution to
c's probe (`ablation.latent_effects`, mean difference clamped at 0); ablating c's top-N latents
(decoded contribution removed, SAE error kept) should drop c's probe accuracy and no other's:

    intended_c(N)   = acc_c(clean) - acc_c(ablate top-N of c)
    unintended_c(N) = mean_{c' != c} [acc_c'(clean) - acc_c'(ablate top-N of c)]
    TPP(N)          = mean over tasks of mean_c [intended_c(N) - unintended_c(N)]

as SAEBench's `create_tpp_plotting_dict` ("tpp_threshold_{N}_total_metric"), averaged over tasks
as SAEBench averages its datasets. Range [-1, 1], higher is better; the oracle ablates exactly
each sibling's latent. Accuracies are on held-out rows (SAEBench's test set); the clean ones are
on the world's activations, not the SAE's reconstruction.

N follows SAEBench's n_values (2, 5, 10, 20, 50, 100, 500), clipped to d_sae: SAEBench asserts
N <= d_sae, so `tpp_top500` of a 64-latent SAE is its TPP at N = 64. As in SAEBench, at most
the latents with a nonzero effect are ablated.

Deviations: scikit-learn probes (see `ablation`); the negative rows of each class's test set are
drawn once, so clean and ablated accuracies are on the same rows (SAEBench redraws them).

Metrics `tpp_top{N}` (seed: the task pool drawn from the world, which sibling groups are used,
the train/test rows and the probes' negative rows).

References:
    Karvonen et al., "SAEBench" (2025), https://arxiv.org/abs/2503.09532
    adamkarvonen/SAEBench @ 8042bb38, sae_bench/evals/scr_and_tpp/main.py
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from groundtruth.metrics.ablation import (
    ablate_latents, balanced_probe_set, latent_effects, probe_accuracy,
    select_top_n, train_probe,
)
from groundtruth.metrics.quality import as_params
from groundtruth.metrics.registry import register_metric
from groundtruth.metrics.saebench_tasks import (
    DEFAULT_TASKS, N_VALUES, SaeBenchTaskConfig, TppTask, choose_tpp_tasks, shared, task_pool,
    tpp_class_rows,
)
from synthetic_saes.rng import derive_seed

__all__ = ["TppProbes", "TppResult", "prepare_tpp", "tpp_task_result", "tpp_results",
           "clip_n_values"]

_MIN_TRAIN, _MIN_TEST = 2, 1


@dataclass(frozen=True, eq=False)
class TppProbes:
    """The SAE-independent part of a TPP task: probes and the rows they are scored on.

    Attributes:
        classes: the class labels (sibling features), in order.
        probes: class -> its probe.
        effect_sets: class -> (x, y), training rows the latents' attribution is measured on.
        test_sets: class -> (x, y), held-out rows of the accuracies.
        clean: float64 [n_classes], each probe's accuracy on its clean test rows.
    """

    classes: tuple
    probes: dict
    effect_sets: dict
    test_sets: dict
    clean: np.ndarray


@dataclass(frozen=True, eq=False)
class TppResult:
    """TPP of one SAE on one task.

    Attributes:
        classes: the classes, in order.
        n_values: the numbers of ablated latents (clipped to d_sae).
        effects: float64 [n_classes, d_sae], each latent's attribution to each class's probe.
        selected: selected[c][i] the latents ablated for class c at n_values[i].
        clean: float64 [n_classes], clean accuracies.
        ablated: float64 [n_classes, n_n, n_classes]: accuracy of probe c' (last axis) after
            ablating class c's (first axis) top-N latents.
    """

    classes: tuple
    n_values: tuple[int, ...]
    effects: np.ndarray
    selected: tuple
    clean: np.ndarray
    ablated: np.ndarray

    @property
    def intended(self) -> np.ndarray:
        """[n_classes, n_n] drop of the ablated class's own probe accuracy."""
        own = np.einsum("cnc->cn", self.ablated)
        return self.clean[:, None] - own

    @property
    def unintended(self) -> np.ndarray:
        """[n_classes, n_n] mean drop of the other classes' probe accuracies."""
        drops = self.clean[None, None, :] - self.ablated  # [c, n, c']
        n = len(self.classes)
        off = ~np.eye(n, dtype=bool)
        return np.stack([drops[c][:, off[c]].mean(axis=1) for c in range(n)])

    @property
    def score(self) -> np.ndarray:
        """[n_n] TPP per N: mean over classes of intended - unintended."""
        return (self.intended - self.unintended).mean(axis=0)


def clip_n_values(n_values, d_sae: int) -> tuple[int, ...]:
    """N values clipped to d_sae (SAEBench asserts N <= d_sae instead).

    Raises:
        ValueError: an N below 1.
    """
    if any(int(n) < 1 for n in n_values):
        raise ValueError(f"numbers of ablated latents must be >= 1, got {list(n_values)}")
    return tuple(min(int(n), int(d_sae)) for n in n_values)


def prepare_tpp(train: dict, test: dict, *, seed: int) -> TppProbes:
    """Probes of one TPP task from its classes' rows (class -> [n, d_in]).

    Raises:
        ValueError: fewer than two classes, or a class with fewer than 2 training or 1 test
            rows.
    """
    classes = tuple(train)
    if len(classes) < 2 or set(classes) != set(test):
        raise ValueError(f"a TPP task needs >= 2 classes with train and test rows, got train "
                         f"{list(train)} and test {list(test)}")
    for c in classes:
        if train[c].shape[0] < _MIN_TRAIN or test[c].shape[0] < _MIN_TEST:
            raise ValueError(f"TPP class {c} has too few samples: {train[c].shape[0]} train, "
                             f"{test[c].shape[0]} test (need >= {_MIN_TRAIN} and {_MIN_TEST})")
    rng = np.random.default_rng(derive_seed(seed, "tpp-probe-sets"))
    probes, effect_sets, test_sets = {}, {}, {}
    for c in classes:
        others = [c2 for c2 in classes if c2 != c]
        x, y = balanced_probe_set(train[c], [train[o] for o in others], rng=rng)
        probes[c] = train_probe(x, y)
        # SAEBench draws the attribution rows afresh from the training split
        effect_sets[c] = balanced_probe_set(train[c], [train[o] for o in others], rng=rng)
        test_sets[c] = balanced_probe_set(test[c], [test[o] for o in others], rng=rng)
    clean = np.array([probe_accuracy(probes[c], *test_sets[c]) for c in classes])
    return TppProbes(classes, probes, effect_sets, test_sets, clean)


def tpp_task_result(sae, task: TppProbes, n_values=N_VALUES) -> TppResult:
    """TPP of `sae` on one prepared task at every N of `n_values` (clipped to d_sae)."""
    params = as_params(sae)
    ns = clip_n_values(n_values, params.d_sae)
    W_dec = params.W_dec
    classes = task.classes
    test_latents = {c: params.encode(task.test_sets[c][0]) for c in classes}
    effects, selected = [], []
    ablated = np.empty((len(classes), len(ns), len(classes)))
    for i, c in enumerate(classes):
        x, y = task.effect_sets[c]
        e = latent_effects(params.encode(x), y, task.probes[c], W_dec, absolute=False)
        effects.append(e)
        chosen = tuple(select_top_n(e, n) for n in ns)
        selected.append(chosen)
        for k, sel in enumerate(chosen):
            for j, c2 in enumerate(classes):
                tx, ty = task.test_sets[c2]
                ablated[i, k, j] = probe_accuracy(
                    task.probes[c2], ablate_latents(tx, test_latents[c2], W_dec, sel), ty)
    return TppResult(classes, ns, np.stack(effects), tuple(selected), task.clean.copy(), ablated)


def _prepared_tasks(world, pool, config: SaeBenchTaskConfig, seed: int
                    ) -> list[tuple[TppTask, TppProbes]]:
    rng = np.random.default_rng(derive_seed(seed, "tpp-tasks"))
    tasks = choose_tpp_tasks(world.hierarchy, pool.fires, config, rng=rng)
    out = []
    for i, task in enumerate(tasks):
        train, test = tpp_class_rows(pool, task, config)
        out.append((task, prepare_tpp(train, test, seed=derive_seed(seed, "tpp-task", i))))
    return out


def tpp_results(sae, data, seed: int, *, config: SaeBenchTaskConfig = DEFAULT_TASKS,
                n_values=N_VALUES) -> list[tuple[TppTask, TppResult]]:
    """TPP of `sae` on every task of metric seed `seed` (tasks and probes shared by all SAEs
    measured on the same AuditData `data`).

    Raises:
        ValueError: TPP is not applicable to the world (see `choose_tpp_tasks`).
    """
    data.world.check_d_in(as_params(sae).d_in)
    tasks = shared(data, ("tpp", seed, config), lambda: _prepared_tasks(
        data.world, task_pool(data, seed, config), config, seed))
    return [(task, tpp_task_result(sae, probes, n_values)) for task, probes in tasks]


def _tpp_metric(sae, data, seed: int, n: int) -> float:
    results = data.memo(sae, "tpp", seed, lambda: tpp_results(sae, data, seed))
    i = N_VALUES.index(n)
    return float(np.mean([result.score[i] for _, result in results]))


for _n in N_VALUES:
    register_metric(
        f"tpp_top{_n}", kind="probing",
        seed_changes="the task pool drawn from the world, the sibling groups used, the "
                     "train/test rows and the probes' negative rows",
        description=f"SAEBench TPP at N={_n} (clipped to d_sae): intended minus unintended "
                    "probe-accuracy drop from ablating a sibling class's top latents")(
        lambda sae, data, seed, _n=_n: _tpp_metric(sae, data, seed, _n))
