"""SAEBench's core metrics and sparse probing (both modes), registered as audit metrics.

Core (kind "reconstruction"; seed: the evaluation samples, `data.eval_sample(seed)`), see
`groundtruth.metrics.core`:
    core_explained_variance, core_explained_variance_legacy, core_cossim, core_l2_ratio,
    core_l0 (lower is better), core_frac_alive.
Sparse probing (kind "probing"; seed: the world sample pool, the Boolean tasks drawn on it and
their train/test splits, as reseeding does in the reference audit; the study seed plays no
part), on the tasks of `groundtruth.metrics.probe_tasks` with `task_config(data)`:
    sparse_probing_top{1,2,5}   mean over tasks of SAEBench's top-k probe test accuracy
    sae_probes_top{1,2,5,16}    mean over tasks of sae-probes' top-k L1 probe test AUC
(`groundtruth.metrics.sparse_probing`). A k above the SAE's width raises.
"""

from __future__ import annotations

import numpy as np

from groundtruth.metrics.core import CoreMetrics, core_metrics
from groundtruth.metrics.probe_tasks import TaskConfig, TaskData, sample_task_data
from groundtruth.metrics.registry import register_metric
from groundtruth.metrics.sparse_probing import sae_probes_probe, saebench_probe

__all__ = ["SPARSE_PROBING_KS", "SAE_PROBES_KS", "task_config", "task_data", "core_of",
           "probe_scores"]

SPARSE_PROBING_KS = (1, 2, 5)  # SAEBench's k_values
SAE_PROBES_KS = (1, 2, 5, 16)
_ENCODE_BATCH = 4096


def task_config(data) -> TaskConfig:
    """The probing tasks' sizes, from the audit's `DataConfig`: the pool is `probe_pool`,
    `probe_tasks` tasks per single kind and a quarter of that (at least 1) per Boolean entry."""
    cfg = data.config
    return TaskConfig(pool=cfg.probe_pool, singles=cfg.probe_tasks,
                      booleans=max(1, cfg.probe_tasks // 4))


def task_data(data, seed: int) -> TaskData:
    """The Boolean tasks of metric seed `seed`, drawn once per `AuditData` and seed."""
    config = task_config(data)
    return data._cached(("saebench-probe-tasks", seed, config),
                        lambda: sample_task_data(data.world, config, seed=seed))


def core_of(sae, data, seed: int) -> CoreMetrics:
    """`core_metrics` of `sae` on `data.eval_sample(seed)`, computed once per SAE and seed."""
    def compute():
        x = np.asarray(data.eval_sample(seed).hidden)
        z = np.asarray(sae.encode(x))
        return core_metrics(x, z, np.asarray(sae.decode(z)))

    return data.memo(sae, "saebench-core", seed, compute)


def _latents(sae, data, seed: int) -> np.ndarray:
    def encode():
        hidden = task_data(data, seed).hidden
        return np.concatenate([np.asarray(sae.encode(hidden[i:i + _ENCODE_BATCH]))
                               for i in range(0, hidden.shape[0], _ENCODE_BATCH)])

    return data.memo(sae, "saebench-task-latents", seed, encode)


def probe_scores(sae, data, seed: int, *, mode: str, k: int) -> np.ndarray:
    """float64 [n_tasks]: per-task test accuracy (mode "saebench") or test AUC ("sae_probes")
    of `sae`'s top-k probes on the tasks of `task_data(data, seed)`.

    Raises:
        ValueError: an unknown mode, or k above the SAE's width.
    """
    if mode not in ("saebench", "sae_probes"):
        raise ValueError(f"unknown probing mode {mode!r}; known: 'saebench', 'sae_probes'")
    d_sae = int(sae.d_sae)
    if k > d_sae:
        raise ValueError(f"k={k} exceeds the SAE's d_sae={d_sae}")

    def run():
        z = _latents(sae, data, seed)
        out = []
        for split in task_data(data, seed).splits:
            args = (z[split.train_rows], split.train_labels, z[split.test_rows],
                    split.test_labels)
            if mode == "saebench":
                out.append(saebench_probe(*args, k=k).accuracy)
            else:
                out.append(sae_probes_probe(*args, k=k).auc)
        return np.array(out, dtype=np.float64)

    return data.memo(sae, f"{mode}-top{k}", seed, run)


_CORE = {
    "explained_variance": (True, "SAEBench's explained variance as its code computes it "
                           "(variance about ~0)"),
    "explained_variance_legacy": (True, "per-sample 1 - ||x - x_hat||^2 / ||x - mean x||^2, "
                                  "as the SAEBench paper reports"),
    "cossim": (True, "mean cosine similarity of x and x_hat"),
    "l2_ratio": (True, "mean ||x_hat|| / ||x|| (1 is best)"),
    "l0": (False, "mean number of non-zero latents per sample"),
    "frac_alive": (True, "fraction of latents firing (> 0) on some evaluation sample"),
}
for _name, (_higher, _description) in _CORE.items():
    register_metric(f"core_{_name}", seed_changes="the evaluation samples",
                    kind="reconstruction", higher_is_better=_higher,
                    description=f"{_description} (SAEBench core)")(
        lambda sae, data, seed, _name=_name: getattr(core_of(sae, data, seed), _name))

_PROBE_SEED = ("the world sample pool, the Boolean probing tasks drawn on it and their "
               "train/test splits")
for _k in SPARSE_PROBING_KS:
    register_metric(f"sparse_probing_top{_k}", seed_changes=_PROBE_SEED, kind="probing",
                    description=f"mean test accuracy of SAEBench's top-{_k} L2 probes on "
                                "Boolean true-feature tasks")(
        lambda sae, data, seed, _k=_k: float(probe_scores(sae, data, seed, mode="saebench",
                                                          k=_k).mean()))
for _k in SAE_PROBES_KS:
    register_metric(f"sae_probes_top{_k}", seed_changes=_PROBE_SEED, kind="probing",
                    description=f"mean test AUC of sae-probes' top-{_k} L1 probes (C searched) "
                                "on Boolean true-feature tasks")(
        lambda sae, data, seed, _k=_k: float(probe_scores(sae, data, seed, mode="sae_probes",
                                                          k=_k).mean()))
