"""Reseed noise and the minimum detectable difference of a metric on given SAEs.

What a user runs before trusting a leaderboard difference: rerun the metric with only its own
seed changed and report mean, std, CV and MDD = z_0.975 sqrt(2) std (two single-seed scores
must differ by more than the MDD before the difference means anything).

Synthetic SAEs (a family member, a control, or a sae-lens directory whose d_in fits the world)
are measured with any registered metric on a preset world. Real SAEs (a sae-lens directory or a
Gemma Scope params.npz, with a model and a contrastive dataset) are measured with the CE-Bench
scores. There a seed draws a fresh corpus of the dataset's size from its rows, with
replacement (a bootstrap resample of the story pairs): the spread over seeds estimates how
much the score would move on another corpus of the same size, and depends on no knob. (Drawing
a fraction f without replacement, as before, made the spread scale with sqrt((1 - f) / f):
the knob, not the corpus, set the answer.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from groundtruth import stats
from groundtruth.metrics.builtin import CE_METRICS
from groundtruth.metrics.data import AuditData, DataConfig
from groundtruth.metrics.registry import evaluate_metric, get_metric
from synthetic_saes.rng import derive_seed

__all__ = ["NoiseFloor", "synthetic_noise_floor", "real_noise_floor"]


@dataclass(frozen=True)
class NoiseFloor:
    """A metric's values over seeds on one SAE and their reseed noise."""

    metric: str
    sae: str
    values: tuple[float, ...]
    noise: stats.ReseedNoise

    def line(self) -> str:
        n = self.noise
        return (f"{self.metric} on {self.sae}: mean {n.mean:.4g}, std {n.std:.3g} "
                f"(CV {n.cv:.3g}) over {n.n_seeds} seeds; MDD {n.mdd:.3g}")


def synthetic_noise_floor(metric: str, sae, name: str, world, *, seeds: int = 5,
                          data_config: DataConfig | None = None) -> NoiseFloor:
    """Reseed noise of a registered metric on an SAE of `world` over seeds 0 .. seeds-1."""
    spec = get_metric(metric)
    if seeds < 2:
        raise ValueError(f"need at least 2 seeds to measure noise, got {seeds}")
    world.check_d_in(sae.d_in, what=f"SAE {name}")
    data = AuditData(world, data_config)
    values = [evaluate_metric(metric, sae, data, 0 if spec.deterministic else s)
              for s in range(seeds)]
    return NoiseFloor(metric, name, tuple(values), stats.reseed_noise(values))


def real_noise_floor(metrics: list[str], source: str, *, model: str | None, dataset: str | Path,
                     seeds: int = 5, cache_dir: str | Path, keep_relevance_rows: bool = False,
                     hook_name: str | None = None, bos: str = "include",
                     max_tokens: int | None = None, limit: int | None = None) -> list[NoiseFloor]:
    """Reseed noise of CE-Bench scores on a real SAE: activations once; seed s scores a corpus
    of the scored rows' size drawn from them with replacement by
    `np.random.default_rng(derive_seed(s, "noise-floor-corpus"))` (see the module docstring).
    The scored rows are those `cebench score` scores: every row for v4; for v1, the rows whose
    subject does not contain "relevance to " unless `keep_relevance_rows`.
    """
    from cebench.activations import cached_activations
    from cebench.core import encoder_from_sae, segment_sums
    from cebench.datasets import load_contrastive_dataset, reference_v1_rows
    from cebench.saes import load_sae, sae_label
    from cebench.scores import PAPER_ALPHA, scores_from_segment_means

    unknown = [m for m in metrics if m not in CE_METRICS]
    if unknown:
        raise ValueError(f"on real SAEs only the CE-Bench scores can be reseeded; got {unknown}; "
                         f"choose from {sorted(CE_METRICS)}")
    if seeds < 2:
        raise ValueError(f"need at least 2 seeds to measure noise, got {seeds}")
    is_npz = str(source).endswith(".npz")
    sae = load_sae(source, model_name=model if is_npz else None,
                   hook_name=hook_name if is_npz else None)
    model = model or sae.cfg.metadata.model_name
    if not model:
        raise ValueError(f"{source} does not say which model it reads: pass --model")
    data = load_contrastive_dataset(dataset, limit=limit)
    variants = {CE_METRICS[m][0] for m in metrics}
    if "v1" in variants and not data.is_marked:
        raise ValueError("the _v1 scores need a dataset with <subject> marks")
    acts = cached_activations(model, sae.cfg.metadata.hook_name, data, cache_dir=cache_dir,
                              bos=bos, max_tokens=max_tokens)
    if acts.d_in != sae.cfg.d_in:
        raise ValueError(f"the SAE has d_in={sae.cfg.d_in} but the model's activations have "
                         f"d_in={acts.d_in}")
    encoder = encoder_from_sae(sae)
    n_pairs = acts.n_pairs
    if n_pairs < 2:
        raise ValueError(f"{dataset} has {n_pairs} story pair; resampling needs at least 2")
    label = "/".join(sae_label(source))
    results = {m: [] for m in metrics}
    # the rows each variant scores, as `cebench score` does (v1 skips "relevance to " rows)
    scored = {"v4": np.arange(n_pairs),
              "v1": np.arange(n_pairs) if keep_relevance_rows or "v1" not in variants
              else np.array(reference_v1_rows(data))}
    for variant in sorted(variants):
        segments, n_segments = acts.segment_ids(variant)
        full = segment_sums(acts.activations, segments, n_segments, encoder)
        per_pair = n_segments // n_pairs
        active_per_pair = full.active_counts.reshape(n_pairs, per_pair).sum(axis=1)
        for seed in range(seeds):
            rng = np.random.default_rng(derive_seed(seed, "noise-floor-corpus"))
            eligible = scored[variant]
            rows = np.sort(eligible[rng.integers(0, len(eligible), len(eligible))])
            index = (rows[:, None] * per_pair + np.arange(per_pair)).reshape(-1)
            counts = full.counts[index]
            scores = scores_from_segment_means(
                full.sums[index], counts, variant=variant,
                l0=float(active_per_pair[rows].sum() / counts.sum()), alpha=PAPER_ALPHA,
                ibar_zero_defect=False)
            for m in metrics:
                metric_variant, read = CE_METRICS[m]
                if metric_variant == variant:
                    results[m].append(float(read(scores)))
    return [NoiseFloor(m, label, tuple(v), stats.reseed_noise(v)) for m, v in results.items()]
