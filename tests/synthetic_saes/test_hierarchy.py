import numpy as np
from sae_lens.synthetic import HierarchyNode
from sae_lens.synthetic.hierarchy import Hierarchy

from synthetic_saes.hierarchy import FeatureHierarchy, SiblingPair


def _hand_built():
    # 0 -> (1, 2, 3) exclusive; 1 -> (4, 5) not exclusive; 6 stands alone
    leaves = [HierarchyNode(4), HierarchyNode(5)]
    one = HierarchyNode(1, leaves)
    root = HierarchyNode(0, [one, HierarchyNode(2), HierarchyNode(3)],
                         mutually_exclusive_children=True)
    return FeatureHierarchy.from_sae_lens(Hierarchy(roots=[root], modifier=None), num_features=7)


def test_flat_view_of_a_hand_built_forest():
    h = _hand_built()
    assert list(h.parent) == [-1, 0, 0, 0, 1, 1, -1]
    assert h.children[0] == (1, 2, 3) and h.children[1] == (4, 5) and h.children[6] == ()
    assert h.ancestors(4) == [1, 0] and h.ancestors(0) == []
    assert sorted(h.descendants(0)) == [1, 2, 3, 4, 5]
    assert sorted(h.siblings(2)) == [1, 3]
    assert h.exclusive_parents() == [0]
    assert h.sibling_pairs() == [SiblingPair(0, 1, 2), SiblingPair(0, 1, 3), SiblingPair(0, 2, 3)]
    assert h.parent_child_pairs().tolist() == [[0, 1], [0, 2], [0, 3], [1, 4], [1, 5]]


def test_no_hierarchy_gives_an_empty_view():
    h = FeatureHierarchy.from_sae_lens(None, num_features=3)
    assert h.num_parents == 0 and h.sibling_pairs() == []
    assert h.parent_child_pairs().shape == (0, 2)
    assert np.all(h.parent == -1)


def test_from_edges_builds_the_forest_and_rejects_bad_edges():
    import pytest

    from synthetic_saes.hierarchy import FeatureHierarchy

    h = FeatureHierarchy.from_edges(5, [(0, 1), (0, 2), (3, 4)], exclusive_parents=[0])
    assert h.parent.tolist() == [-1, 0, 0, -1, 3]
    assert h.children[0] == (1, 2) and h.children[3] == (4,)
    assert h.mutually_exclusive.tolist() == [True, False, False, False, False]
    with pytest.raises(ValueError, match="two parents"):
        FeatureHierarchy.from_edges(3, [(0, 2), (1, 2)])
    with pytest.raises(ValueError, match="cycle"):
        FeatureHierarchy.from_edges(3, [(0, 1), (1, 2), (2, 0)])
    with pytest.raises(ValueError, match="bad hierarchy edge"):
        FeatureHierarchy.from_edges(3, [(0, 3)])
