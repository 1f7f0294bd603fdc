"""TPP (groundtruth/metrics/tpp.py) and the shared ablation primitives, on a hand-built world."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from groundtruth.metrics.ablation import (
    LinearProbe, ablate_latents, balanced_probe_set, latent_effects, select_top_n,
)
from groundtruth.metrics.data import AuditData
from groundtruth.metrics.registry import evaluate_metric, get_metric
from groundtruth.metrics.saebench_tasks import (
    SaeBenchTaskConfig, TaskPool, TppTask, choose_tpp_tasks, tpp_class_rows,
)
from groundtruth.metrics.tpp import TppResult, clip_n_values, prepare_tpp, tpp_results
from synthetic_saes.hierarchy import FeatureHierarchy

from tests.groundtruth.metrics.saebench_fixtures import HandWorld, merged_siblings_sae, oracle_sae

# ---- SAEBench reference (adamkarvonen/SAEBench @ 8042bb3828c6340da8d12062324e92b2077c571c,
# sae_bench/evals/scr_and_tpp/main.py), the formula parts rewritten without torch -----------


def ref_tpp(class_accuracies, llm_clean_accs):
    """create_tpp_plotting_dict: {threshold: total_metric} averaged over classes."""
    per_class = {}
    classes = list(llm_clean_accs.keys())
    for class_name in classes:
        metrics = {}
        for threshold in class_accuracies[class_name]:
            intended = llm_clean_accs[class_name] - class_accuracies[class_name][threshold][
                class_name]
            unintended = [llm_clean_accs[u] - class_accuracies[class_name][threshold][u]
                          for u in classes if u != class_name]
            metrics[threshold] = intended - sum(unintended) / len(unintended)
        per_class[class_name] = metrics
    keys = next(iter(per_class.values())).keys()
    return {k: sum(m[k] for m in per_class.values()) / len(per_class) for k in keys}


def ref_select_top_n(effects, n):
    """select_top_n_features: a boolean mask (torch.topk replaced by a stable sort)."""
    assert n <= effects.size
    k = min(n, int((effects != 0).sum()))
    mask = np.zeros(effects.size, dtype=bool)
    if k:
        mask[np.argsort(-effects, kind="stable")[:k]] = True
    return mask


def ref_effects(latents, labels, weight, W_dec, perform_scr):
    """get_effects_per_class_precomputed_acts on one-token inputs."""
    diff = latents[labels == 1].mean(0) - latents[labels == 0].mean(0)
    dot = weight @ W_dec.T
    if not perform_scr:
        diff = np.clip(diff, 0.0, None)
    effects = diff * dot
    return np.abs(effects) if perform_scr else effects


def ref_ablate(x, latents, W_dec, b_dec, mask):
    """ablated_precomputed_activations: decode with the latents zeroed, plus the SAE error."""
    x_hat = latents @ W_dec + b_dec
    error = x - x_hat
    f = latents.copy()
    f[:, mask] = 0.0
    return f @ W_dec + b_dec + error


# ---- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world():
    return HandWorld()


@pytest.fixture(scope="module")
def data(world):
    return AuditData(world)


# ---- primitives against the reference ------------------------------------------------------


@given(st.integers(0, 2**31 - 1), st.integers(1, 12), st.integers(2, 30),
       st.booleans())
def test_effects_selection_and_ablation_equal_saebench(seed, d_sae, n, absolute):
    rng = np.random.default_rng(seed)
    latents = np.maximum(rng.standard_normal((n, d_sae)), 0) * (rng.random((n, d_sae)) < 0.5)
    labels = np.arange(n) % 2
    W_dec, w = rng.standard_normal((d_sae, 5)), rng.standard_normal(5)
    ours = latent_effects(latents, labels, LinearProbe(w, 0.1), W_dec, absolute=absolute)
    ref = ref_effects(latents, labels, w, W_dec, absolute)
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)
    for top in range(1, d_sae + 1):
        mask = np.zeros(d_sae, dtype=bool)
        mask[select_top_n(ref, top)] = True
        np.testing.assert_array_equal(mask, ref_select_top_n(ref, top))
        x = rng.standard_normal((n, 5))
        np.testing.assert_allclose(ablate_latents(x, latents, W_dec, np.flatnonzero(mask)),
                                   ref_ablate(x, latents, W_dec, rng.standard_normal(5) * 0,
                                              mask), atol=1e-10)


def test_select_top_n_caps_at_the_nonzero_effects_and_rejects_n_beyond_d_sae():
    effects = np.array([0.0, 3.0, 0.0, 1.0, -2.0])
    assert select_top_n(effects, 2).tolist() == [1, 3]
    assert select_top_n(effects, 5).tolist() == [1, 3, 0]  # 3 nonzero: topk over all effects
    with pytest.raises(ValueError, match="n must be in"):
        select_top_n(effects, 6)


def test_balanced_probe_set_draws_evenly_from_the_other_classes():
    rng = np.random.default_rng(0)
    pos = np.ones((6, 2))
    negs = [np.full((10, 2), 2.0), np.full((10, 2), 3.0), np.full((2, 2), 4.0)]
    x, y = balanced_probe_set(pos, negs, rng=rng)
    assert y.sum() == 6 and y.size == 12
    assert (x[y == 1] == 1).all()
    assert set(np.unique(x[y == 0])) <= {2.0, 3.0, 4.0}  # ceil(6 / 3) = 2 per class, then 6


def test_tpp_formula_equals_saebench_on_random_accuracies():
    rng = np.random.default_rng(1)
    n_classes, ns = 4, (2, 5)
    clean = rng.random(n_classes)
    ablated = rng.random((n_classes, len(ns), n_classes))
    result = TppResult(tuple(range(n_classes)), ns, np.zeros((n_classes, 3)), (), clean, ablated)
    acc = {c: {n: {c2: ablated[c, i, c2] for c2 in range(n_classes)} for i, n in enumerate(ns)}
           for c in range(n_classes)}
    ref = ref_tpp(acc, {c: clean[c] for c in range(n_classes)})
    np.testing.assert_allclose(result.score, [ref[n] for n in ns], rtol=1e-12)


# ---- known answers on the hand-built world ------------------------------------------------


def test_oracle_ablates_exactly_each_siblings_latent_and_scores_high(world, data):
    results = tpp_results(oracle_sae(world), data, 0, n_values=(1, 2, 5))
    three = [r for task, r in results if len(task.classes) == 3]
    assert three, "the three-sibling group must be a task"
    for result in three:
        for i, c in enumerate(result.classes):
            assert result.selected[i][0].tolist() == [c]  # the class feature's own latent
        assert result.score[0] > 0.4  # N = 1: the class's probe collapses, others barely move
        assert (result.intended[:, 0] > 0.4).all()


def test_merged_siblings_sae_fails_tpp(world, data):
    oracle = tpp_results(oracle_sae(world), data, 0, n_values=(1, 2))
    merged = tpp_results(merged_siblings_sae(world), data, 0, n_values=(1, 2))
    (o,) = [r for task, r in oracle if len(task.classes) == 3]
    (m,) = [r for task, r in merged if len(task.classes) == 3]
    assert m.score[0] < o.score[0] - 0.25


def test_two_sibling_task_is_degenerate_even_for_the_oracle(world, data):
    # each probe is the other's complement: the intended drop is matched by the unintended one
    results = tpp_results(oracle_sae(world), data, 0, n_values=(1,))
    (two,) = [r for task, r in results if len(task.classes) == 2]
    assert two.intended.max() > 0.3
    np.testing.assert_allclose(two.intended, two.unintended, atol=1e-12)
    assert two.score[0] == pytest.approx(0.0, abs=1e-12)


def test_registered_metric_clips_n_to_d_sae_and_is_reproducible(world, data):
    oracle = oracle_sae(world)  # d_sae = 12: N = 20, 50, 100, 500 all mean N = 12
    assert clip_n_values((2, 500), 12) == (2, 12)
    values = [evaluate_metric(f"tpp_top{n}", oracle, data, 0) for n in (20, 50, 500)]
    assert values[0] == values[1] == values[2]
    assert evaluate_metric("tpp_top2", oracle, AuditData(world), 0) == evaluate_metric(
        "tpp_top2", oracle, data, 0)
    spec = get_metric("tpp_top2")
    assert spec.kind == "probing" and spec.higher_is_better and not spec.deterministic


# ---- bad input --------------------------------------------------------------------------


def test_a_class_with_too_few_samples_is_rejected():
    rows = {2: np.zeros((5, 3)), 3: np.ones((1, 3))}
    with pytest.raises(ValueError, match="TPP class 3 has too few samples"):
        prepare_tpp(rows, {2: np.zeros((2, 3)), 3: np.ones((2, 3))}, seed=0)
    with pytest.raises(ValueError, match=">= 2 classes"):
        prepare_tpp({2: np.zeros((5, 3))}, {2: np.zeros((5, 3))}, seed=0)


def test_world_without_sibling_groups_is_not_applicable():
    flat = FeatureHierarchy.from_edges(4, [(0, 1), (0, 2)])  # children not exclusive
    fires = np.ones((100, 4), dtype=bool)
    with pytest.raises(ValueError, match="TPP is not applicable: the world has no mutually"):
        choose_tpp_tasks(flat, fires, SaeBenchTaskConfig(), rng=np.random.default_rng(0))
    exclusive = FeatureHierarchy.from_edges(4, [(0, 1), (0, 2)], exclusive_parents=(0,))
    few = np.zeros((100, 4), dtype=bool)
    few[:10, 1] = few[10:90, 2] = True
    with pytest.raises(ValueError, match="no sibling group has 2 classes with >= 25"):
        choose_tpp_tasks(exclusive, few, SaeBenchTaskConfig(), rng=np.random.default_rng(0))


def test_class_rows_are_equal_sized_disjoint_and_split():
    fires = np.zeros((200, 3), dtype=bool)
    fires[:50, 1] = fires[50:120, 2] = True
    hidden = np.arange(200, dtype=np.float32)[:, None]
    train, test = tpp_class_rows(TaskPool(hidden, fires), TppTask(0, (1, 2)),
                                 SaeBenchTaskConfig(train_fraction=0.8))
    assert {k: v.shape[0] for k, v in train.items()} == {1: 40, 2: 40}
    assert {k: v.shape[0] for k, v in test.items()} == {1: 10, 2: 10}
    assert math.isclose(float(train[2].min()), 50.0) and float(test[1].max()) < 50


def test_config_validates_and_round_trips():
    cfg = SaeBenchTaskConfig(pool_samples=100)
    assert SaeBenchTaskConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="train_fraction"):
        SaeBenchTaskConfig(train_fraction=1.0)
    with pytest.raises(ValueError, match="tpp_min_classes"):
        SaeBenchTaskConfig(tpp_min_classes=1)
