"""cebench.saes: one loader for sae-lens directories, Gemma Scope params.npz and releases."""

import numpy as np
import pytest
import sae_lens.loading.pretrained_sae_loaders as sae_lens_loaders
import torch
from sae_lens import SAE
from sae_lens.loading.pretrained_sae_loaders import (
    get_gemma_2_config_from_hf,
    handle_config_defaulting,
)

from cebench.saes import load_sae, sae_label, select_saes, write_gemma_scope_npz
from synthetic_saes.sae_params import SAEParams

RES_ID = "layer_12/width_16k/average_l0_82"
EMBED_ID = "embedding/width_4k/average_l0_6"


def gemma_scope_params(rng, d_in, d_sae, *, scale=0.02):
    """A random Gemma-Scope-shaped jumprelu SAE (float32, thresholds > 0)."""
    return SAEParams(
        W_enc=rng.standard_normal((d_in, d_sae), dtype=np.float32) * np.float32(scale),
        W_dec=rng.standard_normal((d_sae, d_in), dtype=np.float32) * np.float32(scale),
        b_enc=rng.standard_normal(d_sae, dtype=np.float32) * np.float32(0.1),
        b_dec=rng.standard_normal(d_in, dtype=np.float32) * np.float32(0.1),
        threshold=rng.uniform(0.2, 1.0, d_sae).astype(np.float32),
        architecture="jumprelu",
        apply_b_dec_to_input=False,
    )


def small_params(rng, architecture, d_in=6, d_sae=9):
    extra = {"threshold": rng.uniform(0.0, 0.5, d_sae)} if architecture == "jumprelu" else {}
    if architecture == "topk":
        extra["k"] = 3
    return SAEParams(
        W_enc=rng.standard_normal((d_in, d_sae)),
        b_enc=rng.standard_normal(d_sae) * 0.1,
        W_dec=rng.standard_normal((d_sae, d_in)),
        b_dec=rng.standard_normal(d_in) * 0.1,
        architecture=architecture,
        **extra,
    )


def numpy_jumprelu(arrays, x):
    """Literal Gemma Scope encoding in float64: relu(x @ W_enc + b_enc) * (pre > threshold)."""
    pre = x.astype(np.float64) @ arrays["W_enc"].astype(np.float64) + arrays["b_enc"]
    return np.maximum(pre, 0.0) * (pre > arrays["threshold"]), pre


def write_npz(path, **arrays):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def valid_arrays(d_in=4, d_sae=5):
    rng = np.random.default_rng(1)
    return {
        "W_enc": rng.standard_normal((d_in, d_sae)).astype(np.float32),
        "W_dec": rng.standard_normal((d_sae, d_in)).astype(np.float32),
        "b_enc": np.zeros(d_sae, np.float32),
        "b_dec": np.zeros(d_in, np.float32),
        "threshold": np.full(d_sae, 0.1, np.float32),
    }


@pytest.fixture(scope="module")
def gemma_scope_2b(tmp_path_factory):
    """A 2304 x 16384 SAE in Gemma Scope's layout for gemma-2-2b layer 12, written once."""
    params = gemma_scope_params(np.random.default_rng(0), 2304, 16384)
    root = tmp_path_factory.mktemp("downloads")
    path = write_gemma_scope_npz(params, root / "gemma-scope-2b-pt-res" / RES_ID / "params.npz")
    return params, path


@pytest.fixture(scope="module")
def loaded_2b(gemma_scope_2b):
    return load_sae(gemma_scope_2b[1])


@pytest.fixture
def fake_hub(monkeypatch):
    """sae-lens's Gemma Scope loader reads params.npz from `files[(repo_id, folder)]`."""
    files = {}

    def hf_hub_download(repo_id, filename, subfolder=None, **_):
        assert filename == "params.npz"
        return str(files[(repo_id, subfolder)])

    monkeypatch.setattr(sae_lens_loaders, "hf_hub_download", hf_hub_download)
    return files


# ---- (b) Gemma Scope params.npz -----------------------------------------------------------


def test_gemma_scope_npz_loads_with_gemma_scope_config(loaded_2b):
    sae = loaded_2b
    assert sae.cfg.architecture() == "jumprelu"
    assert (sae.cfg.d_in, sae.cfg.d_sae) == (2304, 16384)
    assert sae.cfg.metadata.hook_name == "blocks.12.hook_resid_post"
    assert sae.cfg.metadata.model_name == "gemma-2-2b"
    assert sae.cfg.apply_b_dec_to_input is False
    assert sae.cfg.reshape_activations == "none"
    assert sae.W_enc.dtype == torch.float32 and not sae.training


def test_gemma_scope_encode_equals_literal_numpy_jumprelu(gemma_scope_2b, loaded_2b):
    params, _ = gemma_scope_2b
    sae = loaded_2b
    x = np.random.default_rng(2).standard_normal((16, 2304)).astype(np.float32)
    with torch.no_grad():
        got = sae.encode(torch.from_numpy(x)).numpy()
    arrays = {"W_enc": params.W_enc, "b_enc": params.b_enc, "threshold": params.threshold}
    expected, pre = numpy_jumprelu(arrays, x)
    # The jump matters here: some latents fire, others sit between 0 and their threshold.
    fired = expected > 0
    assert 0.01 < fired.mean() < 0.5
    assert ((pre > 0) & ~fired).mean() > 0.01
    # float32 vs float64 may flip a latent within rounding of its threshold: skip those.
    clear = np.abs(pre - params.threshold) > 1e-4
    assert clear.mean() > 0.999
    np.testing.assert_allclose(got[clear], expected[clear], rtol=1e-5, atol=1e-6)


def test_gemma_scope_npz_equals_sae_lens_own_loader(gemma_scope_2b, loaded_2b, fake_hub):
    """Our npz loader and sae-lens's from_pretrained (hub faked) give the same SAE."""
    fake_hub[("google/gemma-scope-2b-pt-res", RES_ID)] = gemma_scope_2b[1]
    theirs = load_sae("gemma-scope-2b-pt-res", RES_ID)  # the release path, end to end
    assert_same_sae(loaded_2b, theirs)


def test_gemma_scope_embedding_rescaled_like_sae_lens(tmp_path, fake_hub):
    params = gemma_scope_params(np.random.default_rng(3), 2304, 4096)
    path = tmp_path / "gemma-scope-2b-pt-res" / EMBED_ID / "params.npz"
    path = write_gemma_scope_npz(params, path)
    fake_hub[("google/gemma-scope-2b-pt-res", EMBED_ID)] = path
    ours = load_sae(path)
    assert ours.cfg.metadata.hook_name == "hook_embed"
    np.testing.assert_allclose(
        ours.W_enc.detach().numpy(), params.W_enc / np.sqrt(2304), rtol=1e-6
    )
    assert_same_sae(ours, SAE.from_pretrained("gemma-scope-2b-pt-res", EMBED_ID))


def assert_same_sae(ours, theirs):
    assert ours.cfg.architecture() == theirs.cfg.architecture()
    for field in ("d_in", "d_sae", "apply_b_dec_to_input", "reshape_activations", "dtype"):
        assert getattr(ours.cfg, field) == getattr(theirs.cfg, field), field
    for field in ("model_name", "hook_name", "prepend_bos"):
        assert getattr(ours.cfg.metadata, field) == getattr(theirs.cfg.metadata, field), field
    theirs_state = theirs.state_dict()
    assert ours.state_dict().keys() == theirs_state.keys()
    for key, tensor in ours.state_dict().items():
        assert torch.equal(tensor, theirs_state[key]), key


LAYOUTS = [
    ("gemma-scope-2b-pt-res", "layer_12/width_16k/average_l0_82"),
    ("gemma-scope-2b-pt-mlp", "layer_3/width_65k/average_l0_20"),
    ("gemma-scope-2b-pt-att", "layer_5/width_16k/average_l0_50"),
    ("gemma-scope-9b-pt-res", "layer_20/width_131k/average_l0_60"),
    ("gemma-scope-9b-it-res", "layer_9/width_16k/average_l0_88"),
    ("gemma-scope-27b-pt-res", "layer_22/width_131k/average_l0_82"),
    ("gemma-scope-2b-pt-res", "embedding/width_4k/average_l0_6"),
]


@pytest.mark.parametrize(("repo", "folder"), LAYOUTS)
def test_layout_parsed_as_sae_lens_configures_gemma_scope(tmp_path, repo, folder):
    theirs = handle_config_defaulting(get_gemma_2_config_from_hf(f"google/{repo}", folder, "cpu"))
    params = gemma_scope_params(np.random.default_rng(4), theirs["d_in"], 8)
    sae = load_sae(write_gemma_scope_npz(params, tmp_path / repo / folder / "params.npz"))
    assert sae.cfg.metadata.model_name == theirs["metadata"]["model_name"]
    assert sae.cfg.metadata.hook_name == theirs["metadata"]["hook_name"]
    assert sae.cfg.reshape_activations == theirs["reshape_activations"]
    assert sae.cfg.apply_b_dec_to_input == theirs["apply_b_dec_to_input"] is False
    assert sae.cfg.architecture() == theirs["architecture"] == "jumprelu"


def test_attention_sae_flattens_heads_of_hook_z(tmp_path):
    params = gemma_scope_params(np.random.default_rng(5), 2048, 32)  # 8 heads x 256
    path = tmp_path / "gemma-scope-2b-pt-att/layer_5/width_16k/average_l0_50/params.npz"
    sae = load_sae(write_gemma_scope_npz(params, path))
    assert sae.cfg.metadata.hook_name == "blocks.5.attn.hook_z"
    assert sae.cfg.reshape_activations == "hook_z"
    z = np.random.default_rng(6).standard_normal((3, 4, 8, 256)).astype(np.float32)
    with torch.no_grad():
        got = sae.encode(torch.from_numpy(z)).numpy()
    assert got.shape == (3, 4, 32)
    np.testing.assert_allclose(
        got.reshape(12, 32), params.encode(z.reshape(12, 2048)), rtol=1e-5, atol=1e-5
    )


def test_hub_cache_layout_and_explicit_names(tmp_path):
    params = gemma_scope_params(np.random.default_rng(7), 16, 8)
    cached = tmp_path / "models--google--gemma-scope-2b-pt-mlp/snapshots/abc123"
    path = write_gemma_scope_npz(params, cached / "layer_3/width_16k/average_l0_20/params.npz")
    sae = load_sae(path)
    assert sae.cfg.metadata.hook_name == "blocks.3.hook_mlp_out"
    assert sae_label(path) == ("gemma-scope-2b-pt-mlp", "layer_3/width_16k/average_l0_20")
    sae = load_sae(path, model_name="my-model", hook_name="blocks.7.hook_resid_pre")
    assert (sae.cfg.metadata.model_name, sae.cfg.metadata.hook_name) == (
        "my-model",
        "blocks.7.hook_resid_pre",
    )


def test_relative_npz_path_is_resolved_before_parsing(tmp_path, monkeypatch):
    params = gemma_scope_params(np.random.default_rng(20), 16, 8)
    write_gemma_scope_npz(params, tmp_path / "gemma-scope-9b-pt-res/layer_20/w/params.npz")
    monkeypatch.chdir(tmp_path / "gemma-scope-9b-pt-res")
    sae = load_sae("layer_20/w/params.npz")
    assert (sae.cfg.metadata.model_name, sae.cfg.metadata.hook_name) == (
        "gemma-2-9b",
        "blocks.20.hook_resid_post",
    )
    assert sae_label("layer_20/w/params.npz") == ("gemma-scope-9b-pt-res", "layer_20/w")


def test_npz_outside_gemma_scope_layout_needs_hook_and_model(tmp_path):
    params = gemma_scope_params(np.random.default_rng(8), 16, 8)
    path = write_gemma_scope_npz(params, tmp_path / "plain" / "params.npz")
    with pytest.raises(ValueError, match="pass hook_name"):
        load_sae(path)
    with pytest.raises(ValueError, match="pass model_name"):
        load_sae(path, hook_name="blocks.0.hook_resid_post")
    sae = load_sae(path, model_name="m", hook_name="blocks.0.hook_resid_post", dtype="float64")
    assert sae.W_enc.dtype == torch.float64 and sae.cfg.dtype == "float64"
    x = np.random.default_rng(9).standard_normal((5, 16))
    with torch.no_grad():
        got = sae.encode(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, params.encode(x), rtol=1e-5, atol=1e-6)


def test_weights_that_overflow_a_narrower_dtype_raise(tmp_path):
    arrays = valid_arrays()
    arrays["W_enc"][0, 0] = 1e6  # finite in float32, +inf in float16
    path = write_npz(tmp_path / "gemma-scope-2b-pt-res/layer_0/w/params.npz", **arrays)
    assert load_sae(path, dtype="float32").W_enc[0, 0] == 1e6
    with pytest.raises(ValueError, match="W_enc has 0 NaN and 1 Inf"):
        load_sae(path, dtype="float16")


def test_infinite_thresholds_mean_latents_that_never_fire(tmp_path):
    params = gemma_scope_params(np.random.default_rng(10), 16, 8)
    threshold = params.threshold.copy()
    threshold[:3] = np.inf
    params = params.replace(threshold=threshold)
    path = write_gemma_scope_npz(params, tmp_path / "gemma-scope-2b-pt-res/layer_0/w/params.npz")
    with torch.no_grad():
        acts = load_sae(path).encode(torch.randn(50, 16) * 100)
    assert (acts[:, :3] == 0).all()


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        (
            {k: v for k, v in valid_arrays().items() if k not in ("b_dec", "threshold")},
            r"missing keys \['b_dec', 'threshold'\]",
        ),
        ({**valid_arrays(), "scaling_factor": np.ones(5)}, r"unexpected keys \['scaling_factor'\]"),
        ({**valid_arrays(), "W_dec": np.zeros((5, 3), np.float32)}, r"inconsistent shapes.*W_dec"),
        ({**valid_arrays(), "threshold": np.zeros(4, np.float32)}, r"inconsistent shapes.*thresh"),
        ({**valid_arrays(), "W_enc": np.zeros(4, np.float32)}, r"W_enc must be \[d_in, d_sae\]"),
        ({**valid_arrays(), "b_enc": np.full(5, np.nan, np.float32)}, "b_enc has 5 NaN or Inf"),
        ({**valid_arrays(), "W_dec": np.full((5, 4), np.inf, np.float32)}, "W_dec has 20 NaN or"),
        ({**valid_arrays(), "threshold": np.full(5, np.nan, np.float32)}, "threshold has 5 NaN"),
        ({**valid_arrays(), "b_dec": np.zeros(4, np.int64)}, "b_dec must hold floats"),
    ],
)
def test_invalid_npz_raises(tmp_path, arrays, match):
    path = write_npz(tmp_path / "gemma-scope-2b-pt-res/layer_0/width_16k/x/params.npz", **arrays)
    with pytest.raises(ValueError, match=match):
        load_sae(path)


def test_unreadable_npz_and_non_npz_files_raise(tmp_path):
    garbage = tmp_path / "params.npz"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="cannot read .* as a .npz"):
        load_sae(garbage, hook_name="h", model_name="m")
    single = tmp_path / "single.npz"
    np.save(single.with_suffix(".npy"), np.zeros(3))
    single.with_suffix(".npy").rename(single)
    with pytest.raises(ValueError, match="single array"):
        load_sae(single, hook_name="h", model_name="m")
    other = tmp_path / "weights.pt"
    other.write_bytes(b"")
    with pytest.raises(ValueError, match="is a file but not a .npz"):
        load_sae(other)


def test_write_gemma_scope_npz_rejects_other_saes(tmp_path):
    rng = np.random.default_rng(11)
    with pytest.raises(ValueError, match="jumprelu"):
        write_gemma_scope_npz(small_params(rng, "relu"), tmp_path / "params.npz")
    with pytest.raises(ValueError, match="apply_b_dec_to_input"):
        write_gemma_scope_npz(small_params(rng, "jumprelu"), tmp_path / "params.npz")
    good = gemma_scope_params(rng, 4, 3)
    with pytest.raises(ValueError, match="ends in .npz"):
        write_gemma_scope_npz(good, tmp_path / "params")


# ---- (a) sae-lens directories ---------------------------------------------------------------


@pytest.mark.parametrize("architecture", ["relu", "jumprelu", "topk"])
def test_sae_lens_directory_loads_and_encodes_like_params(tmp_path, architecture):
    params = small_params(np.random.default_rng(12), architecture)
    path = params.save(tmp_path / architecture, model_name="toy", hook_name="hidden")
    sae = load_sae(path)
    assert not sae.training
    assert (sae.cfg.metadata.model_name, sae.cfg.metadata.hook_name) == ("toy", "hidden")
    x = np.random.default_rng(13).standard_normal((7, 6)).astype(np.float32)
    with torch.no_grad():
        got = sae.encode(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, params.encode(x), rtol=1e-5, atol=1e-6)


def test_sae_lens_directory_by_relative_string_and_dtype(tmp_path, monkeypatch):
    params = small_params(np.random.default_rng(14), "relu")
    params.save(tmp_path / "runs" / "relu_s0")
    monkeypatch.chdir(tmp_path)
    sae = load_sae("runs/relu_s0", dtype="float64", model_name="synthetic", hook_name="hidden")
    assert sae.W_enc.dtype == torch.float64
    assert sae_label("runs/relu_s0") == ("runs", "relu_s0")


def test_sae_lens_directory_errors(tmp_path):
    params = small_params(np.random.default_rng(15), "relu")
    path = params.save(tmp_path / "sae")
    with pytest.raises(ValueError, match="records hook_name='hidden' but hook_name='blocks.0"):
        load_sae(path, hook_name="blocks.0.hook_resid_post")
    with pytest.raises(ValueError, match="sae_id 'x' is only for pretrained releases"):
        load_sae(path, "x")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no cfg.json"):
        load_sae(empty)
    (path / "sae_weights.safetensors").unlink()
    with pytest.raises(ValueError, match="no sae_weights.safetensors"):
        load_sae(path)
    with pytest.raises(ValueError, match="no such file or directory"):
        load_sae(tmp_path / "missing")
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        load_sae(path, dtype="float8")
    broken = params.save(tmp_path / "broken")
    (broken / "cfg.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"broken/cfg.json is not valid JSON"):
        load_sae(broken)


def test_nan_weights_in_a_directory_raise(tmp_path):
    sae = small_params(np.random.default_rng(16), "relu").to_sae_lens()
    with torch.no_grad():
        sae.W_dec[0, 0] = float("nan")
    sae.save_model(tmp_path / "bad")
    with pytest.raises(ValueError, match="W_dec has 1 NaN and 0 Inf"):
        load_sae(tmp_path / "bad")


# ---- (c) pretrained releases ----------------------------------------------------------------


@pytest.fixture
def fake_from_pretrained(monkeypatch):
    calls = []
    sae = small_params(np.random.default_rng(17), "jumprelu").to_sae_lens(
        model_name="gemma-2-2b", hook_name="blocks.12.hook_resid_post"
    )
    sae.train()

    def from_pretrained(release, sae_id, device="cpu", dtype="float32", **kwargs):
        calls.append((release, sae_id, device, dtype, kwargs))
        return sae

    monkeypatch.setattr(SAE, "from_pretrained", from_pretrained)
    return calls


def test_release_calls_from_pretrained(fake_from_pretrained):
    sae = load_sae("gemma-scope-2b-pt-res", RES_ID, device="cpu", dtype="bfloat16")
    assert fake_from_pretrained == [("gemma-scope-2b-pt-res", RES_ID, "cpu", "bfloat16", {})]
    assert not sae.training
    assert sae_label("gemma-scope-2b-pt-res", RES_ID) == ("gemma-scope-2b-pt-res", RES_ID)
    load_sae("gemma-scope-2b-pt-res", RES_ID, model_name="gemma-2-2b")
    with pytest.raises(ValueError, match="records model_name='gemma-2-2b' but model_name='gpt2'"):
        load_sae("gemma-scope-2b-pt-res", RES_ID, model_name="gpt2")


def test_release_wins_over_a_same_named_folder_when_sae_id_given(
    tmp_path, monkeypatch, fake_from_pretrained
):
    (tmp_path / "gemma-scope-2b-pt-res").mkdir()
    monkeypatch.chdir(tmp_path)
    load_sae("gemma-scope-2b-pt-res", RES_ID)
    assert fake_from_pretrained[0][:2] == ("gemma-scope-2b-pt-res", RES_ID)


def test_release_errors(fake_from_pretrained):
    with pytest.raises(ValueError, match=r"unknown SAE 'gemma-scope-2b-pt-rez'.*2b-pt-res'"):
        load_sae("gemma-scope-2b-pt-rez", RES_ID)
    with pytest.raises(ValueError, match=r"unknown SAE 'no-such-release-at-all'"):
        load_sae("no-such-release-at-all")
    with pytest.raises(
        ValueError,
        match=r"has no sae_id 'layer_12/width_16k/average_l0_83'; it has \d+ ids; close ones: "
        r"\[.*'layer_12/width_16k/average_l0_82'",
    ):
        load_sae("gemma-scope-2b-pt-res", "layer_12/width_16k/average_l0_83")
    with pytest.raises(ValueError, match=r"needs a sae_id: it has \d+ SAE ids"):
        load_sae("gemma-scope-2b-pt-res")
    with pytest.raises(ValueError, match="has no sae_id"):
        sae_label("gemma-scope-2b-pt-res", "nope")
    assert fake_from_pretrained == []


# ---- select_saes -----------------------------------------------------------------------------


def test_select_saes_matches_the_reference_example():
    selected = select_saes("gemma-scope-2b-pt-res", "layer_12/width_16k/average_l0_.*")
    assert selected == sorted(selected) and len(selected) == len(set(selected)) >= 2
    assert ("gemma-scope-2b-pt-res", RES_ID) in selected
    for release, sae_id in selected:
        assert release == "gemma-scope-2b-pt-res"
        assert sae_id.startswith("layer_12/width_16k/average_l0_")
    assert select_saes("gemma-scope-2b-pt-res", "layer_12/width_16k/average_l0_.*") == selected


def test_select_saes_fullmatches_both_patterns():
    selected = select_saes("gemma-scope-2b-pt-(res|mlp)", "layer_0/width_16k/average_l0_.*")
    releases = {release for release, _ in selected}
    assert releases == {"gemma-scope-2b-pt-res", "gemma-scope-2b-pt-mlp"}
    assert selected == sorted(selected)
    # fullmatch: a prefix of a release or of an id selects nothing
    with pytest.raises(ValueError, match="no release .* fully matches 'gemma-scope-2b-pt'"):
        select_saes("gemma-scope-2b-pt", ".*")
    with pytest.raises(ValueError, match="none of their sae_ids fully matches 'layer_12'"):
        select_saes("gemma-scope-2b-pt-res", "layer_12")


def test_select_saes_invalid_regex_raises():
    with pytest.raises(ValueError, match=r"invalid release regex '\('"):
        select_saes("(", ".*")
    with pytest.raises(ValueError, match=r"invalid sae_id regex '\[a-'"):
        select_saes(".*", "[a-")


# ---- sae_label -------------------------------------------------------------------------------


def test_sae_label_of_paths(tmp_path, gemma_scope_2b):
    _, path = gemma_scope_2b
    assert sae_label(path) == ("gemma-scope-2b-pt-res", RES_ID)
    params = small_params(np.random.default_rng(18), "relu")
    directory = params.save(tmp_path / "families" / "oracle_s0")
    assert sae_label(directory) == ("families", "oracle_s0")
    jump = gemma_scope_params(np.random.default_rng(19), 4, 3)
    other = write_gemma_scope_npz(jump, tmp_path / "mine" / "sae_a.npz")
    assert sae_label(other) == ("mine", "sae_a")
    with pytest.raises(ValueError, match="sae_id 'x' is only for pretrained releases"):
        sae_label(directory, "x")
