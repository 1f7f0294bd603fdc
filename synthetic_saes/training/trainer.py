"""Train many SAE seeds and runs at once: one compiled step, parameters and PRNG keys vmapped.

Runs that differ only in their sparsity knob share the compiled step (`train_runs`).
Every seed sees the same batches (the world is sampled once per step and shared), which is
where most of the speed comes from on a CPU: sampling a world costs as much as a training
step. Checkpoints are kept at log-spaced steps so each seed leaves a training trajectory.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from functools import partial

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from synthetic_saes.training.architectures import (
    MemberKnobs, aux_k_loss, member_knobs, sae_loss,
)
from synthetic_saes.training.config import K_ARCHITECTURES, TrainingConfig, checkpoint_steps
from synthetic_saes.training.grouping import group_runs, group_template
from synthetic_saes.training.population import Checkpoint, TrainedPopulation
from synthetic_saes.base_world import BaseWorld

__all__ = ["TrainState", "init_state", "make_train_step", "train_population", "train_runs"]


@flax.struct.dataclass
class TrainState:
    """Training state of S seeds (leading axis of every array but `step`).

    params: W_enc [S, d_in, d_sae], b_enc [S, d_sae], W_dec [S, d_sae, d_in], b_dec [S, d_in]
    (+ log_threshold [S, d_sae] for jumprelu); opt_state: Adam state of the same shapes;
    steps_since_fired: int32 [S, d_sae]; batch_threshold: float32 [S], the running inference
    threshold of batchtopk; step: int32 [].
    """

    params: dict
    opt_state: optax.OptState
    steps_since_fired: jax.Array
    batch_threshold: jax.Array
    step: jax.Array


def _init_params(key: jax.Array, config: TrainingConfig, d_in: int) -> dict:
    W_dec = jax.random.normal(key, (config.d_sae, d_in), dtype=jnp.float32)
    W_dec = W_dec / jnp.linalg.norm(W_dec, axis=1, keepdims=True)
    params = {
        "W_enc": W_dec.T * config.encoder_init_scale,
        "b_enc": jnp.zeros(config.d_sae, jnp.float32),
        "W_dec": W_dec,
        "b_dec": jnp.zeros(d_in, jnp.float32),
    }
    if config.architecture == "jumprelu":
        params["log_threshold"] = jnp.full(
            config.d_sae, np.log(config.jumprelu_init_threshold), jnp.float32
        )
    return params


def _optimizer(config: TrainingConfig) -> optax.GradientTransformation:
    # Adam is elementwise, so one optimizer over the stacked parameters is S independent ones.
    return optax.adam(config.lr, b1=config.adam_beta1, b2=config.adam_beta2)


def init_state(config: TrainingConfig, d_in: int, seeds: Sequence[int]) -> TrainState:
    """Initial state; seed s's parameters come from jax.random.key(s)."""
    keys = jnp.stack([jax.random.key_data(jax.random.key(int(s))) for s in seeds])
    params = jax.vmap(lambda k: _init_params(jax.random.wrap_key_data(k), config, d_in))(keys)
    n = len(seeds)
    return TrainState(
        params=params,
        opt_state=_optimizer(config).init(params),
        steps_since_fired=jnp.zeros((n, config.d_sae), jnp.int32),
        batch_threshold=jnp.zeros(n, jnp.float32),
        step=jnp.zeros((), jnp.int32),
    )


def make_train_step(config: TrainingConfig, d_in: int, frozen: Sequence[str] = ()):
    """A jitted step(state, x [batch, d_in], knobs) -> (state, metrics) for all M members.

    knobs: `MemberKnobs` of [M] arrays, each member's sparsity knob (`member_knobs`); every
    knob k must be <= config.k. Members may be seeds of one run or of several runs that differ
    only in their knob (`train_runs`). Parameters named in `frozen` keep their values.
    metrics: loss, mse, l0, dead, each [M].
    """
    frozen = tuple(frozen)
    optimizer = _optimizer(config)
    aux_k = config.aux_k or max(1, d_in // 2)
    uses_aux = config.architecture in K_ARCHITECTURES and config.aux_k_coefficient > 0

    def seed_loss(params, x, dead, knobs, with_aux: bool):
        loss, (out, mse) = sae_loss(params, x, config, knobs)
        if with_aux:
            loss = loss + aux_k_loss(params, x, out, dead, aux_k, config.aux_k_coefficient)
        return loss, (out.latents, mse)

    def step_impl(state: TrainState, x: jax.Array, knobs: MemberKnobs, with_aux: bool):
        dead = state.steps_since_fired > config.dead_window_steps
        grad_fn = jax.value_and_grad(partial(seed_loss, with_aux=with_aux), has_aux=True)
        (loss, (latents, mse)), grads = jax.vmap(grad_fn, in_axes=(0, None, 0, 0))(
            state.params, x, dead, knobs
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        updates = {k: jnp.zeros_like(v) if k in frozen else v for k, v in updates.items()}
        params = optax.apply_updates(state.params, updates)
        if "W_dec" not in frozen:
            params["W_dec"] = params["W_dec"] / jnp.linalg.norm(
                params["W_dec"], axis=-1, keepdims=True
            )
        active = latents != 0  # [M, batch, d_sae]
        fired = active.any(axis=1)
        steps_since_fired = jnp.where(fired, 0, state.steps_since_fired + 1)
        batch_threshold = state.batch_threshold
        if config.architecture in ("batchtopk", "matryoshka_batchtopk"):
            min_positive = jnp.where(active, latents, jnp.inf).min(axis=(1, 2))
            rate = config.batchtopk_threshold_lr
            updated = (1 - rate) * batch_threshold + rate * min_positive
            batch_threshold = jnp.where(jnp.isfinite(min_positive), updated, batch_threshold)
        metrics = {
            "loss": loss,
            "mse": mse,
            "l0": active.sum(-1).mean(-1).astype(jnp.float32),
            "dead": dead.sum(-1),
        }
        new_state = TrainState(params, opt_state, steps_since_fired, batch_threshold, state.step + 1)
        return new_state, metrics

    def step(state: TrainState, x: jax.Array, knobs: MemberKnobs):
        if not uses_aux:
            return step_impl(state, x, knobs, False)
        # The predicate is global (any member has a dead latent), so the branch is real: the
        # AuxK top-k and decode cost nothing while every latent is alive. A member without dead
        # latents gets an AuxK of exactly 0 (scale min(#dead / aux_k, 1) = 0) either way.
        any_dead = (state.steps_since_fired > config.dead_window_steps).any()
        return jax.lax.cond(
            any_dead, partial(step_impl, with_aux=True), partial(step_impl, with_aux=False),
            state, x, knobs,
        )

    return jax.jit(step, donate_argnums=0)


def _with_init(state: TrainState, init_params: dict | None, frozen: Sequence[str],
               config: TrainingConfig) -> TrainState:
    init_params = dict(init_params or {})
    unknown = sorted((set(init_params) | set(frozen)) - set(state.params))
    if unknown:
        raise ValueError(f"unknown parameter names {unknown}; known: {sorted(state.params)}")
    if not init_params:
        return state
    params = dict(state.params)
    for name, value in init_params.items():
        value = jnp.asarray(value, dtype=jnp.float32)
        if value.shape != params[name].shape[1:]:
            raise ValueError(
                f"init_params[{name!r}] has shape {value.shape}, expected {params[name].shape[1:]}"
            )
        params[name] = jnp.broadcast_to(value, params[name].shape)
    return state.replace(params=params, opt_state=_optimizer(config).init(params))


def _inference_arrays(state: TrainState, config: TrainingConfig) -> dict[str, np.ndarray]:
    params = jax.device_get(state.params)
    arrays = {name: np.asarray(params[name]) for name in ("W_enc", "b_enc", "W_dec", "b_dec")}
    if config.architecture == "jumprelu":
        arrays["threshold"] = np.exp(np.asarray(params["log_threshold"]))
    elif config.architecture in ("batchtopk", "matryoshka_batchtopk"):
        threshold = np.asarray(jax.device_get(state.batch_threshold))
        arrays["threshold"] = np.repeat(threshold[:, None], config.d_sae, axis=1)
    return {k: v.astype(np.float32) for k, v in arrays.items()}


def _prefetched(batches: Iterator[np.ndarray], depth: int = 2) -> Iterator[np.ndarray]:
    """Produce batches in a background thread (torch sampling overlaps the JAX step).

    The thread is stopped and joined when the consumer stops, so no sampler outlives its run.
    """
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not put(batch):
                    return
        except BaseException as error:  # re-raised in the consumer
            put(error)
            return
        put(done)

    thread = threading.Thread(target=produce, name="sample-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("seeds must not be empty")
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"seeds must be distinct non-negative ints, got {seeds}")
    return seeds


class _Group:
    """The runs of one group and their states: one compiled step for all of them, applied to
    chunks of `runs_per_call` runs x len(seeds) members (run-major) per call."""

    def __init__(self, configs: list[TrainingConfig], indices: tuple[int, ...],
                 seeds: tuple[int, ...], runs_per_call: int):
        self.indices = indices
        self.configs = [configs[i] for i in indices]
        self.template = group_template(self.configs)
        self.seeds = seeds
        self.total = self.template.total_steps
        self.keep = set(checkpoint_steps(self.total, self.template.n_checkpoints,
                                         self.template.first_checkpoint_fraction))
        self.chunks = [self.configs[i:i + runs_per_call]
                       for i in range(0, len(self.configs), runs_per_call)]
        self.knobs = [member_knobs(chunk, len(seeds)) for chunk in self.chunks]
        self.states: list[TrainState] | None = None
        self.step_fn = None
        self.checkpoints: list[tuple[int, dict[str, np.ndarray]]] = []
        self.logged: dict[str, list] = {"step": [], "loss": [], "mse": [], "l0": []}

    def start(self, d_in: int, init_params, frozen) -> None:
        self.states = [
            _with_init(init_state(self.template, d_in, [s for _ in chunk for s in self.seeds]),
                       init_params, frozen, self.template)
            for chunk in self.chunks]
        self.step_fn = make_train_step(self.template, d_in, frozen)

    def advance(self, step: int, x: jax.Array, log_every: int) -> dict | None:
        """One step of every chunk; returns the logged metrics [M] on logging steps."""
        results = [self.step_fn(state, x, knobs) for state, knobs in zip(self.states, self.knobs)]
        self.states = [state for state, _ in results]
        values = None
        if step % log_every == 0 or step == self.total:
            parts = jax.device_get([metrics for _, metrics in results])
            values = {k: np.concatenate([np.atleast_1d(p[k]) for p in parts]) for k in parts[0]}
            if not np.isfinite(values["loss"]).all():
                raise FloatingPointError(f"non-finite loss at step {step}: {values['loss']}")
            self.logged["step"].append(step)
            for name in ("loss", "mse", "l0"):
                self.logged[name].append(np.asarray(values[name], dtype=np.float32))
        if step in self.keep:
            parts = [_inference_arrays(state, self.template) for state in self.states]
            self.checkpoints.append(
                (step, {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}))
        return values

    def populations(self, data_seed: int, d_in: int) -> list[TrainedPopulation]:
        n = len(self.seeds)
        out = []
        for r, config in enumerate(self.configs):
            members = slice(r * n, (r + 1) * n)
            checkpoints = tuple(
                Checkpoint(step, step * config.batch_size,
                           {k: np.ascontiguousarray(v[members]) for k, v in arrays.items()})
                for step, arrays in self.checkpoints)
            history = {
                "step": np.asarray(self.logged["step"], dtype=np.int64),
                **{k: np.ascontiguousarray(np.stack(self.logged[k])[:, members])
                   for k in ("loss", "mse", "l0")},
            }
            out.append(TrainedPopulation(config=config, seeds=self.seeds,
                                         data_seed=int(data_seed), d_in=int(d_in),
                                         checkpoints=checkpoints, history=history))
        return out


def _train_stream(batches: Iterator[np.ndarray], groups: list[_Group], *, batch_size: int,
                  d_in: int | None, progress: bool, log_every: int, init_params, frozen,
                  desc: str) -> int:
    """Train every group in lockstep on one stream: each batch is drawn once and fed to every
    group still training. Returns d_in."""
    total = max(g.total for g in groups)
    bar = tqdm(total=total * batch_size, unit="sample", unit_scale=True, desc=desc,
               disable=not progress, smoothing=0.1)
    try:
        for step in range(1, total + 1):
            x = next(batches, None)
            if x is None:
                raise ValueError(f"the data ran out after {step - 1} of {total} steps")
            x = np.asarray(x, dtype=np.float32)
            if d_in is None:
                d_in = int(x.shape[-1])
            if x.shape != (batch_size, d_in):
                raise ValueError(
                    f"batch {step} has shape {x.shape}, expected ({batch_size}, {d_in})"
                )
            if groups[0].states is None:
                for group in groups:
                    group.start(d_in, init_params, frozen)
            x = jnp.asarray(x)
            shown = None
            for group in groups:
                if step <= group.total:
                    shown = group.advance(step, x, log_every) or shown
            if shown is not None:
                bar.set_postfix(loss=f"{float(np.mean(shown['loss'])):.3g}",
                                l0=f"{float(np.mean(shown['l0'])):.1f}")
            bar.update(batch_size)
    finally:
        bar.close()
        if hasattr(batches, "close"):
            batches.close()
    return d_in


def train_runs(
    data: BaseWorld | Iterable[np.ndarray],
    configs: Sequence[TrainingConfig],
    *,
    seeds: Sequence[int],
    data_seed: int = 0,
    progress: bool = True,
    log_every: int = 10,
    prefetch: bool = True,
    init_params: dict[str, np.ndarray] | None = None,
    frozen: Sequence[str] = (),
    desc: str | None = None,
    runs_per_call: int | None = None,
) -> list[TrainedPopulation]:
    """Train many runs, each with every seed, sharing compiled steps and samples.

    Runs whose configs differ only in the sparsity knob (k, l1_coefficient, l0_coefficient;
    `group_runs`) form a group and share one compiled step (the knob is an argument, k a rank
    mask under the group's largest k), vmapped over runs_per_call x len(seeds) members per
    call. All groups of one batch size train in lockstep on one stream of batches, each batch
    drawn once per step for every run and seed. Each run's result equals training it alone
    with `train_population` (same seeds, same data_seed): same init, same batches, same top-k
    selection; only XLA's float reassociation at another vmapped size may differ (none at
    runs_per_call=1).

    Args:
        data: a world (sampled with `data_seed`, one stream per batch size) or an iterable
            of float32 [batch_size, d_in] arrays (then all configs must share a batch size).
        configs: one per run; may repeat (each gets its own population).
        seeds, data_seed, progress, log_every, prefetch, init_params, frozen: as in
            `train_population`, applied to every run.
        desc: the progress bar's label (default: runs, groups and seeds).
        runs_per_call: runs stacked on the vmapped axis of one call. Default: 1 on a CPU, where
            the step is compute-bound and wider stacks spill the caches (measured slower per
            member), so sharing saves compilations only; every run of the group on an
            accelerator, where one wide call keeps the device busy.

    Returns:
        One `TrainedPopulation` per config, in the order of `configs`.

    Raises:
        ValueError: on no configs, repeated or negative seeds, an iterable with several batch
            sizes, or batches of the wrong shape.
    """
    configs = list(configs)
    if not configs:
        raise ValueError("configs must not be empty")
    if any(not isinstance(c, TrainingConfig) for c in configs):
        names = [type(c).__name__ for c in configs]
        raise ValueError(f"configs must be TrainingConfig, got {names}")
    seeds = _check_seeds(seeds)
    if runs_per_call is None:
        runs_per_call = 1 if jax.default_backend() == "cpu" else len(configs)
    if isinstance(runs_per_call, bool) or not isinstance(runs_per_call, int) or runs_per_call < 1:
        raise ValueError(f"runs_per_call must be a positive int, got {runs_per_call!r}")
    batch_sizes = sorted({c.batch_size for c in configs})
    is_world = isinstance(data, BaseWorld)
    if not is_world and len(batch_sizes) > 1:
        raise ValueError(f"an iterable of batches has one batch size; the configs have "
                         f"{batch_sizes} (pass a world, or train each batch size apart)")
    groups = [_Group(configs, indices, seeds, runs_per_call)
              for indices in group_runs(configs)]
    results: dict[int, TrainedPopulation] = {}
    for batch_size in batch_sizes:
        stream_groups = [g for g in groups if g.template.batch_size == batch_size]
        if is_world:
            d_in = data.d_in
            batches: Iterator[np.ndarray] = (
                b.hidden for b in data.stream(batch_size, seed=data_seed))
        else:
            batches = iter(data)
            d_in = None
        if prefetch:
            batches = _prefetched(batches)
        n_runs = sum(len(g.configs) for g in stream_groups)
        label = desc or (
            f"train {stream_groups[0].template.architecture} x{len(seeds)} seeds"
            if n_runs == 1 else
            f"train {n_runs} runs in {len(stream_groups)} groups x{len(seeds)} seeds")
        d_in = _train_stream(batches, stream_groups, batch_size=batch_size, d_in=d_in,
                             progress=progress, log_every=log_every, init_params=init_params,
                             frozen=frozen, desc=label)
        for group in stream_groups:
            for index, population in zip(group.indices, group.populations(data_seed, d_in)):
                results[index] = population
            group.states = None  # free the stacked parameters before the next stream
    return [results[i] for i in range(len(configs))]


def train_population(
    data: BaseWorld | Iterable[np.ndarray],
    config: TrainingConfig,
    *,
    seeds: Sequence[int],
    data_seed: int = 0,
    progress: bool = True,
    log_every: int = 10,
    prefetch: bool = True,
    init_params: dict[str, np.ndarray] | None = None,
    frozen: Sequence[str] = (),
    desc: str | None = None,
) -> TrainedPopulation:
    """Train `len(seeds)` SAEs of one config at once on a shared stream of batches.

    Args:
        data: a world (sampled with `data_seed`) or an iterable of float32 [batch_size, d_in]
            arrays.
        config: the training config (architecture, width, sparsity, samples, ...).
        seeds: distinct non-negative init seeds, one per SAE.
        data_seed: seed of the world's sample stream (ignored for an iterable).
        progress: show a progress bar (samples/s and ETA).
        log_every: record loss / mse / l0 every this many steps.
        prefetch: sample the next batches in a background thread.
        init_params: arrays that replace the random initial values of every seed, e.g.
            {"W_dec": true_features} (shapes of one seed, broadcast to all).
        frozen: names of parameters never updated (e.g. ("W_dec",) to tune only the encoder
            of a given dictionary).
        desc: the progress bar's label (default: the architecture and the number of seeds).

    Returns:
        The population with each seed's parameters at every checkpoint.

    Raises:
        ValueError: on repeated or negative seeds, or batches of the wrong shape.
    """
    return train_runs(data, [config], seeds=seeds, data_seed=data_seed, progress=progress,
                      log_every=log_every, prefetch=prefetch, init_params=init_params,
                      frozen=frozen, desc=desc)[0]
