"""SCR (groundtruth/metrics/scr.py) and its task construction, on a hand-built world."""

import numpy as np
import pytest

from groundtruth.metrics.data import AuditData
from groundtruth.metrics.registry import evaluate_metric, get_metric
from groundtruth.metrics.saebench_tasks import (
    SaeBenchTaskConfig, ScrTask, TaskPool, choose_scr_tasks, scr_class_rows,
)
from groundtruth.metrics.scr import (
    normalised_scr, prepare_scr, scr_direction, scr_results,
)
from synthetic_saes.hierarchy import FeatureHierarchy
from synthetic_saes.sae_params import SAEParams
from tests.groundtruth.metrics.saebench_fixtures import HandWorld, oracle_sae

# ---- SAEBench reference (adamkarvonen/SAEBench @ 8042bb3828c6340da8d12062324e92b2077c571c,
# sae_bench/evals/scr_and_tpp/main.py get_scr_plotting_dict), with our class names ------------


def ref_scr(class_accuracies, llm_clean_accs):
    """{threshold: scr_metric}; dir 1 ablates S and reads the biased probe on T's data."""
    results = {}
    dir1_acc = llm_clean_accs["bias probe on T data"]
    dir2_acc = llm_clean_accs["bias probe on S data"]
    for dir in (1, 2):
        ablated, evaluated = ("S", "T") if dir == 1 else ("T", "S")
        for threshold in class_accuracies[ablated]:
            clean_acc = llm_clean_accs[evaluated]
            combined = f"bias probe on {evaluated} data"
            original_acc = llm_clean_accs[combined]
            changed_acc = class_accuracies[ablated][threshold][combined]
            if (clean_acc - original_acc) < 0.001:
                scr_score = 0
            else:
                scr_score = (changed_acc - original_acc) / (clean_acc - original_acc)
            if dir1_acc < dir2_acc and dir == 1:
                results[threshold] = scr_score
            elif dir1_acc > dir2_acc and dir == 2:
                results[threshold] = scr_score
    return results


@pytest.fixture(scope="module")
def world():
    return HandWorld()


@pytest.fixture(scope="module")
def data(world):
    return AuditData(world)


def test_scr_formula_equals_saebench_on_random_accuracies():
    rng = np.random.default_rng(0)
    for _ in range(200):
        a = rng.random(8)
        clean = {"T": a[0], "S": a[1], "bias probe on T data": a[2], "bias probe on S data": a[3]}
        acc = {"S": {5: {"bias probe on T data": a[4]}}, "T": {5: {"bias probe on S data": a[5]}}}
        d1 = normalised_scr(a[4], a[2], a[0])
        d2 = normalised_scr(a[5], a[3], a[1])
        assert scr_direction(d1, d2, a[2], a[3]) == pytest.approx(ref_scr(acc, clean)[5])


def test_tie_between_directions_is_their_mean_and_small_gaps_score_zero():
    assert scr_direction(0.2, 0.6, 0.7, 0.7) == pytest.approx(0.4)
    assert normalised_scr(0.99, 0.9, 0.9009) == 0.0


def test_oracle_ablates_the_spurious_feature_and_restores_accuracy(world, data):
    results = scr_results(oracle_sae(world), data, 0, n_values=(1, 2))
    assert results
    for task, result in results:
        assert result.selected["S"][0].tolist() == [task.s]  # top latent: S itself
        assert result.selected["T"][0].tolist() == [task.t]
        assert result.clean["T"] == 1.0 and result.clean["S"] == 1.0
        # ablating S moves the biased probe's accuracy on T up (never down)
        assert result.changed["bias_on_T"][0] >= result.clean["bias_on_T"]
    assert max(r.score[1] for _, r in results) > 0.25
    assert np.mean([r.score[0] for _, r in results]) > 0.05


def test_an_sae_whose_latent_never_fires_scores_zero(world, data):
    # one dead latent: no nonzero effect, nothing ablated (SAEBench's empty mask), SCR 0
    g = world.feature_directions
    q, _ = np.linalg.qr(np.concatenate([g.T, np.eye(world.d_in)[:, :1]], axis=1))
    d = q[:, -1][None].astype(np.float32)
    blind = SAEParams(W_enc=d.T.copy(), b_enc=np.full(1, -100.0, np.float32), W_dec=d,
                      b_dec=np.zeros(world.d_in, np.float32))
    for _, result in scr_results(blind, data, 0, n_values=(2,)):
        assert result.selected["S"][0].size == 0
        assert result.score[0] == 0.0


def test_registered_metric_is_reproducible_and_declared(world, data):
    oracle = oracle_sae(world)
    assert evaluate_metric("scr_top2", oracle, AuditData(world), 3) == evaluate_metric(
        "scr_top2", oracle, data, 3)
    assert evaluate_metric("scr_top100", oracle, data, 0) == evaluate_metric(
        "scr_top500", oracle, data, 0)  # both clipped to d_sae = 12
    spec = get_metric("scr_top10")
    assert spec.kind == "probing" and "(T, S) pairs" in spec.seed_changes


def test_quadrants_follow_saebench():
    fires = np.zeros((400, 2), dtype=bool)
    fires[:100] = [True, True]
    fires[100:200] = [True, False]
    fires[200:300] = [False, True]
    hidden = np.zeros((400, 2), np.float32)
    hidden[:, 0], hidden[:, 1] = fires[:, 0], fires[:, 1]
    cfg = SaeBenchTaskConfig(scr_samples_per_quadrant=40, train_fraction=0.75)
    train, test = scr_class_rows(TaskPool(hidden, fires), ScrTask(0, 1, ()), cfg,
                                 rng=np.random.default_rng(0))
    sizes = {k: v.shape[0] for k, v in train.items()}
    assert sizes == {"S": 60, "S_neg": 60, "T": 60, "T_neg": 60, "bias": 60, "bias_neg": 60}
    assert (train["S"][:, 1] == 1).all() and train["S"][:, 0].mean() == 0.5  # S balanced on T
    assert (train["T"][:, 0] == 1).all() and train["T"][:, 1].mean() == 0.5
    assert (train["bias"] == 1).all() and (train["bias_neg"] == 0).all()
    assert test["bias"].shape[0] == 20


def test_bad_input_raises():
    rows = {k: np.zeros((4, 2)) for k in ("S", "S_neg", "T", "T_neg", "bias", "bias_neg")}
    short = dict(rows, bias=np.zeros((1, 2)))
    with pytest.raises(ValueError, match="SCR class 'bias' has too few test samples: 1"):
        prepare_scr(rows, short, seed=0)
    one_tree = FeatureHierarchy.from_edges(3, [(0, 1), (0, 2)], exclusive_parents=(0,))
    fires = np.random.default_rng(0).random((500, 3)) < 0.2
    with pytest.raises(ValueError, match="SCR is not applicable: fewer than two hierarchy trees"):
        choose_scr_tasks(one_tree, fires, SaeBenchTaskConfig(), rng=np.random.default_rng(0))
    two_trees = FeatureHierarchy.from_edges(4, [(0, 1), (2, 3)])
    rare = np.random.default_rng(0).random((500, 4)) < 0.1
    with pytest.raises(ValueError, match="no pair of features from different trees"):
        choose_scr_tasks(two_trees, rare, SaeBenchTaskConfig(), rng=np.random.default_rng(0))
