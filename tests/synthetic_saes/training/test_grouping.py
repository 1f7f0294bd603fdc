import dataclasses

import pytest

from synthetic_saes.training import TrainingConfig, group_key, group_runs
from synthetic_saes.training.grouping import group_template


def test_runs_group_by_everything_but_the_sparsity_knob():
    topk = [TrainingConfig(architecture="topk", k=k) for k in (8, 32, 16)]
    relu = [TrainingConfig(architecture="relu_l1", k=None, l1_coefficient=c) for c in (1.0, 2.0)]
    wide = TrainingConfig(architecture="topk", k=8, d_sae=1024)
    slow = TrainingConfig(architecture="topk", k=8, lr=1e-4)
    configs = [topk[0], relu[0], wide, topk[1], relu[1], slow, topk[2]]
    assert group_runs(configs) == [(0, 3, 6), (1, 4), (2,), (5,)]
    assert group_runs([]) == []
    assert group_key(topk[0]) == group_key(topk[1]) != group_key(wide)
    # a knob another architecture would use does not split a group either
    assert group_key(relu[0]) == group_key(dataclasses.replace(relu[0], k=4))


def test_matryoshka_widths_split_groups():
    a = TrainingConfig(architecture="matryoshka_batchtopk", d_sae=64, k=4,
                       matryoshka_widths=(16, 64))
    b = dataclasses.replace(a, matryoshka_widths=(8, 64))
    assert group_runs([a, b, dataclasses.replace(a, k=8)]) == [(0, 2), (1,)]


def test_the_template_selects_at_the_largest_k():
    configs = [TrainingConfig(architecture="batchtopk", k=k) for k in (16, 64, 8)]
    assert group_template(configs).k == 64
    relu = TrainingConfig(architecture="relu_l1", k=None, l1_coefficient=3.0)
    assert group_template([relu]) is relu
    with pytest.raises(ValueError, match="differ only in k, l1_coefficient and l0_coefficient"):
        group_template([configs[0], TrainingConfig(architecture="batchtopk", k=8, d_sae=128)])
    with pytest.raises(ValueError, match="at least one config"):
        group_template([])
