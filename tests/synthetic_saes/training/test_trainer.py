import jax.numpy as jnp
import numpy as np
import pytest
import torch
from sae_lens import SAE

from groundtruth.metrics import evaluate_quality
from synthetic_saes.training import (
    TrainedPopulation,
    TrainingConfig,
    group_runs,
    train_population,
    train_runs,
)
from synthetic_saes.training.architectures import inference_encode

ARCH_SETTINGS = {
    "topk": {"k": 4},
    "batchtopk": {"k": 4},
    "relu_l1": {"k": None, "l1_coefficient": 0.3},
    "jumprelu": {"k": None, "l0_coefficient": 0.5, "jumprelu_init_threshold": 1.0},
    "matryoshka_batchtopk": {"k": 4, "matryoshka_widths": (4, 12, 32)},
}


def small_config(architecture="topk", **changes):
    settings = dict(architecture=architecture, d_sae=32, training_samples=256 * 120,
                    batch_size=256, lr=3e-3, n_checkpoints=4, **ARCH_SETTINGS[architecture])
    settings.update(changes)
    return TrainingConfig(**settings)


@pytest.fixture(scope="module")
def populations(tiny_world):
    return {arch: train_population(tiny_world, small_config(arch), seeds=[0, 1, 2], data_seed=5,
                                   progress=False)
            for arch in ARCH_SETTINGS}


@pytest.mark.parametrize("architecture", list(ARCH_SETTINGS))
def test_every_architecture_learns(populations, architecture):
    pop = populations[architecture]
    assert pop.n_seeds == 3 and pop.checkpoint_steps == (4, 12, 38, 120)
    mse = pop.history["mse"]
    assert mse.shape == (len(pop.history["step"]), 3)
    assert (mse[-1] < 0.5 * mse[0]).all(), "reconstruction error should fall a lot"
    if architecture in ("topk", "batchtopk", "matryoshka_batchtopk"):
        assert abs(float(pop.history["l0"][-1].mean()) - 4) < 0.5


@pytest.mark.parametrize("architecture", list(ARCH_SETTINGS))
def test_exported_sae_lens_encode_matches_ours(populations, architecture, tmp_path, tiny_world):
    pop = populations[architecture]
    path = pop.export(tmp_path / "sae", seed_index=1, checkpoint_index=2)
    sae = SAE.load_from_disk(path)
    assert sae.cfg.metadata["groundtruth_step"] == pop.checkpoints[2].step
    assert sae.cfg.metadata["groundtruth_seed"] == 1
    x = tiny_world.sample(512, seed=9).hidden
    with torch.no_grad():
        theirs = sae.encode(torch.from_numpy(x)).numpy()
    arrays = {k: jnp.asarray(v[1]) for k, v in pop.checkpoints[2].arrays.items()}
    arch = pop.config.inference_architecture
    ours = inference_encode(arrays, jnp.asarray(x), arch, k=pop.config.k,
                            threshold=arrays.get("threshold"))
    np.testing.assert_allclose(np.asarray(ours), theirs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pop.params(1, 2).encode(x), theirs, rtol=1e-5, atol=1e-5)


def test_ground_truth_f1_rises_along_the_checkpoints(populations, tiny_world):
    pop = populations["topk"]
    for seed_index in range(pop.n_seeds):
        f1 = [evaluate_quality(pop.params(seed_index, c), tiny_world, n_samples=2000, seed=0).f1
              for c in range(len(pop.checkpoints))]
        assert f1[-1] > f1[0] + 0.1, f1


def test_same_seeds_same_checkpoints_bit_for_bit(tiny_world, populations):
    again = train_population(tiny_world, small_config("topk"), seeds=[0, 1, 2], data_seed=5,
                             progress=False)
    for a, b in zip(populations["topk"].checkpoints, again.checkpoints, strict=True):
        for name in a.arrays:
            assert np.array_equal(a.arrays[name], b.arrays[name]), name


def test_a_seed_trained_in_a_population_equals_it_trained_alone(tiny_world, populations):
    alone = train_population(tiny_world, small_config("topk"), seeds=[1], data_seed=5,
                             progress=False)
    together = populations["topk"].checkpoints[-1].arrays
    for name, value in alone.checkpoints[-1].arrays.items():
        np.testing.assert_allclose(value[0], together[name][1], rtol=1e-4, atol=1e-5)


def test_seeds_differ_from_one_another(populations):
    W = populations["topk"].checkpoints[-1].arrays["W_dec"]
    assert not np.allclose(W[0], W[1])


def test_decoder_rows_stay_unit_norm(populations):
    for pop in populations.values():
        norms = np.linalg.norm(pop.checkpoints[-1].arrays["W_dec"], axis=-1)
        np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_frozen_parameters_do_not_move(tiny_world):
    G = np.array(tiny_world.feature_directions)
    pop = train_population(
        tiny_world,
        small_config("jumprelu", d_sae=64, training_samples=256 * 10, n_checkpoints=1),
        seeds=[0], progress=False,
        init_params={"W_dec": G, "W_enc": G.T, "b_dec": tiny_world.bias},
        frozen=("W_dec", "b_dec"),
    )
    arrays = pop.checkpoints[-1].arrays
    assert np.array_equal(arrays["W_dec"][0], G)
    assert np.array_equal(arrays["b_dec"][0], tiny_world.bias)
    assert not np.array_equal(arrays["W_enc"][0], G.T)


def test_population_save_and_load(populations, tmp_path):
    pop = populations["batchtopk"]
    pop.save(tmp_path / "pop")
    back = TrainedPopulation.load(tmp_path / "pop")
    assert back.config == pop.config and back.seeds == pop.seeds
    assert back.checkpoint_steps == pop.checkpoint_steps
    for a, b in zip(pop.checkpoints, back.checkpoints, strict=True):
        for name in a.arrays:
            assert np.array_equal(a.arrays[name], b.arrays[name])
    assert np.array_equal(back.history["loss"], pop.history["loss"])


def test_trains_on_any_stream_of_batches():
    rng = np.random.default_rng(0)
    batches = (rng.standard_normal((64, 8)).astype(np.float32) for _ in range(20))
    cfg = TrainingConfig(architecture="topk", d_sae=16, k=2, training_samples=64 * 20,
                         batch_size=64, n_checkpoints=2)
    pop = train_population(batches, cfg, seeds=[3, 4], progress=False)
    assert pop.d_in == 8 and pop.n_seeds == 2


def test_bad_input_is_refused(tiny_world):
    cfg = TrainingConfig(architecture="topk", d_sae=16, k=2, training_samples=64 * 4,
                         batch_size=64, n_checkpoints=1)
    with pytest.raises(ValueError, match="distinct non-negative"):
        train_population(tiny_world, cfg, seeds=[1, 1], progress=False)
    with pytest.raises(ValueError, match="seeds must not be empty"):
        train_population(tiny_world, cfg, seeds=[], progress=False)
    short = (np.zeros((64, 8), np.float32) for _ in range(2))
    with pytest.raises(ValueError, match="ran out after 2 of 4 steps"):
        train_population(short, cfg, seeds=[0], progress=False)
    wrong = (np.zeros((32, 8), np.float32) for _ in range(4))
    with pytest.raises(ValueError, match=r"batch 1 has shape \(32, 8\), expected \(64, 8\)"):
        train_population(wrong, cfg, seeds=[0], progress=False)
    with pytest.raises(ValueError, match="unknown parameter names"):
        train_population(tiny_world, cfg, seeds=[0], progress=False, frozen=("W_encoder",))
    with pytest.raises(ValueError, match="init_params"):
        train_population(tiny_world, cfg, seeds=[0], progress=False,
                         init_params={"W_dec": np.zeros((3, 3))})


def _low_rank_batches(n_steps=40, batch=64, d_in=10, seed=0):
    """Data of rank 4 in 10 dimensions: many latents die, so AuxK runs too."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((4, d_in)).astype(np.float32)
    return [(np.abs(rng.standard_normal((batch, 4))) ** 2 @ basis).astype(np.float32)
            for _ in range(n_steps)]


def _grid():
    base = dict(d_sae=24, training_samples=64 * 24, batch_size=64, lr=3e-3, n_checkpoints=3,
                dead_window_steps=4)
    return ([TrainingConfig(architecture="topk", k=k, **base) for k in (5, 2)]
            + [TrainingConfig(architecture="relu_l1", k=None, l1_coefficient=c, **base)
               for c in (0.1, 0.5)]
            + [TrainingConfig(architecture="matryoshka_batchtopk", k=k,
                              matryoshka_widths=(6, 24), **base) for k in (2, 4)])


def test_runs_stacked_on_one_vmapped_axis_equal_each_run_trained_alone():
    # Same init, batches and top-k selections; XLA may reassociate float sums differently for
    # another vmapped size (measured: <= 1.2e-7 on the checkpoints after 40 steps), else equal.
    batches = _low_rank_batches(n_steps=24)
    configs = _grid()
    assert len(group_runs(configs)) == 3  # (jumprelu's traced l0 knob: test_architectures)
    together = train_runs(iter(batches), configs, seeds=[3, 0], progress=False, log_every=4,
                          runs_per_call=2)
    for config, pop in zip(configs, together, strict=True):
        alone = train_population(iter(batches), config, seeds=[3, 0], progress=False,
                                 log_every=4)
        assert pop.config == config and pop.seeds == (3, 0)
        assert pop.checkpoint_steps == alone.checkpoint_steps
        for a, b in zip(alone.checkpoints, pop.checkpoints, strict=True):
            assert a.samples == b.samples
            for name in a.arrays:
                np.testing.assert_allclose(b.arrays[name], a.arrays[name], rtol=1e-5, atol=1e-6,
                                           err_msg=f"{config} {name}")
        assert np.array_equal(alone.history["step"], pop.history["step"])
        for name in ("loss", "mse", "l0"):
            np.testing.assert_allclose(pop.history[name], alone.history[name], rtol=1e-5,
                                       atol=1e-5, err_msg=f"{config} {name}")
    l0 = {(p.config.architecture, p.config.k): float(p.history["l0"][-1].mean())
          for p in together}
    assert l0[("topk", 2)] <= 2 < l0[("topk", 5)] <= 5  # each member keeps its own k


def test_runs_on_a_world_with_two_batch_sizes_use_one_stream_each(tiny_world):
    small = dict(d_sae=16, training_samples=128 * 6, n_checkpoints=2)
    configs = [TrainingConfig(architecture="topk", k=2, batch_size=128, **small),
               TrainingConfig(architecture="topk", k=3, batch_size=64, **small)]
    together = train_runs(tiny_world, configs, seeds=[1], data_seed=7, progress=False)
    for config, pop in zip(configs, together, strict=True):
        alone = train_population(tiny_world, config, seeds=[1], data_seed=7, progress=False)
        assert pop.config == config and pop.data_seed == 7
        for name, value in alone.checkpoints[-1].arrays.items():
            np.testing.assert_allclose(pop.checkpoints[-1].arrays[name], value, rtol=1e-5,
                                       atol=1e-6, err_msg=f"{config} {name}")


def test_runs_of_different_lengths_share_a_stream_and_stop_on_time():
    batches = _low_rank_batches(n_steps=12)
    base = dict(architecture="topk", d_sae=8, batch_size=64, n_checkpoints=2)
    short = TrainingConfig(training_samples=64 * 5, k=3, **base)
    long = TrainingConfig(training_samples=64 * 12, k=2, **base)
    same_length = TrainingConfig(training_samples=64 * 5, k=1, **base)
    a, b, c = train_runs(iter(batches), [short, long, same_length], seeds=[0, 1],
                         progress=False, runs_per_call=1)
    assert a.checkpoint_steps[-1] == c.checkpoint_steps[-1] == 5
    assert b.checkpoint_steps[-1] == 12
    # one run per call: the same vmapped size as alone, so the same numbers bit for bit
    for config, pop in ((short, a), (same_length, c)):
        alone = train_population(iter(batches), config, seeds=[0, 1], progress=False)
        for name, value in alone.checkpoints[-1].arrays.items():
            assert np.array_equal(pop.checkpoints[-1].arrays[name], value), (config.k, name)


def test_bad_runs_are_refused():
    cfg = TrainingConfig(architecture="topk", d_sae=16, k=2, training_samples=64 * 4,
                         batch_size=64, n_checkpoints=1)
    with pytest.raises(ValueError, match="configs must not be empty"):
        train_runs(iter([]), [], seeds=[0], progress=False)
    with pytest.raises(ValueError, match="configs must be TrainingConfig"):
        train_runs(iter([]), [cfg.to_dict()], seeds=[0], progress=False)
    with pytest.raises(ValueError, match="distinct non-negative"):
        train_runs(iter([]), [cfg], seeds=[2, 2], progress=False)
    with pytest.raises(ValueError, match="runs_per_call must be a positive int, got 0"):
        train_runs(iter([]), [cfg], seeds=[0], progress=False, runs_per_call=0)
    other = TrainingConfig(architecture="topk", d_sae=16, k=2, training_samples=32 * 4,
                           batch_size=32, n_checkpoints=1)
    with pytest.raises(ValueError, match=r"one batch size; the configs have \[32, 64\]"):
        train_runs(iter([]), [cfg, other], seeds=[0], progress=False)
