import numpy as np
import pytest
from sae_lens import SAE

from groundtruth.metrics import evaluate_quality
from synthetic_saes.families import (
    CONTROLS, FAMILIES, OracleBase, OracleConfig, best_k, make_controls, make_family,
)
from synthetic_saes.oracle_baseline import BaselineOracleBase
from synthetic_saes.threads import single_threaded_torch
from synthetic_saes.worlds import build_world, preset

N_EVAL = 4000


def quality(sae, world, seed=0):
    return evaluate_quality(sae, world, n_samples=N_EVAL, seed=seed)


def test_oracle_decodes_the_true_features_and_detects_them(tiny_bases, tiny_world):
    oracle = tiny_bases[0].oracle
    assert np.array_equal(oracle.W_dec, tiny_world.feature_directions)
    assert np.array_equal(oracle.b_dec, tiny_world.bias)
    q = quality(oracle, tiny_world)
    assert q.mcc >= 0.99
    assert q.f1 > 0.75 and q.explained_variance > 0.8
    assert abs(q.l0 - q.true_l0) < 0.5 * q.true_l0


@pytest.mark.parametrize("family", ["decoder_noise", "dropped", "merged", "split"])
def test_quality_falls_along_each_degradation_knob(family, tiny_world, tiny_bases):
    members = make_family(tiny_world, family, seeds=(0, 1, 2), bases=tiny_bases)
    values = FAMILIES[family].default_values(tiny_world)
    assert len(members) == 3 * len(values)
    assert all(m.family == family and set(m.knobs) == {FAMILIES[family].knob} for m in members)
    scores = np.array([[q.mcc, q.f1] for q in (quality(m, tiny_world) for m in members)])
    scores = scores.reshape(3, len(values), 2).mean(axis=0)
    mcc, f1 = scores[:, 0], scores[:, 1]
    assert mcc[0] >= 0.99, "the knob's first value is the oracle"
    assert np.all(np.diff(mcc) <= 1e-9) and mcc[-1] < mcc[0], (family, mcc)
    assert np.all(np.diff(f1) < 0), (family, f1)


def test_merging_raises_absorption(tiny_world, tiny_bases):
    rates = [quality(m, tiny_world).absorption_rate
             for m in make_family(tiny_world, "merged", (0.0, 1.0), bases=tiny_bases)]
    assert rates[0] < 0.02 and rates[1] > 0.2


def test_width_family_keeps_per_latent_quality_and_grows_coverage(tiny_world, tiny_bases):
    members = make_family(tiny_world, "width", bases=tiny_bases)
    widths = [m.params.d_sae for m in members]
    assert widths == sorted(widths, reverse=True) and widths[0] == tiny_world.num_features
    scores = [quality(m, tiny_world) for m in members]
    assert all(s.mcc > 0.99 for s in scores)
    mmcs = [s.mmcs for s in scores]
    assert all(a > b for a, b in zip(mmcs, mmcs[1:]))


def test_controls_land_where_they_should(tiny_world, tiny_bases):
    controls = {c.family: c for c in make_controls(tiny_world, seed=0, k=8, bases=tiny_bases)}
    q = {name: quality(c, tiny_world) for name, c in controls.items()}
    oracle = q["oracle"]
    for random in ("random_init", "random_l0_matched"):
        assert q[random].f1 < 0.25 * oracle.f1 and q[random].mcc < 0.6, random
    assert q["random_init"].l0 > 5 * oracle.l0
    assert abs(q["random_l0_matched"].l0 - oracle.l0) < 0.25 * oracle.l0
    # a permuted decoder fools MCC (same set of directions) but not detection
    assert q["permuted_decoder"].mcc > 0.99 and q["permuted_decoder"].f1 < 0.2
    assert q["best_k"].mcc > 0.99 and q["best_k"].dead_latents >= tiny_world.num_features - 8
    for name in ("permuted_decoder", "random_init", "random_l0_matched", "best_k"):
        assert oracle.f1 > q[name].f1, name


def test_best_k_keeps_exactly_k_latents(tiny_bases):
    member = best_k(tiny_bases[0], 5)
    assert np.isfinite(member.params.threshold).sum() == 5


def test_same_seed_same_saes_bit_for_bit(tiny_world):
    cfg = OracleConfig(training_samples=10_240, calibration_samples=1024)
    a = make_family(tiny_world, "dropped", (0.5,), oracle_config=cfg)[0].params
    b = make_family(tiny_world, "dropped", (0.5,), oracle_config=cfg,  # a fit of its own
                    bases={0: OracleBase(tiny_world, seed=0, config=cfg)})[0].params
    for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


def test_calls_without_bases_fit_each_oracle_once_per_world(monkeypatch):
    import synthetic_saes.oracle as oracle_module

    calls = []
    fit = oracle_module.fit_oracles
    monkeypatch.setattr(oracle_module, "fit_oracles",
                        lambda world, seeds, *a, **kw: calls.append(tuple(seeds)) or fit(
                            world, seeds, *a, **kw))
    world = build_world("tiny")  # its own object: no earlier test's oracles
    cfg = OracleConfig(training_samples=4096, calibration_samples=1024)
    noisy = make_family(world, "decoder_noise", (0.5,), seeds=(0, 1), oracle_config=cfg)
    controls = make_controls(world, seed=1, oracle_config=cfg)  # seed 1's oracle: reused
    make_family(world, "dropped", (0.5,), seeds=(1, 2), oracle_config=cfg)  # fits seed 2 only
    make_controls(world, seed=1, oracle_config=OracleConfig(training_samples=2048))  # new config
    assert calls == [(0, 1), (2,), (1,)]
    assert np.array_equal(controls[0].params.W_enc, make_controls(
        build_world("tiny"), seed=1, oracle_config=cfg)[0].params.W_enc)  # a fresh world refits
    assert len(calls) == 4 and noisy[1].params.W_dec.shape == controls[0].params.W_dec.shape


def test_members_export_to_sae_lens_with_their_knobs(tiny_world, tiny_bases, tmp_path):
    member = make_family(tiny_world, "decoder_noise", (0.5,), bases=tiny_bases)[0]
    assert member.name == "decoder_noise/noise=0.5/seed=0"
    member.save(tmp_path / "sae")
    sae = SAE.load_from_disk(tmp_path / "sae")
    assert sae.cfg.metadata["groundtruth_family"] == "decoder_noise"
    assert sae.cfg.metadata["groundtruth_knobs"] == {"noise": 0.5}
    x = tiny_world.sample(256, seed=1).hidden
    import torch

    with torch.no_grad():
        np.testing.assert_allclose(sae.encode(torch.from_numpy(x)).numpy(),
                                   member.params.encode(x), atol=1e-5)


def test_bad_family_requests_raise(tiny_world, tiny_bases):
    with pytest.raises(ValueError, match="unknown SAE family 'noisy'"):
        make_family(tiny_world, "noisy")
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\]"):
        make_family(tiny_world, "dropped", (1.5,), bases=tiny_bases)
    with pytest.raises(ValueError, match="width must be in"):
        make_family(tiny_world, "width", (0,), bases=tiny_bases)
    with pytest.raises(ValueError, match="different world"):
        make_family(build_world(preset("tiny", seed=3)), "dropped", (0.1,), bases=tiny_bases)
    no_hierarchy = build_world(preset("tiny", hierarchy_roots=0))
    base = OracleBase(no_hierarchy, config=OracleConfig(training_samples=2048))
    with pytest.raises(ValueError, match="no mutually exclusive parents"):
        FAMILIES["merged"].build(base, 0.5)


def test_an_sae_of_the_wrong_width_does_not_fit_the_world(tiny_bases):
    other = build_world(preset("tiny", hidden_dim=16))
    with pytest.raises(ValueError, match="d_in=32 but the world has d_in=16"):
        evaluate_quality(tiny_bases[0].oracle, other, n_samples=10)


def _assert_same_members(fast, slow):
    assert [m.name for m in fast] == [m.name for m in slow]
    for a, b in zip(fast, slow):
        assert a.params.architecture == b.params.architecture, a.name
        for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"):
            x, y = getattr(a.params, name), getattr(b.params, name)
            assert (x is None and y is None) or np.array_equal(x, y), (a.name, name)


def test_every_member_and_control_equals_the_previous_code_bit_for_bit(tiny_world, tiny_bases):
    # The previous code path: oracles by train_population, full sorts, rates recomputed.
    config = tiny_bases[0].config
    baseline = {s: BaselineOracleBase(tiny_world, seed=s, config=config) for s in (0, 1, 2)}
    with single_threaded_torch():  # the baseline's samples are the same, only faster
        for family in FAMILIES:
            _assert_same_members(make_family(tiny_world, family, seeds=(0, 1, 2), bases=tiny_bases),
                                 make_family(tiny_world, family, seeds=(0, 1, 2), bases=baseline))
        for seed in (0, 2):
            _assert_same_members(make_controls(tiny_world, seed=seed, bases=tiny_bases),
                                 make_controls(tiny_world, seed=seed, bases=baseline))


def test_bad_knob_values_raise_before_any_oracle_is_fitted(tiny_world):
    bases = {0: OracleBase(tiny_world, seed=0)}
    for family, value, message in (("decoder_noise", -0.1, "noise must be >= 0"),
                                   ("split", 1.5, r"fraction must be in \[0, 1\]"),
                                   ("width", 65, r"width must be in \[1, 64\]")):
        with pytest.raises(ValueError, match=message):
            make_family(tiny_world, family, (0.0, value), bases=bases)
    with pytest.raises(ValueError, match=r"k must be in \[1, 64\]"):
        make_controls(tiny_world, k=0, bases=bases)
    with pytest.raises(ValueError, match="seeds must be distinct"):
        make_family(tiny_world, "dropped", (0.1,), seeds=(0, 0), bases=bases)
    assert not bases[0].has_oracle


def test_make_family_shows_progress(tiny_world, tiny_bases, capsys):
    make_family(tiny_world, "split", (0.0, 0.5), seeds=(0, 1), bases=tiny_bases, progress=True)
    make_controls(tiny_world, seed=1, bases=tiny_bases, progress=True)
    err = capsys.readouterr().err
    assert "family split" in err and "4/4" in err
    assert "controls of seed 1" in err and f"{len(CONTROLS)}/{len(CONTROLS)}" in err


@pytest.mark.slow
def test_cpu_world_decoder_noise_and_controls_equal_the_previous_code_bit_for_bit():
    world = build_world("cpu")
    fast = {s: OracleBase(world, seed=s) for s in (0, 1)}
    slow = {s: BaselineOracleBase(world, seed=s) for s in (0, 1)}
    _assert_same_members(make_family(world, "decoder_noise", seeds=(0, 1), bases=fast),
                         make_family(world, "decoder_noise", seeds=(0, 1), bases=slow))
    _assert_same_members(make_controls(world, seed=1, bases=fast),
                         make_controls(world, seed=1, bases=slow))
