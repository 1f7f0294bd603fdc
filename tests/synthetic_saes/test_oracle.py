import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from synthetic_saes.oracle import OracleBase, OracleConfig, fit_missing_oracles, fit_oracles
from synthetic_saes.oracle_baseline import BaselineOracleBase
from synthetic_saes.rng import derive_seed
from synthetic_saes.sae_params import SAEParams
from synthetic_saes.threads import single_threaded_torch

SHORT = OracleConfig(training_samples=12 * 1024, calibration_samples=512)
ARRAYS = ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")


def assert_same_sae(a: SAEParams, b: SAEParams) -> None:
    assert a.architecture == b.architecture
    for name in ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name


def test_fitting_seeds_together_equals_train_population_one_seed_at_a_time(tiny_world):
    # The baseline is the previous code: train_population, one seed per call.
    fitted = fit_oracles(tiny_world, [2, 0, 1], SHORT)
    assert sorted(fitted) == [0, 1, 2]
    for seed in (0, 1, 2):
        with single_threaded_torch():  # the same samples (tested below), only faster
            baseline = BaselineOracleBase(tiny_world, seed=seed, config=SHORT).oracle
        assert_same_sae(fitted[seed], baseline)
    assert not np.array_equal(fitted[0].W_enc, fitted[1].W_enc), "each seed its own data"


def test_a_seeds_oracle_does_not_depend_on_the_seeds_fitted_beside_it(tiny_world):
    alone = fit_oracles(tiny_world, [1], SHORT)[1]
    assert_same_sae(alone, fit_oracles(tiny_world, [3, 1], SHORT)[1])


def test_the_oracle_keeps_the_true_dictionary_and_moves_the_encoder(tiny_world):
    oracle = fit_oracles(tiny_world, [0], SHORT)[0]
    assert oracle.architecture == "jumprelu" and oracle.d_sae == tiny_world.num_features
    assert np.array_equal(oracle.W_dec, tiny_world.feature_directions)
    assert np.array_equal(oracle.b_dec, tiny_world.bias)
    assert not np.array_equal(oracle.W_enc, tiny_world.feature_directions.T)
    assert not np.allclose(oracle.threshold, SHORT.init_threshold)


def test_sampling_on_one_torch_thread_gives_the_same_batches(tiny_world):
    seed = derive_seed(0, "oracle-data")
    with single_threaded_torch():
        stream = tiny_world.stream(256, seed=seed)
        one = [next(stream) for _ in range(3)]
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        stream = tiny_world.stream(256, seed=seed)
        two = [next(stream) for _ in range(3)]
    finally:
        torch.set_num_threads(previous)
    for a, b in zip(one, two):
        assert np.array_equal(a.hidden, b.hidden) and np.array_equal(a.features, b.features)


def test_fit_missing_oracles_fits_only_what_is_missing(tiny_world):
    given_oracle = fit_oracles(tiny_world, [5], SHORT)[5]
    kept = OracleBase(tiny_world, seed=5, config=SHORT)
    kept.__dict__["oracle"] = given_oracle
    missing = [OracleBase(tiny_world, seed=s, config=SHORT) for s in (6, 7)]
    twin = OracleBase(tiny_world, seed=6, config=SHORT)  # the same seed twice: fitted once
    fit_missing_oracles([kept, *missing, twin])
    assert kept.oracle is given_oracle
    assert all(base.has_oracle for base in [*missing, twin])
    assert twin.oracle is missing[0].oracle
    assert_same_sae(missing[1].oracle, fit_oracles(tiny_world, [7], SHORT)[7])


def test_progress_names_the_seeds(tiny_world, capsys):
    fit_oracles(tiny_world, [0, 1], OracleConfig(training_samples=1024), progress=True)
    assert "oracles of seeds 0, 1" in capsys.readouterr().err


# ---- rate-matched thresholds --------------------------------------------------------------


def _base_with_calibration(x: np.ndarray, world) -> tuple[OracleBase, BaselineOracleBase]:
    fires = np.zeros((x.shape[0], world.num_features), dtype=bool)
    bases = OracleBase(world, seed=0), BaselineOracleBase(world, seed=0)
    for base in bases:
        base.__dict__["calibration"] = (x, fires)
    return bases


def _identity_sae(d: int) -> SAEParams:
    """An SAE whose pre-activations are its inputs (d_in = d_sae = d)."""
    eye = np.eye(d, dtype=np.float32)
    return SAEParams(W_enc=eye, b_enc=np.zeros(d), W_dec=eye, b_dec=np.zeros(d),
                     architecture="jumprelu", threshold=np.zeros(d))


def test_rate_matched_thresholds_by_hand(tiny_world):
    x = np.array([[0, 10], [1, 10], [2, 10], [3, 10], [4, 10]], dtype=np.float32)
    base, _ = _base_with_calibration(x, tiny_world)
    sae = _identity_sae(2)
    # position (1 - rate) * (n - 1) between order statistics, linearly interpolated
    np.testing.assert_array_equal(base.rate_matched_thresholds(sae, [0.25, 0.5]), [3.0, 10.0])
    np.testing.assert_allclose(base.rate_matched_thresholds(sae, [0.1, 0.0]), [3.6, 10.0])
    np.testing.assert_array_equal(base.rate_matched_thresholds(sae, [1.0, 2.0]), [0.0, 10.0])
    np.testing.assert_allclose(base.rate_matched_thresholds(sae, [0.1, 0.3], latents=[1, 0]),
                               [10.0, 3.6], rtol=1e-6)


@given(
    n=st.integers(1, 40),
    d=st.integers(1, 6),
    seed=st.integers(0, 2**16),
    ties=st.booleans(),
    data=st.data(),
)
def test_rate_matched_thresholds_equal_the_full_sort_bit_for_bit(tiny_world, n, d, seed, ties,
                                                                  data):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    if ties:
        x = np.round(x)
    rates = np.array(data.draw(st.lists(
        st.one_of(st.just(0.0), st.just(1.0), st.floats(0, 1)), min_size=d, max_size=d)))
    latents = np.array(data.draw(st.lists(st.integers(0, d - 1), max_size=d)), dtype=np.int64)
    base, baseline = _base_with_calibration(x, tiny_world)
    sae = _identity_sae(d)
    fast = base.rate_matched_thresholds(sae, rates)
    assert fast.dtype == np.float32
    np.testing.assert_array_equal(fast, baseline.rate_matched_thresholds(sae, rates))
    np.testing.assert_array_equal(base.rate_matched_thresholds(sae, rates, latents),
                                  baseline.rate_matched_thresholds(sae, rates)[latents])


# ---- bad input ----------------------------------------------------------------------------


def test_bad_oracle_requests_raise(tiny_world):
    for seeds, message in (([], "seeds must not be empty"), ([1, 1], "seeds must be distinct"),
                           ([-1], "seed must be a non-negative integer")):
        with pytest.raises(ValueError, match=message):
            fit_oracles(tiny_world, seeds, SHORT)
    with pytest.raises(ValueError, match=r"training_samples \(100\) must be at least one batch"):
        OracleConfig(training_samples=100)
    with pytest.raises(ValueError, match="lr must be > 0"):
        OracleConfig(lr=0.0)
    with pytest.raises(ValueError, match="unknown OracleConfig keys"):
        OracleConfig.from_dict({"training_sample": 10})


def test_oracle_config_round_trips():
    config = OracleConfig(training_samples=4096, lr=1e-3)
    assert OracleConfig.from_dict(config.to_dict()) == config
    assert config.steps == 4


def test_rates_of_the_wrong_shape_raise(tiny_world):
    base, _ = _base_with_calibration(np.zeros((4, 2), dtype=np.float32), tiny_world)
    with pytest.raises(ValueError, match=r"rates must have shape \(2,\), got \(3,\)"):
        base.rate_matched_thresholds(_identity_sae(2), [0.1, 0.2, 0.3])


def test_the_oracle_fires_on_a_world_of_small_magnitudes():
    """A Tracr world's features have magnitudes 0.17-1: thresholds starting at 2 never moved
    (the gradient only flows within bandwidth / 2 of them) and the oracle never fired."""
    from synthetic_saes.families import OracleBase, OracleConfig
    from synthetic_saes.semisynthetic import TracrWorld

    world = TracrWorld("reverse")
    base = OracleBase(world, seed=0, config=OracleConfig(training_samples=10240))
    sample = world.sample(2048, seed=1)
    fires = base.oracle.encode(sample.hidden) != 0
    assert (fires == (sample.features > 0)).mean() > 0.999  # latent k fires iff feature k does
