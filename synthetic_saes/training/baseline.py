"""The reference baseline: the same training run done by sae_lens's `train_toy_sae`.

Used to check our trainer's quality against sae_lens's (`experiments/trainer_vs_sae_lens.py`)
and, in benchmarks, its speed.
sae_lens trains one SAE per call and samples the world inside its loop.
"""

from __future__ import annotations

import tempfile

from synthetic_saes.rng import TorchStream, derive_seed
from synthetic_saes.sae_params import SAEParams
from synthetic_saes.training.config import TrainingConfig
from synthetic_saes.worlds import World

__all__ = ["sae_lens_training_config", "train_with_sae_lens"]


def sae_lens_training_config(config: TrainingConfig, d_in: int):
    """The sae_lens TrainingSAE config equivalent to ours (sae_lens's own defaults otherwise)."""
    from sae_lens import (
        BatchTopKTrainingSAEConfig,
        JumpReLUTrainingSAEConfig,
        MatryoshkaBatchTopKTrainingSAEConfig,
        StandardTrainingSAEConfig,
        TopKTrainingSAEConfig,
    )

    common = {"d_in": d_in, "d_sae": config.d_sae}
    arch = config.architecture
    if arch == "topk":
        return TopKTrainingSAEConfig(k=config.k, aux_loss_coefficient=config.aux_k_coefficient,
                                     **common)
    if arch == "batchtopk":
        return BatchTopKTrainingSAEConfig(
            k=config.k, aux_loss_coefficient=config.aux_k_coefficient,
            topk_threshold_lr=config.batchtopk_threshold_lr, **common)
    if arch == "matryoshka_batchtopk":
        return MatryoshkaBatchTopKTrainingSAEConfig(
            k=config.k, aux_loss_coefficient=config.aux_k_coefficient,
            topk_threshold_lr=config.batchtopk_threshold_lr,
            matryoshka_widths=list(config.matryoshka_widths), **common)
    if arch == "relu_l1":
        return StandardTrainingSAEConfig(l1_coefficient=config.l1_coefficient, **common)
    return JumpReLUTrainingSAEConfig(
        l0_coefficient=config.l0_coefficient,
        jumprelu_init_threshold=config.jumprelu_init_threshold,
        jumprelu_bandwidth=config.jumprelu_bandwidth,
        **common,
    )


def train_with_sae_lens(world: World, config: TrainingConfig, *, seed: int) -> SAEParams:
    """Train one SAE with `sae_lens.synthetic.train_toy_sae`, deterministically in `seed`.

    Same architecture, width, sparsity, learning rate, batch size and sample count as `config`;
    the init and the world's samples come from `seed`'s own torch stream. Returns the
    inference SAE.
    """
    from sae_lens import SAE, TrainingSAE
    from sae_lens.synthetic import train_toy_sae

    with TorchStream(derive_seed(seed, "sae_lens_baseline")).active():
        sae = TrainingSAE.from_dict(sae_lens_training_config(config, world.d_in).to_dict())
        train_toy_sae(
            sae,
            world.model.feature_dict,
            world.model.activation_generator,
            training_samples=config.training_samples,
            batch_size=config.batch_size,
            lr=config.lr,
        )
    with tempfile.TemporaryDirectory() as tmp:
        sae.save_inference_model(tmp)
        return SAEParams.from_sae_lens(SAE.load_from_disk(tmp))
