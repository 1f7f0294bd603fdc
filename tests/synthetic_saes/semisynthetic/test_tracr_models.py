"""synthetic_saes.semisynthetic.tracr_models: Tracr programs as TransformerLens fixtures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from synthetic_saes.semisynthetic.tracr_models import (
    FIXTURES_DIR,
    PROGRAMS,
    compile_program,
    convert_to_hooked_transformer,
    load_tracr_model,
    main,
    residual_hook_names,
    residual_max_error,
    save_tracr_model,
)

REPO_ROOT = Path(__file__).resolve().parents[3]


# The programs' meaning, written in plain Python (not derived from tracr).
def reverse(xs):
    return list(reversed(xs))


def hist(xs):
    return [xs.count(x) for x in xs]


def frac_prevs(xs):
    return [sum(t == "x" for t in xs[: i + 1]) / (i + 1) for i in range(len(xs))]


REFERENCE = {"reverse": reverse, "hist": hist, "frac_prevs": frac_prevs}


def random_inputs(program: str, n: int = 30, seed: int = 0) -> list[list]:
    spec = PROGRAMS[program]
    rng = np.random.default_rng(seed)
    inputs = []
    for i in range(n):
        length = 1 + i % spec.max_seq_len
        inputs.append([spec.vocab[j] for j in rng.integers(0, len(spec.vocab), size=length)])
    return inputs


@pytest.fixture(scope="module")
def loaded():
    return {name: load_tracr_model(name) for name in PROGRAMS}


def test_registry_has_at_least_two_programs_each_with_a_fixture():
    assert len(PROGRAMS) >= 2
    assert set(REFERENCE) == set(PROGRAMS)
    for name in PROGRAMS:
        for filename in ("config.json", "model.safetensors", "residual_basis.json"):
            assert (FIXTURES_DIR / name / filename).is_file()


def test_fixtures_are_small():
    total = sum(f.stat().st_size for f in FIXTURES_DIR.rglob("*") if f.is_file())
    assert total < 1_000_000


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_fixture_runs_the_program(loaded, program):
    model = loaded[program]
    reference = REFERENCE[program]
    for tokens in random_inputs(program):
        got = model.run(tokens)
        if program == "frac_prevs":
            np.testing.assert_allclose(got, reference(tokens), atol=1e-4)
        else:
            assert got == reference(tokens), tokens


def test_hand_examples(loaded):
    assert loaded["reverse"].run([1, 2, 3]) == [3, 2, 1]
    assert loaded["reverse"].run([3, 1, 1, 2, 2]) == [2, 2, 1, 1, 3]
    assert loaded["hist"].run(["a", "b", "a", "c", "a"]) == [3, 1, 3, 1, 3]
    np.testing.assert_allclose(loaded["frac_prevs"].run(["x", "w", "x", "x"]),
                               [1.0, 0.5, 2 / 3, 0.75], atol=1e-4)


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_residual_labels_name_every_dimension(loaded, program):
    model = loaded[program]
    labels = model.residual_labels
    assert len(labels) == model.d_model == model.model.cfg.d_model
    assert len({label.tracr_label for label in labels}) == len(labels)
    assert [label.encoding for label in labels].count("constant") == 1
    names = {label.feature_name for label in labels}
    assert {f"tokens={t}" for t in model.vocab} <= names
    assert {f"indices={i}" for i in range(model.max_seq_len)} <= names
    basis = json.loads((FIXTURES_DIR / program / "residual_basis.json").read_text())
    assert basis["residual_hooks"] == list(residual_hook_names(model.n_layers))
    assert set(basis["residual_hooks"]) <= set(model.model.hook_dict)


def test_the_embedding_is_one_hot_in_the_labelled_basis(loaded):
    model = loaded["reverse"]
    with torch.no_grad():
        _, cache = model.model.run_with_cache(model.encode([3, 1, 2])[None])
    resid = cache["blocks.0.hook_resid_pre"][0]
    names = [label.feature_name for label in model.residual_labels]
    for position, token in enumerate([3, 1, 2], start=1):
        on = {names[d] for d in torch.nonzero(resid[position]).flatten().tolist()}
        assert on == {f"tokens={token}", f"indices={position - 1}", "one"}


def test_encode_adds_bos_and_checks_tokens(loaded):
    model = loaded["hist"]
    ids = model.encode(["a", "c"])
    assert ids.dtype == torch.long and ids.tolist()[0] == model.bos_id and len(ids) == 3
    with pytest.raises(ValueError, match="not in the vocab"):
        model.encode(["a", "q"])
    with pytest.raises(ValueError, match="not in the vocab"):
        model.encode(["BOS"])
    with pytest.raises(ValueError, match="at most 5 tokens"):
        model.encode(["a"] * 6)


def test_decode_output_handles_batches(loaded):
    model = loaded["reverse"]
    tokens = torch.stack([model.encode([1, 2, 3]), model.encode([2, 2, 3])])
    with torch.no_grad():
        logits = model.model(tokens)
    assert model.decode_output(logits) == [[3, 2, 1], [3, 2, 2]]
    with pytest.raises(ValueError, match="logits must be"):
        model.decode_output(logits[0, 0])


def test_unknown_program_is_refused():
    with pytest.raises(ValueError, match="known programs"):
        load_tracr_model("sort_everything")
    with pytest.raises(ValueError, match="known programs"):
        compile_program("sort_everything")


def test_save_and_load_round_trip(loaded, tmp_path):
    model = loaded["hist"]
    again = load_tracr_model(save_tracr_model(model, tmp_path / "hist"))
    for name, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[name])
    assert again.residual_labels == model.residual_labels
    assert again.run(["b", "b", "c"]) == [2, 2, 1]


def test_loading_imports_neither_tracr_nor_haiku():
    code = (
        "import sys\n"
        "from synthetic_saes.semisynthetic.tracr_models import load_tracr_model\n"
        "from synthetic_saes.semisynthetic.tracr_world import TracrWorld\n"
        "assert load_tracr_model('reverse').run([1, 2, 3]) == [3, 2, 1]\n"
        "TracrWorld('hist').sample(64, seed=0)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tracr', 'haiku'))\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


# ---- compiling (needs tracr) --------------------------------------------------------------


class _Compiled(dict):
    """Programs compiled on first use (a few seconds each)."""

    def __missing__(self, name):
        self[name] = compile_program(name)
        return self[name]


@pytest.fixture(scope="module")
def compiled():
    pytest.importorskip("tracr")
    return _Compiled()


# one program is checked in the default run, all of them with `make test-slow`
_COMPILE_CHECKED = [name if name == "hist" else pytest.param(name, marks=pytest.mark.slow)
                    for name in sorted(PROGRAMS)]


def test_a_broken_program_fails_with_a_clear_error():
    pytest.importorskip("tracr")
    from tracr.rasp import rasp

    # A numerical mean of a categorical variable: Tracr cannot compile it.
    select = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.EQ)
    broken = rasp.numerical(rasp.Aggregate(select, rasp.tokens))
    with pytest.raises(ValueError, match="RASP program 'broken' failed to compile") as info:
        compile_program(broken, vocab={1, 2}, max_seq_len=3, name="broken")
    assert isinstance(info.value.__cause__, NotImplementedError)
    with pytest.raises(ValueError, match="'reverse' failed to compile: Compiler BOS"):
        compile_program("reverse", vocab=(1, 2, "BOS"))
    with pytest.raises(ValueError, match="needs vocab and max_seq_len"):
        compile_program(rasp.Map(lambda x: x, rasp.tokens))


@pytest.mark.parametrize("program", _COMPILE_CHECKED)
def test_a_fresh_compile_reproduces_the_shipped_fixture(compiled, loaded, program):
    fresh = convert_to_hooked_transformer(compiled[program])
    shipped = loaded[program]
    assert fresh.residual_labels == shipped.residual_labels
    state = fresh.state_dict()
    assert set(state) == set(shipped.state_dict())
    for name, value in shipped.state_dict().items():
        assert torch.equal(state[name], value), name
    for key in ("hooked_transformer", "input_tokens", "output_tokens", "vocab", "max_seq_len"):
        assert fresh.config[key] == shipped.config[key]


@pytest.mark.parametrize("program", _COMPILE_CHECKED)
def test_converted_residual_stream_equals_tracr(compiled, loaded, program):
    inputs = random_inputs(program, n=PROGRAMS[program].max_seq_len, seed=1)
    error = residual_max_error(compiled[program], loaded[program], inputs)
    assert error <= 1e-5


def test_compile_command_writes_loadable_fixtures(tmp_path, capsys):
    pytest.importorskip("tracr")
    assert main(["compile", "--out", str(tmp_path), "--program", "hist"]) == 0
    assert "hist" in capsys.readouterr().out
    assert load_tracr_model(tmp_path / "hist").run(["a", "a"]) == [2, 2]
