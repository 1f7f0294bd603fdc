"""Activation patching recovers where compiled Tracr programs write their variables, agrees
with TransformerLens's own patching, and runs on the trained language model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from synthetic_saes.semisynthetic.localise import (
    COMPONENTS,
    _bootstrap,
    activation_patching,
    localise_pole_recall,
    patchable_hooks,
    plot_patching_map,
    select_points,
    worlds_at,
)
from synthetic_saes.semisynthetic.tracr_models import load_tracr_model

from .conftest import TINY_MODEL


def _writer(tracr, variable: str) -> str:
    """The component hook the compiler writes `variable` with (read off the residual basis)."""
    dims = {i for i, label in enumerate(tracr.residual_labels) if label.variable == variable}
    writers = [hook for hook, columns in tracr.basis["layer_writes"].items()
               if dims & set(columns)]
    assert len(writers) == 1, writers
    return writers[0]


def _token_change_pairs(tracr, n_pairs: int, seed: int, lengths=(4, 5), *, output_of):
    """Pairs that change the token at one position j, and the classes "output" (the position
    whose output the change moves, read by `output_of(n, j)`), "changed" (j) and "other"."""
    rng = np.random.default_rng(seed)
    pairs, info, classes = [], [], {"output": [], "changed": [], "other": []}
    while len(pairs) < n_pairs:
        n = int(rng.choice(lengths))
        tokens = [tracr.vocab[i] for i in rng.integers(len(tracr.vocab), size=n)]
        j = int(rng.integers(n))
        out = output_of(n, j)
        if out is None or out == j:
            continue
        corrupt = list(tokens)
        corrupt[j] = tracr.vocab[(tracr.vocab.index(tokens[j]) + 1 + int(rng.integers(
            len(tracr.vocab) - 1))) % len(tracr.vocab)]
        pairs.append((tracr.encode(tokens).numpy(), tracr.encode(corrupt).numpy()))
        info.append((1 + out, tokens[j], corrupt[j]))
        o = np.zeros(n + 1, dtype=bool)
        o[1 + out] = True
        c = np.zeros(n + 1, dtype=bool)
        c[1 + j] = True
        classes["output"].append(o)
        classes["changed"].append(c)
        classes["other"].append(~(o | c))
    return pairs, info, classes


@pytest.fixture(scope="module")
def reverse_map():
    tracr = load_tracr_model("reverse")
    pairs, info, classes = _token_change_pairs(tracr, 12, seed=0,
                                               output_of=lambda n, j: n - 1 - j)
    out_ids = tracr.output_tokens

    def metric(i, logits):
        position, clean, corrupt = info[i]
        return float(logits[position, out_ids.index(clean)]
                     - logits[position, out_ids.index(corrupt)])

    result = activation_patching(tracr.model, pairs, metric, classes, n_resamples=200)
    return tracr, pairs, metric, classes, result


def test_the_top_component_is_where_the_compiler_writes_reverse(reverse_map):
    tracr, _, _, _, result = reverse_map
    writer = _writer(tracr, "reverse")
    assert writer == "blocks.3.hook_attn_out"
    top = result.ranked(components=["attn_out", "mlp_out"])[0]
    assert (top.hook, top.position_class) == (writer, "output")
    assert top.low > 0.99
    # every other component moves nothing: the pairs keep the length, so length and opp_idx
    # (written by layers 0-2) are the same in both runs
    others = result.ranked(components=["attn_out", "mlp_out"])[1:]
    assert max(abs(p.mean) for p in others) < 1e-6


def test_residual_points_at_the_output_transfer_nothing_before_the_writer_and_all_after(
        reverse_map):
    _, _, _, _, result = reverse_map
    order = result.hooks
    writer = order.index("blocks.3.hook_attn_out")
    for i, hook in enumerate(order):
        if "resid" not in hook:
            continue
        output = result.point(hook, "output").mean
        changed = result.point(hook, "changed").mean
        if i < writer:  # the token still sits at its own position, where layer 3 reads it
            assert abs(output) < 1e-6 and abs(changed - 1) < 1e-6, hook
        else:
            assert abs(output - 1) < 1e-6 and abs(changed) < 1e-6, hook
    assert np.all(np.abs(result.mean[:, result.position_classes.index("other")]) < 1e-6)


def test_frac_prevs_puts_is_x_in_mlp_0_and_frac_prevs_in_attention_1():
    tracr = load_tracr_model("frac_prevs")
    # change x <-> another token at j; read frac_prevs at a later position
    pairs, info, classes = _token_change_pairs(
        tracr, 10, seed=1, output_of=lambda n, j: n - 1 if j < n - 1 else None)
    keep = [i for i, (_, a, b) in enumerate(info) if "x" in (a, b)]
    pairs = [pairs[i] for i in keep]
    info = [info[i] for i in keep]
    classes = {k: [v[i] for i in keep] for k, v in classes.items()}

    def metric(i, logits):
        return float(logits[info[i][0], 0])

    result = activation_patching(tracr.model, pairs, metric, classes, n_resamples=100)
    components = ["attn_out", "mlp_out"]
    assert _writer(tracr, "is_x") == "blocks.0.hook_mlp_out"
    assert _writer(tracr, "frac_prevs") == "blocks.1.hook_attn_out"
    assert result.ranked(components=components, position_classes=["changed"])[0].hook == \
        "blocks.0.hook_mlp_out"
    assert result.ranked(components=components, position_classes=["output"])[0].hook == \
        "blocks.1.hook_attn_out"


def test_the_map_equals_transformer_lens_patching_position_by_position(reverse_map):
    from transformer_lens import patching

    tracr, pairs, metric, _, _ = reverse_map
    clean, corrupt = (torch.from_numpy(t)[None] for t in pairs[0])
    n = clean.shape[1]
    classes = {f"position {p}": [np.arange(n) == p] for p in range(n)}
    upstreams = {"resid_pre": patching.get_act_patch_resid_pre,
                 "resid_mid": patching.get_act_patch_resid_mid,
                 "attn_out": patching.get_act_patch_attn_out,
                 "mlp_out": patching.get_act_patch_mlp_out}
    for direction, names in (("denoise", list(upstreams)), ("noise", ["resid_pre"])):
        ours = activation_patching(tracr.model, [pairs[0]], metric, classes,
                                   direction=direction, n_resamples=10)
        receiver, donor = (corrupt, clean) if direction == "denoise" else (clean, corrupt)
        _, cache = tracr.model.run_with_cache(donor)
        for name in names:
            upstream = upstreams[name]
            theirs = upstream(tracr.model, receiver, cache,
                              lambda logits: torch.tensor(metric(0, logits[0])))
            for layer in range(tracr.n_layers):
                hook = f"blocks.{layer}.hook_{name}"
                for p in range(n):
                    fraction = ours.point(hook, f"position {p}").mean
                    m_clean, m_corrupt = ours.clean_metric[0], ours.corrupt_metric[0]
                    if direction == "denoise":
                        patched = m_corrupt + fraction * (m_clean - m_corrupt)
                    else:
                        patched = m_clean - fraction * (m_clean - m_corrupt)
                    assert patched == pytest.approx(float(theirs[layer, p]), abs=1e-5)


def test_the_bootstrap_equals_a_literal_loop_and_is_seeded():
    rng = np.random.default_rng(3)
    fractions = rng.normal(size=(2, 3, 7))
    mean, low, high = _bootstrap(fractions, 50, 0.9, seed=4)
    from synthetic_saes.rng import derive_seed

    draws = np.random.default_rng(derive_seed(4, "patching-bootstrap")).integers(0, 7, (50, 7))
    for h in range(2):
        for c in range(3):
            means = [np.mean([fractions[h, c, i] for i in draw]) for draw in draws]
            assert low[h, c] == pytest.approx(np.quantile(means, 0.05))
            assert high[h, c] == pytest.approx(np.quantile(means, 0.95))
            assert mean[h, c] == pytest.approx(fractions[h, c].mean())
    again = _bootstrap(fractions, 50, 0.9, seed=4)
    other = _bootstrap(fractions, 50, 0.9, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip((mean, low, high), again))
    assert not np.array_equal(low, other[1])


def test_one_pair_gives_a_point_interval():
    rng = np.random.default_rng(0)
    fractions = rng.normal(size=(1, 1, 1))
    mean, low, high = _bootstrap(fractions, 20, 0.95, seed=0)
    assert mean[0, 0] == low[0, 0] == high[0, 0] == fractions[0, 0, 0]


def test_select_points_keeps_hooks_whose_interval_clears_the_threshold(reverse_map):
    _, _, _, _, result = reverse_map
    after = ("blocks.3.hook_attn_out", "blocks.3.hook_resid_mid", "blocks.3.hook_mlp_out",
             "blocks.3.hook_resid_post")
    selected = select_points(result, threshold=0.5, position_classes=["output"])
    assert selected == tuple(h for h in after if h != "blocks.3.hook_mlp_out")
    assert select_points(result, threshold=0.5, components=["attn_out", "mlp_out"]) == (
        "blocks.3.hook_attn_out",)
    assert select_points(result, threshold=1.5) == ()
    with pytest.raises(ValueError, match="unknown position class 'nowhere'"):
        select_points(result, position_classes=["nowhere"])
    with pytest.raises(ValueError, match="unknown components"):
        select_points(result, components=["resid"])


def test_the_result_serialises_and_plots(reverse_map, tmp_path):
    _, _, _, _, result = reverse_map
    data = json.loads(json.dumps(result.to_dict()))
    assert data["points"][0]["mean"] == pytest.approx(result.ranked()[0].mean)
    assert len(data["points"]) == len(result.hooks) * len(result.position_classes)
    path = plot_patching_map(result, tmp_path / "map.png", title="reverse")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unequal_lengths_fail_before_any_forward_pass(reverse_map, monkeypatch):
    tracr, pairs, metric, classes, _ = reverse_map

    def no_run(*args, **kwargs):
        raise AssertionError("the model ran")

    monkeypatch.setattr(tracr.model, "run_with_cache", no_run)
    bad = list(pairs)
    bad[3] = (pairs[3][0], pairs[3][1][:-1])
    n = len(pairs[3][0])
    with pytest.raises(ValueError, match=f"pair 3 has unequal lengths: clean {n}, corrupt "
                                         f"{n - 1}"):
        activation_patching(tracr.model, bad, metric, classes)
    with pytest.raises(ValueError, match="unknown hook point 'blocks.9.hook_resid_pre'; "
                                         "valid: .*blocks.0.hook_resid_pre"):
        activation_patching(tracr.model, pairs, metric, classes,
                            hooks=["blocks.9.hook_resid_pre"])
    with pytest.raises(ValueError, match="unknown hook point 'blocks.0.attn.hook_pattern'"):
        activation_patching(tracr.model, pairs, metric, classes,
                            hooks=["blocks.0.attn.hook_pattern"])
    short = {"output": classes["output"][:-1]}
    with pytest.raises(ValueError, match="position class 'output' has 11 masks for 12 pairs"):
        activation_patching(tracr.model, pairs, metric, short)
    with pytest.raises(ValueError, match="direction"):
        activation_patching(tracr.model, pairs, metric, classes, direction="sideways")
    with pytest.raises(ValueError, match="at least one pair"):
        activation_patching(tracr.model, [], metric, {})


def test_pairs_without_an_effect_are_listed_not_dropped_silently(reverse_map):
    tracr, pairs, metric, classes, _ = reverse_map
    same = [(pairs[0][0], pairs[0][0]), pairs[1]]
    result = activation_patching(tracr.model, same, metric,
                                 {k: v[:2] for k, v in classes.items()}, n_resamples=10)
    assert result.excluded == (0,) and result.kept.tolist() == [1]
    with pytest.raises(ValueError, match="no pair changes the behaviour"):
        activation_patching(tracr.model, same[:1], metric,
                            {k: v[:1] for k, v in classes.items()})


def test_the_same_seed_gives_the_same_map(reverse_map):
    tracr, pairs, metric, classes, result = reverse_map
    again = activation_patching(tracr.model, pairs, metric, classes, n_resamples=200)
    for field in ("fractions", "mean", "low", "high", "clean_metric", "corrupt_metric"):
        assert np.array_equal(getattr(result, field), getattr(again, field))


def test_patchable_hooks_lists_five_components_per_layer():
    tracr = load_tracr_model("hist")
    assert patchable_hooks(tracr.model) == tuple(f"blocks.0.hook_{c}" for c in COMPONENTS)


# ---- the language model -------------------------------------------------------------------


@pytest.fixture(scope="module")
def pole_recall_map(tiny_language_model):
    _, model, _ = tiny_language_model
    return localise_pole_recall(model, n_pairs=24, seed=0, n_resamples=200)


def test_pole_recall_flows_from_the_pole_phrase_to_the_later_mention(pole_recall_map):
    result = pole_recall_map
    assert result.position_classes == ("later mention", "pole phrase", "other")
    assert len(result.kept) == 24
    # swapping the pole phrase's input embeddings is swapping the differing tokens: all of it
    assert result.point("blocks.0.hook_resid_pre", "pole phrase").mean == pytest.approx(1.0,
                                                                                        abs=1e-4)
    # nothing differs at the later mention's embedding
    assert abs(result.point("blocks.0.hook_resid_pre", "later mention").mean) < 1e-6
    # at the last residual point the later mention carries it all
    last = result.point("blocks.1.hook_resid_post", "later mention")
    assert last.mean == pytest.approx(1.0, abs=1e-4)
    dominated = [h for h in result.hooks
                 if result.point(h, "later mention").low
                 > result.point(h, "pole phrase").high + 0.5]
    assert "blocks.1.hook_resid_post" in dominated


def test_worlds_at_located_sublayer_hooks_fit_their_dictionaries(tiny_language_model,
                                                                 pole_recall_map):
    from synthetic_saes.semisynthetic.world import LanguageWorldConfig

    directory, _, _ = tiny_language_model
    selected = select_points(pole_recall_map, threshold=0.5,
                             components=["attn_out", "mlp_out", "resid_mid"])
    assert selected, "the tiny model moves the pole somewhere"
    config = LanguageWorldConfig(model=TINY_MODEL, fit_stories=256, quality_stories=32,
                                 stories_per_batch=64)
    hooks = ["blocks.0.hook_attn_out", "blocks.0.hook_mlp_out", "blocks.0.hook_resid_mid"]
    worlds = worlds_at(config, directory, hooks)
    assert list(worlds) == hooks
    assert len({id(w.model) for w in worlds.values()}) == 1
    for hook, world in worlds.items():
        assert world.config.hook_name == hook
        quality = world.quality
        assert 0.0 < quality.explained_variance <= 1.0
        sample = world.sample(32, seed=0)
        assert sample.hidden.shape == (32, world.d_in)
        assert world.dictionary.directions.shape == (world.num_features, world.d_in)
    with pytest.raises(ValueError, match="blocks.5.hook_attn_out"):
        worlds_at(config, directory, ["blocks.5.hook_attn_out"])
