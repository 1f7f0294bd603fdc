import numpy as np
import pytest
import torch

from cebench.models import hook_layer, load_model, model_fingerprint, save_model


def test_hook_layer():
    assert hook_layer("blocks.0.hook_resid_pre") == 0
    assert hook_layer("blocks.11.attn.hook_z") == 11
    assert hook_layer("hook_embed") is None


def test_saved_model_reloads_with_identical_outputs(demo, tmp_path):
    model = load_model(demo.model)
    tokens = torch.tensor([[model.tokenizer.bos_token_id, 5, 17, 42, 9]])
    with torch.no_grad():
        expected = model(tokens)
    save_model(model, tmp_path / "copy")
    again = load_model(tmp_path / "copy")
    with torch.no_grad():
        assert torch.equal(again(tokens), expected)
    assert again.tokenizer.bos_token_id == model.tokenizer.bos_token_id
    assert model_fingerprint(tmp_path / "copy") == model_fingerprint(demo.model)


def test_fingerprint_follows_the_weights(demo, tmp_path):
    model = load_model(demo.model)
    with torch.no_grad():
        model.blocks[0].attn.W_Q.add_(1.0)
    save_model(model, tmp_path / "changed")
    assert model_fingerprint(tmp_path / "changed") != model_fingerprint(demo.model)
    assert model_fingerprint("gpt2") == "hub-gpt2-float32"


def test_bad_model_sources(tmp_path):
    with pytest.raises(ValueError, match="not a saved model folder"):
        load_model(tmp_path)
    with pytest.raises(ValueError, match="no such folder or hub model: 'runs/no_such_model'") as info:
        load_model("runs/no_such_model")
    assert len(str(info.value)) < 300  # not transformer-lens's list of every model name
    (tmp_path / "hooked_transformer_config.json").write_text("{broken")
    with pytest.raises(ValueError, match="hooked_transformer_config.json is not valid JSON"):
        load_model(tmp_path)
    with pytest.raises(ValueError, match="unknown model dtype"):
        load_model(tmp_path, dtype="int8")
