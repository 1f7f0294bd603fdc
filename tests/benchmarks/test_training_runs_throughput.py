"""Benchmark (run with `make bench`): the audit's default trained population, one
train_population call per run (the audit before train_runs) vs train_runs (runs of one
architecture and width as one vmapped group, every group stepping on each batch). The default
trains each SAE on 3.1M samples; the benchmark trains the same runs on 1/16 of that (the rates
per sample are what is compared).

Both train on the same buffer of world samples, sampled once beforehand and timed apart (the
audit samples it once either way); the reported ratio is seed-samples per second, grouped over
per run, beside the target. A second benchmark splits one group's time into compilation and
steps, at the members of one run and of the whole group, and a third sets each group's step
beside the dense matmuls it cannot avoid (the ceiling of any scheduling gain).
"""

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from groundtruth.population import _batches, training_configs
from groundtruth.study import default_study_path, load_study
from synthetic_saes.rng import derive_seed
from synthetic_saes.training import member_knobs, train_population, train_runs
from synthetic_saes.training.grouping import group_runs, group_template
from synthetic_saes.training.trainer import init_state, make_train_step
from synthetic_saes.worlds import build_world

TARGET_RATIO = 4.0
STUDY = load_study(default_study_path())  # experiments/ce_vs_groundtruth.toml
PLAN = dataclasses.replace(STUDY.training, training_samples=STUDY.training.training_samples // 16)


@pytest.fixture(scope="module")
def buffer():
    world = build_world(STUDY.world)
    start = time.perf_counter()
    hidden = world.sample(PLAN.training_samples,
                          seed=derive_seed(PLAN.data_seed, "training-data")).hidden
    seconds = time.perf_counter() - start
    print(f"\nsampling the shared buffer: {PLAN.training_samples:,} samples in {seconds:.1f} s "
          f"({PLAN.training_samples / seconds:,.0f} samples/s)")
    return hidden


def test_default_population_grouped_vs_one_call_per_run(benchmark, buffer):
    configs = [config for _, config, _, _ in training_configs(PLAN)]
    seeds = PLAN.seeds
    group_size = max(len(g) for g in group_runs(configs))

    def timed(run) -> float:
        start = time.perf_counter()
        run()
        return time.perf_counter() - start

    per_run_seconds = timed(lambda: [
        train_population(_batches(buffer, c.batch_size), c, seeds=seeds, progress=False)
        for c in configs])
    wide_seconds = timed(lambda: train_runs(_batches(buffer, PLAN.batch_size), configs,
                                            seeds=seeds, progress=False,
                                            runs_per_call=group_size))

    def grouped():  # the default: one run per call on a CPU, one compiled step per group
        train_runs(_batches(buffer, PLAN.batch_size), configs, seeds=seeds, progress=False)

    benchmark.pedantic(grouped, rounds=1, iterations=1, warmup_rounds=0)
    grouped_seconds = benchmark.stats.stats.mean
    seed_samples = len(configs) * len(seeds) * PLAN.training_samples
    ratio = per_run_seconds / grouped_seconds
    benchmark.extra_info.update({
        "grouped_seed_samples_per_s": seed_samples / grouped_seconds,
        "wide_seed_samples_per_s": seed_samples / wide_seconds,
        "per_run_seed_samples_per_s": seed_samples / per_run_seconds,
        "ratio": ratio, "wide_ratio": per_run_seconds / wide_seconds,
        "target_ratio": TARGET_RATIO,
    })
    print(f"\n{len(configs)} runs x {len(seeds)} seeds in {len(group_runs(configs))} groups: "
          f"one call per run {seed_samples / per_run_seconds:,.0f} seed-samples/s "
          f"({per_run_seconds:.1f} s); grouped (default, one run per call) "
          f"{seed_samples / grouped_seconds:,.0f} ({grouped_seconds:.1f} s), ratio "
          f"{ratio:.2f}x (target {TARGET_RATIO:.0f}x); grouped with whole groups vmapped "
          f"{seed_samples / wide_seconds:,.0f} ({wide_seconds:.1f} s), ratio "
          f"{per_run_seconds / wide_seconds:.2f}x")


def _compile_and_step_seconds(configs, seeds, x, n_steps=20):
    template = group_template(configs)
    state = init_state(template, x.shape[1], [s for _ in configs for s in seeds])
    knobs = member_knobs(configs, len(seeds))
    step = make_train_step(template, x.shape[1])
    start = time.perf_counter()
    state, metrics = step(state, x, knobs)
    jax.block_until_ready(metrics)
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(n_steps):
        state, metrics = step(state, x, knobs)
    jax.block_until_ready(metrics)
    return compile_seconds, (time.perf_counter() - start) / n_steps


def test_where_a_group_spends_its_time(benchmark, buffer):
    runs = training_configs(PLAN)
    x = jax.numpy.asarray(np.ascontiguousarray(buffer[:PLAN.batch_size]))
    rows = []

    def profile():
        rows.clear()
        for indices in group_runs([c for _, c, _, _ in runs]):
            configs = [runs[i][1] for i in indices]
            one = _compile_and_step_seconds(configs[:1], PLAN.seeds, x)
            group = _compile_and_step_seconds(configs, PLAN.seeds, x)
            rows.append((runs[indices[0]][0], len(configs), one, group))

    benchmark.pedantic(profile, rounds=1, iterations=1, warmup_rounds=0)
    steps = PLAN.training_samples // PLAN.batch_size
    print(f"\nper group ({steps} steps a run): compile s | ms per step | ms per member-step, "
          "for one run's seeds / for the whole group")
    for key, n_runs, (c1, s1), (cg, sg) in rows:
        m1, mg = len(PLAN.seeds), n_runs * len(PLAN.seeds)
        print(f"  {key:34s} x{n_runs}: compile {c1:.1f} / {cg:.1f}; step {s1 * 1e3:.0f} / "
              f"{sg * 1e3:.0f}; member-step {s1 / m1 * 1e3:.1f} / {sg / mg * 1e3:.1f}")
    compile_one = sum(r[2][0] * r[1] for r in rows)
    steps_one = sum(r[2][1] * r[1] * steps for r in rows)
    compile_group = sum(r[3][0] for r in rows)
    steps_group = sum(r[3][1] * steps for r in rows)
    print(f"  estimated totals: one call per run {compile_one:.0f} s compiling + {steps_one:.0f} s "
          f"stepping; grouped {compile_group:.0f} s compiling + {steps_group:.0f} s stepping")


# Dense [batch x d_in x d_sae] matmuls in one member's step while every latent is alive: encode,
# decode, and in the backward pass the decoder's gradient, the latents' gradient and the
# encoder's gradient (AuxK adds three more only while a latent is dead).
DENSE_MATMULS = 5


def _matmul_floor_seconds(n_members: int, batch: int, d_in: int, d_sae: int, n_matmuls: int,
                          n_steps: int = 20) -> float:
    """Seconds of the same count of [members, batch, d_in] x [members, d_in, d_sae]-sized
    float32 matmuls, jitted as one function (what no schedule of the step can avoid)."""
    key = jax.random.key(0)
    x = jax.random.normal(key, (n_members, batch, d_in))
    w = jax.random.normal(key, (n_members, d_in, d_sae))

    @jax.jit
    def chain(x, w):
        h = jnp.einsum("mbd,mdw->mbw", x, w)  # encode
        total = h.sum()
        for i in range(n_matmuls - 1):  # alternate directions, as decode and gradients do
            if i % 2 == 0:
                x = jnp.einsum("mbw,mdw->mbd", h, w)
                total = total + x.sum()
            else:
                h = jnp.einsum("mbd,mdw->mbw", x, w)
                total = total + h.sum()
        return total

    jax.block_until_ready(chain(x, w))
    start = time.perf_counter()
    for _ in range(n_steps):
        out = chain(x, w)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / n_steps


def test_each_group_step_beside_its_unavoidable_matmuls(benchmark, buffer):
    runs = training_configs(PLAN)
    x = jnp.asarray(np.ascontiguousarray(buffer[:PLAN.batch_size]))
    rows = []

    def profile():
        rows.clear()
        for indices in group_runs([c for _, c, _, _ in runs]):
            configs = [runs[i][1] for i in indices]
            _, step = _compile_and_step_seconds(configs, PLAN.seeds, x)
            members = len(configs) * len(PLAN.seeds)
            floor = _matmul_floor_seconds(members, PLAN.batch_size, x.shape[1],
                                          configs[0].d_sae, DENSE_MATMULS)
            rows.append((runs[indices[0]][0], members, step, floor))

    benchmark.pedantic(profile, rounds=1, iterations=1, warmup_rounds=0)
    print(f"\nwhole-group step vs its dense matmuls alone (batch {PLAN.batch_size}; the matmul "
          "share bounds what any scheduling of the step could gain)")
    for key, members, step, floor in rows:
        print(f"  {key:34s} {members} members: step {step * 1e3:.1f} ms, matmuls {floor * 1e3:.1f} "
              f"ms ({floor / step:.0%} of the step; at most {step / floor:.1f}x from the rest)")
    total_step, total_floor = sum(r[2] for r in rows), sum(r[3] for r in rows)
    benchmark.extra_info.update({"matmul_share": total_floor / total_step})
    print(f"  all groups: matmuls {total_floor / total_step:.0%} of the step time")
