"""The contrastive corpus of a program's world: inputs differing only at marked tokens."""

import numpy as np
import pytest

from synthetic_saes.corpora import CorpusConfig
from synthetic_saes.semisynthetic import TracrWorld


@pytest.fixture(scope="module")
def reverse_world():
    return TracrWorld("reverse")


def _config(**changes):
    return CorpusConfig(**{"n_subjects": 3, "pairs_per_subject": 4, "story_length": (2, 5),
                           "marked_fraction": 0.3, "seed": 7, **changes})


def test_stories_differ_only_where_the_program_depends_on_the_marked_tokens(reverse_world):
    world = reverse_world
    corpus = world.contrastive_corpus(_config())
    names = world.feature_names
    assert len(corpus) == 12 and len(corpus.subjects) == 3
    assert len({(s.high, s.low) for s in corpus.subjects}) == 3
    for pair in corpus:
        high, low = (names[f].split("=")[1] for f in pair.differing_features)
        fa, fb = pair.features_a.toarray(), pair.features_b.toarray()
        length = fa.shape[0]
        assert np.array_equal(pair.marked_a, pair.marked_b) and pair.marked_a.any()
        # the marked tokens carry the poles, the others the same token in both stories
        assert np.all(fa[pair.marked_a, names.index(f"tokens={high}")] == 1)
        assert np.all(fb[pair.marked_b, names.index(f"tokens={low}")] == 1)
        tokens = [i for i, n in enumerate(names) if n.startswith("tokens=")]
        assert np.array_equal(fa[~pair.marked_a][:, tokens], fb[~pair.marked_b][:, tokens])
        # reverse differs exactly at the mirrored marked positions
        rev = [i for i, n in enumerate(names) if n.startswith("reverse=")]
        mirrored = pair.marked_a[::-1]
        assert np.array_equal((fa[:, rev] != fb[:, rev]).any(1), mirrored)
        # the hidden states are the model's on those inputs
        token_of = {f"tokens={t}": t for t in world.model.vocab}
        ids = [world.model.token_id(token_of[names[tokens[np.argmax(row[tokens])]]])
               for row in fa]
        np.testing.assert_array_equal(world.activations(np.array([ids])), pair.hidden_a)
        assert 2 <= length <= 5


def test_same_seed_same_corpus_other_seed_other_corpus(reverse_world):
    a = reverse_world.contrastive_corpus(_config())
    b = reverse_world.contrastive_corpus(_config())
    c = reverse_world.contrastive_corpus(_config(seed=8))
    assert all(np.array_equal(x.hidden_a, y.hidden_a) and np.array_equal(x.hidden_b, y.hidden_b)
               for x, y in zip(a, b))
    assert not all(x.hidden_a.shape == y.hidden_a.shape and np.array_equal(x.hidden_a, y.hidden_a)
                   for x, y in zip(a, c))


def test_bad_corpora_are_refused_by_name(reverse_world):
    with pytest.raises(ValueError, match="exceeds the program's max_seq_len 5"):
        reverse_world.contrastive_corpus(_config(story_length=64))
    with pytest.raises(ValueError, match="only 3 token pairs"):
        reverse_world.contrastive_corpus(_config(n_subjects=4))
