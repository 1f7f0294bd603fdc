import numpy as np
import pytest

from groundtruth.metrics.data import AuditData, DataConfig
from groundtruth.metrics.registry import (
    METRICS, evaluate_metric, get_metric, metric_names, register_metric,
)
from synthetic_saes.corpora import CorpusConfig

SMALL = DataConfig(eval_samples=512, corpus=CorpusConfig(n_subjects=4, pairs_per_subject=2,
                                                         story_length=(6, 12)),
                   probe_tasks=3, probe_examples=64, probe_pool=4096, probe_min_rate=0.05)


@pytest.fixture(scope="module")
def data(tiny_world):
    return AuditData(tiny_world, SMALL)


def test_every_builtin_metric_is_declared_and_finite(tiny_bases, data):
    oracle = tiny_bases[0].oracle
    names = metric_names()
    kinds = {get_metric(n).kind for n in names}
    assert kinds == {"ce", "ground_truth", "probing", "reconstruction"}
    for name in names:
        spec = get_metric(name)
        assert spec.seed_changes and spec.description, name
        value = evaluate_metric(name, oracle, data, 0)
        assert np.isfinite(value), name
    assert get_metric("gt_mcc").deterministic and not get_metric("ce_contrastive").deterministic
    assert evaluate_metric("gt_mcc", oracle, data, 0) == pytest.approx(1.0)


def test_same_seed_same_value_and_the_seed_changes_what_it_says(tiny_bases, data):
    oracle = tiny_bases[0].oracle
    for name in ("ce_contrastive", "gt_f1", "probe_k1"):
        assert evaluate_metric(name, oracle, data, 1) == evaluate_metric(name, oracle, data, 1)
        fresh = AuditData(data.world, SMALL)
        assert evaluate_metric(name, oracle, fresh, 1) == evaluate_metric(name, oracle, data, 1)
    values = {evaluate_metric("ce_contrastive", oracle, data, s) for s in range(3)}
    assert len(values) == 3, "a new corpus seed draws a new corpus"


def test_a_user_registers_a_metric_in_a_few_lines(tiny_bases, data):
    @register_metric("test_fraction_active", seed_changes="the evaluation samples")
    def fraction_active(sae, data, seed):
        return float((sae.encode(data.eval_sample(seed).hidden) > 0).mean())

    try:
        value = evaluate_metric("test_fraction_active", tiny_bases[0].oracle, data, 0)
        assert 0 < value < 1
        assert "test_fraction_active" in metric_names("custom")
    finally:
        del METRICS["test_fraction_active"]


def test_bad_metrics_are_refused(tiny_bases, data):
    with pytest.raises(ValueError, match="unknown metric 'ce_contrast'"):
        get_metric("ce_contrast")
    with pytest.raises(ValueError, match="already registered"):
        register_metric("gt_f1", seed_changes="x")(lambda s, d, seed: 0.0)
    with pytest.raises(ValueError, match="unknown metric kind"):
        register_metric("x", seed_changes="x", kind="magic")
    register_metric("test_nan", seed_changes="nothing")(lambda s, d, seed: float("nan"))
    try:
        with pytest.raises(ValueError, match="returned nan"):
            evaluate_metric("test_nan", tiny_bases[0].oracle, data, 0)
    finally:
        del METRICS["test_nan"]
