"""SAEBench's core metrics against its own formula (copied below) and hand cases."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from groundtruth.metrics.core import core_metrics
from groundtruth.metrics.data import AuditData, DataConfig
from groundtruth.metrics.registry import evaluate_metric, get_metric
from synthetic_saes.sae_params import SAEParams


def _saebench(x, z, x_hat):
    """Test data: SAEBench's get_sparsity_and_variance_metrics / calculate_misc_metrics
    (sae_bench/evals/core/main.py, commit 8042bb3828c6340da8d12062324e92b2077c571c) on one
    batch, float64, its lines kept."""
    flattened_sae_input = torch.from_numpy(x)
    flattened_sae_out = torch.from_numpy(x_hat)
    flattened_sae_feature_acts = torch.from_numpy(z)
    l2_norm_in = torch.norm(flattened_sae_input, dim=-1)
    l2_norm_out = torch.norm(flattened_sae_out, dim=-1)
    l2_norm_in_for_div = l2_norm_in.clone()
    l2_norm_in_for_div[torch.abs(l2_norm_in_for_div) < 0.0001] = 1
    l2_norm_ratio = l2_norm_out / l2_norm_in_for_div
    x_hat_norm_squared = torch.norm(flattened_sae_out, dim=-1) ** 2
    x_dot_x_hat = (flattened_sae_input * flattened_sae_out).sum(dim=-1)
    relative_reconstruction_bias = x_hat_norm_squared.mean() / x_dot_x_hat.mean()
    l0 = (flattened_sae_feature_acts != 0).sum(dim=-1).float()
    resid_sum_of_squares = (flattened_sae_input - flattened_sae_out).pow(2).sum(dim=-1)
    batched_variance_sum = (
        (flattened_sae_input - flattened_sae_input.mean(dim=0)).pow(2).sum(dim=-1))
    explained_variance_legacy = 1 - resid_sum_of_squares / batched_variance_sum
    mean_sum_of_squares = [flattened_sae_input.pow(2).sum(dim=-1).mean(dim=0)]
    mean_act_per_dimension = [flattened_sae_input.pow(2).mean(dim=0)]
    mean_sum_of_resid_squared = [resid_sum_of_squares.mean(dim=0)]
    x_normed = flattened_sae_input / torch.norm(flattened_sae_input, dim=-1, keepdim=True)
    x_hat_normed = flattened_sae_out / torch.norm(flattened_sae_out, dim=-1, keepdim=True)
    cossim = (x_normed * x_hat_normed).sum(dim=-1)
    mean_sum_of_squares_tensor = torch.stack(mean_sum_of_squares).mean(dim=0)
    mean_act_per_dimension_tensor = torch.cat(mean_act_per_dimension).mean(dim=0)
    total_variance = mean_sum_of_squares_tensor - mean_act_per_dimension_tensor**2
    residual_variance = torch.stack(mean_sum_of_resid_squared).mean(dim=0)
    feature_density = (flattened_sae_feature_acts > 0).float().sum(dim=0) / x.shape[0]
    return dict(
        explained_variance=(1 - residual_variance / total_variance).item(),
        explained_variance_legacy=explained_variance_legacy.mean().item(),
        cossim=cossim.mean().item(), l2_ratio=l2_norm_ratio.mean().item(),
        relative_reconstruction_bias=relative_reconstruction_bias.item(),
        l0=l0.mean().item(), frac_alive=(feature_density > 0).float().mean().item())


@given(st.integers(0, 10_000), st.integers(2, 40), st.integers(1, 9), st.integers(1, 12))
def test_equals_saebench_formulas_on_random_inputs(seed, n, d_in, d_sae):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d_in)) * rng.uniform(0.1, 5) + rng.standard_normal(d_in)
    z = np.maximum(rng.standard_normal((n, d_sae)), 0)
    z[:, rng.random(d_sae) < 0.3] = 0  # some dead latents
    x_hat = x + 0.3 * rng.standard_normal((n, d_in))
    ours = core_metrics(x, z, x_hat)._asdict()
    theirs = _saebench(x, z, x_hat)
    for name, value in theirs.items():
        assert ours[name] == pytest.approx(value, rel=1e-6, abs=1e-5), name


def test_hand_cases():
    x = np.array([[3.0, 0.0], [0.0, 4.0]])
    z = np.array([[1.0, 0.0, 0.0], [2.0, -1.0, 0.0]])
    m = core_metrics(x, z, 0.5 * x)
    assert m.cossim == 1.0 and m.l2_ratio == 0.5 and m.relative_reconstruction_bias == 0.5
    assert m.l0 == 1.5 and m.frac_alive == pytest.approx(1 / 3)  # -1 is not "> 0"
    # S = (9 + 16) / 2 = 12.5; total = 12.5 - (12.5 / 2)^2 < 0: SAEBench's formula, as written.
    assert m.explained_variance == pytest.approx(1 - 0.25 * 12.5 / (12.5 - 6.25**2))
    # legacy: x - mean = +-(1.5, -2), norm^2 6.25; residuals 2.25 and 4.
    assert m.explained_variance_legacy == pytest.approx(1 - (2.25 + 4) / 2 / 6.25)


def test_bad_inputs_raise():
    x = np.array([[1.0, 0.0], [0.0, 1.0]])
    z = np.ones((2, 3))
    with pytest.raises(ValueError, match="inputs are zero vectors"):
        core_metrics(np.zeros_like(x), z, x)
    # a zero reconstruction has cosine 0 (torch's cosine_similarity), not NaN
    dead = core_metrics(x, np.zeros((2, 3)), np.array([[1.0, 0.0], [0.0, 0.0]]))
    assert dead.cossim == pytest.approx(0.5) and dead.l0 == 0.0
    assert core_metrics(x, z, np.zeros_like(x)).relative_reconstruction_bias is None
    with pytest.raises(ValueError, match="at least 2 samples"):
        core_metrics(x[:1], z[:1], x[:1])
    with pytest.raises(ValueError, match="x_hat contains NaN"):
        core_metrics(x, z, np.full_like(x, np.nan))
    with pytest.raises(ValueError, match="need x and x_hat"):
        core_metrics(x, z, x[:, :1])


def test_registered_core_metrics_on_a_world(tiny_world):
    data = AuditData(tiny_world, DataConfig(eval_samples=512))
    G = np.array(tiny_world.feature_directions)
    oracle = SAEParams(W_enc=np.linalg.pinv(G), b_enc=np.zeros(64), W_dec=G,
                       b_dec=tiny_world.bias)
    x = np.asarray(data.eval_sample(0).hidden)
    z = oracle.encode(x)
    expected = _saebench(x.astype(np.float64), z.astype(np.float64),
                         oracle.decode(z).astype(np.float64))
    for name in ("explained_variance", "explained_variance_legacy", "cossim", "l2_ratio", "l0",
                 "frac_alive"):
        spec = get_metric(f"core_{name}")
        assert spec.kind == "reconstruction" and spec.seed_changes == "the evaluation samples"
        assert evaluate_metric(f"core_{name}", oracle, data, 0) == pytest.approx(
            expected[name], rel=1e-5), name
    assert not get_metric("core_l0").higher_is_better
