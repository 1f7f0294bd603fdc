"""Train many SAE seeds at once: one compiled step, parameters and PRNG keys vmapped.

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

from synthetic_saes.training.architectures import aux_k_loss, sae_loss
from synthetic_saes.training.config import TrainingConfig, checkpoint_steps
from synthetic_saes.training.population import Checkpoint, TrainedPopulation
from synthetic_saes.base_world import BaseWorld

__all__ = ["TrainState", "init_state", "make_train_step", "train_population"]


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
    """A jitted step(state, x [batch, d_in]) -> (state, metrics) for all seeds at once.

    Parameters named in `frozen` keep their values. metrics: loss, mse, l0, dead, each [S].
    """
    frozen = tuple(frozen)
    optimizer = _optimizer(config)
    aux_k = config.aux_k or max(1, d_in // 2)
    uses_aux = config.architecture in ("topk", "batchtopk") and config.aux_k_coefficient > 0

    def seed_loss(params, x, dead, with_aux: bool):
        loss, (out, mse) = sae_loss(params, x, config)
        if with_aux:
            loss = loss + aux_k_loss(params, x, out, dead, aux_k, config.aux_k_coefficient)
        return loss, (out.latents, mse)

    def step_impl(state: TrainState, x: jax.Array, with_aux: bool):
        dead = state.steps_since_fired > config.dead_window_steps
        grad_fn = jax.value_and_grad(partial(seed_loss, with_aux=with_aux), has_aux=True)
        (loss, (latents, mse)), grads = jax.vmap(grad_fn, in_axes=(0, None, 0))(
            state.params, x, dead
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        updates = {k: jnp.zeros_like(v) if k in frozen else v for k, v in updates.items()}
        params = optax.apply_updates(state.params, updates)
        if "W_dec" not in frozen:
            params["W_dec"] = params["W_dec"] / jnp.linalg.norm(
                params["W_dec"], axis=-1, keepdims=True
            )
        active = latents != 0  # [S, batch, d_sae]
        fired = active.any(axis=1)
        steps_since_fired = jnp.where(fired, 0, state.steps_since_fired + 1)
        batch_threshold = state.batch_threshold
        if config.architecture == "batchtopk":
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

    def step(state: TrainState, x: jax.Array):
        if not uses_aux:
            return step_impl(state, x, False)
        # The predicate is global (any seed has a dead latent), so the branch is real: the
        # AuxK top-k and decode cost nothing while every latent is alive.
        any_dead = (state.steps_since_fired > config.dead_window_steps).any()
        return jax.lax.cond(
            any_dead, partial(step_impl, with_aux=True), partial(step_impl, with_aux=False),
            state, x,
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
    elif config.architecture == "batchtopk":
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
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("seeds must not be empty")
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"seeds must be distinct non-negative ints, got {seeds}")
    if isinstance(data, BaseWorld):
        d_in = data.d_in
        batches: Iterator[np.ndarray] = (
            b.hidden for b in data.stream(config.batch_size, seed=data_seed)
        )
    else:
        batches = iter(data)
        d_in = None
    if prefetch:
        batches = _prefetched(batches)

    total = config.total_steps
    keep = set(checkpoint_steps(total, config.n_checkpoints, config.first_checkpoint_fraction))
    state = None
    step_fn = None
    checkpoints: list[Checkpoint] = []
    logged: dict[str, list] = {"step": [], "loss": [], "mse": [], "l0": []}
    bar = tqdm(total=total * config.batch_size, unit="sample", unit_scale=True,
               desc=desc or f"train {config.architecture} x{len(seeds)} seeds",
               disable=not progress,
               smoothing=0.1)
    try:
        for step in range(1, total + 1):
            x = next(batches, None)
            if x is None:
                raise ValueError(f"the data ran out after {step - 1} of {total} steps")
            x = np.asarray(x, dtype=np.float32)
            if d_in is None:
                d_in = int(x.shape[-1])
            if x.shape != (config.batch_size, d_in):
                raise ValueError(
                    f"batch {step} has shape {x.shape}, expected ({config.batch_size}, {d_in})"
                )
            if state is None:
                state = _with_init(init_state(config, d_in, seeds), init_params, frozen, config)
                step_fn = make_train_step(config, d_in, frozen)
            state, metrics = step_fn(state, jnp.asarray(x))
            if step % log_every == 0 or step == total:
                values = jax.device_get(metrics)
                if not np.isfinite(values["loss"]).all():
                    raise FloatingPointError(f"non-finite loss at step {step}: {values['loss']}")
                logged["step"].append(step)
                for name in ("loss", "mse", "l0"):
                    logged[name].append(np.asarray(values[name], dtype=np.float32))
                bar.set_postfix(loss=f"{float(np.mean(values['loss'])):.3g}",
                                l0=f"{float(np.mean(values['l0'])):.1f}")
            if step in keep:
                checkpoints.append(
                    Checkpoint(step, step * config.batch_size, _inference_arrays(state, config))
                )
            bar.update(config.batch_size)
    finally:
        bar.close()
        if hasattr(batches, "close"):
            batches.close()
    history = {
        "step": np.asarray(logged["step"], dtype=np.int64),
        **{k: np.stack(logged[k]) for k in ("loss", "mse", "l0")},
    }
    return TrainedPopulation(
        config=config,
        seeds=seeds,
        data_seed=int(data_seed),
        d_in=int(d_in),
        checkpoints=tuple(checkpoints),
        history=history,
    )
