"""synthetic_saes.semisynthetic.steering_rows: lm-eval steering CSVs applied to TransformerLens."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cebench.models import make_tiny_model
from cebench.saes import load_sae
from cebench.tokenizer import build_local_tokenizer
from synthetic_saes.sae_params import SAEParams
from synthetic_saes.semisynthetic.steering_rows import (
    LM_EVAL_COLUMNS,
    SteeringRow,
    SteeringVector,
    apply_steering,
    read_steering_csv,
    resolve_hookpoint,
    steered,
    steering_vectors,
    write_steering_csv,
)

D_MODEL, D_SAE, N_LAYERS = 32, 16, 2
HOOK_1 = "blocks.1.hook_resid_post"
HOOK_0 = "blocks.0.hook_resid_post"

# lm-eval's own docstring example (hf_steered.py), header with its trailing comma.
LM_EVAL_EXAMPLE = (
    "loader,action,sparse_model,hookpoint,feature_index,steering_coefficient,sae_id,"
    "description,\n"
    "sparsify,add,EleutherAI/sae-pythia-70m-32k,layers.3,30,10.0,,,\n"
    "sae_lens,add,gemma-scope-2b-pt-res-canonical,layers.20,12082,240.0,"
    "layer_20/width_16k/canonical,increase dogs,\n"
)
LM_EVAL_EXAMPLE_ROWS = [
    SteeringRow(
        loader="sparsify", action="add", sparse_model="EleutherAI/sae-pythia-70m-32k",
        hookpoint="layers.3", feature_index=30, steering_coefficient=10.0,
    ),
    SteeringRow(
        loader="sae_lens", action="add", sparse_model="gemma-scope-2b-pt-res-canonical",
        hookpoint="layers.20", feature_index=12082, steering_coefficient=240.0,
        sae_id="layer_20/width_16k/canonical", description="increase dogs",
    ),
]


# ---- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    corpus = ["the dragon won the battle", "the knight lost the final", "a fox ran home"] * 8
    tokenizer = build_local_tokenizer(corpus, tmp_path_factory.mktemp("tok"), vocab_size=300)
    return make_tiny_model(
        tokenizer, n_layers=N_LAYERS, d_model=D_MODEL, n_heads=4, d_mlp=64, n_ctx=32
    )


def random_params(seed: int) -> SAEParams:
    rng = np.random.default_rng(seed)
    return SAEParams(
        W_enc=rng.standard_normal((D_MODEL, D_SAE)),
        b_enc=rng.standard_normal(D_SAE) * 0.1,
        W_dec=rng.standard_normal((D_SAE, D_MODEL)),
        b_dec=rng.standard_normal(D_MODEL),  # non-zero: the clamp must subtract it
    )


@pytest.fixture(scope="module")
def sae_dirs(tmp_path_factory):
    """Two sae-lens directories, reading blocks.1 and blocks.0, with their params."""
    root = tmp_path_factory.mktemp("saes")
    saes = {}
    for name, seed, hook in (("sae1", 1, HOOK_1), ("sae0", 2, HOOK_0)):
        params = random_params(seed)
        params.save(root / name, model_name="tiny", hook_name=hook)
        saes[name] = (str(root / name), params)
    return saes


@pytest.fixture(scope="module")
def tokens(model):
    generator = torch.Generator().manual_seed(0)
    return torch.randint(4, model.cfg.d_vocab, (2, 7), generator=generator)


def sae_row(path: str, **changes) -> SteeringRow:
    fields = {
        "loader": "sae_lens", "action": "add", "sparse_model": path, "hookpoint": "layers.1",
        "feature_index": 3, "steering_coefficient": 2.5,
    }
    return SteeringRow(**(fields | changes))


def run(model, tokens):
    """Logits and the residual stream after each block (no grad)."""
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens, names_filter=[HOOK_0, HOOK_1])
    return logits, cache[HOOK_0], cache[HOOK_1]


def n_hooks(model) -> int:
    return sum(len(hook_point.fwd_hooks) for hook_point in model.hook_dict.values())


# ---- literal lm-eval reference -------------------------------------------------------------


def lm_eval_add(acts, steering_coefficient, steering_vector):
    """lm-eval's `lambda acts: acts + steering_coefficient * steering_vector`."""
    return acts + steering_coefficient * steering_vector


def lm_eval_clamp(acts, steering_vector, value, bias=None):
    """lm-eval's `SteeredModel.clamp`, copied expression for expression."""
    if bias is not None:
        acts = acts - bias
    direction = steering_vector / torch.norm(steering_vector)
    proj_magnitude = torch.sum(acts * direction, dim=-1, keepdim=True)
    orthogonal_component = acts - proj_magnitude * direction
    clamped = orthogonal_component + direction * value
    if bias is not None:
        clamped = clamped + bias
    return clamped


@pytest.mark.parametrize("shape", [(0, 3), (1, 1), (2, 5), (3,)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("action", ["add", "clamp"])
@pytest.mark.parametrize("with_bias", [True, False])
def test_apply_steering_equals_literal_lm_eval_formulas(shape, dtype, action, with_bias):
    generator = torch.Generator().manual_seed(hash((shape, action, with_bias)) % 2**31)
    acts = torch.randn(*shape, 6, generator=generator, dtype=dtype)
    vector = torch.randn(6, generator=generator, dtype=dtype)
    bias = torch.randn(6, generator=generator, dtype=dtype) if with_bias else None
    coefficient = -1.75
    steering = SteeringVector(action=action, coefficient=coefficient, vector=vector, bias=bias)
    before = acts.clone()
    got = apply_steering(acts, steering)
    if action == "add":
        expected = lm_eval_add(acts, coefficient, vector)  # lm-eval's add never uses the bias
    else:
        expected = lm_eval_clamp(acts, vector, coefficient, bias)
    assert got.dtype == dtype and got.shape == acts.shape
    assert torch.equal(got, expected)  # bitwise: the same expressions in the same order
    assert torch.equal(acts, before)  # not modified in place


def test_clamp_by_hand():
    acts = torch.tensor([[[3.0, 4.0], [-1.0, 2.0]]])
    steering = SteeringVector(
        action="clamp", coefficient=5.0, vector=torch.tensor([2.0, 0.0]),
        bias=torch.tensor([1.0, 1.0]),
    )
    # x - b = (2, 3) and (-2, 1); the first coordinate becomes 5, then b is added back.
    expected = torch.tensor([[[6.0, 4.0], [6.0, 2.0]]])
    assert torch.equal(apply_steering(acts, steering), expected)


def test_clamp_with_bias_none_clamps_raw_projection():
    generator = torch.Generator().manual_seed(7)
    acts = torch.randn(2, 4, 6, generator=generator, dtype=torch.float64)
    vector = torch.randn(6, generator=generator, dtype=torch.float64)
    got = apply_steering(acts, SteeringVector(action="clamp", coefficient=0.5, vector=vector))
    direction = vector / vector.norm()
    torch.testing.assert_close(got @ direction, torch.full((2, 4), 0.5, dtype=torch.float64))
    orthogonal = acts - (acts @ direction)[..., None] * direction
    torch.testing.assert_close(got - (got @ direction)[..., None] * direction, orthogonal)


def test_apply_steering_casts_vector_to_activation_dtype():
    acts = torch.randn(1, 3, 4, dtype=torch.float32)
    vector = torch.randn(4, dtype=torch.float64)
    got = apply_steering(acts, SteeringVector(action="add", coefficient=2.0, vector=vector))
    assert got.dtype == torch.float32
    assert torch.equal(got, acts + 2.0 * vector.to(torch.float32))


# ---- steering a HookedTransformer ----------------------------------------------------------


def test_add_changes_hook_by_coefficient_times_decoder_row_at_every_position(
    model, sae_dirs, tokens
):
    path, params = sae_dirs["sae1"]
    base_logits, base_0, base_1 = run(model, tokens)
    row = sae_row(path, feature_index=5, steering_coefficient=3.0)
    with steered(model, [row]):
        logits, acts_0, acts_1 = run(model, tokens)
    w_dec = torch.from_numpy(params.W_dec.copy())
    assert torch.equal(acts_0, base_0)  # upstream of the hook: untouched
    assert torch.equal(acts_1, base_1 + 3.0 * w_dec[5])  # every batch row and position
    assert not torch.allclose(logits, base_logits, atol=1e-3)  # downstream changes


def test_clamp_sets_projection_after_b_dec_and_keeps_orthogonal_part(model, sae_dirs, tokens):
    path, params = sae_dirs["sae1"]
    _, _, base = run(model, tokens)
    row = sae_row(path, action="clamp", feature_index=2, steering_coefficient=-4.0)
    with steered(model, [row]):
        _, _, acts = run(model, tokens)
    direction = torch.from_numpy(params.W_dec[2].copy())
    direction = direction / direction.norm()
    b_dec = torch.from_numpy(params.b_dec.copy())
    projection = (acts - b_dec) @ direction
    torch.testing.assert_close(projection, torch.full_like(projection, -4.0))

    def orthogonal(x):
        centred = x - b_dec
        return centred - (centred @ direction)[..., None] * direction

    torch.testing.assert_close(orthogonal(acts), orthogonal(base), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(acts, base)


def test_positions_mask_restricts_the_edit(model, sae_dirs, tokens):
    path, params = sae_dirs["sae1"]
    _, _, base = run(model, tokens)
    positions = torch.zeros(tokens.shape, dtype=torch.bool)
    positions[0, 2] = positions[1, 5] = positions[1, 6] = True
    with steered(model, [sae_row(path)], positions=positions):
        _, _, acts = run(model, tokens)
    shift = 2.5 * torch.from_numpy(params.W_dec[3].copy())
    assert torch.equal(acts[positions], base[positions] + shift)
    assert torch.equal(acts[~positions], base[~positions])


def test_each_hook_uses_its_own_vector(model, sae_dirs, tokens):
    """lm-eval's original add lambda late-binds: every add hook used the last entry's."""
    (path_1, params_1), (path_0, params_0) = sae_dirs["sae1"], sae_dirs["sae0"]
    _, base_0, _ = run(model, tokens)
    rows = [
        sae_row(path_0, hookpoint="layers.0", feature_index=1, steering_coefficient=-2.0),
        sae_row(path_1, hookpoint="layers.1", feature_index=4, steering_coefficient=7.0),
    ]
    with steered(model, rows):
        _, acts_0, acts_1 = run(model, tokens)
    assert torch.equal(acts_0, base_0 + -2.0 * torch.from_numpy(params_0.W_dec[1].copy()))
    # blocks.1's input changed through blocks.0; so compare with a run steering only blocks.0.
    with steered(model, rows[:1]):
        _, _, only_0 = run(model, tokens)
    assert torch.equal(acts_1, only_0 + 7.0 * torch.from_numpy(params_1.W_dec[4].copy()))


def test_hooks_removed_after_the_context_and_other_hooks_kept(model, sae_dirs, tokens):
    path, _ = sae_dirs["sae1"]
    base_logits, _, _ = run(model, tokens)
    model.add_hook(HOOK_0, lambda acts, hook: None)  # someone else's hook
    try:
        with steered(model, [sae_row(path)]):
            assert n_hooks(model) == 2
        assert n_hooks(model) == 1
        with pytest.raises(RuntimeError, match="boom"), steered(model, [sae_row(path)]):
            assert n_hooks(model) == 2
            raise RuntimeError("boom")
        assert n_hooks(model) == 1
    finally:
        model.reset_hooks()
    assert n_hooks(model) == 0
    assert torch.equal(run(model, tokens)[0], base_logits)


def test_error_in_the_hook_still_removes_hooks(model, tokens):
    wrong = SteeringVector(action="add", coefficient=1.0, vector=torch.ones(D_MODEL + 1))
    with pytest.raises(ValueError, match="d_in=33"), steered(model, {"layers.1": wrong}):
        model(tokens)
    bad_mask = torch.ones(3, 7, dtype=torch.bool)
    ok = SteeringVector(action="add", coefficient=1.0, vector=torch.ones(D_MODEL))
    with (
        pytest.raises(ValueError, match=r"positions has shape \(3, 7\)"),
        steered(model, {"layers.1": ok}, positions=bad_mask),
    ):
        model(tokens)
    assert n_hooks(model) == 0


@pytest.mark.parametrize(
    "positions", [torch.ones(2, 7), torch.ones(2, dtype=torch.bool), [[True]]]
)
def test_steered_rejects_bad_positions(model, positions):
    ok = SteeringVector(action="add", coefficient=1.0, vector=torch.ones(D_MODEL))
    with (
        pytest.raises(ValueError, match="positions must be None or a bool tensor"),
        steered(model, {"layers.1": ok}, positions=positions),
    ):
        pass
    assert n_hooks(model) == 0


def test_steered_with_vectors_accepts_any_hook_and_rejects_alias_duplicates(model, tokens):
    vector = torch.randn(D_MODEL, generator=torch.Generator().manual_seed(3))
    steering = SteeringVector(action="clamp", coefficient=1.0, vector=vector)
    with steered(model, {"blocks.0.hook_mlp_out": steering}):
        assert len(model.hook_dict["blocks.0.hook_mlp_out"].fwd_hooks) == 1
    with (
        pytest.raises(ValueError, match="'layers.1' and hookpoint 'blocks.1.hook_resid_post'"),
        steered(model, {"layers.1": steering, HOOK_1: steering}),
    ):
        pass
    with (
        pytest.raises(ValueError, match="expected a SteeringVector"),
        steered(model, {"layers.1": ("add", 1.0, vector, None)}),
    ):
        pass
    assert n_hooks(model) == 0


# ---- hookpoints ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hookpoint", "expected"),
    [
        ("layers.1", HOOK_1),
        ("model.layers.0", HOOK_0),
        ("gpt_neox.layers.1", HOOK_1),
        ("transformer.h.0", HOOK_0),
        ("h.1", HOOK_1),
        (HOOK_1, HOOK_1),
        ("blocks.0.hook_mlp_out", "blocks.0.hook_mlp_out"),
        ("hook_embed", "hook_embed"),
    ],
)
def test_resolve_hookpoint(model, hookpoint, expected):
    assert resolve_hookpoint(model, hookpoint) == expected


@pytest.mark.parametrize(
    ("hookpoint", "match"),
    [
        ("layers.2", "names layer 2, but the model has 2 layers"),
        ("model.layers.7", "names layer 7"),
        ("blocks.1.hook_resid_pst", "close hook names: .*blocks.1.hook_resid_post"),
        ("decoder.layers.1", "unknown hookpoint"),
        ("layers.-1", "unknown hookpoint"),
        ("", "unknown hookpoint"),
    ],
)
def test_resolve_hookpoint_rejects_unknown_names_listing_valid_forms(model, hookpoint, match):
    with pytest.raises(ValueError, match=match) as error:
        resolve_hookpoint(model, hookpoint)
    assert "'layers.N', 'model.layers.N'" in str(error.value)
    assert "0 <= N < 2" in str(error.value)


def test_resolve_hookpoint_needs_a_hooked_model():
    with pytest.raises(ValueError, match="HookedTransformer"):
        resolve_hookpoint(torch.nn.Linear(2, 2), "layers.0")


# ---- steering vectors from rows ------------------------------------------------------------


def test_steering_vectors_take_decoder_row_bias_and_sae_hook_name(sae_dirs):
    path, params = sae_dirs["sae1"]
    vectors = steering_vectors([sae_row(path, hookpoint=None, action="clamp")])
    assert list(vectors) == [HOOK_1]  # the SAE's cfg.metadata.hook_name
    entry = vectors[HOOK_1]
    assert (entry.action, entry.coefficient) == ("clamp", 2.5)
    assert torch.equal(entry.vector, torch.from_numpy(params.W_dec[3].copy()))
    assert torch.equal(entry.bias, torch.from_numpy(params.b_dec.copy()))
    assert not entry.vector.requires_grad


def test_sae_hook_name_read_from_metadata_in_sae_lens_6(sae_dirs):
    sae = load_sae(sae_dirs["sae1"][0])
    assert sae.cfg.metadata.hook_name == HOOK_1
    assert not hasattr(sae.cfg, "hook_name")  # lm-eval's `sae.cfg.hook_name` is sae-lens 5


def test_each_distinct_sae_loaded_once(sae_dirs):
    (path_1, _), (path_0, _) = sae_dirs["sae1"], sae_dirs["sae0"]
    calls = []

    def counting_load_sae(source, sae_id=None, *, device="cpu"):
        calls.append((source, sae_id))
        return load_sae(source, sae_id, device=device)

    rows = [
        sae_row(path_1, hookpoint="layers.1"),
        sae_row(path_0, hookpoint=None),
        sae_row(path_1, hookpoint="blocks.1.hook_mlp_out", feature_index=0),
    ]
    vectors = steering_vectors(rows, load_sae=counting_load_sae)
    assert calls == [(path_1, None), (path_0, None)]
    assert list(vectors) == [HOOK_1, HOOK_0, "blocks.1.hook_mlp_out"]


def test_steering_vectors_errors_name_the_row(sae_dirs):
    path, _ = sae_dirs["sae1"]
    with pytest.raises(ValueError, match=r"row 2 .*feature_index 16 is out of range.*d_sae=16"):
        steering_vectors([sae_row(path), sae_row(path, hookpoint="layers.0", feature_index=16)])
    with pytest.raises(ValueError, match="row 1 .*sae_id 'x' is only for pretrained releases"):
        steering_vectors([sae_row(path, sae_id="x")])
    with pytest.raises(ValueError, match="row 1 .*unknown SAE"):
        steering_vectors([sae_row(str(Path(path) / "missing"))])


@pytest.mark.parametrize(
    ("first", "second"),
    [("layers.1", "layers.1"), ("layers.1", None), ("model.layers.1", HOOK_1)],
)
def test_duplicate_hookpoints_raise_naming_both_rows(sae_dirs, first, second):
    path, _ = sae_dirs["sae1"]
    rows = [sae_row(path, hookpoint=first), sae_row(path, hookpoint=second, feature_index=9)]
    with pytest.raises(ValueError, match="rows? 1 and row 2 both steer hook 'blocks.1.hook_"):
        steering_vectors(rows)


def test_sparsify_rows_are_read_and_written_but_not_applied(tmp_path, sae_dirs, model):
    rows = read_steering_csv(write_csv(tmp_path / "steer.csv", LM_EVAL_EXAMPLE))
    assert rows[0].loader == "sparsify"
    assert read_steering_csv(write_steering_csv(rows, tmp_path / "again.csv")) == rows
    mixed = [sae_row(sae_dirs["sae1"][0]), rows[0]]
    with pytest.raises(ValueError, match="row 2 .*only sae_lens rows can be applied here"):
        steering_vectors(mixed)
    with pytest.raises(ValueError, match="only sae_lens rows"), steered(model, mixed):
        pass
    assert n_hooks(model) == 0


# ---- SteeringRow ---------------------------------------------------------------------------


def test_row_defaults_hashable_and_dict_round_trip(sae_dirs):
    row = SteeringRow(loader="sae_lens", sparse_model="r", feature_index=0,
                      steering_coefficient=1)
    assert (row.action, row.hookpoint, row.sae_id, row.description) == ("add", None, None, "")
    assert isinstance(row.steering_coefficient, float)
    assert SteeringRow.from_dict(row.to_dict()) == row
    assert len({row, SteeringRow.from_dict(row.to_dict())}) == 1
    assert SteeringRow(loader="sae_lens", sparse_model="r", feature_index=np.int64(2),
                       steering_coefficient=np.float32(0.5), hookpoint="", sae_id="").sae_id is None
    with pytest.raises(ValueError, match="unknown SteeringRow keys"):
        SteeringRow.from_dict(row.to_dict() | {"head_index": 1})
    with pytest.raises(ValueError, match=r"needs the keys \['feature_index'\]"):
        SteeringRow.from_dict({k: v for k, v in row.to_dict().items() if k != "feature_index"})


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"loader": "transformers"}, r"loader must be one of \['sae_lens', 'sparsify'\]"),
        ({"action": "subtract"}, r"action must be one of \['add', 'clamp'\], got 'subtract'"),
        ({"feature_index": -1}, "feature_index must be a non-negative int, got -1"),
        ({"feature_index": 1.0}, "feature_index must be a non-negative int, got 1.0"),
        ({"feature_index": True}, "feature_index must be a non-negative int, got True"),
        ({"steering_coefficient": math.nan}, "steering_coefficient must be a finite number"),
        ({"steering_coefficient": math.inf}, "steering_coefficient must be a finite number"),
        ({"steering_coefficient": "1"}, "steering_coefficient must be a finite number"),
        ({"sparse_model": ""}, "sparse_model must be a non-empty string"),
        ({"sparse_model": "  "}, "sparse_model must be a non-empty string"),
        ({"hookpoint": 3}, "hookpoint must be a string or None"),
        ({"description": 3}, "description must be a string"),
    ],
)
def test_row_validation(changes, match):
    with pytest.raises(ValueError, match=match):
        sae_row("release", **changes)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"action": "steer"}, "action must be one of"),
        ({"coefficient": math.nan}, "coefficient must be a finite number"),
        ({"vector": torch.ones(2, 3)}, r"non-empty 1-D \[d_in\] tensor, got Tensor of shape"),
        ({"vector": torch.ones(0)}, r"non-empty 1-D \[d_in\] tensor"),
        ({"vector": torch.ones(3, dtype=torch.int64)}, "finite floats"),
        ({"vector": torch.tensor([1.0, math.inf])}, "finite floats"),
        ({"vector": np.ones(3)}, "got ndarray"),
        ({"action": "clamp", "vector": torch.zeros(3)}, "clamp needs a non-zero vector"),
        ({"bias": torch.ones(4)}, r"bias must be None or a tensor of the vector's shape \(3,\)"),
        ({"bias": torch.tensor([0.0, math.nan, 0.0])}, "bias must hold finite floats"),
    ],
)
def test_steering_vector_validation(fields, match):
    with pytest.raises(ValueError, match=match):
        SteeringVector(**({"action": "add", "coefficient": 1.0, "vector": torch.ones(3)} | fields))


# ---- CSV -----------------------------------------------------------------------------------


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


def test_reads_lm_eval_docstring_example_with_trailing_comma(tmp_path):
    assert read_steering_csv(write_csv(tmp_path / "a.csv", LM_EVAL_EXAMPLE)) == (
        LM_EVAL_EXAMPLE_ROWS
    )


def test_reads_later_lm_eval_example_with_empty_head_index(tmp_path):
    text = (
        "loader,action,sparse_model,hookpoint,feature_index,steering_coefficient,head_index,"
        "sae_id,description,\n"
        "sparsify,add,EleutherAI/sae-pythia-70m-32k,layers.3,30,10.0,,,,\n"
        "sae_lens,add,gemma-scope-2b-pt-res-canonical,layers.20,12082,240.0,,"
        "layer_20/width_16k/canonical,increase dogs,\n"
    )
    assert read_steering_csv(write_csv(tmp_path / "b.csv", text)) == LM_EVAL_EXAMPLE_ROWS


def test_missing_optional_columns_take_lm_eval_defaults(tmp_path):
    text = (
        "\ufeffsparse_model,steering_coefficient,feature_index,hookpoint\r\n"
        "\r\n"
        "m,1e-3,4.0,\r\n"
        "m,2,5\r\n"  # fewer fields than the header: the rest empty
    )
    rows = read_steering_csv(write_csv(tmp_path / "c.csv", text))
    assert rows == [
        SteeringRow(loader="sparsify", action="add", sparse_model="m", feature_index=4,
                    steering_coefficient=1e-3),
        SteeringRow(loader="sparsify", action="add", sparse_model="m", feature_index=5,
                    steering_coefficient=2.0),
    ]


def test_header_only_file_has_no_rows_and_empty_list_round_trips(tmp_path):
    assert read_steering_csv(write_steering_csv([], tmp_path / "empty.csv")) == []
    assert (tmp_path / "empty.csv").read_text() == ",".join(LM_EVAL_COLUMNS) + "\n"


HEADER = "loader,action,sparse_model,hookpoint,feature_index,steering_coefficient,sae_id\n"
GOOD = "sae_lens,add,rel,layers.1,3,2.0,id\n"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty file"),
        ("\n\n", "empty file"),
        (
            "loader,action,sparse_model,hookpoint,steering_coefficient\n",
            r"missing required column\(s\) \['feature_index'\]",
        ),
        (HEADER + GOOD + "sae_lens,add,rel,layers.1,3.5,2.0,id\n",
         r"row 2 \(line 3\), column 'feature_index': .*non-negative integer, got '3.5'"),
        (HEADER + "sae_lens,add,rel,layers.1,three,2.0,id\n",
         r"row 1 \(line 2\), column 'feature_index': .*got 'three'"),
        (HEADER + "sae_lens,add,rel,layers.1,1_0,2.0,id\n", "column 'feature_index'"),
        (HEADER + "sae_lens,add,rel,layers.1,-2,2.0,id\n",
         "column 'feature_index': feature_index must be a non-negative int, got -2"),
        (HEADER + "sae_lens,add,rel,layers.1,,2.0,id\n",
         "column 'feature_index': feature_index is required, got an empty cell"),
        (HEADER + "sae_lens,add,rel,layers.1,3,ten,id\n",
         r"row 1 \(line 2\), column 'steering_coefficient': .*finite number, got 'ten'"),
        (HEADER + "sae_lens,add,rel,layers.1,3,inf,id\n",
         "column 'steering_coefficient': .*finite number, got inf"),
        (HEADER + "sae_lens,add,rel,layers.1,3,,id\n", "column 'steering_coefficient'"),
        (HEADER + GOOD * 2 + "sae_lens,steer,rel,layers.1,3,2.0,id\n",
         r"row 3 \(line 4\), column 'action': action must be one of \['add', 'clamp'\], got"),
        (HEADER + "sae_lens,,rel,layers.1,3,2.0,id\n", "column 'action': .*got ''"),
        (HEADER + "transformers,add,rel,layers.1,3,2.0,id\n",
         r"row 1 \(line 2\), column 'loader': loader must be one of"),
        (HEADER + "sae_lens,add,,layers.1,3,2.0,id\n", "column 'sparse_model': .*non-empty"),
        (HEADER + "sae_lens,add,rel,layers.1,3,2.0,id,extra\n",
         r"row 1 \(line 2\): 8 fields but the header has 7 columns"),
        (HEADER.strip() + ",description,\n" + "sae_lens,add,rel,layers.1,3,2.0,id,dogs, cats\n",
         "value ' cats' in unnamed column 9"),
        ("loader,loader,sparse_model,hookpoint,feature_index,steering_coefficient\n",
         "column 'loader' appears twice"),
        ("loader,sparse_model,hook_point,feature_index,steering_coefficient\n",
         "unknown column 'hook_point' \\(did you mean 'hookpoint'\\?\\)"),
        ("sparse_model,hookpoint,feature_index,steering_coefficient,head_index\nm,,1,1.0,2\n",
         "row 1 .*column 'head_index': must be empty, got '2'"),
    ],
)
def test_malformed_csv_raises_naming_file_row_and_column(tmp_path, text, match):
    path = write_csv(tmp_path / "bad_steer.csv", text)
    with pytest.raises(ValueError, match=match) as error:
        read_steering_csv(path)
    assert str(error.value).startswith(str(path))


def test_written_file_reads_in_pandas_as_lm_eval_reads_it(tmp_path):
    """lm-eval's `derive_steer_config` parsing, minus the SAE loading, over our file."""
    pd = pytest.importorskip("pandas")
    rows = LM_EVAL_EXAMPLE_ROWS + [
        SteeringRow(loader="sae_lens", action="clamp", sparse_model="rel", hookpoint=None,
                    feature_index=0, steering_coefficient=-1e-05, sae_id="a/b",
                    description='dogs, "cats"\nand\r\nbirds'),
    ]
    df = pd.read_csv(write_steering_csv(rows, tmp_path / "steer.csv"))
    assert list(df.columns) == list(LM_EVAL_COLUMNS)
    for (_, pandas_row), row in zip(df.iterrows(), rows, strict=True):
        hookpoint = pandas_row["hookpoint"]
        assert pandas_row.get("action", "add") == row.action
        assert pandas_row.get("loader", "sparsify") == row.loader
        assert pandas_row["sparse_model"] == row.sparse_model
        assert int(pandas_row["feature_index"]) == row.feature_index
        assert float(pandas_row["steering_coefficient"]) == row.steering_coefficient
        assert (None if pd.isna(hookpoint) or hookpoint == "" else hookpoint) == row.hookpoint
        if row.loader == "sae_lens":
            assert pandas_row["sae_id"] == row.sae_id
    assert df["description"].iloc[2] == rows[2].description


text_field = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
rows_strategy = st.lists(
    st.builds(
        SteeringRow,
        loader=st.sampled_from(["sae_lens", "sparsify"]),
        action=st.sampled_from(["add", "clamp"]),
        sparse_model=text_field.filter(str.strip),
        hookpoint=st.none() | text_field.filter(bool),
        feature_index=st.integers(0, 2**40),
        steering_coefficient=st.floats(allow_nan=False, allow_infinity=False),
        sae_id=st.none() | text_field.filter(bool),
        description=text_field | st.sampled_from(['a, "b"', 'x,y\n"', ",,", '"']),
    ),
    max_size=4,
)


@given(rows=rows_strategy)
def test_csv_round_trip_is_exact(tmp_path_factory, rows):
    path = write_steering_csv(rows, tmp_path_factory.mktemp("rt") / "steer.csv")
    back = read_steering_csv(path)
    assert back == rows
    assert [r.steering_coefficient for r in back] == [r.steering_coefficient for r in rows]


def test_write_rejects_non_rows(tmp_path):
    with pytest.raises(ValueError, match="row 2 must be a SteeringRow, got dict"):
        write_steering_csv([LM_EVAL_EXAMPLE_ROWS[0], {"loader": "sae_lens"}], tmp_path / "x.csv")
