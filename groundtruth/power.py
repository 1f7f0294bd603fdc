"""How many seeds it takes to detect a difference: a power calculator from an audit's noise.

Two SAEs of one width, each scored with the same n metric seeds, differ by the mean of n
paired differences, whose std is sigma_d / sqrt(n) (sigma_d: the paired std the reseed lens
measured at that width). A two-sided test at `level` detects a true difference D with
probability `power` when

    n_metric >= ((z_{1 - (1 - level) / 2} + z_power) sigma_d / D)^2.

Two training configurations, each averaged over n training seeds scored with m metric seeds,
differ by a mean whose variance is 2 (s_t^2 + s_m^2 / m) / n, with s_t^2 and s_m^2 the
training-seed and metric-seed variance components of the audit's trajectories:

    n_training >= 2 (z_a + z_b)^2 (s_t^2 + s_m^2 / m) / D^2.

Both are normal approximations (the noise of a mean of a few seeds is close to normal for
these metrics); each answer is at least 1.
"""

from __future__ import annotations

import math

from groundtruth import stats

__all__ = ["seeds_needed", "metric_seeds_needed", "training_seeds_needed"]


def _z_sum(power: float, level: float) -> float:
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be in (0, 1), got {power}")
    return stats.two_sided_z(level) + stats.two_sided_z(2.0 * power - 1.0)


def _check_delta(delta: float) -> float:
    if not (isinstance(delta, (int, float)) and math.isfinite(delta) and delta > 0):
        raise ValueError(f"the difference to detect must be a positive number, got {delta!r}")
    return float(delta)


def metric_seeds_needed(paired_std: float, delta: float, *, power: float = 0.8,
                        level: float = 0.95) -> int:
    """Metric seeds per SAE (the same seeds for both SAEs) to detect `delta` (module doc).

    Examples:
        >>> metric_seeds_needed(1.0, 1.0)  # (1.96 + 0.84)^2 = 7.85
        8
    """
    delta = _check_delta(delta)
    if not (math.isfinite(paired_std) and paired_std >= 0):
        raise ValueError(f"paired_std must be a finite number >= 0, got {paired_std!r}")
    return max(1, math.ceil((_z_sum(power, level) * paired_std / delta) ** 2))


def training_seeds_needed(training_var: float, metric_var: float, delta: float, *,
                          metric_seeds: int = 1, power: float = 0.8, level: float = 0.95) -> int:
    """Training seeds per configuration, each scored with `metric_seeds` metric seeds, to
    detect a difference `delta` between two configurations (module doc).

    Examples:
        >>> training_seeds_needed(0.5, 0.0, 1.0)  # 2 x 7.85 x 0.5
        8
    """
    delta = _check_delta(delta)
    for name, value in (("training_var", training_var), ("metric_var", metric_var)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if metric_seeds < 1:
        raise ValueError(f"metric_seeds must be >= 1, got {metric_seeds}")
    variance = 2.0 * (training_var + metric_var / metric_seeds)
    return max(1, math.ceil(_z_sum(power, level) ** 2 * variance / delta**2))


def seeds_needed(entry: dict, delta: float, *, power: float = 0.8, level: float = 0.95) -> dict:
    """Seeds to detect `delta` with one metric's audit entry (report.json's metrics[name]).

    Returns:
        {"metric_seeds": {width: n or None (no paired noise measured there)}, "paired_std":
        {width: std}, "training_seeds": n or None, "training_std", "metric_seed_std" (from
        the variance components), "note" where something could not be computed}.
    """
    delta = _check_delta(delta)
    _z_sum(power, level)  # checks power and level before any work
    paired = entry["reseed"]["paired"]
    out = {"delta": delta, "power": power, "level": level,
           "paired_std": {w: p["std"] for w, p in paired.items()},
           "metric_seeds": {w: (None if p["std"] is None else
                                metric_seeds_needed(p["std"], delta, power=power, level=level))
                            for w, p in paired.items()}}
    components = entry["variance_decomposition"].get("components")
    if not components:
        return {**out, "training_seeds": None, "training_std": None, "metric_seed_std": None,
                "note": entry["variance_decomposition"].get("note", "no variance components")}
    return {**out, "training_std": math.sqrt(components["training_seed"]),
            "metric_seed_std": math.sqrt(components["metric_seed"]),
            "training_seeds": training_seeds_needed(
                components["training_seed"], components["metric_seed"], delta, power=power,
                level=level)}
