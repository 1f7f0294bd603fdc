import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cebench.reference import reference_scores
from cebench.scores import POOLINGS, score_latents, zscore, zscore_ceiling


def random_pairs(rng, n_pairs, d_sae, max_tokens=6, sparsity=0.6, marked=False):
    pairs, masks = [], []
    for _ in range(n_pairs):
        stories = []
        for _ in range(2):
            t = int(rng.integers(1, max_tokens + 1))
            x = rng.exponential(1.0, (t, d_sae)) * (rng.random((t, d_sae)) > sparsity)
            stories.append(x.astype(np.float32))
        pairs.append(tuple(stories))
        if marked:
            ma = rng.random(stories[0].shape[0]) < 0.5
            mb = rng.random(stories[1].shape[0]) < 0.5
            ma[0], mb[-1] = True, False  # at least one marked and one unmarked token per row
            masks.append((ma, mb))
    return pairs, (masks if marked else None)


def assert_matches_reference(ours, ref):
    for score in ("contrastive", "independent", "interpretability"):
        assert getattr(ours, score) == pytest.approx(ref[score]["max"], rel=1e-5, abs=1e-9)
        for pooling in POOLINGS:
            assert ours.pooled[score][pooling] == pytest.approx(ref[score][pooling], rel=1e-5,
                                                                abs=1e-9)
        latents = getattr(ours.per_pair, f"{score}_latent").tolist()
        assert latents == [r[f"{score}_latent"] for r in ref["rows"]]
    assert ours.l0 == pytest.approx(ref["l0"])


# d_sae >= 2: with one latent the reference's torch.std is NaN (see the test below).
@given(seed=st.integers(0, 100_000), n_pairs=st.integers(1, 5), d_sae=st.integers(2, 12),
       defect=st.booleans())
def test_v4_equals_the_literal_reference(seed, n_pairs, d_sae, defect):
    pairs, _ = random_pairs(np.random.default_rng(seed), n_pairs, d_sae)
    ours = score_latents(pairs, ibar_zero_defect=defect)
    assert_matches_reference(ours, reference_scores(pairs, ibar_zero_defect=defect))


@given(seed=st.integers(0, 100_000), n_pairs=st.integers(1, 5), d_sae=st.integers(2, 12))
def test_v1_equals_the_literal_reference(seed, n_pairs, d_sae):
    pairs, masks = random_pairs(np.random.default_rng(seed), n_pairs, d_sae, marked=True)
    ours = score_latents(pairs, variant="v1", marked=masks)
    assert_matches_reference(ours, reference_scores(pairs, variant="v1", marked=masks))


def test_hand_computed_row():
    # one pair, 3 latents: A = [[2, 0, 0]], B = [[0, 0, 0]] -> |V1 - V2| = [2, 0, 0]
    a = np.array([[2.0, 0.0, 0.0]])
    b = np.zeros((1, 3))
    s = score_latents([(a, b)])
    # z([2, 0, 0]): mean 2/3, unbiased std sqrt(((4/3)^2 + 2 (2/3)^2) / 2) = 2/sqrt(3)
    assert s.contrastive == pytest.approx((2 - 2 / 3) / (2 / np.sqrt(3)))
    assert s.contrastive == pytest.approx(zscore_ceiling(3))  # one latent carries it all
    assert s.contrastive_calibrated == pytest.approx(1.0)
    # one row: Ibar == I1, so the independent distance is all zeros: std 0 -> 1, z = 0
    assert s.independent == 0.0
    assert s.per_pair.contrastive_latent.tolist() == [0]
    assert s.l0 == pytest.approx(0.5)
    assert s.sparsity_aware == pytest.approx(s.contrastive + s.independent - 0.25 * 0.5)


@given(seed=st.integers(0, 100_000))
def test_permuting_latents_changes_nothing_but_the_latent_ids(seed):
    rng = np.random.default_rng(seed)
    pairs, _ = random_pairs(rng, 4, 9)
    perm = rng.permutation(9)
    base = score_latents(pairs)
    moved = score_latents([(a[:, perm], b[:, perm]) for a, b in pairs])
    assert moved.metrics() == pytest.approx(base.metrics(), rel=1e-9, abs=1e-12)
    # the responsible latent moves with the permutation (unless tied)
    latents = perm[moved.per_pair.contrastive_latent]
    z = np.abs(np.array([a.mean(0) - b.mean(0) for a, b in pairs]))
    assert np.allclose(z[np.arange(4), latents], z.max(axis=1))


@given(seed=st.integers(0, 100_000))
def test_swapping_stories_a_and_b_leaves_every_score_unchanged(seed):
    pairs, _ = random_pairs(np.random.default_rng(seed), 4, 7)
    base = score_latents(pairs)
    swapped = score_latents([(b, a) for a, b in pairs])
    assert swapped.metrics() == pytest.approx(base.metrics(), rel=1e-9, abs=1e-12)


@given(seed=st.integers(0, 100_000), scale=st.floats(1e-3, 1e3))
def test_scaling_all_latents_changes_no_z_score(seed, scale):
    pairs, _ = random_pairs(np.random.default_rng(seed), 3, 8)
    base = score_latents(pairs)
    scaled = score_latents([(a * scale, b * scale) for a, b in pairs])
    for name in ("contrastive", "independent", "interpretability"):
        assert getattr(scaled, name) == pytest.approx(getattr(base, name), rel=1e-6, abs=1e-9)
    assert scaled.l0 == base.l0


@given(seed=st.integers(0, 100_000), shift=st.floats(-5, 5))
def test_v4_scores_ignore_a_common_offset_of_every_latent(seed, shift):
    """|V1 - V2| and |I1 - Ibar| are differences of means, so a constant vector added to every
    token's latents cancels."""
    rng = np.random.default_rng(seed)
    pairs, _ = random_pairs(rng, 3, 6)
    offset = rng.normal(size=6) * shift
    base = score_latents(pairs)
    moved = score_latents([(a + offset, b + offset) for a, b in pairs])
    for name in ("contrastive", "independent", "interpretability"):
        assert getattr(moved, name) == pytest.approx(getattr(base, name), rel=1e-6, abs=1e-9)


@given(seed=st.integers(0, 100_000), d_sae=st.integers(1, 40))
def test_max_z_never_exceeds_its_ceiling(seed, d_sae):
    pairs, _ = random_pairs(np.random.default_rng(seed), 3, d_sae, sparsity=0.9)
    s = score_latents(pairs)
    ceiling = zscore_ceiling(d_sae)
    for row_scores in (s.per_pair.contrastive, s.per_pair.independent,
                       s.per_pair.interpretability):
        assert (row_scores <= ceiling + 1e-9).all()
    assert 0.0 <= s.contrastive_calibrated <= 1.0 + 1e-12


def test_a_single_latent_scores_zero_not_nan():
    """With d_sae == 1 the unbiased std is undefined (the reference gets NaN); we treat it as 1
    like a zero std, so every z-score is 0."""
    s = score_latents([(np.ones((2, 1)), np.zeros((3, 1)))])
    assert s.contrastive == s.independent == s.interpretability == 0.0


def test_identical_stories_have_no_contrast():
    rng = np.random.default_rng(0)
    a = rng.random((4, 5))
    assert score_latents([(a, a.copy())]).contrastive == 0.0


def test_duplicating_every_row_changes_no_dataset_score():
    pairs, _ = random_pairs(np.random.default_rng(3), 4, 6)
    base = score_latents(pairs)
    twice = score_latents(pairs + pairs)
    assert twice.metrics() == pytest.approx(base.metrics(), rel=1e-9)


def test_ibar_defect_scores_i1_against_zero():
    pairs, _ = random_pairs(np.random.default_rng(4), 3, 6)
    defect = score_latents(pairs, ibar_zero_defect=True)
    i1 = [np.concatenate([a, b]).mean(0) for a, b in pairs]
    assert defect.independent == pytest.approx(np.mean([zscore(v).max() for v in i1]))


def test_zscore_matches_numpy_with_unbiased_std():
    v = np.random.default_rng(5).normal(size=(3, 10))
    expected = (v - v.mean(-1, keepdims=True)) / v.std(-1, ddof=1, keepdims=True)
    np.testing.assert_allclose(zscore(v), expected)


@pytest.mark.parametrize(
    "pairs, kwargs, message",
    [
        ([], {}, "no story pairs"),
        ([(np.zeros((0, 3)), np.zeros((2, 3)))], {}, "pair 0 story a is empty"),
        ([(np.zeros((2, 3)), np.zeros((2, 4)))], {}, "pair 0 story b has width 4, expected 3"),
        ([(np.full((2, 3), np.nan), np.zeros((2, 3)))], {}, "contain NaN or Inf"),
        ([(np.zeros(3), np.zeros((2, 3)))], {}, "must be \\[tokens, width\\]"),
        ([(np.ones((2, 3)), np.ones((2, 3)))], {"variant": "v2"}, "unknown CE-Bench variant"),
        ([(np.ones((2, 3)), np.ones((2, 3)))], {"variant": "v1"}, "needs `marked`"),
        ([(np.ones((2, 3)), np.ones((2, 3)))],
         {"variant": "v1", "marked": [(np.zeros(2, bool), np.zeros(2, bool))]},
         "pair 0 has no marked tokens"),
        ([(np.ones((2, 3)), np.ones((2, 3)))],
         {"variant": "v1", "marked": [(np.ones(2, bool), np.ones(2, bool))]},
         "pair 0 has no unmarked tokens"),
        ([(np.ones((2, 3)), np.ones((2, 3)))],
         {"variant": "v1", "marked": [(np.ones(3, bool), np.ones(2, bool))]},
         "do not match"),
        ([(np.ones((2, 3)), np.ones((2, 3)))], {"marked": [(np.ones(2, bool),) * 2]},
         "only used by the v1"),
        ([(np.ones((2, 3)), np.ones((2, 3)))],
         {"variant": "v1", "ibar_zero_defect": True,
          "marked": [(np.array([True, False]), np.ones(2, bool))]},
         "v4 variant only"),
    ],
)
def test_bad_input_is_a_clear_error(pairs, kwargs, message):
    with pytest.raises(ValueError, match=message):
        score_latents(pairs, **kwargs)


@pytest.mark.parametrize("n", [2, 3, 10, 1000])
def test_ceiling_is_the_max_z_score_of_a_single_spike(n):
    v = np.zeros(n)
    v[0] = 1.0
    assert zscore_ceiling(n) == pytest.approx(((v - v.mean()) / v.std(ddof=1)).max())
    assert zscore_ceiling(np.array([n, n])).tolist() == pytest.approx([zscore_ceiling(n)] * 2)
    rng = np.random.default_rng(n)
    for _ in range(20):
        w = rng.standard_normal(n)
        assert ((w - w.mean()) / w.std(ddof=1)).max() <= zscore_ceiling(n) + 1e-12


def test_the_ceiling_of_one_value_is_one_and_fewer_values_are_refused():
    assert zscore_ceiling(1) == 1.0  # one latent: z = 0, so a calibrated score is 0, not 0/0
    for bad in (0, -3, np.inf, np.array([4, 0])):
        with pytest.raises(ValueError, match="n >= 1"):
            zscore_ceiling(bad)
