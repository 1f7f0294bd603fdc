"""synthetic_saes.semisynthetic.siit: SIIT training of a transformer on a Tracr program."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from synthetic_saes.semisynthetic.siit import (
    SIITConfig,
    _make_model,
    component_hooks,
    default_alignment,
    evaluate_siit,
    high_level_nodes,
    interchange_hooks,
    load_siit_model,
    siit_losses,
    train_siit,
)
from synthetic_saes.semisynthetic.tracr_models import load_tracr_model

TINY = {"program": "hist", "n_layers": 2, "d_model": 8, "n_heads": 2, "d_mlp": 16,
        "batch_size": 16, "train_steps": 12, "eval_pairs": 64, "log_every": 4,
        "checkpoint_every": 4, "seed": 3}


def test_nodes_are_the_components_that_write_program_variables():
    reverse = high_level_nodes("reverse")
    assert [(n.name, n.hook, n.head) for n in reverse] == [
        ("length_selector_width_attn_output", "blocks.0.attn.hook_z", 0),
        ("length", "blocks.0.hook_mlp_out", None),
        ("opp_idx", "blocks.1.hook_mlp_out", None),
        ("opp_idx-1", "blocks.2.hook_mlp_out", None),
        ("reverse", "blocks.3.attn.hook_z", 0),
    ]
    # The selector width's MLP also cleans its helper dimension; it is named by its output.
    assert reverse[1].writes == ("length", "length_selector_width_attn_output")
    assert [n.name for n in high_level_nodes("hist")] == [
        "hist_selector_width_attn_output", "hist"]
    assert default_alignment("hist") == (
        ("hist_selector_width_attn_output", "blocks.0.attn.hook_z", 0),
        ("hist", "blocks.0.hook_mlp_out", None))


def test_config_defaults_round_trip_and_errors():
    config = SIITConfig(program="reverse")
    assert config.n_layers == 4 and SIITConfig(program="hist").n_layers == 2
    assert config.alignment == default_alignment("reverse")
    data = json.loads(json.dumps(config.to_dict()))
    assert SIITConfig.from_dict(data) == config
    hash(config)
    with pytest.raises(ValueError, match=r"unknown Tracr program 'nope'; known: \['reverse'"):
        SIITConfig(program="nope")
    with pytest.raises(ValueError, match="unknown Tracr program 'frac_prevs'"):
        SIITConfig(program="frac_prevs")  # numerical output: not trained with SIIT here
    bad_layer = (("hist_selector_width_attn_output", "blocks.0.attn.hook_z", 0),
                 ("hist", "blocks.5.hook_mlp_out", None))
    with pytest.raises(ValueError, match=r"node 'hist' to blocks\.5\.hook_mlp_out, which the "
                                         r"low-level model \(2 layers, 4 heads\) does not have"):
        SIITConfig(program="hist", alignment=bad_layer)
    bad_head = (("hist_selector_width_attn_output", "blocks.0.attn.hook_z", 4),
                ("hist", "blocks.0.hook_mlp_out", None))
    with pytest.raises(ValueError, match=r"'hist_selector_width_attn_output' to "
                                         r"blocks\.0\.attn\.hook_z\[4\]"):
        SIITConfig(program="hist", alignment=bad_head)
    with pytest.raises(ValueError, match=r"blocks\.0\.hook_resid_post"):
        SIITConfig(program="hist", alignment=(
            ("hist_selector_width_attn_output", "blocks.0.attn.hook_z", 0),
            ("hist", "blocks.0.hook_resid_post", None)))
    with pytest.raises(ValueError, match="node 'length', which the program does not have"):
        SIITConfig(program="hist", alignment=(("length", "blocks.0.hook_mlp_out", None),))
    with pytest.raises(ValueError, match=r"unaligned"):
        SIITConfig(program="hist", alignment=(("hist", "blocks.0.hook_mlp_out", None),))
    with pytest.raises(ValueError, match="two nodes"):
        SIITConfig(program="hist", alignment=(
            ("hist_selector_width_attn_output", "blocks.1.hook_mlp_out", None),
            ("hist", "blocks.1.hook_mlp_out", None)))
    with pytest.raises(ValueError, match="loss weights"):
        SIITConfig(program="hist", iit_weight=0, behavior_weight=0, strict_weight=0)
    with pytest.raises(ValueError, match="divisible"):
        SIITConfig(program="hist", d_model=10, n_heads=4)
    with pytest.raises(ValueError, match="unknown SIITConfig keys"):
        SIITConfig.from_dict({"program": "hist", "layers": 2})


def test_interchange_replaces_only_the_patched_head():
    config = SIITConfig(**TINY)
    model = _make_model(config, load_tracr_model("hist"))
    rng = np.random.default_rng(0)
    base = torch.from_numpy(rng.integers(1, 4, size=(3, 5)))
    source = torch.from_numpy(rng.integers(1, 4, size=(3, 5)))
    _, src = model.run_with_cache(source)
    _, ref = model.run_with_cache(base)
    hook = "blocks.0.attn.hook_z"
    seen = {}

    def record(value, hook):
        seen["z"] = value.detach().clone()

    model.run_with_hooks(base, fwd_hooks=[*interchange_hooks([(hook, 1)], {hook: src[hook]}),
                                          (hook, record)])
    torch.testing.assert_close(seen["z"][:, :, 1], src[hook][:, :, 1], rtol=0, atol=0)
    torch.testing.assert_close(seen["z"][:, :, 0], ref[hook][:, :, 0], rtol=0, atol=0)


def _literal_patched_logits(model, base_row, source_row, hook, head):
    """One example: run the source, copy the component's activation, run the base."""
    _, cache = model.run_with_cache(source_row[None])
    activation = cache[hook][0]

    def overwrite(value, hook):
        value = value.clone()
        if head is None:
            value[0] = activation
        else:
            value[0, :, head] = activation[:, head]
        return value

    return model.run_with_hooks(base_row[None], fwd_hooks=[(hook, overwrite)])[0]


def _literal_loss(model, targets, base, hook=None, head=None, source=None):
    total, count = 0.0, 0
    for i in range(base.shape[0]):
        if hook is None:
            logits = model(base[i][None])[0]
        else:
            logits = _literal_patched_logits(model, base[i], source[i], hook, head)
        for p in range(1, base.shape[1]):
            total += float(-torch.log_softmax(logits[p], -1)[targets[i][p - 1]])
            count += 1
    return total / count


@pytest.mark.parametrize("program,node_index", [("hist", 0), ("hist", 1), ("reverse", 4)])
def test_losses_match_a_literal_per_example_reference(program, node_index):
    config = SIITConfig(**{**TINY, "program": program, "n_layers": None})
    fixture = load_tracr_model(program, dtype=torch.float64)
    model = _make_model(config, fixture)
    node = high_level_nodes(program)[node_index]
    ll_component = config.alignment_map[node.name]
    strict_component = next(c for c in component_hooks(config.n_layers, config.n_heads)
                            if c not in config.alignment_map.values())
    rng = np.random.default_rng(1)
    vocab = [fixture.token_id(t) for t in fixture.vocab]
    ids = np.array(vocab)[rng.integers(0, 3, size=(2, 6, 4))]
    base, source = (torch.from_numpy(np.concatenate([np.full((6, 1), fixture.bos_id), x], 1))
                    for x in ids)
    losses = siit_losses(model, fixture.model, base, source, node_component=node.component,
                         ll_component=ll_component, strict_component=strict_component)
    # High-level targets, one example at a time.
    truth = [fixture.model(base[i][None])[0, 1:].argmax(-1) for i in range(6)]
    intervened = [_literal_patched_logits(fixture.model, base[i], source[i], node.hook,
                                          node.head)[1:].argmax(-1) for i in range(6)]
    assert any((a != b).any() for a, b in zip(truth, intervened, strict=True)) or (
        node.name == "reverse")
    with torch.no_grad():
        np.testing.assert_allclose(float(losses.behavior), _literal_loss(model, truth, base),
                                   rtol=1e-5)
        np.testing.assert_allclose(
            float(losses.iit), _literal_loss(model, intervened, base, *ll_component, source),
            rtol=1e-5)
        np.testing.assert_allclose(
            float(losses.strict), _literal_loss(model, truth, base, *strict_component, source),
            rtol=1e-5)


@pytest.mark.parametrize("program", ["reverse", "hist"])
def test_the_compiled_model_is_its_own_perfect_low_level_model(program):
    fixture = load_tracr_model(program)
    result = evaluate_siit(fixture.model, program, default_alignment(program), n_pairs=256,
                           seed=0)
    assert result.task_accuracy == 1.0
    assert set(result.iia.values()) == {1.0}
    # Compiled components outside the circuit write nothing: ablating them changes nothing.
    assert all(v == 1.0 for v in result.strict_accuracy.values())
    assert result.n_pairs == 256 and result.n_positions > 256
    # base and source of different lengths: every node's interchange moves the output, so no
    # node's IIA is vacuous (with equal lengths, reverse's length / opp_idx never did)
    assert min(result.changed.values()) > 0.3, result.changed


def test_an_untrained_model_has_low_iia():
    config = SIITConfig(program="hist", seed=0)
    torch.manual_seed(0)
    model = _make_model(config, load_tracr_model("hist"))
    result = evaluate_siit(model, "hist", config.alignment, n_pairs=256, seed=0)
    assert result.task_accuracy < 0.6
    assert max(result.iia.values()) < 0.6, result.iia


def test_evaluate_rejects_bad_input():
    fixture = load_tracr_model("hist")
    with pytest.raises(ValueError, match="n_pairs"):
        evaluate_siit(fixture.model, "hist", default_alignment("hist"), n_pairs=0, seed=0)
    with pytest.raises(ValueError, match="unknown Tracr program 'x'"):
        evaluate_siit(fixture.model, "x", default_alignment("hist"), seed=0)
    with pytest.raises(ValueError, match="blocks.0.attn.hook_z\\[3\\]"):
        evaluate_siit(fixture.model, "hist", {"hist_selector_width_attn_output":
                                              ("blocks.0.attn.hook_z", 3),
                                              "hist": ("blocks.0.hook_mlp_out", None)}, seed=0)


def _weights(siit_model):
    return {k: v.detach().clone() for k, v in siit_model.model.state_dict().items()}


def test_training_is_deterministic_resumable_and_loadable(tmp_path):
    config = SIITConfig(**TINY)
    a = train_siit(config, tmp_path / "a")
    b = train_siit(config, tmp_path / "b")
    wa, wb = _weights(a), _weights(b)
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=0, atol=0)
    # Interrupted after 6 steps (checkpoint at 4 and at the stop), then resumed.
    partial = train_siit(config, tmp_path / "c", stop_after=6)
    assert partial.log["step"] == 6 and (tmp_path / "c" / "checkpoint.pt").exists()
    resumed = train_siit(config, tmp_path / "c")
    assert not (tmp_path / "c" / "checkpoint.pt").exists()
    for name, value in _weights(resumed).items():
        torch.testing.assert_close(value, wa[name], rtol=0, atol=0)
    assert resumed.log["loss_curve"] == a.log["loss_curve"]
    loaded = load_siit_model(tmp_path / "a")
    assert loaded.config == config
    for name, value in _weights(loaded).items():
        torch.testing.assert_close(value, wa[name], rtol=0, atol=0)
    assert loaded.log["evaluation"] == a.log["evaluation"]
    assert loaded.evaluate(n_pairs=64, seed=derive_held_out(config)).to_dict() == \
        a.log["evaluation"]
    # The saved folder is reused, never retrained with another config.
    assert train_siit(config, tmp_path / "a").log == a.log
    with pytest.raises(ValueError, match="another config"):
        train_siit(SIITConfig(**{**TINY, "seed": 4}), tmp_path / "a")
    with pytest.raises(ValueError, match="no finished SIIT model"):
        load_siit_model(tmp_path / "empty")


def derive_held_out(config):
    from synthetic_saes.rng import derive_seed

    return derive_seed(config.seed, "siit-held-out")


@pytest.mark.slow
@pytest.mark.parametrize("program", ["reverse", "hist"])
def test_default_configs_reach_the_targets(tmp_path, program):
    trained = train_siit(SIITConfig(program=program), tmp_path)
    result = trained.evaluate(n_pairs=4096, seed=12345)
    print(program, f"{trained.log['train_seconds']:.0f} s", result)
    assert result.task_accuracy >= 0.95, result
    assert result.min_iia >= 0.95, result
