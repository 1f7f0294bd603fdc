"""The feature hierarchy of a world as flat arrays: parents, children, mutual exclusion.

sae_lens stores a hierarchy as trees of `HierarchyNode`; corpora and absorption metrics need
to ask "who is k's parent, who are its siblings, which sibling pairs exist", so we flatten it.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

__all__ = ["FeatureHierarchy", "SiblingPair"]


@dataclass(frozen=True)
class SiblingPair:
    """Two mutually exclusive children of one parent feature (a contrastive subject)."""

    parent: int
    first: int
    second: int


@dataclass(frozen=True, eq=False)
class FeatureHierarchy:
    """Flat view of a feature forest.

    Attributes:
        parent: int64 [n_features], the parent feature of each feature, -1 for roots and
            features outside the hierarchy.
        children: for each feature, the tuple of its children (empty for leaves).
        mutually_exclusive: bool [n_features], True where a feature's children are mutually
            exclusive (at most one fires per sample).
    """

    parent: np.ndarray
    children: tuple[tuple[int, ...], ...]
    mutually_exclusive: np.ndarray

    @classmethod
    def from_sae_lens(cls, hierarchy, *, num_features: int) -> FeatureHierarchy:
        """Flatten a `sae_lens.synthetic.Hierarchy` (or None, for a world without one)."""
        parent = np.full(num_features, -1, dtype=np.int64)
        children: list[tuple[int, ...]] = [() for _ in range(num_features)]
        exclusive = np.zeros(num_features, dtype=bool)
        roots = [] if hierarchy is None else list(hierarchy.roots)
        stack = list(roots)
        while stack:
            node = stack.pop()
            kids = [c.feature_index for c in node.children if c.feature_index is not None]
            if node.feature_index is not None:
                children[node.feature_index] = tuple(kids)
                exclusive[node.feature_index] = bool(node.mutually_exclusive_children)
                for kid in kids:
                    parent[kid] = node.feature_index
            stack.extend(node.children)
        parent.setflags(write=False)
        exclusive.setflags(write=False)
        return cls(parent=parent, children=tuple(children), mutually_exclusive=exclusive)

    @classmethod
    def from_edges(cls, num_features: int, edges, exclusive_parents=()) -> FeatureHierarchy:
        """A hierarchy from (parent, child) edges; `exclusive_parents` lists the parents whose
        children are mutually exclusive.

        Raises:
            ValueError: an index outside [0, num_features), a child with two parents, or a cycle.
        """
        parent = np.full(num_features, -1, dtype=np.int64)
        children: list[list[int]] = [[] for _ in range(num_features)]
        for p, c in edges:
            p, c = int(p), int(c)
            if not (0 <= p < num_features and 0 <= c < num_features) or p == c:
                raise ValueError(f"bad hierarchy edge ({p}, {c}) for {num_features} features")
            if parent[c] >= 0:
                raise ValueError(f"feature {c} has two parents ({parent[c]} and {p})")
            parent[c] = p
            children[p].append(c)
        for start in range(num_features):
            seen, node = set(), start
            while node >= 0:
                if node in seen:
                    raise ValueError(f"the hierarchy edges have a cycle through feature {node}")
                seen.add(node)
                node = int(parent[node])
        exclusive = np.zeros(num_features, dtype=bool)
        for p in exclusive_parents:
            exclusive[int(p)] = True
        parent.setflags(write=False)
        exclusive.setflags(write=False)
        return cls(parent=parent, children=tuple(tuple(k) for k in children),
                   mutually_exclusive=exclusive)

    @property
    def num_features(self) -> int:
        return int(self.parent.shape[0])

    @property
    def num_parents(self) -> int:
        return sum(1 for kids in self.children if kids)

    def ancestors(self, feature: int) -> list[int]:
        """Ancestors of `feature`, nearest first."""
        chain = []
        node = int(self.parent[feature])
        while node >= 0:
            chain.append(node)
            node = int(self.parent[node])
        return chain

    def descendants(self, feature: int) -> list[int]:
        out: list[int] = []
        stack = list(self.children[feature])
        while stack:
            node = stack.pop()
            out.append(node)
            stack.extend(self.children[node])
        return out

    def siblings(self, feature: int) -> list[int]:
        """The other children of `feature`'s parent (empty for roots)."""
        parent = int(self.parent[feature])
        if parent < 0:
            return []
        return [c for c in self.children[parent] if c != feature]

    def exclusive_parents(self) -> list[int]:
        """Parents whose children are mutually exclusive (and number at least two)."""
        return [
            k
            for k, kids in enumerate(self.children)
            if len(kids) >= 2 and bool(self.mutually_exclusive[k])
        ]

    def sibling_pairs(self) -> list[SiblingPair]:
        """Every unordered pair of mutually exclusive siblings, ordered by parent then child."""
        return [
            SiblingPair(parent, a, b)
            for parent in self.exclusive_parents()
            for a, b in combinations(sorted(self.children[parent]), 2)
        ]

    def parent_child_pairs(self) -> np.ndarray:
        """All (parent, child) edges, int64 [n_edges, 2]."""
        edges = [(int(p), k) for k, p in enumerate(self.parent) if p >= 0]
        return np.array(sorted(edges), dtype=np.int64).reshape(-1, 2)
