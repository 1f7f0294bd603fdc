"""When is a trained SAE converged? The relative gain of its ground truth over the last doubling.

A training curve v(t) (the primary ground-truth metric, oriented so higher is better, at the
checkpoint steps t_1 < ... < t_n = T) has converged when the last doubling of training samples
bought less than `threshold` of its final value:

    gain = (v(T) - v(T / 2)) / |v(T)|        converged  <=>  gain < threshold  (default 0.02)

v(T / 2) is interpolated linearly in log2(step) between the two checkpoints around it (the
checkpoints are log-spaced, so this is the natural scale). A curve whose first checkpoint comes
after T / 2 cannot be judged (None). A curve that is 0 at T and at T / 2 has gain 0 (flat); 0 at
T only has an infinite gain. A falling curve (negative gain) counts as converged: more samples no
longer help.

A run's gain is the median over its seeds; the population is converged when every run is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["CONVERGED_GAIN", "last_doubling_gain", "convergence_summary"]

CONVERGED_GAIN = 0.02


def last_doubling_gain(steps: Sequence[int], values: Sequence[float]) -> float | None:
    """(v(T) - v(T/2)) / |v(T)| for one curve (see the module docstring); None when the first
    checkpoint is after T / 2.

    Raises:
        ValueError: steps not strictly increasing and positive, lengths that differ, fewer
            than two checkpoints, or a non-finite value.
    """
    t = np.asarray(steps, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if t.ndim != 1 or t.shape != v.shape:
        raise ValueError(f"steps {t.shape} and values {v.shape} must be 1-D of one length")
    if t.size < 2:
        raise ValueError("a convergence check needs at least two checkpoints")
    if not (t[0] > 0 and np.all(np.diff(t) > 0)):
        raise ValueError(f"checkpoint steps must be positive and increasing, got {t.tolist()}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"a training curve holds a non-finite value: {v.tolist()}")
    half = t[-1] / 2
    if half < t[0]:
        return None
    v_half = float(np.interp(np.log2(half), np.log2(t), v))
    change = float(v[-1]) - v_half
    if v[-1] == 0:
        return 0.0 if change == 0 else float(np.sign(change) * np.inf)
    return change / abs(float(v[-1]))


def convergence_summary(curves: Mapping[str, tuple[Sequence[int], np.ndarray]], *,
                        threshold: float = CONVERGED_GAIN) -> dict:
    """Convergence of every run: curves[run] = (steps [n_ckpt], values [n_seeds, n_ckpt]).

    Returns a dict: threshold, per_run {run: {"gain": median over seeds, "seed_gains": [...],
    "converged": bool}} (a gain None when not measurable or infinite, with a "note" saying
    which seeds end at 0), n_runs, n_measurable, n_converged,
    median_gain and max_gain over measurable runs (None when none is), converged (all runs
    measurable and converged).
    """
    if not threshold > 0:
        raise ValueError(f"the convergence threshold must be positive, got {threshold}")
    per_run = {}
    for run, (steps, values) in curves.items():
        rows = np.atleast_2d(np.asarray(values, dtype=np.float64))
        gains = [last_doubling_gain(steps, row) for row in rows]
        measured = [g for g in gains if g is not None]
        gain = float(np.median(measured)) if measured else None
        per_run[run] = {"gain": _finite(gain), "seed_gains": [_finite(g) for g in gains],
                        "converged": gain is not None and gain < threshold}
        infinite = sum(g is not None and not np.isfinite(g) for g in gains)
        if infinite:  # JSON has no infinity: the gain is left out and the reason given
            per_run[run]["note"] = (
                f"the ground truth is 0 at the end of training for {infinite} seed(s), so their "
                "relative gain is infinite (falling to 0: -inf, which counts as converged)")
    measurable = [r["gain"] for r in per_run.values() if r["gain"] is not None]
    return {
        "definition": "relative gain of the primary ground truth over the last doubling of "
                      "training samples, (v(T) - v(T/2)) / |v(T)|, median over seeds",
        "threshold": threshold,
        "per_run": per_run,
        "n_runs": len(per_run),
        "n_measurable": len(measurable),
        "n_converged": sum(r["converged"] for r in per_run.values()),
        "median_gain": float(np.median(measurable)) if measurable else None,
        "max_gain": float(np.max(measurable)) if measurable else None,
        "converged": bool(per_run) and all(r["converged"] for r in per_run.values()),
    }


def _finite(gain: float | None) -> float | None:
    return gain if gain is None or np.isfinite(gain) else None
