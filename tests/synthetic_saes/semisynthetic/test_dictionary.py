import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from synthetic_saes.semisynthetic.dictionary import (
    dictionary_quality, fit_supervised_dictionary,
)

NAMES = ("word=a", "word=b", "word=c", "pole=high", "pole=low")


def _data(seed: int, n: int = 400, d: int = 12, noise: float = 0.0):
    """Tokens carrying one word each and, for some, one pole: exactly bias + sum of vectors."""
    rng = np.random.default_rng(seed)
    indicators = np.zeros((n, len(NAMES)), dtype=bool)
    indicators[np.arange(n), rng.integers(0, 3, n)] = True
    pole = rng.integers(0, 3, n)  # 0 high, 1 low, 2 none
    indicators[pole == 0, 3] = True
    indicators[pole == 1, 4] = True
    bias = rng.standard_normal(d)
    vectors = rng.standard_normal((len(NAMES), d))
    acts = bias + indicators @ vectors + noise * rng.standard_normal((n, d))
    return acts, indicators, bias, vectors


@given(st.integers(0, 10_000))
def test_conditional_means_equal_a_literal_loop(seed):
    acts, indicators, _, _ = _data(seed, noise=0.3)
    d = fit_supervised_dictionary(acts, indicators, NAMES, method="conditional_means")
    mean = acts.mean(axis=0)
    np.testing.assert_allclose(d.bias, mean, rtol=1e-5, atol=1e-5)
    for k in range(len(NAMES)):
        rows = [i for i in range(len(acts)) if indicators[i, k]]
        literal = sum(acts[i] - mean for i in rows) / len(rows)
        np.testing.assert_allclose(d.vectors[k], literal, rtol=1e-4, atol=1e-4)
        assert d.counts[k] == len(rows)


@given(st.integers(0, 10_000))
def test_least_squares_recovers_an_exact_additive_model(seed):
    acts, indicators, bias, vectors = _data(seed)
    d = fit_supervised_dictionary(acts, indicators, NAMES, ridge=1e-9)
    # words always partition the tokens, so (bias, word vectors) are identified only up to a
    # shared shift; the reconstruction is exact and the pole contrast is identified
    np.testing.assert_allclose(d.reconstruct(indicators), acts, atol=1e-3)
    np.testing.assert_allclose(d.vectors[3] - d.vectors[4], vectors[3] - vectors[4], atol=1e-3)
    q = dictionary_quality(d, acts, indicators)
    assert q.explained_variance == pytest.approx(1.0, abs=1e-5)


def test_quality_probe_reads_well_separated_vectors_and_not_noise():
    acts, indicators, _, _ = _data(0, n=2000, noise=0.1)
    d = fit_supervised_dictionary(acts, indicators, NAMES)
    q = dictionary_quality(d, acts, indicators)
    assert q.probe_accuracy["word"] > 0.95 and q.probe_accuracy["pole"] > 0.95
    rng = np.random.default_rng(1)
    shuffled = indicators[rng.permutation(len(indicators))]
    q_noise = dictionary_quality(fit_supervised_dictionary(acts, shuffled, NAMES), acts,
                                 shuffled)
    assert q_noise.explained_variance < 0.1
    assert q_noise.probe_accuracy["word"] < 0.5  # chance is 1/3


def test_directions_are_unit_and_index_names(seed=0):
    acts, indicators, _, _ = _data(seed)
    d = fit_supervised_dictionary(acts, indicators, NAMES)
    np.testing.assert_allclose(np.linalg.norm(d.directions, axis=1), 1.0, atol=1e-5)
    assert d.index("pole=low") == 4 and d.attributes[:3] == ("word",) * 3
    with pytest.raises(ValueError, match="no feature"):
        d.index("pole=middle")


def test_bad_inputs_are_clear_errors():
    acts, indicators, _, _ = _data(0)
    with pytest.raises(ValueError, match="same n"):
        fit_supervised_dictionary(acts[:-1], indicators, NAMES)
    with pytest.raises(ValueError, match="names"):
        fit_supervised_dictionary(acts, indicators, NAMES[:-1])
    bad = acts.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_supervised_dictionary(bad, indicators, NAMES)
    empty = indicators.copy()
    empty[:, 4] = False
    with pytest.raises(ValueError, match="pole=low"):
        fit_supervised_dictionary(acts, empty, NAMES)
    with pytest.raises(ValueError, match="attribute=value"):
        fit_supervised_dictionary(acts, indicators, ("a", *NAMES[1:]))
    with pytest.raises(ValueError, match="method"):
        fit_supervised_dictionary(acts, indicators, NAMES, method="pca")
