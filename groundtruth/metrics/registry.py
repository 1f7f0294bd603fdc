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

A metric may also register a batch form, `batch=fn_batch(saes, data, seed) -> list[float]`,
that measures a stack of SAEs of one d_in and d_sae at once (one encode of the shared sample
for the whole stack, `groundtruth.metrics.batched`) and equals fn on each SAE within float
tolerance. `evaluate_metric_batch` uses it when there is one and loops over fn otherwise.
This module holds the registry only and imports no metric: the shipped metrics
(`groundtruth.metrics.builtin`) register themselves when the package `groundtruth.metrics` is
imported, which happens before any of its modules, this one included, is used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from groundtruth.metrics.batched import check_stack

__all__ = ["MetricSpec", "METRICS", "register_metric", "get_metric", "metric_names",
           "evaluate_metric", "evaluate_metric_batch"]

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
        fn_batch: fn_batch(saes, data, seed) -> list[float], one value per SAE of a stack of
            one d_in and d_sae, equal to fn on each; None when the metric has no batch form.
    """

    name: str
    fn: Callable
    seed_changes: str
    kind: str = "custom"
    higher_is_better: bool = True
    description: str = ""
    fn_batch: Callable | None = None

    @property
    def deterministic(self) -> bool:
        return self.seed_changes == "nothing"


METRICS: dict[str, MetricSpec] = {}


def register_metric(name: str, *, seed_changes: str, kind: str = "custom",
                    higher_is_better: bool = True, description: str = "",
                    replace: bool = False, batch: Callable | None = None):
    """Decorator registering fn(sae, data, seed) -> float under `name`; `batch`, if given,
    is its batch form fn_batch(saes, data, seed) -> list[float] (see the module docstring).

    Raises:
        ValueError: a duplicate name (unless replace=True), an unknown kind, an empty
            seed_changes, or a batch form that is not callable.
    """
    if batch is not None and not callable(batch):
        raise ValueError(f"the batch form of {name!r} must be callable, got {batch!r}")
    if kind not in KINDS:
        raise ValueError(f"unknown metric kind {kind!r}; known: {list(KINDS)}")
    if not seed_changes:
        raise ValueError("say what the seed changes (or 'nothing')")

    def decorate(fn: Callable) -> Callable:
        if name in METRICS and not replace:
            raise ValueError(f"a metric named {name!r} is already registered")
        METRICS[name] = MetricSpec(name, fn, seed_changes, kind, higher_is_better,
                                   description or (fn.__doc__ or "").strip().split("\n")[0],
                                   batch)
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
    return _checked(name, get_metric(name).fn(sae, data, seed), seed)


def evaluate_metric_batch(name: str, saes: Sequence, data, seed: int) -> list[float]:
    """[metric(sae, data, seed) for sae in saes] as finite floats, through the metric's batch
    form when it has one (one encode of the shared sample for the stack), else one by one.

    Args:
        saes: a non-empty stack of `SAEParams` sharing d_in and d_sae (architectures may mix).

    Raises:
        ValueError: unknown metric, a bad stack (before any work), a batch form returning the
            wrong number of values, or a value that is NaN / Inf / not a number.
    """
    spec = get_metric(name)
    saes = list(saes)
    check_stack(saes)
    if spec.fn_batch is None:
        return [_checked(name, spec.fn(sae, data, seed), seed) for sae in saes]
    values = list(spec.fn_batch(saes, data, seed))
    if len(values) != len(saes):
        raise ValueError(f"the batch form of {name!r} returned {len(values)} values for "
                         f"{len(saes)} SAEs")
    return [_checked(name, value, seed) for value in values]


def _checked(name: str, value, seed: int) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"metric {name!r} returned {value!r}, not a number") from None
    if not np.isfinite(value):
        raise ValueError(f"metric {name!r} returned {value} for seed {seed}")
    return value
