"""One registry of SAE metrics: name -> metric(sae, data, seed) -> float.

Every metric declares what its seed changes (the corpus draw, the evaluation samples, the probe
split, or nothing for deterministic metrics), whether higher is better, and its kind. The audit
measures any registered metric through the three lenses; registering your own takes a few lines:

    from groundtruth.metrics.registry import register_metric

    @register_metric("my_metric", seed_changes="evaluation samples", kind="custom")
    def my_metric(sae, data, seed):
        x = data.eval_sample(seed).hidden
        return float((sae.encode(x) > 0).mean())

`sae` is an `SAEParams`; `data` an `AuditData` (the world plus seeded, cached samples and corpora).
This module holds the registry only and imports no metric: the shipped metrics
(`groundtruth.metrics.builtin`) register themselves when the package `groundtruth.metrics` is
imported, which happens before any of its modules, this one included, is used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["MetricSpec", "METRICS", "register_metric", "get_metric", "metric_names",
           "evaluate_metric"]

KINDS = ("ce", "ground_truth", "probing", "reconstruction", "custom")


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric.

    Attributes:
        name: registry key.
        fn: fn(sae, data, seed) -> float.
        seed_changes: what a different seed changes ("nothing" for deterministic metrics).
        kind: "ce", "ground_truth", "probing", "reconstruction" or "custom".
        higher_is_better: the direction of quality (False for e.g. absorption).
        description: one line for reports.
    """

    name: str
    fn: Callable
    seed_changes: str
    kind: str = "custom"
    higher_is_better: bool = True
    description: str = ""

    @property
    def deterministic(self) -> bool:
        return self.seed_changes == "nothing"


METRICS: dict[str, MetricSpec] = {}


def register_metric(name: str, *, seed_changes: str, kind: str = "custom",
                    higher_is_better: bool = True, description: str = "",
                    replace: bool = False):
    """Decorator registering fn(sae, data, seed) -> float under `name`.

    Raises:
        ValueError: a duplicate name (unless replace=True), an unknown kind, or an empty
            seed_changes.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown metric kind {kind!r}; known: {list(KINDS)}")
    if not seed_changes:
        raise ValueError("say what the seed changes (or 'nothing')")

    def decorate(fn: Callable) -> Callable:
        if name in METRICS and not replace:
            raise ValueError(f"a metric named {name!r} is already registered")
        METRICS[name] = MetricSpec(name, fn, seed_changes, kind, higher_is_better,
                                   description or (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return decorate


def get_metric(name: str) -> MetricSpec:
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; known metrics: {sorted(METRICS)}")
    return METRICS[name]


def metric_names(kind: str | None = None) -> list[str]:
    return sorted(n for n, s in METRICS.items() if kind is None or s.kind == kind)


def evaluate_metric(name: str, sae, data, seed: int) -> float:
    """metric(sae, data, seed) as a finite float.

    Raises:
        ValueError: unknown metric, or the metric returned NaN / Inf / a non-number (a report
            never carries a silent NaN).
    """
    spec = get_metric(name)
    value = spec.fn(sae, data, seed)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"metric {name!r} returned {value!r}, not a number") from None
    if not np.isfinite(value):
        raise ValueError(f"metric {name!r} returned {value} for seed {seed}")
    return value
