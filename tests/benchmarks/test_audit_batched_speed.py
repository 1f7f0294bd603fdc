"""Benchmark (run with `make bench`): the audit's measurements, one SAE at a time (the previous
loop: every metric of one SAE, then the next, `evaluate_metric`) against the batch forms (one
metric for a stack of SAEs of one width, `evaluate_metric_batch`), in the same run, on the
default study's world, data sizes and metrics, at its widths (trained 256 and 512, constructed
2048), with values checked equal.

An SAE-evaluation is one SAE measured on every metric of the default study at one seed;
the ratio is the loop's seconds over the batch forms'. Samples, corpus and probe sets are drawn
before the clock starts, once for each path (the audit draws them once for all SAEs).
Target: faster than the loop (ratio > 1), the more so where per-SAE work is small.
"""

import os
import time
from pathlib import Path

import numpy as np
import pytest

from groundtruth.metrics.data import AuditData
from groundtruth.metrics.registry import evaluate_metric, evaluate_metric_batch
from groundtruth.study import load_study
from synthetic_saes.sae_params import SAEParams
from synthetic_saes.worlds import build_world

pytestmark = pytest.mark.slow

TARGET_RATIO = 1.0
DEFAULT_STUDY = Path(__file__).resolve().parents[2] / "experiments" / "ce_vs_groundtruth.toml"
STACKS = {256: 12, 512: 12, 2048: 4}  # width -> SAEs of that width


@pytest.fixture(scope="module")
def setting():
    study = load_study(DEFAULT_STUDY)
    world = build_world(study.world)
    metrics = list(dict.fromkeys([*study.metrics, *study.lenses.ground_truth, "l0"]))
    return study, world, metrics


def _saes(world, width: int, n: int) -> list[SAEParams]:
    """Random SAEs of the trained architectures (topk, relu, jumprelu), sparse-ish biases."""
    rng = np.random.default_rng(width)
    out = []
    for i in range(n):
        arch = ("topk", "relu", "jumprelu")[i % 3]
        decoder = rng.standard_normal((width, world.d_in)).astype(np.float32)
        decoder /= np.linalg.norm(decoder, axis=1, keepdims=True)
        out.append(SAEParams(
            W_enc=decoder.T, b_enc=np.full(width, -0.5, np.float32), W_dec=decoder,
            b_dec=np.zeros(world.d_in, np.float32), architecture=arch,
            k=16 if arch == "topk" else None,
            threshold=np.full(width, 0.1, np.float32) if arch == "jumprelu" else None))
    return out


def _warm(world, config) -> AuditData:
    data = AuditData(world, config)
    data.eval_sample(0), data.corpus(0), data.probe_sets(0)
    return data


@pytest.mark.parametrize("width", sorted(STACKS))
def test_sae_evaluations_per_second_batched_vs_loop(benchmark, setting, width):
    study, world, metrics = setting
    saes = _saes(world, width, STACKS[width])
    loop_data, batch_data = _warm(world, study.data), _warm(world, study.data)
    load = os.getloadavg()[0]

    start = time.perf_counter()
    looped = {(i, name): evaluate_metric(name, sae, loop_data, 0)
              for i, sae in enumerate(saes) for name in metrics}
    loop_seconds = time.perf_counter() - start

    def batched():
        return {(i, name): value for name in metrics
                for i, value in enumerate(evaluate_metric_batch(name, saes, batch_data, 0))}

    values = benchmark.pedantic(batched, rounds=1, iterations=1, warmup_rounds=0)
    ours_seconds = benchmark.stats.stats.mean
    worst = max(abs(values[k] - looped[k]) for k in looped)
    assert worst <= 1e-9, f"batched values differ from the loop's by up to {worst}"
    ratio = loop_seconds / ours_seconds
    benchmark.extra_info.update({"loop_s": loop_seconds, "ours_s": ours_seconds, "ratio": ratio,
                                 "n_saes": len(saes), "n_metrics": len(metrics),
                                 "max_abs_difference": worst, "load_1min": load})
    print(f"\naudit measurements, width {width}, {len(saes)} SAEs x {len(metrics)} metrics: loop "
          f"{len(saes) / loop_seconds:.2f} SAE-evaluations/s, batched "
          f"{len(saes) / ours_seconds:.2f}/s, ratio {ratio:.2f}x (target: > {TARGET_RATIO:.0f}x; "
          f"max |difference| {worst:.1e}; 1-min load {load:.1f} on {os.cpu_count()} cores)")
