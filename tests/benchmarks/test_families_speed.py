"""Benchmarks (run with `make bench`): constructed SAEs on the cpu world, the previous path
(`BaselineOracleBase`: train_population per seed, full sorts) against `make_family` /
`make_controls` as they are, in the same run, on the same outputs (checked bit for bit).

Target: seconds rather than minutes. Each case starts from nothing (no oracle fitted yet), as
a fresh `make_family(world, "decoder_noise", seeds=(0, 1, 2))` or `make_controls(world)` does;
the ratio is the baseline's seconds over ours. The world's sampling is included; our step is
compiled once per process, so the first case pays its compile and later ones do not.
"""

import os
import time

import numpy as np
import pytest

from synthetic_saes.families import make_controls, make_family
from synthetic_saes.oracle import OracleBase
from synthetic_saes.oracle_baseline import BaselineOracleBase
from synthetic_saes.worlds import build_world

pytestmark = pytest.mark.slow

TARGET_SECONDS = 10.0  # "seconds, not minutes"


@pytest.fixture(scope="module")
def cpu_world():
    return build_world("cpu")


def _same(fast, slow) -> bool:
    return all(
        np.array_equal(getattr(a.params, n), getattr(b.params, n))
        for a, b in zip(fast, slow, strict=True)
        for n in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")
        if getattr(a.params, n) is not None
    )


def _compare(benchmark, label, baseline, ours):
    load = os.getloadavg()[0]
    start, cpu = time.perf_counter(), time.process_time()
    slow = baseline()
    baseline_seconds, baseline_cpu = time.perf_counter() - start, time.process_time() - cpu
    cpu = time.process_time()
    fast = benchmark.pedantic(ours, rounds=1, iterations=1, warmup_rounds=0)
    ours_cpu = time.process_time() - cpu
    ours_seconds = benchmark.stats.stats.mean
    assert _same(fast, slow), "the fast path must give the baseline's SAEs bit for bit"
    ratio = baseline_seconds / ours_seconds
    benchmark.extra_info.update({"baseline_s": baseline_seconds, "ours_s": ours_seconds,
                                 "ratio": ratio, "baseline_cpu_s": baseline_cpu,
                                 "ours_cpu_s": ours_cpu, "load_1min": load})
    # CPU seconds (all threads) say less about the machine's other load than wall seconds.
    print(f"\n{label}: baseline {baseline_seconds:.1f} s ({baseline_cpu:.1f} CPU-s), ours "
          f"{ours_seconds:.1f} s ({ours_cpu:.1f} CPU-s), ratio {ratio:.2f}x wall, "
          f"{baseline_cpu / ours_cpu:.2f}x CPU (target: under {TARGET_SECONDS:.0f} s; 1-min "
          f"load {load:.1f} on {os.cpu_count()} cores)")


def test_make_family_decoder_noise_three_seeds(benchmark, cpu_world):
    seeds = (0, 1, 2)
    _compare(
        benchmark, "make_family(cpu, decoder_noise, seeds=(0, 1, 2))",
        lambda: make_family(cpu_world, "decoder_noise", seeds=seeds,
                            bases={s: BaselineOracleBase(cpu_world, seed=s) for s in seeds}),
        lambda: make_family(cpu_world, "decoder_noise", seeds=seeds),
    )


def test_make_controls(benchmark, cpu_world):
    _compare(
        benchmark, "make_controls(cpu, seed=0)",
        lambda: make_controls(cpu_world, bases={0: BaselineOracleBase(cpu_world, seed=0)}),
        lambda: make_controls(cpu_world, bases={0: OracleBase(cpu_world, seed=0)}),
    )


def test_make_controls_given_the_oracle(benchmark, cpu_world):
    # The members alone: both bases hold the same, already fitted oracle.
    oracle = OracleBase(cpu_world, seed=0).oracle

    def bases(kind):
        base = kind(cpu_world, seed=0)
        base.__dict__["oracle"] = oracle
        return {0: base}

    _compare(
        benchmark, "make_controls(cpu, seed=0), oracle given",
        lambda: make_controls(cpu_world, bases=bases(BaselineOracleBase)),
        lambda: make_controls(cpu_world, bases=bases(OracleBase)),
    )


def test_later_calls_on_one_world_reuse_its_oracles(benchmark, cpu_world):
    """The quick tour's order: a family of three seeds, then the controls and a second family
    on the same world. The later calls reuse the oracles the first fitted (kept per world for
    the process); the baseline refits them, as every call did before."""
    seeds = (0, 1, 2)
    make_family(cpu_world, "decoder_noise", seeds=seeds)  # fits (or has fitted) the oracles

    def later(bases):
        return [*make_controls(cpu_world, bases=bases(0) if bases else None),
                *make_family(cpu_world, "dropped", seeds=seeds,
                             bases={s: bases(s)[s] for s in seeds} if bases else None)]

    _compare(
        benchmark, "make_controls(cpu) + make_family(cpu, dropped, seeds=(0, 1, 2)) after a family",
        lambda: later(lambda s: {s: BaselineOracleBase(cpu_world, seed=s)}),
        lambda: later(None),
    )
