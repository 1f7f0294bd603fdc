"""Supervised feature dictionaries: the ground truth of a real model's activations at a hook.

For tokens whose attributes are known (Makelov, Lange & Nanda 2024), a supervised dictionary
writes every activation as a bias plus one vector per attribute value the token carries:

    a  ~  u_bias + sum_{f defined on the token} u_{f, f(token)}

Two fits of the vectors, both over the same indicator features 1[f(token) = v]:
    "conditional_means"   the paper's definition: u_bias = mean activation,
                          u_{f,v} = mean over tokens with f = v of (a - u_bias).
                          Exact when attributes are defined on disjoint tokens; where they
                          overlap (a word and the pole it expresses) their sum double-counts.
    "least_squares"       the minimum-norm least-squares fit of the indicator model (a ridge of
                          vanishing size, `ridge` relative to the mean indicator count), which
                          removes the double counting; where indicators are exactly dependent
                          (a parent category fires exactly when one of its entity words does)
                          it splits what the children share between parent and children.
                          The default ground truth.

Quality (`dictionary_quality`), on held-out tokens:
    explained_variance    1 - E|a - a_hat|^2 / E|a - mean a|^2 of the reconstruction.
    probe_accuracy        per attribute, on tokens carrying one of its values: the dictionary's
                          own nearest-mean probe, argmax_v <a - u_bias, u_{f,v}> - |u_{f,v}|^2/2
                          (a ~ u_bias + u_{f,v} with everything else treated as noise); no
                          weights are trained.

References:
    Makelov, Lange & Nanda, "Towards principled evaluations of sparse autoencoders for
    interpretability and control" (2024), https://arxiv.org/abs/2405.08366
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["SupervisedDictionary", "fit_supervised_dictionary", "dictionary_quality",
           "DictionaryQuality"]

Method = Literal["least_squares", "conditional_means"]


@dataclass(frozen=True, eq=False)
class SupervisedDictionary:
    """A bias and one vector per (attribute, value).

    Attributes:
        names: "attribute=value" per feature, [n_features].
        attributes: the attribute of each feature, [n_features].
        bias: u_bias, float32 [d_in].
        vectors: u_{f,v} (not normalised), float32 [n_features, d_in].
        method: "least_squares" or "conditional_means".
        counts: tokens carrying each feature in the fit, int64 [n_features].
    """

    names: tuple[str, ...]
    attributes: tuple[str, ...]
    bias: np.ndarray
    vectors: np.ndarray
    method: str
    counts: np.ndarray

    @property
    def n_features(self) -> int:
        return len(self.names)

    @property
    def norms(self) -> np.ndarray:
        """||u_{f,v}||, float32 [n_features]."""
        return np.linalg.norm(self.vectors, axis=1).astype(np.float32)

    @property
    def directions(self) -> np.ndarray:
        """u_{f,v} / ||u_{f,v}||, float32 [n_features, d_in]."""
        return (self.vectors / self.norms[:, None]).astype(np.float32)

    def reconstruct(self, indicators: np.ndarray) -> np.ndarray:
        """u_bias + indicators @ vectors; indicators bool/float [n, n_features] -> [n, d_in]."""
        return (np.asarray(indicators, dtype=np.float32) @ self.vectors + self.bias).astype(
            np.float32)

    def index(self, name: str) -> int:
        """The feature index of "attribute=value"."""
        try:
            return self.names.index(name)
        except ValueError:
            raise ValueError(f"the dictionary has no feature {name!r}") from None


def _check(activations: np.ndarray, indicators: np.ndarray, names) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    acts = np.asarray(activations, dtype=np.float64)
    ind = np.asarray(indicators, dtype=bool)
    if acts.ndim != 2 or ind.ndim != 2 or acts.shape[0] != ind.shape[0]:
        raise ValueError(f"need activations [n, d_in] and indicators [n, n_features] with the "
                         f"same n, got {acts.shape} and {ind.shape}")
    if ind.shape[1] != len(names):
        raise ValueError(f"{len(names)} names for {ind.shape[1]} indicator columns")
    if not np.isfinite(acts).all():
        raise ValueError("the activations contain NaN or Inf")
    return acts, ind


def fit_supervised_dictionary(activations: np.ndarray, indicators: np.ndarray,
                              names: tuple[str, ...], *, method: Method = "least_squares",
                              ridge: float = 1e-4) -> SupervisedDictionary:
    """Fit a supervised dictionary (see the module docstring).

    Args:
        activations: float [n_tokens, d_in].
        indicators: bool [n_tokens, n_features], 1[f(token) = v] per "attribute=value" name.
        names: "attribute=value" per column.
        method: "least_squares" (default) or "conditional_means".
        ridge: least squares only; the penalty relative to the mean number of tokens per
            feature (small: it only makes exactly dependent indicators identifiable).

    Raises:
        ValueError: mismatched shapes, non-finite activations, a feature no token carries,
            an unknown method or a name not of the form "attribute=value".
    """
    acts, ind = _check(activations, indicators, names)
    if method not in ("least_squares", "conditional_means"):
        raise ValueError(f"method must be 'least_squares' or 'conditional_means', got {method!r}")
    for name in names:
        if "=" not in name:
            raise ValueError(f"feature names must read 'attribute=value', got {name!r}")
    counts = ind.sum(axis=0).astype(np.int64)
    if (counts == 0).any():
        missing = [n for n, c in zip(names, counts) if c == 0][:5]
        raise ValueError(f"no token carries the features {missing}: draw more tokens")
    if method == "conditional_means":
        bias = acts.mean(axis=0)
        vectors = (ind.T.astype(np.float64) @ (acts - bias)) / counts[:, None]
    else:
        if not ridge > 0:
            raise ValueError(f"ridge must be > 0, got {ridge}")
        design = np.column_stack([np.ones(len(acts)), ind.astype(np.float64)])
        gram = design.T @ design
        penalty = ridge * counts.mean() * np.eye(gram.shape[0])
        penalty[0, 0] = 0.0  # the bias is not shrunk
        solution = np.linalg.solve(gram + penalty, design.T @ acts)
        bias, vectors = solution[0], solution[1:]
    norms = np.linalg.norm(vectors, axis=1)
    if (norms == 0).any():
        raise ValueError("a dictionary vector is exactly zero")
    return SupervisedDictionary(
        names=tuple(names), attributes=tuple(n.split("=", 1)[0] for n in names),
        bias=bias.astype(np.float32), vectors=vectors.astype(np.float32), method=method,
        counts=counts)


@dataclass(frozen=True)
class DictionaryQuality:
    """How well a supervised dictionary describes held-out activations.

    Attributes:
        explained_variance: of the reconstruction u_bias + sum of the token's vectors.
        probe_accuracy: attribute -> accuracy of the dictionary's own probe (module docstring).
        n_tokens: held-out tokens measured.
    """

    explained_variance: float
    probe_accuracy: dict[str, float]
    n_tokens: int

    @property
    def mean_probe_accuracy(self) -> float:
        return float(np.mean(list(self.probe_accuracy.values())))

    def to_dict(self) -> dict:
        return {"explained_variance": self.explained_variance,
                "probe_accuracy": dict(self.probe_accuracy),
                "mean_probe_accuracy": self.mean_probe_accuracy, "n_tokens": self.n_tokens}


def dictionary_quality(dictionary: SupervisedDictionary, activations: np.ndarray,
                       indicators: np.ndarray) -> DictionaryQuality:
    """Explained variance and per-attribute probe accuracy on (held-out) tokens."""
    acts, ind = _check(activations, indicators, dictionary.names)
    reconstruction = dictionary.reconstruct(ind).astype(np.float64)
    total = ((acts - acts.mean(axis=0)) ** 2).sum()
    explained = 1.0 - ((acts - reconstruction) ** 2).sum() / total
    centred = acts - dictionary.bias
    vectors = dictionary.vectors.astype(np.float64)
    # Nearest class mean: a ~ u_bias + u_{f,v} + (everything else, treated as noise).
    scores = centred @ vectors.T - 0.5 * (vectors ** 2).sum(axis=1)
    accuracy = {}
    attributes = np.array(dictionary.attributes)
    for attribute in dict.fromkeys(dictionary.attributes):
        columns = np.flatnonzero(attributes == attribute)
        carried = ind[:, columns]
        rows = carried.sum(axis=1) == 1
        if not rows.any():
            continue
        predicted = scores[rows][:, columns].argmax(axis=1)
        accuracy[attribute] = float((carried[rows].argmax(axis=1) == predicted).mean())
    return DictionaryQuality(float(explained), accuracy, int(len(acts)))
