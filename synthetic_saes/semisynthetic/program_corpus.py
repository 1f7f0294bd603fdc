"""CE-Bench's contrastive input on a world read off a program's model (Tracr-compiled or SIIT).

A subject is a pair of input tokens (u, v) of the program's vocabulary; its "stories" are
inputs, not text. Story pair i of subject (u, v):

    base   a random input of length T (drawn from `story_length`, at most the program's
           max_seq_len), tokens uniform over the vocabulary;
    marked max(1, round(marked_fraction * T)) distinct positions, chosen at random;
    A      the base with token u at every marked position;
    B      the base with token v at every marked position.

Both stories run through the world's model; the hook's activations at the non-BOS positions
are the story's tokens and the true features are the world's features of those positions, so
A and B differ exactly where the program's variables depend on the marked tokens (the tokens
themselves, and e.g. `reverse` at the mirrored positions or `hist` everywhere the count
changes). The differing features named by the subject are `tokens=u` (on A's marked tokens)
and `tokens=v` (on B's); nothing is planted, so `pole_magnitude` and `share_parent` of the
`CorpusConfig` do not apply and are ignored.

Subjects are the unordered token pairs of the vocabulary, each ordered at random (seeded);
asking for more subjects than pairs is an error, as it is on a synthetic world.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp

from synthetic_saes.corpora import ContrastiveCorpus, CorpusConfig, StoryPair, Subject
from synthetic_saes.rng import derive_seed

__all__ = ["program_contrastive_corpus"]


def program_contrastive_corpus(
    config: CorpusConfig,
    *,
    vocab: Sequence,
    token_ids: Sequence[int],
    max_seq_len: int,
    feature_names: Sequence[str],
    activations: Callable[[np.ndarray], np.ndarray],
    features: Callable[[np.ndarray], np.ndarray],
    d_in: int,
) -> ContrastiveCorpus:
    """Contrastive pairs of program inputs (see the module docstring).

    Args:
        config: the corpus's shape and seed.
        vocab: the program's input tokens; `token_ids[i]` is vocab[i]'s model id.
        max_seq_len: the longest input the model takes (BOS excluded).
        feature_names: the world's feature names; `tokens=<u>` must be among them.
        activations: ids int [n, T] -> hook activations float32 [n * T, d_in], BOS dropped.
        features: ids int [n, T] -> true features float32 [n * T, n_features].
        d_in: the activation width.

    Raises:
        ValueError: story lengths beyond max_seq_len, more subjects than token pairs, or a
            token without a `tokens=<u>` feature.
    """
    lo, hi = config.length_range
    if hi > max_seq_len:
        raise ValueError(f"story_length {config.story_length!r} exceeds the program's "
                         f"max_seq_len {max_seq_len}: stories are program inputs")
    index = {name: i for i, name in enumerate(feature_names)}
    missing = [f"tokens={u}" for u in vocab if f"tokens={u}" not in index]
    if missing:
        raise ValueError(f"the world has no features {missing}: a program corpus contrasts "
                         "input tokens, which must be features at the hook")
    pairs = list(itertools.combinations(range(len(vocab)), 2))
    if config.n_subjects > len(pairs):
        raise ValueError(f"the corpus asks for {config.n_subjects} subjects but the program's "
                         f"vocabulary of {len(vocab)} tokens has only {len(pairs)} token pairs")
    rng = np.random.default_rng(derive_seed(config.seed, "program-subjects"))
    chosen = [pairs[i] for i in rng.permutation(len(pairs))[:config.n_subjects]]
    subjects = []
    for a, b in chosen:
        high, low = (a, b) if rng.random() < 0.5 else (b, a)
        subjects.append((high, low, Subject(index[f"tokens={vocab[high]}"],
                                            index[f"tokens={vocab[high]}"],
                                            index[f"tokens={vocab[low]}"])))
    ids = np.asarray(token_ids, dtype=np.int64)
    rng = np.random.default_rng(derive_seed(config.seed, "program-stories"))
    story_pairs = []
    for i in range(config.n_pairs):
        high, low, subject = subjects[i // config.pairs_per_subject]
        length = int(rng.integers(lo, hi + 1))
        base = rng.integers(0, len(vocab), size=length)
        n_marked = max(1, int(round(config.marked_fraction * length)))
        marked = np.zeros(length, dtype=bool)
        marked[rng.choice(length, size=n_marked, replace=False)] = True
        story_a, story_b = base.copy(), base.copy()
        story_a[marked], story_b[marked] = high, low
        both = ids[np.stack([story_a, story_b])]
        hidden = activations(both).reshape(2, length, d_in)
        true = features(both).reshape(2, length, -1)
        story_pairs.append(StoryPair(
            index=i, subject=subject, hidden_a=hidden[0], hidden_b=hidden[1],
            features_a=sp.csr_matrix(true[0]), features_b=sp.csr_matrix(true[1]),
            marked_a=marked.copy(), marked_b=marked.copy(),
            differing_features=(subject.high, subject.low), shared_features=()))
    return ContrastiveCorpus(config, [s for _, _, s in subjects], story_pairs, d_in,
                             len(feature_names))
