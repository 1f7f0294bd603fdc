"""Our loss terms against sae_lens's training SAEs on the same batch and parameters."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from sae_lens import TrainingSAE
from sae_lens.saes.sae import TrainStepInput

from synthetic_saes.training.architectures import (
    aux_k_loss,
    matryoshka_inner_losses,
    sae_loss,
)
from synthetic_saes.training.baseline import sae_lens_training_config
from synthetic_saes.training.config import TrainingConfig

D_IN, D_SAE, N = 12, 32, 20


def _params(seed: int, dead: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    W_dec = rng.standard_normal((D_SAE, D_IN)).astype(np.float32)
    W_dec /= np.linalg.norm(W_dec, axis=1, keepdims=True)  # our invariant: unit decoder rows
    b_enc = (rng.standard_normal(D_SAE) * 0.1).astype(np.float32)
    # Dead latents' pre-activations are positive, where sae_lens's AuxK (no ReLU) and ours agree.
    b_enc[dead] += 10.0
    return {"W_enc": rng.standard_normal((D_IN, D_SAE)).astype(np.float32) * 0.5,
            "b_enc": b_enc, "W_dec": W_dec,
            "b_dec": (rng.standard_normal(D_IN) * 0.1).astype(np.float32)}


def _theirs(config: TrainingConfig, params: dict, x: np.ndarray, dead: np.ndarray):
    sae = TrainingSAE.from_dict(sae_lens_training_config(config, D_IN).to_dict())
    with torch.no_grad():
        for name, value in params.items():
            getattr(sae, name).copy_(torch.from_numpy(value))
    out = sae.training_forward_pass(TrainStepInput(
        sae_in=torch.from_numpy(x), coefficients={},
        dead_neuron_mask=torch.from_numpy(dead), n_training_steps=0, is_logging_step=False))
    return ({name: float(value.detach()) for name, value in out.losses.items()},
            float(out.loss.detach()))


def _ours(config: TrainingConfig, params: dict, x: np.ndarray, dead: np.ndarray):
    p = {k: jnp.asarray(v) for k, v in params.items()}
    loss, (out, mse) = sae_loss(p, jnp.asarray(x), config)
    aux = aux_k_loss(p, jnp.asarray(x), out, jnp.asarray(dead), D_IN // 2,
                     config.aux_k_coefficient)
    return float(loss), float(mse), float(aux), out


@pytest.mark.filterwarnings("ignore:WARNING. You have only set one matryoshka level")
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("widths", [(4, 12, D_SAE), (D_SAE,), (1, 2, 3, D_SAE)])
@pytest.mark.parametrize("n_dead", [0, 3, 9])
def test_matryoshka_batchtopk_loss_terms_equal_sae_lens(seed, widths, n_dead):
    config = TrainingConfig(architecture="matryoshka_batchtopk", d_sae=D_SAE, k=5,
                            matryoshka_widths=widths, aux_k_coefficient=0.7)
    dead = np.zeros(D_SAE, bool)
    dead[np.random.default_rng(seed + 10).permutation(D_SAE)[:n_dead]] = True
    params = _params(seed, dead)
    x = np.random.default_rng(seed + 20).standard_normal((N, D_IN)).astype(np.float32)
    theirs, their_total = _theirs(config, params, x, dead)
    loss, mse, aux, out = _ours(config, params, x, dead)
    inner = np.asarray(matryoshka_inner_losses(
        {k: jnp.asarray(v) for k, v in params.items()}, jnp.asarray(x), out.latents, widths))
    assert inner.shape == (len(widths) - 1,)
    assert mse == pytest.approx(theirs["mse_loss"], rel=1e-5)
    for width, value in zip(widths, inner):
        assert value == pytest.approx(theirs[f"inner_mse_loss_{width}"], rel=1e-5)
    assert aux == pytest.approx(theirs["auxiliary_reconstruction_loss"], rel=1e-5, abs=1e-6)
    assert loss + aux == pytest.approx(their_total, rel=1e-5)
    assert set(theirs) == {"mse_loss", "auxiliary_reconstruction_loss",
                           *(f"inner_mse_loss_{w}" for w in widths[:-1])}


@pytest.mark.parametrize("architecture", ["topk", "batchtopk"])
def test_topk_family_loss_terms_equal_sae_lens(architecture):
    config = TrainingConfig(architecture=architecture, d_sae=D_SAE, k=4)
    dead = np.zeros(D_SAE, bool)
    dead[[1, 7, 30]] = True
    params = _params(3, dead)
    x = np.random.default_rng(4).standard_normal((N, D_IN)).astype(np.float32)
    theirs, their_total = _theirs(config, params, x, dead)
    loss, mse, aux, _ = _ours(config, params, x, dead)
    assert mse == pytest.approx(theirs["mse_loss"], rel=1e-5)
    assert aux == pytest.approx(theirs["auxiliary_reconstruction_loss"], rel=1e-5)
    assert loss + aux == pytest.approx(their_total, rel=1e-5)


def test_aux_k_differs_from_sae_lens_only_by_the_relu_on_negative_pre_activations():
    # sae_lens's AuxK decodes the raw pre-activations of the top dead latents; ours (as Gao et
    # al.'s and EleutherAI's) decodes their ReLU. A dead latent with a negative pre-activation
    # in the top-k_aux is where the two differ.
    config = TrainingConfig(architecture="topk", d_sae=D_SAE, k=4)
    dead = np.zeros(D_SAE, bool)
    dead[[2, 5]] = True
    params = _params(7, np.zeros(D_SAE, bool))
    params["b_enc"][dead] = -20.0  # every dead pre-activation is negative
    x = np.random.default_rng(8).standard_normal((N, D_IN)).astype(np.float32)
    theirs, _ = _theirs(config, params, x, dead)
    _, _, aux, _ = _ours(config, params, x, dead)
    assert theirs["auxiliary_reconstruction_loss"] > aux + 1.0


def test_matryoshka_with_one_level_is_batchtopk():
    dead = np.zeros(D_SAE, bool)
    params = {k: jnp.asarray(v) for k, v in _params(5, dead).items()}
    x = jnp.asarray(np.random.default_rng(6).standard_normal((N, D_IN)), jnp.float32)
    one = TrainingConfig(architecture="matryoshka_batchtopk", d_sae=D_SAE, k=3,
                         matryoshka_widths=(D_SAE,))
    plain = TrainingConfig(architecture="batchtopk", d_sae=D_SAE, k=3)
    assert float(sae_loss(params, x, one)[0]) == float(sae_loss(params, x, plain)[0])
