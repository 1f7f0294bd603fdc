"""Batch forms: one encode of a shared sample for a stack of SAEs equals each SAE's own."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from groundtruth.metrics.batched import check_stack, encoded_stack
from groundtruth.metrics.data import AuditData, DataConfig
from groundtruth.metrics.quality import evaluate_quality
from groundtruth.metrics.registry import (
    METRICS, evaluate_metric, evaluate_metric_batch, get_metric, metric_names, register_metric,
)
from synthetic_saes.corpora import CorpusConfig
from synthetic_saes.sae_params import SAEParams

SMALL = DataConfig(eval_samples=512, corpus=CorpusConfig(n_subjects=4, pairs_per_subject=2,
                                                         story_length=(6, 12)),
                   probe_tasks=3, probe_examples=64, probe_pool=4096, probe_min_rate=0.05)
BUILTIN = [n for n in metric_names() if n.startswith(("ce_", "gt_", "probe_k"))
           or n in ("explained_variance", "l0")]
TOLERANCE = 1e-9  # relative; on this machine batched and single values are bitwise equal


def random_sae(rng: np.random.Generator, d_in: int, d_sae: int, kind: str) -> SAEParams:
    """A random SAE of one of the exported kinds; "batchtopk" is batchtopk's export, a
    jumprelu SAE whose threshold is one value for every latent."""
    arch = {"batchtopk": "jumprelu"}.get(kind, kind)
    extra = {}
    if kind == "jumprelu":
        extra["threshold"] = rng.uniform(0.0, 0.3, d_sae)
    if kind == "batchtopk":
        extra["threshold"] = np.full(d_sae, rng.uniform(0.05, 0.2))
    if kind == "topk":
        extra["k"] = int(rng.integers(1, d_sae + 1))
    return SAEParams(
        W_enc=rng.standard_normal((d_in, d_sae)) / np.sqrt(d_in),
        b_enc=rng.standard_normal(d_sae) * 0.1,
        W_dec=rng.standard_normal((d_sae, d_in)) / np.sqrt(d_in),
        b_dec=rng.standard_normal(d_in) * 0.1,
        architecture=arch, apply_b_dec_to_input=bool(rng.integers(2)), **extra)


def with_dead_latents(sae: SAEParams, dead: np.ndarray) -> SAEParams:
    """The SAE with latents `dead` never firing (a very negative encoder bias)."""
    b_enc = sae.b_enc.copy()
    b_enc[dead] = -1e6
    return sae.replace(b_enc=b_enc)


@pytest.fixture(scope="module")
def stack(tiny_world, tiny_bases):
    rng = np.random.default_rng(0)
    d_in, d_sae = tiny_world.d_in, tiny_world.num_features  # the oracle's width
    saes = [random_sae(rng, d_in, d_sae, kind)
            for kind in ("relu", "topk", "jumprelu", "batchtopk") for _ in range(2)]
    saes[1] = with_dead_latents(saes[1], np.arange(0, d_sae, 3))
    saes.append(with_dead_latents(saes[0], np.arange(d_sae)))  # every latent dead
    return [tiny_bases[0].oracle, *saes]


# ---- the stacking kernel ----------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(0, 40), d_sae=st.integers(1, 24),
       n_saes=st.integers(1, 6), max_bytes=st.sampled_from([1, 512, 2**20]))
def test_encoded_stack_equals_each_saes_encode(seed, n, d_sae, n_saes, max_bytes):
    rng = np.random.default_rng(seed)
    kinds = rng.choice(["relu", "topk", "jumprelu", "batchtopk"], n_saes)
    saes = [random_sae(rng, 7, d_sae, str(k)) for k in kinds]
    x = rng.standard_normal((n, 7)).astype(np.float32)
    out = list(encoded_stack(saes, x, max_bytes=max_bytes))
    assert [s for s, _ in out] == saes
    for sae, latents in out:
        assert latents.dtype == np.float32 and latents.shape == (n, d_sae)
        np.testing.assert_allclose(latents, sae.encode(x), rtol=1e-6, atol=1e-6)


def test_encoded_stack_by_hand():
    relu = SAEParams(W_enc=np.eye(2), b_enc=[0.0, -1.0], W_dec=np.eye(2), b_dec=[1.0, 0.0])
    topk = relu.replace(architecture="topk", k=1, apply_b_dec_to_input=False)
    x = np.array([[3.0, 2.0], [0.0, 5.0]])
    (_, a), (_, b) = encoded_stack([relu, topk], x)
    np.testing.assert_array_equal(a, [[2.0, 1.0], [0.0, 4.0]])  # (x - b_dec) @ I + b_enc
    np.testing.assert_array_equal(b, [[3.0, 0.0], [0.0, 4.0]])  # x + b_enc, top 1


def test_a_bad_stack_raises_before_any_work():
    rng = np.random.default_rng(0)
    a, b = random_sae(rng, 4, 8, "relu"), random_sae(rng, 4, 6, "relu")
    with pytest.raises(ValueError, match="at least one SAE"):
        check_stack([])
    with pytest.raises(ValueError, match="SAE 1 has d_in=4, d_sae=6 but SAE 0 has d_in=4, d_sae=8"):
        encoded_stack([a, b], np.zeros((3, 4)))
    with pytest.raises(ValueError, match="not an SAEParams"):
        check_stack([a, "sae"])
    with pytest.raises(ValueError, match=r"must be \[n, 4\]"):
        encoded_stack([a], np.zeros((3, 5)))
    with pytest.raises(ValueError, match="max_bytes"):
        encoded_stack([a], np.zeros((3, 4)), max_bytes=0)


# ---- every batched metric equals its single form ----------------------------------------


def test_builtin_metrics_that_encode_have_a_batch_form():
    for name in BUILTIN:
        spec = get_metric(name)
        assert (spec.fn_batch is None) == spec.deterministic, name


BATCHED = [n for n in BUILTIN if get_metric(n).fn_batch is not None]


@pytest.fixture(scope="module")
def both_forms(tiny_world, stack):
    """name -> seed -> (single values, batched values); an error message for a form that
    raised. One AuditData per form, as the audit shares one across metrics."""
    single_data, batch_data = AuditData(tiny_world, SMALL), AuditData(tiny_world, SMALL)

    def attempt(compute):
        try:
            return compute()
        except ValueError as error:
            return str(error)

    return {name: {seed: (
        [attempt(lambda s=sae: evaluate_metric(name, s, single_data, seed)) for sae in stack],
        attempt(lambda: evaluate_metric_batch(name, stack, batch_data, seed)))
        for seed in (0, 1)} for name in BATCHED}


@pytest.mark.parametrize("name", BATCHED)
def test_every_batched_metric_equals_its_single_form(name, both_forms):
    for seed, (single, batched) in both_forms[name].items():
        errors = [v for v in single if isinstance(v, str)]
        if errors:  # an error of the single form on any SAE is the batch's error
            assert batched == errors[0], (name, seed)
            continue
        np.testing.assert_allclose(batched, single, rtol=TOLERANCE, atol=TOLERANCE,
                                   err_msg=f"{name} seed {seed}")


def test_the_comparison_covers_every_kind_and_defined_values(both_forms):
    assert {get_metric(n).kind for n in BATCHED} == {"ce", "ground_truth", "probing",
                                                     "reconstruction"}
    defined = [n for n, by_seed in both_forms.items()
               if all(isinstance(v, float) for v in by_seed[0][1])]
    assert set(defined) == set(BATCHED)  # every metric was compared on values, not errors


def test_one_sae_and_a_repeated_sae(tiny_world, stack):
    data = AuditData(tiny_world, SMALL)
    one = evaluate_metric_batch("ce_contrastive", stack[:1], data, 0)
    assert one == [evaluate_metric("ce_contrastive", stack[0], AuditData(tiny_world, SMALL), 0)]
    twice = evaluate_metric_batch("gt_f1", [stack[2], stack[2]], data, 0)
    assert twice[0] == twice[1]


def test_the_batch_encodes_the_shared_sample_once_per_chunk(tiny_world, stack, monkeypatch):
    import groundtruth.metrics.builtin as builtin

    calls = []
    real = builtin.encoded_stack

    def counting(saes, x, **kwargs):
        calls.append(len(list(saes)))
        return real(saes, x, **kwargs)

    monkeypatch.setattr(builtin, "encoded_stack", counting)
    data = AuditData(tiny_world, SMALL)
    for name in ("ce_contrastive", "ce_independent", "ce_interpretability"):  # share one pass
        evaluate_metric_batch(name, stack, data, 0)
    evaluate_metric_batch("gt_f1", stack, data, 0)
    evaluate_metric_batch("l0", stack, data, 0)
    evaluate_metric_batch("probe_k1", stack, data, 0)
    assert calls == [len(stack)] * 3  # corpus, evaluation sample, probe sets


def test_a_stack_of_mixed_widths_is_refused(tiny_world, stack):
    rng = np.random.default_rng(1)
    narrow = random_sae(rng, tiny_world.d_in, 8, "relu")
    with pytest.raises(ValueError, match="a stack shares one shape: SAE 1"):
        evaluate_metric_batch("gt_f1", [stack[0], narrow], AuditData(tiny_world, SMALL), 0)
    with pytest.raises(ValueError, match="at least one SAE"):
        evaluate_metric_batch("gt_f1", [], AuditData(tiny_world, SMALL), 0)


def test_a_metric_without_a_batch_form_is_measured_one_by_one(tiny_world, stack):
    @register_metric("test_first_bias", seed_changes="nothing")
    def first_bias(sae, data, seed):
        return float(sae.b_enc[0])

    try:
        values = evaluate_metric_batch("test_first_bias", stack, AuditData(tiny_world, SMALL), 0)
        assert values == [float(s.b_enc[0]) for s in stack]
    finally:
        METRICS.pop("test_first_bias")


def test_a_batch_form_returning_too_few_or_bad_values_raises(tiny_world, stack):
    data = AuditData(tiny_world, SMALL)
    try:
        register_metric("test_short", seed_changes="nothing",
                        batch=lambda saes, data, seed: [0.0])(lambda sae, data, seed: 0.0)
        register_metric("test_nan", seed_changes="nothing",
                        batch=lambda saes, data, seed: [float("nan")] * len(saes))(
            lambda sae, data, seed: 0.0)
        with pytest.raises(ValueError, match="returned 1 values for 2 SAEs"):
            evaluate_metric_batch("test_short", stack[:2], data, 0)
        with pytest.raises(ValueError, match="returned nan"):
            evaluate_metric_batch("test_nan", stack[:2], data, 0)
        with pytest.raises(ValueError, match="must be callable"):
            register_metric("test_bad", seed_changes="nothing", batch=3)
    finally:
        METRICS.pop("test_short", None)
        METRICS.pop("test_nan", None)


def test_evaluate_quality_with_given_latents_equals_encoding(tiny_world, stack):
    sample = tiny_world.sample(300, seed=4)
    for sae in stack[:3]:
        plain = evaluate_quality(sae, tiny_world, sample=sample, batch_size=128)
        given_ = evaluate_quality(sae, tiny_world, sample=sample, batch_size=128,
                                  latents=sae.encode(sample.hidden))
        assert plain.scalars() == given_.scalars()
    with pytest.raises(ValueError, match="pass sample too"):
        evaluate_quality(stack[0], tiny_world, latents=np.zeros((3, stack[0].d_sae)))
    with pytest.raises(ValueError, match="latents must have shape"):
        evaluate_quality(stack[0], tiny_world, sample=sample, latents=np.zeros((3, 2)))


def test_memo_many_computes_only_the_missing(tiny_world, stack):
    data = AuditData(tiny_world, SMALL)
    seen = []

    def compute(missing):
        seen.append(len(missing))
        return [id(s) for s in missing]

    assert data.memo_many(stack[:3], "t", 0, compute) == [id(s) for s in stack[:3]]
    assert data.memo_many(stack[:5], "t", 0, compute) == [id(s) for s in stack[:5]]
    assert seen == [3, 2]
    with pytest.raises(ValueError, match="computed 0 results for 1 SAEs"):
        data.memo_many(stack[5:6], "t", 0, lambda missing: [])
