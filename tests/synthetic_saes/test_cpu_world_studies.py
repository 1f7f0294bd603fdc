"""Slow studies on the cpu world (minutes): `pytest -m slow` or `make test-slow`."""

import numpy as np
import pytest

from groundtruth.metrics import evaluate_quality
from synthetic_saes.families import FAMILIES, OracleBase, make_controls, make_family
from synthetic_saes.worlds import build_world

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cpu_world():
    return build_world("cpu")


@pytest.fixture(scope="module")
def cpu_bases(cpu_world):
    return {seed: OracleBase(cpu_world, seed=seed) for seed in (0, 1, 2)}


def test_oracle_on_the_cpu_world(cpu_world, cpu_bases):
    q = evaluate_quality(cpu_bases[0].oracle, cpu_world, n_samples=16_384, seed=0)
    assert q.mcc >= 0.99
    assert q.f1 > 0.7 and q.explained_variance > 0.8


@pytest.mark.parametrize("family", ["decoder_noise", "dropped", "merged", "split"])
def test_quality_falls_along_each_knob_averaged_over_three_seeds(cpu_world, cpu_bases, family):
    values = FAMILIES[family].default_values(cpu_world)
    members = make_family(cpu_world, family, seeds=(0, 1, 2), bases=cpu_bases)
    scores = np.array([[q.mcc, q.f1] for q in
                       (evaluate_quality(m, cpu_world, n_samples=8192, seed=0) for m in members)])
    mean = scores.reshape(3, len(values), 2).mean(axis=0)
    assert np.all(np.diff(mean[:, 0]) <= 1e-9) and mean[-1, 0] < mean[0, 0]
    assert np.all(np.diff(mean[:, 1]) < 0)


def test_random_controls_sit_near_chance(cpu_world, cpu_bases):
    q = {c.family: evaluate_quality(c, cpu_world, n_samples=8192, seed=0)
         for c in make_controls(cpu_world, seed=0, bases=cpu_bases)}
    for name in ("random_init", "random_l0_matched"):
        assert q[name].f1 < 0.05 and q[name].mcc < 0.3
    assert q["oracle"].f1 > 10 * q["random_l0_matched"].f1

